// The ring-independent half of Virtqueue: configuration, descriptor checks shared by both
// formats, element bookkeeping and the dispatch to split_ring.cc / packed_ring.cc.
#include "hw/virtio/virtqueue.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>

#include "base/byte_order.h"
#include "spec/virtio_ring.h"

namespace ferry::virtio {

namespace vr = spec::virtio;

Status Virtqueue::fail(Status status) {
  error_ = status;
  return status;
}

Status Virtqueue::fail_memory(Status status, std::string_view what) {
  return fail(Error(status.code(), "virtqueue {}: {}: {}", index_, what, status.message()));
}

void Virtqueue::reset() {
  error_ = Status();
  layout_ = QueueLayout();
  ready_ = false;
  last_avail_idx_ = 0;
  last_avail_wrap_ = true;
  shadow_avail_idx_ = 0;
  used_idx_ = 0;
  used_wrap_ = true;
  inuse_ = 0;
  signalled_used_ = 0;
  signalled_used_valid_ = false;
  notification_ = true;
  pending_.clear();
  stage_idx_ = 0;
  stage_wrap_ = true;
}

Status Virtqueue::check_layout(const QueueLayout& layout) const {
  if (layout.size > vr::kMaxQueueSize)
    return Error(ErrorCode::kInvalidArgument, "virtqueue {}: size {} is larger than {}", index_,
                 layout.size, vr::kMaxQueueSize);
  if (!packed_ && !std::has_single_bit(layout.size))
    return Error(ErrorCode::kInvalidArgument, "virtqueue {}: size {} is not a power of two",
                 index_, layout.size);
  struct Area {
    const char* name;
    uint64_t addr;
    uint64_t len;
    uint64_t align;
  };
  const std::array<Area, 3> areas =
      packed_ ? std::array<Area, 3>{{
                    {"descriptor ring", layout.desc, vr::desc_table_bytes(layout.size), vr::kDescAlign},
                    {"driver event suppression area", layout.driver, vr::kEventSize,
                     vr::kPackedEventAlign},
                    {"device event suppression area", layout.device, vr::kEventSize,
                     vr::kPackedEventAlign},
                }}
              : std::array<Area, 3>{{
                    {"descriptor table", layout.desc, vr::desc_table_bytes(layout.size), vr::kDescAlign},
                    {"available ring", layout.driver, vr::avail_ring_bytes(layout.size), vr::kAvailAlign},
                    {"used ring", layout.device, vr::used_ring_bytes(layout.size), vr::kUsedAlign},
                }};
  for (const Area& area : areas) {
    if (area.addr % area.align != 0)
      return Error(ErrorCode::kInvalidArgument, "virtqueue {}: {} at 0x{:x} is not {}-byte aligned",
                   index_, area.name, area.addr, area.align);
    if (Status ram = memory_->check({area.addr, area.len}); !ram.ok())
      return Error(ErrorCode::kOutOfRange, "virtqueue {}: {} at 0x{:x} length {} is not in RAM",
                   index_, area.name, area.addr, area.len);
  }
  return {};
}

Status Virtqueue::configure(const QueueLayout& layout, uint64_t features) {
  reset();
  packed_ = (features & vr::feature(vr::kFRingPacked)) != 0;
  event_idx_ = (features & vr::feature(vr::kFEventIdx)) != 0;
  indirect_ = (features & vr::feature(vr::kFIndirectDesc)) != 0;
  notify_on_empty_ = (features & vr::feature(vr::kFNotifyOnEmpty)) != 0;
  layout_ = layout;
  size_ = layout.size;
  desc_ = layout.desc;
  driver_ = layout.driver;
  device_ = layout.device;
  // QEMU treats a queue without a descriptor address as not set up.
  if (!layout.enabled || layout.size == 0 || layout.desc == 0) return {};
  if (Status layout_ok = check_layout(layout); !layout_ok.ok()) return fail(std::move(layout_ok));
  pending_.reserve(size_);
  ready_ = true;
  return {};
}

Status Virtqueue::read_desc(uint64_t addr, Desc& desc, bool packed_format) {
  std::array<uint8_t, vr::kDescSize> raw;
  if (Status read = memory_->read(addr, raw); !read.ok()) [[unlikely]]
    return Error(read.code(), "virtqueue {}: reading a descriptor at 0x{:x}: {}", index_, addr,
                 read.message());
  desc.addr = load_le<uint64_t>(raw.data() + vr::kDescAddr);
  desc.len = load_le<uint32_t>(raw.data() + vr::kDescLen);
  if (packed_format) {
    desc.next = load_le<uint16_t>(raw.data() + vr::kPackedDescId);
    desc.flags = load_le<uint16_t>(raw.data() + vr::kPackedDescFlags);
  } else {
    desc.flags = load_le<uint16_t>(raw.data() + vr::kDescFlags);
    desc.next = load_le<uint16_t>(raw.data() + vr::kDescNext);
  }
  return {};
}

namespace {
// "descriptor 7" or "indirect descriptor 2 of the table at descriptor 7".
std::string descriptor_name(uint32_t number, int64_t table_of) {
  if (table_of < 0) return fmt::format("descriptor {}", number);
  return fmt::format("indirect descriptor {} of the table at descriptor {}", number, table_of);
}
}  // namespace

Status Virtqueue::add_segment(VirtqueueElement& elem, const Desc& desc, uint32_t number,
                              int64_t table_of) {
  if (desc.len == 0) [[unlikely]]
    return Error(ErrorCode::kCorrupt, "virtqueue {}: zero-length {}", index_,
                 descriptor_name(number, table_of));
  if (elem.out.size() + elem.in.size() >= kMaxSegments) [[unlikely]]
    return Error(ErrorCode::kCorrupt, "virtqueue {}: descriptor chain of buffer {} has more than {} segments",
                 index_, elem.id, kMaxSegments);
  if (Status ram = memory_->check({desc.addr, desc.len}); !ram.ok()) [[unlikely]]
    return Error(ErrorCode::kOutOfRange, "virtqueue {}: {} address 0x{:x} length {} is not in RAM",
                 index_, descriptor_name(number, table_of), desc.addr, desc.len);
  if (desc.flags & vr::kDescFWrite) {
    elem.in.push_back({desc.addr, desc.len});
    elem.in_bytes += desc.len;
  } else {
    if (!elem.in.empty()) [[unlikely]]
      return Error(ErrorCode::kCorrupt, "virtqueue {}: readable {} after a writable one", index_,
                   descriptor_name(number, table_of));
    elem.out.push_back({desc.addr, desc.len});
    elem.out_bytes += desc.len;
  }
  return {};
}

Status Virtqueue::walk_indirect(VirtqueueElement& elem, const Desc& table, uint32_t number,
                                bool packed_format) {
  if (!indirect_) [[unlikely]]
    return Error(ErrorCode::kCorrupt,
                 "virtqueue {}: descriptor {} is indirect but INDIRECT_DESC was not negotiated",
                 index_, number);
  if (table.len == 0 || table.len % vr::kDescSize != 0) [[unlikely]]
    return Error(ErrorCode::kCorrupt,
                 "virtqueue {}: indirect table length {} at descriptor {} not a multiple of {}",
                 index_, table.len, number, vr::kDescSize);
  if (Status ram = memory_->check({table.addr, table.len}); !ram.ok()) [[unlikely]]
    return Error(ErrorCode::kOutOfRange,
                 "virtqueue {}: indirect table of descriptor {} address 0x{:x} length {} is not in RAM",
                 index_, number, table.addr, table.len);
  const uint32_t entries = table.len / vr::kDescSize;
  Desc desc;
  uint32_t k = 0;
  for (uint32_t count = 1;; ++count) {
    FERRY_RETURN_IF_ERROR(read_desc(table.addr + uint64_t{k} * vr::kDescSize, desc, packed_format));
    if (desc.flags & vr::kDescFIndirect) [[unlikely]]
      return Error(ErrorCode::kCorrupt, "virtqueue {}: nested indirect descriptor {} in the table at descriptor {}",
                   index_, k, number);
    FERRY_RETURN_IF_ERROR(add_segment(elem, desc, k, number));
    if (packed_format) {
      // A packed table is used whole, in order; its NEXT flags mean nothing.
      if (++k == entries) return {};
      continue;
    }
    if (!(desc.flags & vr::kDescFNext)) return {};
    if (desc.next >= entries) [[unlikely]]
      return Error(ErrorCode::kCorrupt,
                   "virtqueue {}: indirect descriptor {} of the table at descriptor {} links to {}, "
                   "past the table's {} entries",
                   index_, k, number, desc.next, entries);
    if (count >= entries) [[unlikely]]
      return Error(ErrorCode::kCorrupt,
                   "virtqueue {}: indirect table at descriptor {} chains more than its {} entries (a loop)",
                   index_, number, entries);
    k = desc.next;
  }
}

Result<bool> Virtqueue::available() {
  if (!ready_ || broken()) return false;
  auto avail = packed_ ? packed_available() : split_available();
  if (!avail.ok()) return fail(avail.take_status());
  return avail;
}

Result<bool> Virtqueue::pop(VirtqueueElement& elem) {
  if (!ready_ || broken()) return false;
  auto avail = packed_ ? packed_available() : split_available();
  if (!avail.ok()) return fail(avail.take_status());
  if (!*avail) return false;
  if (inuse_ >= size_) [[unlikely]]
    return fail(Error(ErrorCode::kCorrupt,
                      "virtqueue {}: more than {} buffers in use (virtqueue size exceeded)", index_,
                      size_));
  elem.out.clear();
  elem.in.clear();
  elem.out_bytes = 0;
  elem.in_bytes = 0;
  Status popped = packed_ ? packed_pop(elem) : split_pop(elem);
  if (!popped.ok()) [[unlikely]]
    return fail(std::move(popped));
  ++inuse_;
  return true;
}

void Virtqueue::unpop(const VirtqueueElement& elem) {
  if (!ready_ || inuse_ == 0) return;
  rewind_avail(packed_ ? elem.ndescs : uint16_t{1});
}

void Virtqueue::rewind_avail(uint16_t ndescs) {
  --inuse_;
  if (!packed_) {
    --last_avail_idx_;
    return;
  }
  if (last_avail_idx_ < ndescs) {
    last_avail_idx_ = static_cast<uint16_t>(last_avail_idx_ + size_ - ndescs);
    last_avail_wrap_ = !last_avail_wrap_;
  } else {
    last_avail_idx_ = static_cast<uint16_t>(last_avail_idx_ - ndescs);
  }
}

void Virtqueue::discard_pushed() {
  if (!ready_) return;
  for (auto it = pending_.rbegin(); it != pending_.rend() && inuse_ > 0; ++it) rewind_avail(it->ndescs);
  pending_.clear();
  stage_idx_ = used_idx_;
  stage_wrap_ = used_wrap_;
}

Status Virtqueue::push(const VirtqueueElement& elem, uint32_t written) {
  if (!ready_ || broken()) return {};  // nothing is published on a broken queue (QEMU too)
  if (written > elem.in_bytes) [[unlikely]]
    return Error(ErrorCode::kInvalidArgument,
                 "virtqueue {}: {} bytes written to buffer {} with {} writable", index_, written,
                 elem.id, elem.in_bytes);
  if (pending_.size() >= inuse_) [[unlikely]]
    return Error(ErrorCode::kInvalidArgument,
                 "virtqueue {}: buffer {} pushed with {} elements in use and {} already pushed",
                 index_, elem.id, inuse_, pending_.size());
  // The device stored through host iovecs; migration must see those pages.
  uint64_t left = written;
  for (const memory::GuestRange& range : elem.in) {
    if (left == 0) break;
    const uint64_t n = std::min(left, range.len);
    FERRY_RETURN_IF_ERROR(memory_->mark_written({range.addr, n}));
    left -= n;
  }
  const Pending p{elem.id, packed_ ? elem.ndescs : uint16_t{1}, written};
  Status staged = packed_ ? packed_push(p) : split_push(p);
  if (!staged.ok()) [[unlikely]]
    return fail_memory(std::move(staged), "writing the used ring");
  pending_.push_back(p);
  return {};
}

Status Virtqueue::flush() {
  if (!ready_ || broken()) {
    inuse_ -= std::min<uint32_t>(inuse_, pending_.size());
    pending_.clear();
    return {};
  }
  if (pending_.empty()) return {};
  Status published = packed_ ? packed_flush() : split_flush();
  if (!published.ok()) [[unlikely]]
    return fail_memory(std::move(published), "publishing used buffers");
  inuse_ -= static_cast<uint32_t>(pending_.size());
  pending_.clear();
  return {};
}

Status Virtqueue::set_notification(bool enable) {
  notification_ = enable;
  if (!ready_ || broken()) return {};
  Status set = packed_ ? packed_set_notification(enable) : split_set_notification(enable);
  if (!set.ok()) [[unlikely]]
    return fail_memory(std::move(set), "writing the notification suppression field");
  // The driver must see the change before the device looks at the ring again.
  if (enable) std::atomic_thread_fence(std::memory_order_seq_cst);
  return {};
}

Result<bool> Virtqueue::should_notify() {
  if (!ready_ || broken()) return false;
  // Our used index store must be visible before we read the driver's suppression fields,
  // or both sides may decide the other will act (the classic lost wake-up).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto notify = packed_ ? packed_should_notify() : split_should_notify();
  if (!notify.ok()) [[unlikely]]
    return fail_memory(notify.take_status(), "reading the driver's notification suppression");
  return notify;
}

Status Virtqueue::map(const VirtqueueElement& elem, std::vector<iovec>& out_iov,
                      std::vector<iovec>& in_iov) {
  // A segment may split where RAM blocks meet; twice the segment cap bounds that.
  FERRY_RETURN_IF_ERROR(memory_->translate(elem.out, 2 * kMaxSegments, out_iov));
  return memory_->translate(elem.in, 2 * kMaxSegments, in_iov);
}

VirtqueueState Virtqueue::state() const {
  return {last_avail_idx_, last_avail_wrap_, used_idx_, used_wrap_, inuse_};
}

Status Virtqueue::restore(const QueueLayout& layout, uint64_t features, const VirtqueueState& saved) {
  FERRY_RETURN_IF_ERROR(configure(layout, features));
  if (layout.desc == 0) {
    if (saved.last_avail_idx != 0)
      return Error(ErrorCode::kCorrupt, "VQ {} address 0x0 inconsistent with Host index 0x{:x}",
                   index_, saved.last_avail_idx);
    return {};
  }
  if (!ready_) {
    // Not enabled: nothing in guest RAM to check against; keep the indices as saved.
    last_avail_idx_ = saved.last_avail_idx;
    last_avail_wrap_ = saved.last_avail_wrap;
    used_idx_ = saved.used_idx;
    used_wrap_ = saved.used_wrap;
    stage_idx_ = used_idx_;
    stage_wrap_ = used_wrap_;
    return {};
  }
  return packed_ ? packed_restore(saved) : split_restore(saved);
}

}  // namespace ferry::virtio
