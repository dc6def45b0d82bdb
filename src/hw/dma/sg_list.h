// Scatter-gather lists over guest memory: the guest-physical pieces one transfer occupies
// (built by a device from its own descriptors: NVMe PRPs and SGLs, virtio descriptor
// chains), and moving bytes through them by a device's DmaView.
//
// Errors are Status values: kInternal for a caller's bug (a buffer longer than the list,
// a bit bucket with no sink), kFailedPrecondition when the device may not DMA, anything
// else for memory that is not there. Each device maps them to its own status codes.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "hw/dma/dma_view.h"

namespace ferry::dma {

// One contiguous piece of a transfer. A bit bucket takes its share of the transfer on
// reads from the device but has no memory: its bytes are discarded.
struct DataSegment {
  uint64_t addr = 0;
  uint64_t len = 0;
  bool bit_bucket = false;
  bool operator==(const DataSegment&) const = default;
};

struct DataMap {
  std::vector<DataSegment> segments;  // in transfer order
  uint64_t length = 0;                // sum of all segment lengths, bit buckets included
};

// Collects the pieces of a transfer in order, merging a piece into the previous one when
// it continues it (physically contiguous pages become one segment).
class DataMapBuilder {
 public:
  // Starts empty, in `reuse`'s storage (a hot path hands back a request's old map).
  explicit DataMapBuilder(DataMap reuse = {});
  void add(uint64_t addr, uint64_t len);
  void add_bit_bucket(uint64_t len);
  // The map, once every data segment is checked to be RAM the device may reach.
  Result<DataMap> finish(const DmaView& memory) &&;

 private:
  DataMap map_;
};

// Copies between a host buffer and the mapped guest memory. A buffer shorter than the map
// moves only that prefix; a longer one is kInternal. Writes into guest RAM mark it dirty.
Status copy_to_guest(DmaView& memory, const DataMap& map, std::span<const uint8_t> data);
Status copy_from_guest(const DmaView& memory, const DataMap& map, std::span<uint8_t> out);

// Host iovecs for I/O straight into or out of guest RAM, replacing `out`'s contents.
// Bit-bucket segments are pointed at `sink` (reused as often as needed). After a read
// into guest RAM completes, call mark_written().
Status to_iovecs(const DmaView& memory, const DataMap& map, std::span<uint8_t> sink,
                 std::vector<iovec>& out);
void mark_written(DmaView& memory, const DataMap& map);

}  // namespace ferry::dma
