#include "guest/virtio/virtqueue_driver.h"

#include <algorithm>
#include <array>
#include <atomic>

#include "base/byte_order.h"
#include "spec/virtio_ring.h"

namespace ferry::guest::virtio {

namespace vr = ::ferry::spec::virtio;

namespace {

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Writes zeros over [addr, addr + size) a page at a time: DMA memory may hold an earlier
// queue's rings.
Status zero_guest(GuestBus& bus, uint64_t addr, uint64_t size) {
  static constexpr std::array<uint8_t, 4096> kZeros{};
  while (size > 0) {
    const uint64_t n = std::min<uint64_t>(size, kZeros.size());
    FERRY_RETURN_IF_ERROR(bus.memory_write(addr, std::span(kZeros.data(), n)));
    addr += n;
    size -= n;
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<VirtqueueDriver>> VirtqueueDriver::create(GuestBus& bus, DmaMemory& dma,
                                                                 const Options& options,
                                                                 Notifier notify) {
  if (options.size == 0 || (!options.packed && (options.size & (options.size - 1)) != 0)) {
    return Error(ErrorCode::kInvalidArgument,
                 "virtqueue {}: size {} is not valid for a {} ring", options.index, options.size,
                 options.packed ? "packed" : "split (a power of two)");
  }
  if (!notify) {
    return Error(ErrorCode::kInvalidArgument, "virtqueue {}: no notifier", options.index);
  }
  std::unique_ptr<VirtqueueDriver> q(new VirtqueueDriver(bus, dma, options, std::move(notify)));
  FERRY_RETURN_IF_ERROR(q->init());
  return q;
}

VirtqueueDriver::VirtqueueDriver(GuestBus& bus, DmaMemory& dma, const Options& options,
                                 Notifier notify)
    : bus_(&bus), dma_(&dma), options_(options), notify_(std::move(notify)) {}

VirtqueueDriver::~VirtqueueDriver() {
  if (allocation_ != 0) (void)dma_->free(allocation_);
}

Status VirtqueueDriver::init() {
  const uint16_t n = options_.size;
  const uint64_t desc_bytes = vr::desc_table_bytes(n);
  uint64_t total = 0;
  layout_.size = n;
  layout_.packed = options_.packed;
  if (options_.packed) {
    layout_.driver = desc_bytes;  // event structures: 4-aligned after a 16-aligned ring
    layout_.device = desc_bytes + vr::kEventSize;
    total = desc_bytes + 2 * vr::kEventSize;
  } else {
    layout_.driver = desc_bytes;
    layout_.device = align_up(desc_bytes + vr::avail_ring_bytes(n), vr::kUsedAlign);
    total = layout_.device + vr::used_ring_bytes(n);
  }
  auto block = dma_->allocate(total);
  if (!block.ok()) {
    return block.take_status().prepend_message(
        fmt::format("virtqueue {}: ring memory of {} bytes: ", options_.index, total));
  }
  allocation_ = *block;
  layout_.desc = allocation_;
  layout_.driver += allocation_;
  layout_.device += allocation_;
  FERRY_RETURN_IF_ERROR(zero_guest(*bus_, allocation_, total));

  num_free_ = n;
  chains_.assign(n, Chain{});
  if (options_.packed) {
    free_ids_.resize(n);
    for (uint16_t i = 0; i < n; ++i) free_ids_[i] = static_cast<uint16_t>(n - 1 - i);
  } else {
    next_.resize(n);
    for (uint16_t i = 0; i < n; ++i) next_[i] = static_cast<uint16_t>(i + 1);
    free_head_ = 0;
  }
  return {};
}

Status VirtqueueDriver::write_desc(uint64_t at, uint64_t addr, uint32_t len, uint16_t at12,
                                   uint16_t at14) {
  // Split: {addr, len, flags, next}; packed: {addr, len, id, flags}.
  std::array<uint8_t, vr::kDescSize> bytes;
  store_le<uint64_t>(bytes.data(), addr);
  store_le<uint32_t>(bytes.data() + 8, len);
  store_le<uint16_t>(bytes.data() + 12, at12);
  store_le<uint16_t>(bytes.data() + 14, at14);
  return bus_->memory_write(at, bytes);
}

Status VirtqueueDriver::corrupt_used(uint32_t id) const {
  return Error(ErrorCode::kCorrupt,
               "virtqueue {}: the device returned {} {}, which is not a chain in flight",
               options_.index, options_.packed ? "buffer id" : "head", id);
}

Status VirtqueueDriver::add(std::span<const Buffer> readable, std::span<const Buffer> writable,
                            uint64_t token) {
  const size_t count = readable.size() + writable.size();
  if (count == 0) {
    return Error(ErrorCode::kInvalidArgument, "virtqueue {}: an empty chain", options_.index);
  }
  if (count > num_free_) {
    return Error(ErrorCode::kFailedPrecondition,
                 "virtqueue {}: a chain of {} buffers does not fit in {} free descriptors",
                 options_.index, count, num_free_);
  }
  FERRY_RETURN_IF_ERROR(options_.packed ? packed_add(readable, writable, token)
                                        : split_add(readable, writable, token));
  num_free_ = static_cast<uint16_t>(num_free_ - count);
  ++in_flight_;
  // In the units of the index the device's event offset counts: chains on a split ring
  // (avail->idx), descriptors on a packed one (ring positions).
  added_since_kick_ = static_cast<uint16_t>(added_since_kick_ + (options_.packed ? count : 1));
  return {};
}

Result<bool> VirtqueueDriver::kick() {
  // What add() published before what the device said about notifications.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto needed = options_.packed ? packed_needs_kick() : split_needs_kick();
  if (!needed.ok()) return needed.take_status();
  added_since_kick_ = 0;
  if (!*needed) {
    ++suppressed_;
    return false;
  }
  FERRY_RETURN_IF_ERROR(notify_());
  ++notifications_;
  return true;
}

Result<std::optional<UsedBuffer>> VirtqueueDriver::get_used() {
  auto used = options_.packed ? packed_get_used() : split_get_used();
  if (used.ok() && *used) --in_flight_;
  return used;
}

Status VirtqueueDriver::disable_interrupts() {
  interrupts_enabled_ = false;
  if (options_.packed) {
    return bus_->memory_store16(layout_.driver + vr::kEventFlags, vr::kEventFlagDisable);
  }
  avail_flags_ = vr::kAvailFNoInterrupt;
  FERRY_RETURN_IF_ERROR(bus_->memory_store16(layout_.driver + vr::kAvailFlags, avail_flags_));
  if (options_.event_idx) {
    // The device looks only at used_event: put it as far behind as it can be.
    FERRY_RETURN_IF_ERROR(bus_->memory_store16(layout_.driver + vr::used_event_offset(options_.size),
                                               static_cast<uint16_t>(last_used_idx_ - 0x8000)));
  }
  return {};
}

Result<bool> VirtqueueDriver::enable_interrupts() {
  interrupts_enabled_ = true;
  if (options_.packed) {
    if (options_.event_idx) {
      const uint16_t off_wrap =
          static_cast<uint16_t>(last_used_ | (uint16_t{used_wrap_} << vr::kEventWrapShift));
      FERRY_RETURN_IF_ERROR(bus_->memory_store16(layout_.driver + vr::kEventOffWrap, off_wrap));
      std::atomic_thread_fence(std::memory_order_release);  // the offset before the mode
    }
    FERRY_RETURN_IF_ERROR(bus_->memory_store16(
        layout_.driver + vr::kEventFlags,
        options_.event_idx ? vr::kEventFlagDesc : vr::kEventFlagEnable));
  } else {
    avail_flags_ = 0;
    FERRY_RETURN_IF_ERROR(bus_->memory_store16(layout_.driver + vr::kAvailFlags, avail_flags_));
    if (options_.event_idx) {
      FERRY_RETURN_IF_ERROR(bus_->memory_store16(
          layout_.driver + vr::used_event_offset(options_.size), last_used_idx_));
    }
  }
  // The request before the look at the ring: a chain used in between is either seen here
  // or signalled.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto pending = options_.packed ? packed_has_used() : split_has_used();
  if (!pending.ok()) return pending.take_status();
  return !*pending;
}

// ---- split ring ------------------------------------------------------------------------------

Status VirtqueueDriver::split_add(std::span<const Buffer> readable,
                                  std::span<const Buffer> writable, uint64_t token) {
  const uint16_t head = free_head_;
  const size_t count = readable.size() + writable.size();
  uint16_t i = head;
  uint16_t last = head;
  for (size_t k = 0; k < count; ++k) {
    const bool write = k >= readable.size();
    const Buffer& b = write ? writable[k - readable.size()] : readable[k];
    uint16_t flags = write ? vr::kDescFWrite : 0;
    if (k + 1 < count) flags |= vr::kDescFNext;
    FERRY_RETURN_IF_ERROR(write_desc(layout_.desc + uint64_t{i} * vr::kDescSize, b.addr, b.len,
                                     flags, (k + 1 < count) ? next_[i] : 0));
    last = i;
    i = next_[i];
  }
  free_head_ = i;
  chains_[head] = {.token = token, .ndescs = static_cast<uint16_t>(count), .last = last};

  const uint16_t slot = avail_idx_ & (options_.size - 1);
  FERRY_RETURN_IF_ERROR(
      bus_->memory_store16(layout_.driver + vr::kAvailRing + uint64_t{slot} * 2, head));
  // Descriptors and the ring entry before the index that hands them over.
  std::atomic_thread_fence(std::memory_order_release);
  ++avail_idx_;
  return bus_->memory_store16(layout_.driver + vr::kAvailIdx, avail_idx_);
}

Result<bool> VirtqueueDriver::split_needs_kick() {
  const uint16_t new_idx = avail_idx_;
  const uint16_t old_idx = static_cast<uint16_t>(avail_idx_ - added_since_kick_);
  if (options_.event_idx) {
    auto event = bus_->memory_load16(layout_.device + vr::avail_event_offset(options_.size));
    if (!event.ok()) return event.take_status();
    return vr::vring_need_event(*event, new_idx, old_idx);
  }
  auto flags = bus_->memory_load16(layout_.device + vr::kUsedFlags);
  if (!flags.ok()) return flags.take_status();
  return (*flags & vr::kUsedFNoNotify) == 0;
}

Result<bool> VirtqueueDriver::split_has_used() {
  auto idx = bus_->memory_load16(layout_.device + vr::kUsedIdx);
  if (!idx.ok()) return idx.take_status();
  return *idx != last_used_idx_;
}

Result<std::optional<UsedBuffer>> VirtqueueDriver::split_get_used() {
  auto idx = bus_->memory_load16(layout_.device + vr::kUsedIdx);
  if (!idx.ok()) return idx.take_status();
  if (*idx == last_used_idx_) return std::optional<UsedBuffer>{};
  if (static_cast<uint16_t>(*idx - last_used_idx_) > options_.size) {
    return Error(ErrorCode::kCorrupt,
                 "virtqueue {}: used index {} is {} entries past the driver's {} (size {})",
                 options_.index, *idx, static_cast<uint16_t>(*idx - last_used_idx_),
                 last_used_idx_, options_.size);
  }
  // The index before the entry it covers.
  std::atomic_thread_fence(std::memory_order_acquire);
  const uint16_t slot = last_used_idx_ & (options_.size - 1);
  std::array<uint8_t, vr::kUsedElemSize> entry;
  FERRY_RETURN_IF_ERROR(
      bus_->memory_read(layout_.device + vr::kUsedRing + uint64_t{slot} * vr::kUsedElemSize, entry));
  const uint32_t id = load_le<uint32_t>(entry.data());
  const uint32_t len = load_le<uint32_t>(entry.data() + 4);
  if (id >= options_.size || chains_[id].ndescs == 0) return corrupt_used(id);
  Chain& chain = chains_[id];
  // The chain's descriptors go back to the front of the free list.
  next_[chain.last] = free_head_;
  free_head_ = static_cast<uint16_t>(id);
  num_free_ = static_cast<uint16_t>(num_free_ + chain.ndescs);
  const UsedBuffer used{.token = chain.token, .len = len};
  chain = Chain{};
  ++last_used_idx_;
  if (options_.event_idx && interrupts_enabled_) {
    // Interrupts on: ask for the next one.
    FERRY_RETURN_IF_ERROR(bus_->memory_store16(
        layout_.driver + vr::used_event_offset(options_.size), last_used_idx_));
  }
  return std::optional<UsedBuffer>(used);
}

// ---- packed ring -----------------------------------------------------------------------------

Status VirtqueueDriver::packed_add(std::span<const Buffer> readable,
                                   std::span<const Buffer> writable, uint64_t token) {
  const uint16_t id = free_ids_.back();  // taken once the chain is written
  const size_t count = readable.size() + writable.size();
  const uint16_t head = next_avail_;
  const bool head_wrap = avail_wrap_;
  // Available in this lap: AVAIL equal to the wrap counter, USED its inverse.
  auto lap_flags = [](bool wrap) {
    return static_cast<uint16_t>(wrap ? vr::kDescFAvail : vr::kDescFUsed);
  };
  uint16_t head_flags = 0;
  uint16_t position = head;
  bool wrap = head_wrap;
  for (size_t k = 0; k < count; ++k) {
    const bool write = k >= readable.size();
    const Buffer& b = write ? writable[k - readable.size()] : readable[k];
    uint16_t flags = lap_flags(wrap);
    if (write) flags |= vr::kDescFWrite;
    if (k + 1 < count) flags |= vr::kDescFNext;
    const uint64_t at = layout_.desc + uint64_t{position} * vr::kDescSize;
    if (k == 0) {
      // Everything but the flags: they go out last and make the whole chain available.
      head_flags = flags;
      std::array<uint8_t, 14> bytes;
      store_le<uint64_t>(bytes.data(), b.addr);
      store_le<uint32_t>(bytes.data() + 8, b.len);
      store_le<uint16_t>(bytes.data() + 12, id);
      FERRY_RETURN_IF_ERROR(bus_->memory_write(at, bytes));
    } else {
      FERRY_RETURN_IF_ERROR(write_desc(at, b.addr, b.len, id, flags));
    }
    if (++position == options_.size) {
      position = 0;
      wrap = !wrap;
    }
  }
  free_ids_.pop_back();
  next_avail_ = position;
  avail_wrap_ = wrap;
  chains_[id] = {.token = token, .ndescs = static_cast<uint16_t>(count), .last = 0};
  std::atomic_thread_fence(std::memory_order_release);
  return bus_->memory_store16(layout_.desc + uint64_t{head} * vr::kDescSize + vr::kPackedDescFlags,
                              head_flags);
}

Result<bool> VirtqueueDriver::packed_needs_kick() {
  auto flags = bus_->memory_load16(layout_.device + vr::kEventFlags);
  if (!flags.ok()) return flags.take_status();
  if (*flags == vr::kEventFlagDisable) return false;
  if (*flags != vr::kEventFlagDesc || !options_.event_idx) return true;
  auto off_wrap = bus_->memory_load16(layout_.device + vr::kEventOffWrap);
  if (!off_wrap.ok()) return off_wrap.take_status();
  // Positions in [0, size) plus a lap bit: an event offset in the previous lap is moved
  // one ring length back, so the 16-bit crossing rule sees one linear range.
  uint16_t event = static_cast<uint16_t>(*off_wrap & ((1u << vr::kEventWrapShift) - 1));
  const bool event_wrap = (*off_wrap >> vr::kEventWrapShift) != 0;
  if (event_wrap != avail_wrap_) event = static_cast<uint16_t>(event - options_.size);
  const uint16_t new_idx = next_avail_;
  const uint16_t old_idx = static_cast<uint16_t>(next_avail_ - added_since_kick_);
  return vr::vring_need_event(event, new_idx, old_idx);
}

Result<bool> VirtqueueDriver::packed_has_used() {
  auto flags = bus_->memory_load16(layout_.desc + uint64_t{last_used_} * vr::kDescSize +
                                   vr::kPackedDescFlags);
  if (!flags.ok()) return flags.take_status();
  const bool avail = (*flags & vr::kDescFAvail) != 0;
  const bool used = (*flags & vr::kDescFUsed) != 0;
  return avail == used && used == used_wrap_;
}

Result<std::optional<UsedBuffer>> VirtqueueDriver::packed_get_used() {
  auto ready = packed_has_used();
  if (!ready.ok()) return ready.take_status();
  if (!*ready) return std::optional<UsedBuffer>{};
  // The flags before the id and length they hand over.
  std::atomic_thread_fence(std::memory_order_acquire);
  std::array<uint8_t, 6> len_id;
  FERRY_RETURN_IF_ERROR(bus_->memory_read(
      layout_.desc + uint64_t{last_used_} * vr::kDescSize + vr::kPackedDescLen, len_id));
  const uint32_t len = load_le<uint32_t>(len_id.data());
  const uint16_t id = load_le<uint16_t>(len_id.data() + 4);
  if (id >= options_.size || chains_[id].ndescs == 0) return corrupt_used(id);
  Chain& chain = chains_[id];
  uint32_t next = uint32_t{last_used_} + chain.ndescs;
  if (next >= options_.size) {
    next -= options_.size;
    used_wrap_ = !used_wrap_;
  }
  last_used_ = static_cast<uint16_t>(next);
  num_free_ = static_cast<uint16_t>(num_free_ + chain.ndescs);
  const UsedBuffer used{.token = chain.token, .len = len};
  chain = Chain{};
  free_ids_.push_back(id);
  if (options_.event_idx && interrupts_enabled_) {
    // Interrupts on in DESC mode: move the event point to the next used descriptor.
    const uint16_t off_wrap =
        static_cast<uint16_t>(last_used_ | (uint16_t{used_wrap_} << vr::kEventWrapShift));
    FERRY_RETURN_IF_ERROR(bus_->memory_store16(layout_.driver + vr::kEventOffWrap, off_wrap));
  }
  return std::optional<UsedBuffer>(used);
}

}  // namespace ferry::guest::virtio
