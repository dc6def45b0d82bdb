// The split virtqueue format (Virtio 1.x 2.7): descriptor table, available ring written by
// the driver, used ring written by the device, free-running 16-bit indices.
#include <array>
#include <atomic>

#include "base/byte_order.h"
#include "hw/virtio/virtqueue.h"
#include "spec/virtio_ring.h"

namespace ferry::virtio {

namespace vr = spec::virtio;

Result<bool> Virtqueue::split_available() {
  if (last_avail_idx_ != shadow_avail_idx_) return true;  // seen before: no read needed
  auto idx = memory_->load16(driver_ + vr::kAvailIdx);
  if (!idx.ok()) return fail_memory(idx.take_status(), "reading the available index");
  const uint16_t ahead = static_cast<uint16_t>(*idx - last_avail_idx_);
  if (ahead > size_) [[unlikely]]
    return Error(ErrorCode::kCorrupt,
                 "virtqueue {}: guest moved avail index from {} to {}, {} entries ahead in a queue of {}",
                 index_, last_avail_idx_, *idx, ahead, size_);
  shadow_avail_idx_ = *idx;
  if (ahead == 0) return false;
  // The ring entries and descriptors were stored before the index: read them after it.
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
}

Status Virtqueue::split_pop(VirtqueueElement& elem) {
  const uint16_t slot = last_avail_idx_ & (size_ - 1);
  auto head = memory_->load16(driver_ + vr::kAvailRing + 2 * uint64_t{slot});
  if (!head.ok()) return fail_memory(head.take_status(), "reading the available ring");
  if (*head >= size_) [[unlikely]]
    return Error(ErrorCode::kCorrupt,
                 "virtqueue {}: head {} out of range for the queue size {} (available ring entry {})",
                 index_, *head, size_, slot);
  elem.id = *head;
  elem.ndescs = 1;

  Desc desc;
  uint32_t i = *head;
  FERRY_RETURN_IF_ERROR(read_desc(desc_ + uint64_t{i} * vr::kDescSize, desc, false));
  if (desc.flags & vr::kDescFIndirect) {
    // The table is the whole chain; the head's own NEXT is not followed (as QEMU).
    FERRY_RETURN_IF_ERROR(walk_indirect(elem, desc, i, false));
  } else {
    for (uint32_t count = 1;; ++count) {
      if (desc.flags & vr::kDescFIndirect) [[unlikely]]
        return Error(ErrorCode::kCorrupt,
                     "virtqueue {}: descriptor {} is indirect but not the head of its chain", index_, i);
      FERRY_RETURN_IF_ERROR(add_segment(elem, desc, i, -1));
      if (!(desc.flags & vr::kDescFNext)) break;
      if (desc.next >= size_) [[unlikely]]
        return Error(ErrorCode::kCorrupt,
                     "virtqueue {}: descriptor {} links to {}, out of range for the queue size {}",
                     index_, i, desc.next, size_);
      // Indices are below the size, so a chain longer than it has revisited one.
      if (count >= size_) [[unlikely]]
        return Error(ErrorCode::kCorrupt,
                     "virtqueue {}: descriptor chain from head {} longer than the queue size {} (a loop)",
                     index_, *head, size_);
      i = desc.next;
      FERRY_RETURN_IF_ERROR(read_desc(desc_ + uint64_t{i} * vr::kDescSize, desc, false));
    }
  }
  ++last_avail_idx_;
  // With EVENT_IDX, ask to be notified when the driver publishes past what we consumed.
  if (event_idx_ && notification_) {
    Status event = memory_->store16(device_ + vr::avail_event_offset(size_), last_avail_idx_);
    if (!event.ok()) return fail_memory(std::move(event), "writing avail_event");
  }
  return {};
}

Status Virtqueue::split_push(const Pending& p) {
  const uint16_t slot = stage_idx_ & (size_ - 1);
  std::array<uint8_t, vr::kUsedElemSize> entry;
  store_le<uint32_t>(entry.data(), p.id);
  store_le<uint32_t>(entry.data() + 4, p.len);
  FERRY_RETURN_IF_ERROR(memory_->write(device_ + vr::kUsedRing + uint64_t{slot} * vr::kUsedElemSize, entry));
  ++stage_idx_;
  return {};
}

Status Virtqueue::split_flush() {
  // Entries first, then the index that hands them over.
  std::atomic_thread_fence(std::memory_order_release);
  const uint16_t old_idx = used_idx_;
  const uint16_t new_idx = stage_idx_;
  FERRY_RETURN_IF_ERROR(memory_->store16(device_ + vr::kUsedIdx, new_idx));
  used_idx_ = new_idx;
  // The index ran past the last one signalled (a 16-bit wrap): that one no longer tells
  // whether used_event was crossed.
  if (static_cast<uint16_t>(new_idx - signalled_used_) < static_cast<uint16_t>(new_idx - old_idx))
    signalled_used_valid_ = false;
  return {};
}

Status Virtqueue::split_set_notification(bool enable) {
  if (event_idx_) {
    if (!enable) return {};  // the driver may notify once more; harmless
    auto idx = memory_->load16(driver_ + vr::kAvailIdx);
    if (!idx.ok()) return idx.take_status();
    return memory_->store16(device_ + vr::avail_event_offset(size_), *idx);
  }
  return memory_->store16(device_ + vr::kUsedFlags, enable ? 0 : vr::kUsedFNoNotify);
}

Result<bool> Virtqueue::split_should_notify() {
  if (notify_on_empty_ && inuse_ == 0) {
    auto avail = split_available();
    if (!avail.ok()) return fail(avail.take_status());
    if (!*avail) return true;
  }
  if (!event_idx_) {
    auto flags = memory_->load16(driver_ + vr::kAvailFlags);
    if (!flags.ok()) return flags.take_status();
    return (*flags & vr::kAvailFNoInterrupt) == 0;
  }
  auto event = memory_->load16(driver_ + vr::used_event_offset(size_));
  if (!event.ok()) return event.take_status();
  const bool valid = signalled_used_valid_;
  const uint16_t old_idx = signalled_used_;
  signalled_used_ = used_idx_;
  signalled_used_valid_ = true;
  return !valid || vr::vring_need_event(*event, used_idx_, old_idx);
}

Status Virtqueue::split_restore(const VirtqueueState& saved) {
  auto avail = memory_->load16(driver_ + vr::kAvailIdx);
  if (!avail.ok()) return fail_memory(avail.take_status(), "reading the available index");
  auto used = memory_->load16(device_ + vr::kUsedIdx);
  if (!used.ok()) return fail_memory(used.take_status(), "reading the used index");
  const uint16_t inuse = static_cast<uint16_t>(saved.last_avail_idx - *used);
  if (inuse > size_)
    return Error(ErrorCode::kCorrupt, "VQ {} size 0x{:x} < last_avail_idx 0x{:x} - used_idx 0x{:x}",
                 index_, size_, saved.last_avail_idx, *used);
  last_avail_idx_ = saved.last_avail_idx;
  shadow_avail_idx_ = *avail;
  used_idx_ = *used;
  stage_idx_ = *used;
  inuse_ = inuse;
  signalled_used_valid_ = false;
  const uint16_t nheads = static_cast<uint16_t>(*avail - saved.last_avail_idx);
  if (nheads > size_)  // QEMU: virtio_error, the device is broken but the load goes on
    error_ = (Error(ErrorCode::kCorrupt,
               "VQ {} size 0x{:x} Guest index 0x{:x} inconsistent with Host index 0x{:x}: delta 0x{:x}",
               index_, size_, *avail, saved.last_avail_idx, nheads));
  return {};
}

}  // namespace ferry::virtio
