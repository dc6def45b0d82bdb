#include "vmstate/snapshot.h"

#include <algorithm>

namespace ferry::vmstate {

// Only depth 1 (the described object itself) is recorded; nested structs and elements
// belong to the top-level field that contains them.

void SnapshotRecorder::enter_field(std::string_view name) {
  if (depth_ != 1) return;
  out_.fields.push_back({std::string(name), sink_.position(), 0});
}

void SnapshotRecorder::leave_field() {
  if (depth_ != 1) return;
  out_.fields.back().end = sink_.position();
}

void SnapshotRecorder::subsection_begin(std::string_view name) {
  if (depth_ != 1) return;
  out_.subsections.push_back({std::string(name), sink_.position(), 0});
}

void SnapshotRecorder::subsection_end() {
  if (depth_ != 1) return;
  out_.subsections.back().end = sink_.position();
}

Result<std::vector<std::string>> diff(const Snapshot& a, const Snapshot& b) {
  if (a.vmsd_name != b.vmsd_name || a.version != b.version)
    return Error(ErrorCode::kInvalidArgument,
                 "cannot compare snapshots of '{}' v{} and '{}' v{}", a.vmsd_name, a.version,
                 b.vmsd_name, b.version);
  if (a.fields.size() != b.fields.size())
    return Error(ErrorCode::kInternal, "snapshots of '{}' have {} and {} fields", a.vmsd_name,
                 a.fields.size(), b.fields.size());
  std::vector<std::string> changed;
  for (size_t i = 0; i < a.fields.size(); ++i) {
    auto x = a.bytes_of(a.fields[i]);
    auto y = b.bytes_of(b.fields[i]);
    if (!std::equal(x.begin(), x.end(), y.begin(), y.end())) changed.push_back(a.fields[i].name);
  }
  auto find = [](const Snapshot& s, const std::string& name) -> const ByteRange* {
    for (const auto& r : s.subsections)
      if (r.name == name) return &r;
    return nullptr;
  };
  for (const auto& ra : a.subsections) {
    const ByteRange* rb = find(b, ra.name);
    if (!rb) {
      changed.push_back(ra.name);
      continue;
    }
    auto x = a.bytes_of(ra);
    auto y = b.bytes_of(*rb);
    if (!std::equal(x.begin(), x.end(), y.begin(), y.end())) changed.push_back(ra.name);
  }
  for (const auto& rb : b.subsections)
    if (!find(a, rb.name)) changed.push_back(rb.name);
  return changed;
}

}  // namespace ferry::vmstate
