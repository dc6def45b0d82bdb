#include "vmstate/vmdesc.h"

namespace ferry::vmstate {

// Pointers into the JSON tree stay valid because nothing is added to a container while a
// pointer to one of its elements is held: entries are appended only to the innermost
// open "fields" array, and keys are added to an object only after its children closed.

VmdescWriter::VmdescWriter(const ByteSink& sink, Json& root) : sink_(sink) {
  objects_.push_back(&root);
}

void VmdescWriter::struct_begin(std::string_view vmsd_name, int version) {
  if (muted_) return;
  Json& o = *objects_.back();
  o["vmsd_name"] = vmsd_name;
  o["version"] = version;
}

void VmdescWriter::fields_begin() {
  if (muted_) return;
  Json& o = *objects_.back();
  o["fields"] = Json::array();
  arrays_.push_back(&o["fields"]);
}

void VmdescWriter::fields_end() {
  if (muted_) return;
  arrays_.pop_back();
}

void VmdescWriter::field_begin(std::string_view name, std::string_view type, ArrayPos pos,
                               bool is_struct) {
  if (muted_) return;
  Json& fields = *arrays_.back();
  fields.push_back(Json::object());
  Json& entry = fields.back();
  entry["name"] = name;
  if (pos.kind == ArrayPos::Kind::kArrayLen) entry["array_len"] = pos.n;
  if (pos.kind == ArrayPos::Kind::kIndex) entry["index"] = pos.n;
  entry["type"] = type;
  open_.push_back({&entry, sink_.position()});
  if (is_struct) {
    entry["struct"] = Json::object();
    objects_.push_back(&entry["struct"]);
  } else {
    // Kinds that nest a description without being a struct ("tmp") write into the entry.
    objects_.push_back(&entry);
  }
}

void VmdescWriter::field_end() {
  if (muted_) return;
  objects_.pop_back();
  OpenField f = open_.back();
  open_.pop_back();
  (*f.entry)["size"] = sink_.position() - f.begin;
}

void VmdescWriter::subsection_begin(std::string_view /*name*/) {
  if (muted_) return;
  Json& o = *objects_.back();
  if (!o.contains("subsections")) o["subsections"] = Json::array();
  Json& subs = o["subsections"];
  subs.push_back(Json::object());
  objects_.push_back(&subs.back());
}

void VmdescWriter::subsection_end() {
  if (muted_) return;
  objects_.pop_back();
}

}  // namespace ferry::vmstate
