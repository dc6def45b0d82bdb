// libFuzzer target: loads hostile bytes through the NVMe-like description (scalars with a
// validator, an auto-allocating pointer array, a counted vector, a buffer, and two
// subsections, one holding a list) and checks what a successful load promises.
//
// Input: byte 0 picks the incoming version (1 + byte % 3: 1 and 2 are accepted, 3 is too
// new), the rest is the section body as it would arrive on the wire. With bit 7 of byte 0
// set, the body goes to the real NVMe controller's description instead (nvme::
// kControllerState, version 1) over a controller built once (nvme_fuzz_controller.h).
//
// Properties (a violation prints its reason and aborts, so libFuzzer records the input):
//   - a failed load reports a non-empty message and a path rooted at "nvme-like";
//   - a loaded object saves (plain and with vmdesc, to the same bytes), and those bytes
//     load again at the current version, consuming exactly what was written, into an
//     object whose own save is byte-identical, whose snapshot diffs empty, and which
//     equals the first one;
//   - the NVMe controller: a failed load names a path rooted at "nvme"; a loaded
//     controller saves, and its bytes load into a second controller, which saves the same
//     bytes (the last 24, durations on the clock, aside);
//   - memory errors, UB, leaks and huge allocations are the sanitizers' business.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"
#include "nvme_fuzz_controller.h"
#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace {

using ferry::ByteReader;
using ferry::ByteWriter;
using ferry::Status;
using ferry::vmstate::Json;
using ferry::vmstate::samples::kNvmeLikeDesc;
using ferry::vmstate::samples::NvmeLike;

[[noreturn]] void fail(const char* what, const Status& st = {}) {
  std::fprintf(stderr, "vmstate_load_fuzzer: property violated: %s\n", what);
  if (!st.ok()) std::fprintf(stderr, "  status: %s\n", st.to_string().c_str());
  std::abort();
}

bool same_bytes(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

// Saves `obj` and checks the vmdesc-producing save writes the same bytes.
std::vector<uint8_t> save_checked(NvmeLike& obj, const char* which) {
  ByteWriter w;
  Status st = kNvmeLikeDesc.save(obj, w);
  if (!st.ok()) fail(which, st);
  ByteWriter wj;
  Json vmdesc = Json::object();
  st = kNvmeLikeDesc.save(obj, wj, vmdesc);
  if (!st.ok()) fail("save with vmdesc failed", st);
  if (!same_bytes(w.bytes(), wj.bytes())) fail("save with vmdesc wrote different bytes");
  if (!vmdesc.is_object() || !vmdesc.contains("fields")) fail("vmdesc has no fields");
  return w.to_vector();
}

void check_failure(const Status& st) {
  if (st.message().empty()) fail("failed load has an empty message", st);
  if (!st.path().starts_with("nvme-like")) fail("failed load's path is not rooted at nvme-like", st);
}

// The controllers live for the whole run (building one per input would dominate it);
// every load starts with pre_load, which clears what the previous input left.
struct Controllers {
  std::unique_ptr<ferry::fuzz::FuzzController> first, second;
};
Controllers& controllers() {
  static Controllers* c = [] {
    auto* made = new Controllers;
    auto a = ferry::fuzz::FuzzController::make();
    auto b = ferry::fuzz::FuzzController::make();
    if (!a.ok()) fail("cannot build the fuzz controller", a.status());
    if (!b.ok()) fail("cannot build the fuzz controller", b.status());
    made->first = std::move(*a);
    made->second = std::move(*b);
    return made;
  }();
  return *c;
}

int fuzz_nvme_controller(std::span<const uint8_t> body) {
  using ferry::nvme::kControllerState;
  Controllers& c = controllers();
  ByteReader in(body);
  Status st = kControllerState.load(*c.first->ctrl, in);
  if (!st.ok()) {
    if (st.message().empty()) fail("failed controller load has an empty message", st);
    if (!st.path().starts_with("nvme"))
      fail("failed controller load's path is not rooted at nvme", st);
    return 0;
  }
  ByteWriter w;
  st = kControllerState.save(*c.first->ctrl, w);
  if (!st.ok()) fail("saving a loaded controller failed", st);
  std::vector<uint8_t> bytes = w.to_vector();
  ByteReader again(bytes);
  st = kControllerState.load(*c.second->ctrl, again);
  if (!st.ok()) fail("reloading a saved controller failed", st);
  if (again.offset() != bytes.size()) fail("controller reload did not consume the saved bytes");
  ByteWriter w2;
  st = kControllerState.save(*c.second->ctrl, w2);
  if (!st.ok()) fail("saving the reloaded controller failed", st);
  std::vector<uint8_t> bytes2 = w2.to_vector();
  if (bytes2.size() != bytes.size() || bytes.size() < 24 ||
      !std::equal(bytes.begin(), bytes.end() - 24, bytes2.begin()))
    fail("re-saving the reloaded controller wrote different bytes");
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 0x80) return fuzz_nvme_controller(std::span<const uint8_t>(data + 1, size - 1));
  const int version = 1 + data[0] % 3;
  ByteReader in(std::span<const uint8_t>(data + 1, size - 1));

  NvmeLike first;
  Status st = kNvmeLikeDesc.load(first, in, version);
  if (!st.ok()) {
    check_failure(st);
    return 0;
  }
  if (version > kNvmeLikeDesc.version()) fail("a too-new version was accepted");

  std::vector<uint8_t> bytes = save_checked(first, "saving a loaded object failed");
  auto snap1 = ferry::vmstate::take_snapshot(kNvmeLikeDesc, first);
  if (!snap1.ok()) fail("snapshot of the loaded object failed", snap1.status());
  if (snap1->bytes != bytes) fail("snapshot bytes differ from the plain save");

  NvmeLike second;
  ByteReader again(bytes);
  st = kNvmeLikeDesc.load(second, again);
  if (!st.ok()) fail("reloading saved bytes failed", st);
  if (again.offset() != bytes.size()) fail("reload did not consume exactly the saved bytes");

  // The second save must be a fixed point of the first.
  std::vector<uint8_t> bytes2 = save_checked(second, "saving the reloaded object failed");
  if (bytes2 != bytes) fail("re-saving the reloaded object wrote different bytes");
  auto snap2 = ferry::vmstate::take_snapshot(kNvmeLikeDesc, second);
  if (!snap2.ok()) fail("snapshot of the reloaded object failed", snap2.status());
  auto changed = ferry::vmstate::diff(*snap1, *snap2);
  if (!changed.ok()) fail("diff of the two snapshots failed", changed.status());
  if (!changed->empty()) {
    std::fprintf(stderr, "  first changed: %s\n", changed->front().c_str());
    fail("snapshots of equal objects differ");
  }

  if (!(first == second)) fail("reloaded object differs from the loaded one");
  return 0;
}
