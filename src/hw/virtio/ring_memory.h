// RingMemory: the few guest-memory operations a virtqueue needs (RAM only: rings and
// descriptor tables must never reach device registers), kept narrow so the same ring code
// can serve an in-process device (DmaRingMemory, over the device's DmaView) or later a
// vhost-user backend over a shared memory table.
//
// Threading: the guest writes rings from another thread. Ring indices and flags go through
// load16/store16, which are single-copy atomic (relaxed) so they never tear; the
// virtqueue orders them against the other accesses with fences.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "hw/dma/dma_view.h"
#include "memory/address_space.h"

namespace ferry::virtio {

class RingMemory {
 public:
  virtual ~RingMemory() = default;
  // Copies guest RAM at `addr` into `out`; refused unless every byte is RAM.
  virtual Status read(uint64_t addr, std::span<uint8_t> out) = 0;
  // Stores into guest RAM (marking it dirty); refused unless every byte is RAM.
  virtual Status write(uint64_t addr, std::span<const uint8_t> data) = 0;
  // One little-endian 16-bit field read or written as one access; `addr` is 2-aligned.
  virtual Result<uint16_t> load16(uint64_t addr) = 0;
  virtual Status store16(uint64_t addr, uint16_t value) = 0;
  // Ok when every byte of `range` is RAM; no allocation.
  virtual Status check(memory::GuestRange range) = 0;
  // Host iovecs for RAM ranges, appended to `out`.
  virtual Status translate(std::span<const memory::GuestRange> ranges, size_t max_iovecs,
                           std::vector<iovec>& out) = 0;
  // Bytes the device stored through host iovecs, for dirty tracking.
  virtual Status mark_written(memory::GuestRange range) = 0;
};

// RingMemory over a device's DMA view: every access asks the bus-master gate. Not
// thread-safe (a reused scratch vector): one per device, used where its DmaView is.
class DmaRingMemory final : public RingMemory {
 public:
  explicit DmaRingMemory(dma::DmaView& view) : view_(&view) {}

  Status read(uint64_t addr, std::span<uint8_t> out) override;
  Status write(uint64_t addr, std::span<const uint8_t> data) override;
  Result<uint16_t> load16(uint64_t addr) override;
  Status store16(uint64_t addr, uint16_t value) override;
  Status check(memory::GuestRange range) override;
  Status translate(std::span<const memory::GuestRange> ranges, size_t max_iovecs,
                   std::vector<iovec>& out) override;
  Status mark_written(memory::GuestRange range) override;

 private:
  // The host address of a 2-aligned 16-bit RAM field.
  Result<uint16_t*> field16(uint64_t addr);

  dma::DmaView* view_;
  std::vector<iovec> scratch_;  // reused by field16, so no access allocates
};

}  // namespace ferry::virtio
