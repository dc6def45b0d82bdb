// The packed virtqueue format (Virtio 1.x 2.8): one descriptor ring both sides write,
// availability and use told apart by the AVAIL/USED flag bits against wrap counters, and
// event suppression structures in place of ring flags.
#include <array>
#include <atomic>

#include "base/byte_order.h"
#include "hw/virtio/virtqueue.h"
#include "spec/virtio_ring.h"

namespace ferry::virtio {

namespace vr = spec::virtio;

Result<bool> Virtqueue::packed_available() {
  auto flags = memory_->load16(desc_ + uint64_t{last_avail_idx_} * vr::kDescSize + vr::kPackedDescFlags);
  if (!flags.ok()) return fail_memory(flags.take_status(), "reading descriptor flags");
  const bool avail = (*flags & vr::kDescFAvail) != 0;
  const bool used = (*flags & vr::kDescFUsed) != 0;
  // Available in this lap: AVAIL matches our wrap counter and USED does not.
  if (avail != last_avail_wrap_ || used == last_avail_wrap_) return false;
  // The rest of the chain was stored before the head's flags: read it after them.
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
}

Status Virtqueue::packed_pop(VirtqueueElement& elem) {
  const uint32_t head = last_avail_idx_;
  Desc desc;
  FERRY_RETURN_IF_ERROR(read_desc(desc_ + uint64_t{head} * vr::kDescSize, desc, true));
  uint32_t ndescs = 1;
  if (desc.flags & vr::kDescFIndirect) {
    elem.id = desc.next;
    FERRY_RETURN_IF_ERROR(walk_indirect(elem, desc, head, true));
  } else {
    uint32_t position = head;
    for (;;) {
      if (ndescs > 1 && (desc.flags & vr::kDescFIndirect)) [[unlikely]]
        return Error(ErrorCode::kCorrupt,
                     "virtqueue {}: descriptor {} is indirect but not the head of its chain", index_,
                     position);
      elem.id = desc.next;  // the buffer id the driver put in the chain's last descriptor
      FERRY_RETURN_IF_ERROR(add_segment(elem, desc, position, -1));
      if (!(desc.flags & vr::kDescFNext)) break;
      if (ndescs >= size_) [[unlikely]]
        return Error(ErrorCode::kCorrupt,
                     "virtqueue {}: descriptor chain from {} longer than the queue size {}", index_,
                     head, size_);
      ++ndescs;
      if (++position == size_) position = 0;
      FERRY_RETURN_IF_ERROR(read_desc(desc_ + uint64_t{position} * vr::kDescSize, desc, true));
    }
  }
  elem.ndescs = static_cast<uint16_t>(ndescs);
  uint32_t next = last_avail_idx_ + ndescs;
  if (next >= size_) {
    next -= size_;
    last_avail_wrap_ = !last_avail_wrap_;
  }
  last_avail_idx_ = static_cast<uint16_t>(next);
  if (event_idx_ && notification_) {
    // Keep the driver's notification point at the next descriptor we will look at.
    const uint16_t off_wrap = static_cast<uint16_t>(last_avail_idx_ | (uint16_t{last_avail_wrap_} << vr::kEventWrapShift));
    Status event = memory_->store16(device_ + vr::kEventOffWrap, off_wrap);
    if (!event.ok()) return fail_memory(std::move(event), "writing the device event offset");
  }
  return {};
}

Status Virtqueue::packed_push(const Pending& p) {
  // Only counted here: the descriptor slots a used element overwrites may still hold
  // chains a discard_pushed() gives back, so nothing is written before flush.
  // Out of order or not, a used element skips the descriptors its chain took.
  uint32_t next = stage_idx_ + p.ndescs;
  if (next >= size_) {
    next -= size_;
    stage_wrap_ = !stage_wrap_;
  }
  stage_idx_ = static_cast<uint16_t>(next);
  return {};
}

Status Virtqueue::write_packed_used(const Pending& p, uint16_t position, bool wrap) {
  const uint64_t at = desc_ + uint64_t{position} * vr::kDescSize;
  // len and id are contiguous (offsets 8..13); addr is left as the driver wrote it.
  std::array<uint8_t, 6> len_id;
  store_le<uint32_t>(len_id.data(), p.len);
  store_le<uint16_t>(len_id.data() + 4, p.id);
  FERRY_RETURN_IF_ERROR(memory_->write(at + vr::kPackedDescLen, len_id));
  // id and len before the flags that hand them over.
  std::atomic_thread_fence(std::memory_order_release);
  return memory_->store16(at + vr::kPackedDescFlags,
                          wrap ? static_cast<uint16_t>(vr::kDescFAvail | vr::kDescFUsed) : uint16_t{0});
}

Status Virtqueue::packed_flush() {
  // Every element after the first is complete before the first's flags go out: the
  // driver reads used descriptors in ring order, so it takes the whole batch at once.
  auto advance = [this](uint32_t& position, bool& wrap, uint16_t ndescs) {
    position += ndescs;
    if (position >= size_) {
      position -= size_;
      wrap = !wrap;
    }
  };
  uint32_t position = used_idx_;
  bool wrap = used_wrap_;
  advance(position, wrap, pending_.front().ndescs);
  for (size_t k = 1; k < pending_.size(); ++k) {
    FERRY_RETURN_IF_ERROR(write_packed_used(pending_[k], static_cast<uint16_t>(position), wrap));
    advance(position, wrap, pending_[k].ndescs);
  }
  FERRY_RETURN_IF_ERROR(write_packed_used(pending_.front(), used_idx_, used_wrap_));
  used_idx_ = stage_idx_;
  used_wrap_ = stage_wrap_;
  return {};
}

Status Virtqueue::packed_set_notification(bool enable) {
  if (!enable) return memory_->store16(device_ + vr::kEventFlags, vr::kEventFlagDisable);
  if (!event_idx_) return memory_->store16(device_ + vr::kEventFlags, vr::kEventFlagEnable);
  const uint16_t off_wrap = static_cast<uint16_t>(last_avail_idx_ | (uint16_t{last_avail_wrap_} << vr::kEventWrapShift));
  FERRY_RETURN_IF_ERROR(memory_->store16(device_ + vr::kEventOffWrap, off_wrap));
  std::atomic_thread_fence(std::memory_order_release);  // the offset before the mode using it
  return memory_->store16(device_ + vr::kEventFlags, vr::kEventFlagDesc);
}

Result<bool> Virtqueue::packed_should_notify() {
  auto off_wrap = memory_->load16(driver_ + vr::kEventOffWrap);
  if (!off_wrap.ok()) return off_wrap.take_status();
  auto flags = memory_->load16(driver_ + vr::kEventFlags);
  if (!flags.ok()) return flags.take_status();
  const bool valid = signalled_used_valid_;
  const uint16_t old_idx = signalled_used_;
  signalled_used_ = used_idx_;
  signalled_used_valid_ = true;
  if (*flags == vr::kEventFlagDisable) return false;
  if (*flags != vr::kEventFlagDesc || !event_idx_) return true;
  if (!valid) return true;
  // Positions are in [0, size) with a wrap counter: bring the event offset and the new
  // position into one linear range with the old position before the 16-bit rule.
  uint32_t new_idx = used_idx_;
  bool wrap = used_wrap_;
  if (new_idx < old_idx) {
    new_idx += size_;
    wrap = !wrap;
  }
  int32_t event = *off_wrap & ((1u << vr::kEventWrapShift) - 1);
  if (wrap != ((*off_wrap >> vr::kEventWrapShift) != 0)) event -= size_;
  return vr::vring_need_event(static_cast<uint16_t>(event), static_cast<uint16_t>(new_idx), old_idx);
}

Status Virtqueue::packed_restore(const VirtqueueState& saved) {
  if (saved.last_avail_idx >= size_ || saved.used_idx >= size_ || saved.inuse > size_)
    return Error(ErrorCode::kCorrupt,
                 "virtqueue {}: packed state last_avail_idx {} used_idx {} inuse {} out of range "
                 "for the queue size {}",
                 index_, saved.last_avail_idx, saved.used_idx, saved.inuse, size_);
  last_avail_idx_ = saved.last_avail_idx;
  last_avail_wrap_ = saved.last_avail_wrap;
  used_idx_ = saved.used_idx;
  used_wrap_ = saved.used_wrap;
  stage_idx_ = saved.used_idx;
  stage_wrap_ = saved.used_wrap;
  inuse_ = saved.inuse;
  signalled_used_valid_ = false;
  return {};
}

}  // namespace ferry::virtio
