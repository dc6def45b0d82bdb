#include "hw/virtio/ring_memory.h"

#include <bit>

namespace ferry::virtio {

Status DmaRingMemory::read(uint64_t addr, std::span<uint8_t> out) {
  return view_->read_ram(addr, out);
}

Status DmaRingMemory::write(uint64_t addr, std::span<const uint8_t> data) {
  // DmaView::write would also reach MMIO; a ring never may.
  FERRY_RETURN_IF_ERROR(view_->check_ram({addr, data.size()}));
  return view_->write(addr, data);
}

Result<uint16_t*> DmaRingMemory::field16(uint64_t addr) {
  if (addr % 2 != 0) [[unlikely]]
    return Error(ErrorCode::kInvalidArgument, "ring field at 0x{:x} is not 2-byte aligned", addr);
  scratch_.clear();
  const memory::GuestRange range{addr, 2};
  FERRY_RETURN_IF_ERROR(view_->translate_into(std::span(&range, 1), 1, scratch_));
  // Aligned, so the field cannot straddle two host mappings: one iovec of 2 bytes.
  return static_cast<uint16_t*>(scratch_.front().iov_base);
}

Result<uint16_t> DmaRingMemory::load16(uint64_t addr) {
  auto field = field16(addr);
  if (!field.ok()) return field.take_status();
  // Relaxed and single-copy atomic: AddressSpace::read would copy a 2-byte field byte by
  // byte, and an index read half before and half after the guest's store is garbage.
  uint16_t v = __atomic_load_n(*field, __ATOMIC_RELAXED);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap16(v);
  return v;
}

Status DmaRingMemory::store16(uint64_t addr, uint16_t value) {
  auto field = field16(addr);
  if (!field.ok()) return field.take_status();
  if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap16(value);
  __atomic_store_n(*field, value, __ATOMIC_RELAXED);
  return view_->mark_written({addr, 2});
}

Status DmaRingMemory::check(memory::GuestRange range) { return view_->check_ram(range); }

Status DmaRingMemory::translate(std::span<const memory::GuestRange> ranges, size_t max_iovecs,
                                std::vector<iovec>& out) {
  return view_->translate_into(ranges, max_iovecs, out);
}

Status DmaRingMemory::mark_written(memory::GuestRange range) { return view_->mark_written(range); }

}  // namespace ferry::virtio
