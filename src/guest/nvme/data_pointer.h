// The data pointer of an NVMe command (SQE bytes 24..39): PRP entries or an SGL, built from
// a scatter list of guest-physical segments. Lists that do not fit in the SQE (PRP lists,
// SGL segments) are written into pages taken from DmaMemory; the caller frees them with
// release() once the command completed. Memory page size is 4 KiB (CC.MPS = 0).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "guest/dma_memory.h"
#include "guest/guest_bus.h"
#include "guest/nvme/command.h"

namespace ferry::guest::nvme {

inline constexpr uint64_t kMemoryPageSize = 4096;

// One piece of a transfer. A bit bucket (SGL only, reads only) discards `length` bytes.
struct DataSegment {
  uint64_t address = 0;
  uint64_t length = 0;
  bool bit_bucket = false;
};

struct SglOptions {
  // Descriptors per SGL segment before a Segment descriptor chains to the next one.
  unsigned max_descriptors_per_segment = kMemoryPageSize / spec::nvme::kSglDescriptorSize;
  // Put even a single data block in a Last Segment list instead of the SQE.
  bool always_use_segment_list = false;
};

struct DataPointer {
  uint8_t psdt = spec::nvme::kPsdtPrp;
  uint64_t dptr1 = 0;  // PRP1, or the first half of the SGL descriptor
  uint64_t dptr2 = 0;  // PRP2, or the second half
  std::vector<uint64_t> list_pages;  // DmaMemory blocks holding PRP lists or SGL segments

  // Stores the pointer and PSDT into the SQE.
  void apply(Sqe& sqe) const;
};

// PRP rules: every segment but the first starts on a page boundary, every segment but the
// last ends on one, and the first starts dword-aligned. Broken rules are reported, not sent.
Result<DataPointer> build_prp(GuestBus& bus, DmaMemory& memory,
                              std::span<const DataSegment> segments);
// SGL data blocks (and bit buckets), chained through segment lists as needed.
Result<DataPointer> build_sgl(GuestBus& bus, DmaMemory& memory,
                              std::span<const DataSegment> segments,
                              const SglOptions& options = {});
// Frees the list pages (the pointer's addresses stay, but must not be reused).
Status release(DmaMemory& memory, DataPointer& pointer);

}  // namespace ferry::guest::nvme
