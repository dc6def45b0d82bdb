// Guest-physical RAM handed out to drivers for queues, PRP/SGL lists and data buffers.
// The caller gives a range of guest RAM nobody else uses (e.g. [16 MiB, RAM size)); this
// class only does the bookkeeping: page-aligned first-fit allocations, freed explicitly,
// neighbours merged. It never touches the memory itself.
#pragma once

#include <cstdint>
#include <map>

#include "base/status.h"

namespace ferry::guest {

class DmaMemory {
 public:
  static constexpr uint64_t kPageSize = 4096;

  // [begin, end) must be page-aligned and non-empty.
  static Result<DmaMemory> create(uint64_t begin, uint64_t end);

  // A block of at least `size` bytes (rounded up to whole pages), aligned to `alignment`
  // (a power of two, at least a page).
  Result<uint64_t> allocate(uint64_t size, uint64_t alignment = kPageSize);
  // Returns a block from allocate(); anything else is an error, not a corruption.
  Status free(uint64_t address);

  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  uint64_t bytes_in_use() const { return in_use_; }
  // Size of the allocation starting at `address`, 0 if there is none.
  uint64_t allocation_size(uint64_t address) const;

 private:
  DmaMemory(uint64_t begin, uint64_t end) : begin_(begin), end_(end) { free_[begin] = end - begin; }
  uint64_t begin_;
  uint64_t end_;
  uint64_t in_use_ = 0;
  std::map<uint64_t, uint64_t> free_;       // start -> length, disjoint, never adjacent
  std::map<uint64_t, uint64_t> allocated_;  // start -> length
};

}  // namespace ferry::guest
