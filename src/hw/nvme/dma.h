// Data pointers of NVMe commands: turning a command's PRP entries or SGL descriptors into
// the guest-physical pieces its data occupies, and moving bytes through those pieces.
//
// Every rule the specification sets is checked and answered with the NVMe status it names
// (an offset in a PRP list entry -> PRP Offset Invalid, an SGL type the controller does not
// support -> SGL Descriptor Type Invalid, a data length that does not match -> Data SGL
// Length Invalid, ...). A pointer into guest-physical space with no RAM behind it — the
// data itself, a PRP list or an SGL segment — is a Data Transfer Error: unlike QEMU 7.2,
// which silently completes such transfers, Ferry never reports success for bytes it did
// not move.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "memory/address_space.h"

namespace ferry::nvme {

// One contiguous piece of a command's data. A bit bucket (SGL only) takes its share of
// the transfer on reads from the device but has no memory: its bytes are discarded.
struct DataSegment {
  uint64_t addr = 0;
  uint64_t len = 0;
  bool bit_bucket = false;
};

struct DataMap {
  std::vector<DataSegment> segments;  // in transfer order
  uint64_t length = 0;                // sum of all segment lengths, bit buckets included
};

struct DmaLimits {
  uint64_t page_size = 4096;   // CC.MPS: the memory page size PRP entries are measured in
  uint64_t max_transfer = 0;   // bytes (MDTS); 0: no limit
  bool sgl_supported = true;   // Identify Controller SGLS says SGLs are supported
  bool bit_bucket_supported = true;
  unsigned max_sgl_segments = 256;  // bound on segment descriptors followed per command
  // Added for the implementation (dma.cc):
  // An SGL may describe more bytes than the command moves (the excess is ignored). The
  // controller advertises this in Identify Controller SGLS bit 18; when false, an SGL
  // longer than the transfer is Data SGL Length Invalid.
  bool sgl_excess_length = true;
  // Bound on SGL descriptors read per command (zero-length data blocks cost work but
  // move nothing); beyond it: Invalid Number of SGL Descriptors.
  unsigned max_sgl_descriptors = 65536;
};

// The outcome of mapping: status 0 (Success) and a map, or an NVMe status field value
// (spec/nvme.h) and an empty map.
struct MapResult {
  uint16_t status = 0;
  DataMap map;
};

// Maps `length` bytes described by the command's data pointer (SQE bytes 24..39; PSDT in
// SQE byte 1 selects PRP or SGL). `to_device` is true for writes (host -> controller),
// where bit buckets are not allowed. A length over max_transfer gives Invalid Field.
// `reuse` lends its storage to the result (PRPs), so a hot path allocates nothing.
MapResult map_command_data(const memory::AddressSpace& memory, std::span<const uint8_t, 64> sqe,
                           uint64_t length, bool to_device, const DmaLimits& limits,
                           DataMap reuse = {});

// The two forms on their own.
MapResult map_prp(const memory::AddressSpace& memory, uint64_t prp1, uint64_t prp2,
                  uint64_t length, const DmaLimits& limits, DataMap reuse = {});
MapResult map_sgl(const memory::AddressSpace& memory, std::span<const uint8_t, 16> descriptor,
                  uint64_t length, bool to_device, const DmaLimits& limits);

// Copies between a host buffer and the mapped guest memory (buffer size = map length).
// Returns 0 or Data Transfer Error. Writes into guest RAM mark it dirty.
// (A buffer shorter than the map moves only that prefix, e.g. a log page shorter than
// the host asked for; a longer one is Internal Error, a controller bug.)
uint16_t copy_to_guest(memory::AddressSpace& memory, const DataMap& map,
                       std::span<const uint8_t> data);
uint16_t copy_from_guest(const memory::AddressSpace& memory, const DataMap& map,
                         std::span<uint8_t> out);

// Host iovecs for block I/O straight into or out of guest RAM. Bit-bucket segments are
// pointed at `sink` (reused as often as needed; at least 4 KiB). Returns 0 or Data
// Transfer Error. After a read into guest RAM completes, call mark_written().
uint16_t to_iovecs(const memory::AddressSpace& memory, const DataMap& map,
                   std::span<uint8_t> sink, std::vector<iovec>& out);
void mark_written(memory::AddressSpace& memory, const DataMap& map);

}  // namespace ferry::nvme
