// Observers that ride along a save. One save path serves three purposes:
//   NoDesc        – plain save; every call is an empty inline function and disappears.
//   VmdescWriter  – builds QEMU's vmdesc JSON with the exact size of every entry.
//   SnapshotRecorder – records the byte range of every top-level field and subsection.
// Call protocol (all balanced):
//   struct_begin(vmsd, version) fields_begin() { enter_field(name) {field_begin(...)
//   field_end()}* leave_field() }* fields_end() { subsection_begin(name) <nested struct>
//   subsection_end() }* struct_end()
// mute()/unmute() silence vmdesc output for array elements after a compressed first one.
#pragma once

#include <cstddef>
#include <string_view>

namespace ferry::vmstate {

// How one vmdesc entry relates to its array: not an array, the first of `n` compressed
// elements ("array_len"), or element `n` of an uncompressed array ("index").
struct ArrayPos {
  enum class Kind { kNone, kArrayLen, kIndex } kind = Kind::kNone;
  size_t n = 0;
  static constexpr ArrayPos none() { return {}; }
  static constexpr ArrayPos len(size_t n) { return {Kind::kArrayLen, n}; }
  static constexpr ArrayPos index(size_t i) { return {Kind::kIndex, i}; }
};

struct NoDesc {
  static constexpr bool kActive = false;
  void struct_begin(std::string_view, int) {}
  void struct_end() {}
  void fields_begin() {}
  void fields_end() {}
  void enter_field(std::string_view) {}
  void leave_field() {}
  void field_begin(std::string_view, std::string_view, ArrayPos, bool) {}
  void field_end() {}
  void subsection_begin(std::string_view) {}
  void subsection_end() {}
  void mute() {}
  void unmute() {}
};

}  // namespace ferry::vmstate
