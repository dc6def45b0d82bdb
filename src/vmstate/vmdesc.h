// VmdescWriter: the save observer that produces QEMU's vmdesc JSON for one description
// ({"vmsd_name","version","fields":[{"name",["array_len"|"index"],"type",["struct"],
// "size"}],"subsections":[...]}), with `size` measured from the bytes actually written.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/byte_writer.h"
#include "vmstate/visitors.h"

namespace ferry::vmstate {

using Json = nlohmann::ordered_json;  // QEMU's key order matters to human readers

class VmdescWriter {
 public:
  static constexpr bool kActive = true;

  // Fills `root` (an object) while the save writes to `sink`.
  VmdescWriter(const ByteSink& sink, Json& root);

  void struct_begin(std::string_view vmsd_name, int version);
  void struct_end() {}
  void fields_begin();
  void fields_end();
  void enter_field(std::string_view) {}
  void leave_field() {}
  void field_begin(std::string_view name, std::string_view type, ArrayPos pos, bool is_struct);
  void field_end();
  void subsection_begin(std::string_view name);
  void subsection_end();
  void mute() { ++muted_; }
  void unmute() { --muted_; }

 private:
  struct OpenField {
    Json* entry;
    uint64_t begin;
  };
  const ByteSink& sink_;
  int muted_ = 0;
  std::vector<Json*> objects_;  // where struct_begin writes next
  std::vector<Json*> arrays_;   // the "fields" array being filled
  std::vector<OpenField> open_;
};

}  // namespace ferry::vmstate
