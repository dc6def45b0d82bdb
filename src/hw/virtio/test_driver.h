// Test code: a minimal driver side for the virtqueue tests. It places split and packed
// rings and descriptors in the test RAM exactly as the Virtio 1.x specification lays
// them out, and reads back what the device published. Not a guest driver: it writes
// whatever a test asks, including hostile chains.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <utility>

#include "hw/dma/test_memory.h"
#include "hw/virtio/queue_layout.h"
#include "hw/virtio/ring_memory.h"
#include "hw/virtio/virtqueue.h"
#include "memory/address_space.h"
#include "spec/virtio_ring.h"

namespace ferry::virtio::testing {

namespace vr = spec::virtio;

inline constexpr uint64_t kFeaturesSplit = vr::feature(vr::kFVersion1) | vr::feature(vr::kFIndirectDesc);
inline constexpr uint64_t kFeaturesPacked = kFeaturesSplit | vr::feature(vr::kFRingPacked);
inline constexpr uint64_t kEventIdx = vr::feature(vr::kFEventIdx);
inline constexpr uint64_t kBufferBase = 0x100000;

// A buffer of a chain: guest address, length, device-writable or not.
struct Buf {
  uint64_t addr;
  uint32_t len;
  bool write = false;
};

// Guest RAM access for the driver side (single-threaded tests: plain AddressSpace stores).
class GuestRam {
 public:
  explicit GuestRam(memory::AddressSpace& as) : as_(&as) {}
  void put(uint64_t addr, uint64_t value, unsigned size) {
    ASSERT_TRUE(as_->store(addr, value, size).ok()) << "store at 0x" << std::hex << addr;
  }
  uint64_t get(uint64_t addr, unsigned size) const {
    auto v = as_->load(addr, size);
    EXPECT_TRUE(v.ok()) << "load at 0x" << std::hex << addr;
    return v.ok() ? *v : 0;
  }

 private:
  memory::AddressSpace* as_;
};

// Split rings: descriptor table at `base`, available ring at base + 0x8000, used ring at
// base + 0x10000 (room for any test size).
class SplitDriver {
 public:
  SplitDriver(memory::AddressSpace& as, uint16_t size, uint64_t base = 0x10000)
      : ram_(as), size_(size), desc_(base), avail_(base + 0x8000), used_(base + 0x10000) {}

  QueueLayout layout() const { return {size_, true, desc_, avail_, used_}; }
  uint64_t desc_addr() const { return desc_; }
  uint64_t avail_addr() const { return avail_; }
  uint64_t used_addr() const { return used_; }

  void write_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    write_desc_at(desc_ + uint64_t{i} * vr::kDescSize, addr, len, flags, next);
  }
  void write_desc_at(uint64_t at, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    ram_.put(at + vr::kDescAddr, addr, 8);
    ram_.put(at + vr::kDescLen, len, 4);
    ram_.put(at + vr::kDescFlags, flags, 2);
    ram_.put(at + vr::kDescNext, next, 2);
  }
  // The available ring entry for free-running index `idx`.
  void set_avail_entry(uint16_t idx, uint16_t head) {
    ram_.put(avail_ + vr::kAvailRing + 2 * uint64_t(idx % size_), head, 2);
  }
  void set_avail_idx(uint16_t v) { ram_.put(avail_ + vr::kAvailIdx, v, 2); }
  uint16_t avail_idx() const { return static_cast<uint16_t>(ram_.get(avail_ + vr::kAvailIdx, 2)); }
  void set_avail_flags(uint16_t v) { ram_.put(avail_ + vr::kAvailFlags, v, 2); }
  void set_used_event(uint16_t v) { ram_.put(avail_ + vr::used_event_offset(size_), v, 2); }
  void set_used_idx(uint16_t v) { ram_.put(used_ + vr::kUsedIdx, v, 2); }

  uint16_t used_idx() const { return static_cast<uint16_t>(ram_.get(used_ + vr::kUsedIdx, 2)); }
  uint16_t used_flags() const { return static_cast<uint16_t>(ram_.get(used_ + vr::kUsedFlags, 2)); }
  uint16_t avail_event() const {
    return static_cast<uint16_t>(ram_.get(used_ + vr::avail_event_offset(size_), 2));
  }
  // The used ring entry {id, len} for free-running index `idx`.
  std::pair<uint32_t, uint32_t> used_elem(uint16_t idx) const {
    const uint64_t at = used_ + vr::kUsedRing + uint64_t(idx % size_) * vr::kUsedElemSize;
    return {static_cast<uint32_t>(ram_.get(at, 4)), static_cast<uint32_t>(ram_.get(at + 4, 4))};
  }

  // Writes `bufs` as a chain in descriptors first, first+1, ... and makes it available.
  uint16_t add(std::span<const Buf> bufs, uint16_t first) {
    for (size_t k = 0; k < bufs.size(); ++k) {
      const bool last = k + 1 == bufs.size();
      const uint16_t flags = static_cast<uint16_t>((bufs[k].write ? vr::kDescFWrite : 0) |
                                                   (last ? 0 : vr::kDescFNext));
      write_desc(static_cast<uint16_t>(first + k), bufs[k].addr, bufs[k].len, flags,
                 static_cast<uint16_t>(first + k + 1));
    }
    publish(first);
    return first;
  }
  // Writes `bufs` as an indirect table at `table`, referenced by descriptor `head`.
  uint16_t add_indirect(std::span<const Buf> bufs, uint16_t head, uint64_t table) {
    for (size_t k = 0; k < bufs.size(); ++k) {
      const bool last = k + 1 == bufs.size();
      const uint16_t flags = static_cast<uint16_t>((bufs[k].write ? vr::kDescFWrite : 0) |
                                                   (last ? 0 : vr::kDescFNext));
      write_desc_at(table + k * vr::kDescSize, bufs[k].addr, bufs[k].len, flags,
                    static_cast<uint16_t>(k + 1));
    }
    write_desc(head, table, static_cast<uint32_t>(bufs.size() * vr::kDescSize), vr::kDescFIndirect, 0);
    publish(head);
    return head;
  }
  // Puts `head` in the next available entry and moves avail->idx past it.
  void publish(uint16_t head) {
    const uint16_t idx = avail_idx();
    set_avail_entry(idx, head);
    set_avail_idx(static_cast<uint16_t>(idx + 1));
  }

 private:
  GuestRam ram_;
  uint16_t size_;
  uint64_t desc_, avail_, used_;
};

// Packed ring: descriptors at `base`, driver event suppression at base + 0x8000, device
// event suppression at base + 0x8100. Keeps the driver's wrap counters.
class PackedDriver {
 public:
  PackedDriver(memory::AddressSpace& as, uint16_t size, uint64_t base = 0x10000)
      : ram_(as), size_(size), desc_(base), driver_(base + 0x8000), device_(base + 0x8100) {}

  QueueLayout layout() const { return {size_, true, desc_, driver_, device_}; }
  uint16_t next_avail() const { return next_avail_; }
  bool avail_wrap() const { return avail_wrap_; }

  void write_desc(uint16_t pos, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags) {
    write_desc_at(desc_ + uint64_t{pos} * vr::kDescSize, addr, len, id, flags);
  }
  void write_desc_at(uint64_t at, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags) {
    ram_.put(at + vr::kPackedDescAddr, addr, 8);
    ram_.put(at + vr::kPackedDescLen, len, 4);
    ram_.put(at + vr::kPackedDescId, id, 2);
    ram_.put(at + vr::kPackedDescFlags, flags, 2);
  }
  // AVAIL = wrap, USED = !wrap: available in the lap `wrap`.
  static uint16_t avail_flags(bool wrap) { return wrap ? vr::kDescFAvail : vr::kDescFUsed; }

  // Writes `bufs` as one chain with buffer id `id` at the next positions; the head's
  // flags go last, as a driver must. Descriptors with `raw_flags` keep them (hostile tests).
  void add(std::span<const Buf> bufs, uint16_t id, std::optional<uint16_t> raw_extra = {}) {
    const uint16_t head = next_avail_;
    const bool head_wrap = avail_wrap_;
    uint16_t head_flags = 0;
    for (size_t k = 0; k < bufs.size(); ++k) {
      const bool last = k + 1 == bufs.size();
      uint16_t flags = static_cast<uint16_t>((bufs[k].write ? vr::kDescFWrite : 0) |
                                             (last ? 0 : vr::kDescFNext) | avail_flags(avail_wrap_));
      if (raw_extra && k == bufs.size() - 1) flags |= *raw_extra;
      if (k == 0) {
        head_flags = flags;
        write_desc(next_avail_, bufs[k].addr, bufs[k].len, id, 0);
        ram_.put(desc_ + uint64_t{head} * vr::kDescSize + vr::kPackedDescFlags,
                 avail_flags(!head_wrap), 2);  // not yet available
      } else {
        write_desc(next_avail_, bufs[k].addr, bufs[k].len, id, flags);
      }
      advance();
    }
    ram_.put(desc_ + uint64_t{head} * vr::kDescSize + vr::kPackedDescFlags, head_flags, 2);
    ndescs_[id] = static_cast<uint16_t>(bufs.size());
  }
  // Writes `bufs` as an indirect table at `table` behind one ring descriptor.
  void add_indirect(std::span<const Buf> bufs, uint16_t id, uint64_t table) {
    for (size_t k = 0; k < bufs.size(); ++k)
      write_desc_at(table + k * vr::kDescSize, bufs[k].addr, bufs[k].len, 0,
                    bufs[k].write ? vr::kDescFWrite : 0);
    write_desc(next_avail_, table, static_cast<uint32_t>(bufs.size() * vr::kDescSize), id,
               static_cast<uint16_t>(vr::kDescFIndirect | avail_flags(avail_wrap_)));
    advance();
    ndescs_[id] = 1;
  }

  // The next used buffer {id, len}, or nothing yet; skips the chain's descriptors.
  std::optional<std::pair<uint16_t, uint32_t>> take_used() {
    const uint64_t at = desc_ + uint64_t{next_used_} * vr::kDescSize;
    const auto flags = static_cast<uint16_t>(ram_.get(at + vr::kPackedDescFlags, 2));
    const bool avail = (flags & vr::kDescFAvail) != 0;
    const bool used = (flags & vr::kDescFUsed) != 0;
    if (avail != used_wrap_ || used != used_wrap_) return std::nullopt;
    const auto id = static_cast<uint16_t>(ram_.get(at + vr::kPackedDescId, 2));
    const auto len = static_cast<uint32_t>(ram_.get(at + vr::kPackedDescLen, 4));
    auto it = ndescs_.find(id);
    EXPECT_NE(it, ndescs_.end()) << "used id " << id << " was never made available";
    const uint16_t n = it == ndescs_.end() ? 1 : it->second;
    next_used_ = static_cast<uint16_t>(next_used_ + n);
    if (next_used_ >= size_) {
      next_used_ = static_cast<uint16_t>(next_used_ - size_);
      used_wrap_ = !used_wrap_;
    }
    return std::pair{id, len};
  }

  void set_driver_event(uint16_t flags, uint16_t off_wrap = 0) {
    ram_.put(driver_ + vr::kEventOffWrap, off_wrap, 2);
    ram_.put(driver_ + vr::kEventFlags, flags, 2);
  }
  uint16_t device_event_flags() const {
    return static_cast<uint16_t>(ram_.get(device_ + vr::kEventFlags, 2));
  }
  uint16_t device_event_off_wrap() const {
    return static_cast<uint16_t>(ram_.get(device_ + vr::kEventOffWrap, 2));
  }

 private:
  void advance() {
    if (++next_avail_ == size_) {
      next_avail_ = 0;
      avail_wrap_ = !avail_wrap_;
    }
  }

  GuestRam ram_;
  uint16_t size_;
  uint64_t desc_, driver_, device_;
  uint16_t next_avail_ = 0;
  bool avail_wrap_ = true;
  uint16_t next_used_ = 0;
  bool used_wrap_ = true;
  std::map<uint16_t, uint16_t> ndescs_;
};

// The fixture every virtqueue test uses: the DMA test RAM, a ring memory over its view,
// queue 1 and one reused element.
class VirtqueueTest : public dma::testing::DmaMemoryTest {
 protected:
  // Pops one element, failing the test on an error or an empty ring.
  void pop_one() {
    auto popped = vq.pop(elem);
    ASSERT_TRUE(popped.ok()) << popped.status().to_string();
    ASSERT_TRUE(*popped);
  }
  // Pops expecting an error; returns its message.
  std::string pop_error() {
    auto popped = vq.pop(elem);
    EXPECT_FALSE(popped.ok());
    EXPECT_TRUE(vq.broken());
    return popped.ok() ? std::string("(no error)") : std::string(popped.status().message());
  }
  uint64_t buf(unsigned k) const { return kBufferBase + uint64_t{k} * 0x1000; }

  DmaRingMemory ring{view};
  Virtqueue vq{1, ring};
  VirtqueueElement elem;
};

}  // namespace ferry::virtio::testing
