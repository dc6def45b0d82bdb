#include "hw/dma/dma_view.h"

#include <utility>

namespace ferry::dma {

DmaView::DmaView(memory::AddressSpace& memory, const DmaGate& gate, std::string owner)
    : memory_(&memory), gate_(&gate), owner_(std::move(owner)) {}

Status DmaView::refused(uint64_t addr) const {
  if (memory_ == nullptr)
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: DMA at 0x{:x} refused: the device has no guest memory attached",
                 owner_.empty() ? "device" : owner_, addr);
  return Error(ErrorCode::kFailedPrecondition,
               "{}: DMA at 0x{:x} refused: bus mastering is disabled", owner_, addr);
}

Status DmaView::read(uint64_t addr, std::span<uint8_t> out) const {
  if (!enabled()) [[unlikely]]
    return refused(addr);
  return memory_->read(addr, out);
}

Status DmaView::write(uint64_t addr, std::span<const uint8_t> data) {
  if (!enabled()) [[unlikely]]
    return refused(addr);
  return memory_->write(addr, data);
}

Status DmaView::read_ram(uint64_t addr, std::span<uint8_t> out) const {
  if (!enabled()) [[unlikely]]
    return refused(addr);
  FERRY_RETURN_IF_ERROR(check_ram({addr, out.size()}));
  return memory_->read(addr, out);
}

Status DmaView::check_ram(memory::GuestRange range) const {
  if (!enabled()) [[unlikely]]
    return refused(range.addr);
  if (memory_->is_ram(range)) return {};
  return Error(ErrorCode::kOutOfRange, "{}: DMA range [0x{:x}, +0x{:x}) is not guest RAM",
               owner_, range.addr, range.len);
}

Status DmaView::translate_into(std::span<const memory::GuestRange> ranges, size_t max_iovecs,
                               std::vector<iovec>& out) const {
  if (!enabled()) [[unlikely]]
    return refused(ranges.empty() ? 0 : ranges.front().addr);
  return memory_->translate_into(ranges, max_iovecs, out);
}

Status DmaView::mark_written(memory::GuestRange range) {
  if (memory_ == nullptr) [[unlikely]]
    return refused(range.addr);
  return memory_->mark_written(range);
}

}  // namespace ferry::dma
