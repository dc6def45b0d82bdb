#include "guest/dma_memory.h"

#include <iterator>

namespace ferry::guest {

Result<DmaMemory> DmaMemory::create(uint64_t begin, uint64_t end) {
  if (begin % kPageSize != 0 || end % kPageSize != 0 || end <= begin) {
    return Error(ErrorCode::kInvalidArgument,
                 "dma memory: range [0x{:x}, 0x{:x}) is empty or not page-aligned", begin, end);
  }
  return DmaMemory(begin, end);
}

Result<uint64_t> DmaMemory::allocate(uint64_t size, uint64_t alignment) {
  if (size == 0) return Error(ErrorCode::kInvalidArgument, "dma memory: allocation of 0 bytes");
  if (alignment < kPageSize || (alignment & (alignment - 1)) != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "dma memory: alignment {} is not a power of two of at least a page", alignment);
  }
  if (size > end_ - begin_) {
    return Error(ErrorCode::kOutOfRange, "dma memory: {} bytes requested, the range holds {}",
                 size, end_ - begin_);
  }
  uint64_t length = (size + kPageSize - 1) / kPageSize * kPageSize;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    uint64_t start = it->first;
    uint64_t free_end = it->first + it->second;
    uint64_t aligned = (start + alignment - 1) & ~(alignment - 1);
    if (aligned < start || aligned >= free_end || free_end - aligned < length) continue;
    // Split the free block into [start, aligned) and [aligned + length, free_end).
    free_.erase(it);
    if (aligned > start) free_[start] = aligned - start;
    if (aligned + length < free_end) free_[aligned + length] = free_end - (aligned + length);
    allocated_[aligned] = length;
    in_use_ += length;
    return aligned;
  }
  return Error(ErrorCode::kOutOfRange,
               "dma memory: no free block of {} bytes aligned to {} ({} of {} bytes in use)",
               length, alignment, in_use_, end_ - begin_);
}

Status DmaMemory::free(uint64_t address) {
  auto it = allocated_.find(address);
  if (it == allocated_.end()) {
    return Error(ErrorCode::kInvalidArgument, "dma memory: 0x{:x} is not an allocated block",
                 address);
  }
  uint64_t start = address;
  uint64_t length = it->second;
  allocated_.erase(it);
  in_use_ -= length;
  // Merge with the following and the preceding free blocks.
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + length) {
    length += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      length += prev->second;
      free_.erase(prev);
    }
  }
  free_[start] = length;
  return {};
}

uint64_t DmaMemory::allocation_size(uint64_t address) const {
  auto it = allocated_.find(address);
  return it == allocated_.end() ? 0 : it->second;
}

}  // namespace ferry::guest
