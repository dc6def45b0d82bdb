// libFuzzer target: a hostile driver's rings. The input picks the ring format, features and
// queue size, and its remaining bytes are the guest RAM holding the descriptor table or
// ring, the driver and device areas and whatever the descriptors point at (indirect
// tables included). The device side pops, pushes, flushes, unpops and asks for
// notifications as a device model would. Any crash, sanitizer report, hang or broken
// invariant (inuse above the size, a pop after an error, a segment outside RAM) is a
// finding.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "hw/dma/dma_view.h"
#include "hw/virtio/queue_layout.h"
#include "hw/virtio/ring_memory.h"
#include "hw/virtio/virtqueue.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"
#include "spec/virtio_ring.h"

namespace {

using namespace ferry;
namespace vr = spec::virtio;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kRingBase = 0x1000;  // input bytes land here
constexpr uint64_t kDesc = 0x1000;
constexpr uint64_t kDriver = 0x2000;
constexpr uint64_t kDevice = 0x3000;

struct NullMmio : memory::MmioHandler {
  uint64_t read(uint64_t, unsigned) override { return 0; }
  void write(uint64_t, uint64_t, unsigned) override {}
};

struct OpenGate : dma::DmaGate {
  bool dma_allowed() const override { return true; }
};

// Built once: mapping RAM per input would dominate the run.
struct World {
  memory::AddressSpace as;
  memory::RamBlock* ram = nullptr;
  NullMmio mmio;
  OpenGate gate;
  std::unique_ptr<dma::DmaView> view;

  World() {
    auto block = memory::RamBlock::anonymous("pc.ram", kRamSize);
    if (!block.ok()) std::abort();
    auto added = as.add_ram(0, std::move(*block));
    if (!added.ok()) std::abort();
    ram = *added;
    // Device registers right after RAM: descriptors pointing there must be refused.
    if (!as.add_mmio("bar", kRamSize, 0x10000, mmio).ok()) std::abort();
    view = std::make_unique<dma::DmaView>(as, gate, "fuzz");
  }
};

void check(bool ok) {
  if (!ok) std::abort();  // a broken invariant is a finding
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world;
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const bool packed = mode & 1;
  uint64_t features = vr::feature(vr::kFVersion1);
  if (packed) features |= vr::feature(vr::kFRingPacked);
  if (mode & 2) features |= vr::feature(vr::kFEventIdx);
  if (mode & 4) features |= vr::feature(vr::kFIndirectDesc);
  // Split: a power of two up to 256; packed: any size up to 256.
  const uint16_t queue_size = packed ? static_cast<uint16_t>(data[1] % 256 + 1)
                                     : static_cast<uint16_t>(1u << (data[1] % 9));
  data += 2;
  size -= 2;

  uint8_t* host = world.ram->host();
  const size_t room = kRamSize - kRingBase;
  const size_t n = size < room ? size : room;
  std::memset(host + kRingBase, 0, 0x8000);
  std::memcpy(host + kRingBase, data, n);

  virtio::DmaRingMemory ring(*world.view);
  virtio::Virtqueue vq(0, ring);
  const virtio::QueueLayout layout{queue_size, true, kDesc, kDriver, kDevice};
  if (!vq.configure(layout, features).ok()) return 0;

  virtio::VirtqueueElement elem;
  const uint8_t script = mode >> 3;  // how the device behaves
  for (unsigned round = 0; round < 2u * queue_size + 4; ++round) {
    auto popped = vq.pop(elem);
    if (!popped.ok()) {
      check(vq.broken());
      auto again = vq.pop(elem);
      check(again.ok() && !*again);
      break;
    }
    check(vq.inuse() <= queue_size);
    if (!*popped) break;
    for (const auto& r : elem.out) check(r.addr + r.len <= kRamSize && r.len > 0);
    for (const auto& r : elem.in) check(r.addr + r.len <= kRamSize && r.len > 0);
    if ((script & 1) && round % 3 == 1) {
      vq.unpop(elem);
      auto repop = vq.pop(elem);
      check(repop.ok() && *repop);
    }
    const uint32_t written = static_cast<uint32_t>(elem.in_bytes < 64 ? elem.in_bytes : 64);
    check(vq.push(elem, written).ok());
    if ((script & 2) && round % 2 == 0) continue;  // batch two
    if ((script & 4) && round % 5 == 4) {
      vq.discard_pushed();
      continue;
    }
    if (!vq.flush().ok()) break;
    (void)vq.should_notify();
    if (script & 8) (void)vq.set_notification(round % 2 == 0);
  }
  (void)vq.flush();
  const virtio::VirtqueueState state = vq.state();
  virtio::Virtqueue restored(0, ring);
  (void)restored.restore(layout, features, state);
  return 0;
}
