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

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "hw/dma/dma_view.h"
#include "hw/dma/sg_list.h"

namespace ferry::nvme {

// The pieces of a command's data: the device-independent scatter-gather list.
using dma::DataMap;
using dma::DataSegment;

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
// SQE byte 1 selects PRP or SGL) in the controller's DMA view. A view that refuses DMA
// (bus mastering off) fails first, with Data Transfer Error, before the pointer is looked
// at. `to_device` is true for writes (host -> controller),
// where bit buckets are not allowed. A length over max_transfer gives Invalid Field.
// `reuse` lends its storage to the result (PRPs), so a hot path allocates nothing.
MapResult map_command_data(const dma::DmaView& memory, std::span<const uint8_t, 64> sqe,
                           uint64_t length, bool to_device, const DmaLimits& limits,
                           DataMap reuse = {});

// The two forms on their own.
MapResult map_prp(const dma::DmaView& memory, uint64_t prp1, uint64_t prp2,
                  uint64_t length, const DmaLimits& limits, DataMap reuse = {});
MapResult map_sgl(const dma::DmaView& memory, std::span<const uint8_t, 16> descriptor,
                  uint64_t length, bool to_device, const DmaLimits& limits);

// The NVMe status for a transfer the DMA layer (hw/dma/sg_list.h) failed: a caller's bug
// is Internal Error (DNR); memory the controller cannot reach — not RAM, not mapped, or
// bus mastering off — is Data Transfer Error.
uint16_t transfer_status(const Status& status);

}  // namespace ferry::nvme
