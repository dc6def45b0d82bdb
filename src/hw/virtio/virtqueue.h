// Virtqueue: the device side of one virtio 1.x queue, split or packed (Virtio 1.x 2.7, 2.8).
// The device pops available descriptor chains as elements, pushes them back used with the
// number of bytes written, flushes to publish, and asks should_notify() before raising
// the used-buffer interrupt. Device-independent: a device model (virtio-net) owns its
// queues and turns an error from pop into NEEDS_RESET.
//
// Guest input is hostile: every chain is walked within bounds (queue size, indirect table
// size, 1024 segments), every buffer must be RAM, and any violation returns an error
// naming the queue, the reason and the value, and breaks the queue: nothing more is popped
// or published until configure() or reset().
//
// Concurrency: the guest writes the rings from another thread. Each pop reads the
// driver's index (split avail->idx, packed head flags) at most once, with an acquire fence
// before the entries it guards; used entries are stored before a release fence and the
// index/flags store that publishes them; should_notify() reads the driver's suppression
// fields after a full fence. Calls on one Virtqueue are not concurrent (machine lock).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "hw/virtio/queue_layout.h"
#include "hw/virtio/ring_memory.h"
#include "memory/address_space.h"

namespace ferry::virtio {

// One popped chain. The caller keeps elements and reuses them: pop() clears and refills
// the vectors without giving up their capacity.
struct VirtqueueElement {
  uint16_t id = 0;      // split: head descriptor index; packed: the chain's buffer id
  uint16_t ndescs = 0;  // ring descriptors the chain took (packed: skipped when used)
  std::vector<memory::GuestRange> out;  // device-readable, in chain order
  std::vector<memory::GuestRange> in;   // device-writable, in chain order
  uint64_t out_bytes = 0;
  uint64_t in_bytes = 0;
};

// What a migration carries for one queue besides its layout (QEMU's per-queue
// last_avail_idx; packed_virtqueue_state's wrap counters, used index and inuse). For a
// split ring only last_avail_idx travels: the rest is re-derived from guest RAM.
struct VirtqueueState {
  uint16_t last_avail_idx = 0;
  bool last_avail_wrap = true;  // packed
  uint16_t used_idx = 0;        // packed (split: read from the used ring)
  bool used_wrap = true;        // packed
  uint32_t inuse = 0;           // packed (split: last_avail_idx - used->idx)
};

class Virtqueue {
 public:
  // Most segments one element may have (QEMU's VIRTQUEUE_MAX_SIZE): bounds what a
  // hostile indirect table can make the device allocate.
  static constexpr uint32_t kMaxSegments = 1024;

  // `memory` is not owned and must outlive the queue; `index` names it in errors.
  Virtqueue(uint16_t index, RingMemory& memory) : index_(index), memory_(&memory) {}

  // Takes the layout the driver programmed and the negotiated features (RING_PACKED,
  // EVENT_IDX, INDIRECT_DESC, NOTIFY_ON_EMPTY), starting from the reset state. A queue
  // not enabled, of size 0 or at descriptor address 0 stays idle (pops find nothing).
  // Refuses a size out of range, misaligned or non-RAM ring areas (the queue is broken).
  Status configure(const QueueLayout& layout, uint64_t features);
  // Back to the state of a device reset: idle, not broken, indices at their start.
  void reset();

  uint16_t index() const { return index_; }
  // The layout last configured or restored (QEMU's per-queue num/desc/avail/used).
  const QueueLayout& layout() const { return layout_; }
  uint16_t size() const { return size_; }
  bool packed() const { return packed_; }
  bool ready() const { return ready_; }
  bool broken() const { return !error_.ok(); }
  // The error that broke the queue (OK while it is not broken).
  const Status& error() const { return error_; }
  // Elements popped and not yet flushed as used.
  uint32_t inuse() const { return inuse_; }

  // Pops the next available chain into `elem`: true when one was popped, false when the
  // ring is empty (or the queue idle or broken). An error breaks the queue.
  Result<bool> pop(VirtqueueElement& elem);
  // Whether a pop would find a chain now (reads the driver's index).
  Result<bool> available();
  // Gives back the element popped last, unused (RX with no room for the frame): the
  // next pop returns the same chain.
  void unpop(const VirtqueueElement& elem);
  // Stages `elem` as used with `written` bytes stored into its writable segments (those
  // bytes are marked dirty here). Nothing is visible to the driver until flush().
  Status push(const VirtqueueElement& elem, uint32_t written);
  // Publishes every staged element (split: used->idx; packed: the first staged
  // descriptor's flags, last) in the order they were pushed.
  Status flush();
  // Drops every staged (pushed, not flushed) element and gives its chain back as unpop
  // does: the receive path that ran out of buffers in the middle of a frame. The staged
  // elements must be the ones popped last.
  void discard_pushed();
  Status push_and_flush(const VirtqueueElement& elem, uint32_t written) {
    FERRY_RETURN_IF_ERROR(push(elem, written));
    return flush();
  }

  // Device-side suppression of available-buffer notifications (split: USED_F_NO_NOTIFY or,
  // with EVENT_IDX, avail_event; packed: the device event suppression structure). After
  // enabling, the device must look at the ring again: a chain may have arrived unnotified.
  Status set_notification(bool enable);
  bool notification_enabled() const { return notification_; }
  // Whether the driver wants a used-buffer notification for what has been flushed since
  // the last one it was sent (split: AVAIL_F_NO_INTERRUPT or used_event; packed: driver
  // event suppression ENABLE/DISABLE/DESC). Call after flush(), before interrupting.
  Result<bool> should_notify();

  // Host iovecs for an element's segments (appended), for backends doing readv/writev.
  Status map(const VirtqueueElement& elem, std::vector<iovec>& out_iov,
             std::vector<iovec>& in_iov);

  // Migration: the state to save, and restoring it over a configured layout. Re-derives
  // what QEMU's virtio_load does: split used index and inuse from guest RAM (fatal when
  // inuse exceeds the size); an avail index too far ahead breaks the queue but is not fatal
  // (QEMU marks the device broken and the migration completes). Save after flush():
  // staged elements are not part of the state. A queue not enabled keeps the indices as
  // saved without looking at guest RAM.
  VirtqueueState state() const;
  Status restore(const QueueLayout& layout, uint64_t features, const VirtqueueState& saved);

  // Ring positions, for tests and debugging.
  uint16_t last_avail_idx() const { return last_avail_idx_; }
  bool last_avail_wrap() const { return last_avail_wrap_; }
  uint16_t used_idx() const { return used_idx_; }
  bool used_wrap() const { return used_wrap_; }

 private:
  // One staged used element.
  struct Pending {
    uint16_t id;
    uint16_t ndescs;
    uint32_t len;
  };
  // One descriptor as read from a table or ring.
  struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;  // split: next index; packed: buffer id
  };

  // The queue's error: kept (the queue is broken) and returned.
  Status fail(Status status);
  Status fail_memory(Status status, std::string_view what);
  Status check_layout(const QueueLayout& layout) const;
  // Adds one descriptor's buffer to `elem` after checking it; `where` names it in errors.
  // `table_of` is the descriptor holding the indirect table, or -1.
  Status add_segment(VirtqueueElement& elem, const Desc& desc, uint32_t number,
                     int64_t table_of);
  Status read_desc(uint64_t addr, Desc& desc, bool packed_format);
  // Moves the next available position back over one chain of `ndescs` descriptors.
  void rewind_avail(uint16_t ndescs);

  // split_ring.cc
  Result<bool> split_available();
  Status split_pop(VirtqueueElement& elem);
  Status split_push(const Pending& p);
  Status split_flush();
  Status split_set_notification(bool enable);
  Result<bool> split_should_notify();
  Status split_restore(const VirtqueueState& saved);
  // packed_ring.cc
  Result<bool> packed_available();
  Status packed_pop(VirtqueueElement& elem);
  Status packed_push(const Pending& p);
  // Writes one used descriptor: id and len, then its flags.
  Status write_packed_used(const Pending& p, uint16_t position, bool wrap);
  Status packed_flush();
  Status packed_set_notification(bool enable);
  Result<bool> packed_should_notify();
  Status packed_restore(const VirtqueueState& saved);
  // Walks an indirect table (either format) into `elem`.
  Status walk_indirect(VirtqueueElement& elem, const Desc& table, uint32_t number,
                       bool packed_format);

  uint16_t index_;
  RingMemory* memory_;
  Status error_;

  // Configuration.
  QueueLayout layout_;
  uint16_t size_ = 0;
  bool ready_ = false;
  bool packed_ = false;
  bool event_idx_ = false;
  bool indirect_ = false;
  bool notify_on_empty_ = false;
  uint64_t desc_ = 0;
  uint64_t driver_ = 0;
  uint64_t device_ = 0;

  // Ring state (split: free-running 16-bit indices; packed: positions in [0, size) plus
  // wrap counters).
  uint16_t last_avail_idx_ = 0;
  bool last_avail_wrap_ = true;
  uint16_t shadow_avail_idx_ = 0;  // split: the driver's avail->idx as last read
  uint16_t used_idx_ = 0;
  bool used_wrap_ = true;
  uint32_t inuse_ = 0;
  uint16_t signalled_used_ = 0;
  bool signalled_used_valid_ = false;
  bool notification_ = true;
  std::vector<Pending> pending_;  // staged by push, published by flush
  // Where the next push writes: the used position after every staged element.
  uint16_t stage_idx_ = 0;
  bool stage_wrap_ = true;
};

}  // namespace ferry::virtio
