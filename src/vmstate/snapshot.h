// Snapshot and diff: a save that also records the byte range of every top-level field
// and subsection, and a field-by-field comparison of two snapshots of one description.
// This is the generic mechanism behind early-migration deltas: send a snapshot early,
// then at stop-and-copy only what changed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/byte_writer.h"
#include "base/status.h"
#include "vmstate/visitors.h"

namespace ferry::vmstate {

struct ByteRange {
  std::string name;  // vmdesc name of a field ("name[k]" when repeated) or subsection name
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct Snapshot {
  std::string vmsd_name;
  int version = 0;
  std::vector<uint8_t> bytes;
  std::vector<ByteRange> fields;       // in description order
  std::vector<ByteRange> subsections;  // only those that were sent

  std::span<const uint8_t> bytes_of(const ByteRange& r) const {
    return std::span<const uint8_t>(bytes).subspan(r.begin, r.end - r.begin);
  }
};

// Names of the fields and subsections whose bytes differ between `a` and `b` (a
// subsection sent in only one of them differs), fields first, in description order.
// Fails if the snapshots are of different descriptions or versions.
Result<std::vector<std::string>> diff(const Snapshot& a, const Snapshot& b);

// The save observer that fills a Snapshot's ranges.
class SnapshotRecorder {
 public:
  static constexpr bool kActive = false;  // needs no vmdesc names or entries
  SnapshotRecorder(const ByteSink& sink, Snapshot& out) : sink_(sink), out_(out) {}

  void struct_begin(std::string_view, int) { ++depth_; }
  void struct_end() { --depth_; }
  void fields_begin() {}
  void fields_end() {}
  void enter_field(std::string_view name);
  void leave_field();
  void field_begin(std::string_view, std::string_view, ArrayPos, bool) {}
  void field_end() {}
  void subsection_begin(std::string_view name);
  void subsection_end();
  void mute() {}
  void unmute() {}

 private:
  const ByteSink& sink_;
  Snapshot& out_;
  int depth_ = 0;
};

template <typename Desc>
Result<Snapshot> take_snapshot(const Desc& desc, typename Desc::Object& obj) {
  Snapshot snap;
  snap.vmsd_name = std::string(desc.name());
  snap.version = desc.version();
  ByteWriter w;
  SnapshotRecorder rec(w, snap);
  Status st = desc.save_body(obj, w, rec);
  if (!st.ok()) return st.prepend_path(desc.name());
  snap.bytes = w.to_vector();
  // Field names as vmdesc shows them, so repeated names stay distinct.
  for (size_t i = 0; i < snap.fields.size(); ++i) snap.fields[i].name = desc.display_name(i);
  return snap;
}

}  // namespace ferry::vmstate
