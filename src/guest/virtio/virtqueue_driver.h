// VirtqueueDriver: the driver side of one virtio 1.x virtqueue, split or packed (Virtio 1.x
// 2.7, 2.8), in guest RAM handed out by DmaMemory and reached only through a GuestBus. The
// driver adds chains of readable then writable buffers, kicks the device (respecting the
// device's notification suppression: split USED_F_NO_NOTIFY / avail_event, packed device
// event suppression), takes used buffers back with the bytes the device wrote, and turns
// used-buffer notifications on and off (split AVAIL_F_NO_INTERRUPT / used_event, packed
// driver event suppression).
//
// Ordering: descriptors and ring entries are written before the index or head flags that
// publish them (release fence); the used index or a used descriptor's flags are read before
// the entries they guard (acquire fence); a full fence separates publishing from reading
// the device's suppression fields. Indices and flags the device polls go through
// GuestBus::memory_store16/memory_load16, one access each.
//
// The device is hostile to the driver as much as the reverse: a used id that is out of
// range or not in flight is an error naming the queue and the value, never a crash.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"
#include "guest/dma_memory.h"
#include "guest/guest_bus.h"

namespace ferry::guest::virtio {

// One guest-physical buffer of a chain.
struct Buffer {
  uint64_t addr = 0;
  uint32_t len = 0;
};

// Where the queue's three areas are, as the transport's queue_desc / queue_driver /
// queue_device registers take them.
struct RingLayout {
  uint16_t size = 0;
  bool packed = false;
  uint64_t desc = 0;    // descriptor table (split) or descriptor ring (packed)
  uint64_t driver = 0;  // available ring (split) or driver event suppression (packed)
  uint64_t device = 0;  // used ring (split) or device event suppression (packed)
};

// A chain the device gave back: the token add() was given and the bytes it wrote.
struct UsedBuffer {
  uint64_t token = 0;
  uint32_t len = 0;
};

class VirtqueueDriver {
 public:
  struct Options {
    uint16_t index = 0;  // names the queue in errors
    uint16_t size = 0;   // entries; a power of two unless packed
    bool packed = false;     // RING_PACKED negotiated
    bool event_idx = false;  // EVENT_IDX negotiated
  };
  // Sends the available-buffer notification (the transport's notify register).
  using Notifier = std::function<Status()>;

  // Allocates and zeroes the ring areas in `dma` (freed again by the destructor: `dma` must
  // outlive the queue, and the device must be reset or the queue disabled first).
  static Result<std::unique_ptr<VirtqueueDriver>> create(GuestBus& bus, DmaMemory& dma,
                                                         const Options& options,
                                                         Notifier notify);
  ~VirtqueueDriver();
  VirtqueueDriver(const VirtqueueDriver&) = delete;
  VirtqueueDriver& operator=(const VirtqueueDriver&) = delete;

  const RingLayout& layout() const { return layout_; }
  uint16_t index() const { return options_.index; }
  // Descriptors not in flight.
  uint16_t num_free() const { return num_free_; }
  // Chains added and not yet returned by get_used().
  uint16_t in_flight() const { return in_flight_; }

  // Adds a chain, readable buffers first, then writable ones, and makes it available
  // (split: avail ring entry and index; packed: the head's flags, written last). The device
  // sees it at once if it polls; kick() tells it. Refused when the chain is empty or does
  // not fit in the free descriptors.
  Status add(std::span<const Buffer> readable, std::span<const Buffer> writable,
             uint64_t token);
  // Notifies the device of the chains added since the last kick, unless it asked not to
  // be told: true when the notification was sent.
  Result<bool> kick();
  // The next used chain, or nothing when the device has returned none.
  Result<std::optional<UsedBuffer>> get_used();

  // Asks the device for no used-buffer notifications (a hint: one may still arrive).
  Status disable_interrupts();
  // Asks for a notification at the next used chain. False when used chains are already
  // waiting: the caller must take them before sleeping, none will be signalled.
  Result<bool> enable_interrupts();

  // Kicks that sent a notification, and kicks the device's suppression swallowed.
  uint64_t notifications() const { return notifications_; }
  uint64_t suppressed_kicks() const { return suppressed_; }

 private:
  struct Chain {
    uint64_t token = 0;
    uint16_t ndescs = 0;  // 0: the slot is free
    uint16_t last = 0;    // split: last descriptor of the chain
  };

  VirtqueueDriver(GuestBus& bus, DmaMemory& dma, const Options& options, Notifier notify);
  Status init();

  Status split_add(std::span<const Buffer> readable, std::span<const Buffer> writable,
                   uint64_t token);
  Status packed_add(std::span<const Buffer> readable, std::span<const Buffer> writable,
                    uint64_t token);
  Result<bool> split_needs_kick();
  Result<bool> packed_needs_kick();
  Result<std::optional<UsedBuffer>> split_get_used();
  Result<std::optional<UsedBuffer>> packed_get_used();
  Result<bool> split_has_used();
  Result<bool> packed_has_used();
  Status write_desc(uint64_t at, uint64_t addr, uint32_t len, uint16_t at12, uint16_t at14);
  Status corrupt_used(uint32_t id) const;

  GuestBus* bus_;
  DmaMemory* dma_;
  Options options_;
  Notifier notify_;
  RingLayout layout_;
  uint64_t allocation_ = 0;  // the one DMA block holding every area

  uint16_t num_free_ = 0;
  uint16_t in_flight_ = 0;
  std::vector<Chain> chains_;  // split: by head descriptor; packed: by buffer id
  uint64_t notifications_ = 0;
  uint64_t suppressed_ = 0;
  uint16_t added_since_kick_ = 0;  // split: chains; packed: descriptors
  // Used-buffer notifications asked for (rings start with them on). While on, get_used()
  // keeps the EVENT_IDX point (used_event, or the packed driver event offset, which the
  // device reads only in DESC mode) at the next used entry.
  bool interrupts_enabled_ = true;

  // Split ring.
  std::vector<uint16_t> next_;  // the driver's own copy of each descriptor's `next`
  uint16_t free_head_ = 0;
  uint16_t avail_idx_ = 0;      // published available index
  uint16_t last_used_idx_ = 0;  // next used entry to take
  uint16_t avail_flags_ = 0;    // what the driver last wrote to avail->flags

  // Packed ring.
  std::vector<uint16_t> free_ids_;  // stack of buffer ids
  uint16_t next_avail_ = 0;
  bool avail_wrap_ = true;
  uint16_t last_used_ = 0;
  bool used_wrap_ = true;
};

}  // namespace ferry::guest::virtio
