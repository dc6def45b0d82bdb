// libFuzzer target: a whole incoming migration stream, hostile bytes through
// BufferChannel + StreamReader into load_stream, with the VM of stream_load_vm.h
// registered (64 KiB "pc.ram", a timer, the NVMe-like device at 0000:00:02.0, a real
// virtio-net-pci at 0000:00:03.0 whose post_load checks its rings against that RAM).
//
// Input: the stream bytes as they would arrive on the wire (seeds: make_stream_seeds.cc).
//
// Properties (a violation prints its reason and aborts, so libFuzzer records the input):
//   - a failed load reports a non-empty message;
//   - after a successful load the VM saves again, that stream loads into a fresh VM, the
//     two VMs are equal (RAM and devices; the NICs' sections saved byte for byte), and analyze_stream accounts for the re-saved
//     stream without an error;
//   - analyze_stream on the raw input never crashes and gives a verdict (errors, or a
//     walk that reached the end);
//   - memory errors, UB, leaks and huge allocations are the sanitizers' business.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "base/status.h"
#include "migration/analyze.h"
#include "migration/buffer_channel.h"
#include "migration/stream.h"
#include "stream_load_vm.h"

namespace {

using ferry::Status;
using ferry::fuzz::kStreamMachine;
using ferry::fuzz::StreamVm;
namespace mig = ferry::migration;

[[noreturn]] void fail(const char* what, const Status& st = {}) {
  std::fprintf(stderr, "stream_load_fuzzer: property violated: %s\n", what);
  if (!st.ok()) std::fprintf(stderr, "  status: %s\n", st.to_string().c_str());
  std::abort();
}

std::unique_ptr<StreamVm> fresh_vm() {
  auto vm = StreamVm::make(false);
  if (!vm.ok()) fail("cannot build the VM", vm.status());
  return std::move(vm).value();
}

// The reader's section window grows to its limit on every device section; the default
// 16 MiB would make each run zero 16 MiB. 256 KiB holds every section and vmdesc here.
constexpr size_t kWindow = 256 << 10;

Status load(StreamVm& vm, std::span<const uint8_t> bytes) {
  mig::BufferChannel channel(bytes);
  mig::StreamReader reader(channel, kWindow);
  mig::RamLoader loader(vm.ram);
  return mig::load_stream(reader, kStreamMachine, vm.registry, loader);
}

std::vector<uint8_t> save(StreamVm& vm) {
  mig::BufferChannel channel;
  mig::StreamWriter writer(channel);
  vm.nic->quiesce();  // the stopped VM saves
  mig::RamSaver saver(vm.ram);
  Status st = mig::save_stream(writer, kStreamMachine, vm.registry, saver);
  if (!st.ok()) fail("saving a loaded VM failed", st);
  return channel.written();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);

  // The analyzer walks the same hostile bytes (it has no state to check afterwards).
  auto analysis = mig::analyze_stream(input);
  if (!analysis.contains("errors") || !analysis["errors"].is_array())
    fail("analyze_stream gave no error list");

  auto first = fresh_vm();
  Status st = load(*first, input);
  if (!st.ok()) {
    if (st.message().empty()) fail("failed load has an empty message", st);
    return 0;
  }

  std::vector<uint8_t> bytes = save(*first);
  auto second = fresh_vm();
  st = load(*second, bytes);
  if (!st.ok()) fail("reloading the re-saved stream failed", st);
  if (!first->same_as(*second)) fail("the reloaded VM differs from the loaded one");
  if (!mig::analyze_stream(bytes)["errors"].empty()) fail("analyze_stream refused a saved stream");
  return 0;
}
