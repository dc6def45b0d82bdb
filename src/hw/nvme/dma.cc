// PRP and SGL data pointers (NVMe Base 1.4 §4.3, §4.4): see dma.h.
//
// Status values carry DNR where retrying the same command cannot help (a malformed data
// pointer, or a PRP list / SGL segment the controller cannot read: QEMU 7.2 answers the
// latter with Data Transfer Error and DNR too); a Data Transfer Error for the data itself
// (memory that is not RAM) carries no DNR.
#include "hw/nvme/dma.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>

#include "base/byte_order.h"
#include "spec/nvme.h"

namespace ferry::nvme {
namespace {

namespace sn = spec::nvme;

constexpr uint16_t dnr(uint16_t status) { return status | sn::kStatusDnr; }

// Bounds on CC.MPS: 2^(12 + MPS) with a 4-bit MPS.
constexpr uint64_t kMinPageSize = 4096;
constexpr uint64_t kMaxPageSize = uint64_t{1} << 27;

// Guest memory is read in chunks of this many bytes (one 4 KiB page of PRP entries or
// 256 SGL descriptors), so no list costs a heap allocation however long it is.
constexpr size_t kChunkBytes = 4096;

MapResult fail(uint16_t status) { return MapResult{status, {}}; }

// The map once every data segment is RAM the controller may reach, else Data Transfer
// Error.
MapResult finish_map(dma::DataMapBuilder&& builder, const dma::DmaView& memory) {
  Result<DataMap> map = std::move(builder).finish(memory);
  if (!map.ok()) return fail(sn::kDataTransferError);
  return MapResult{sn::kSuccess, std::move(map).value()};
}

bool valid_page_size(uint64_t page_size) {
  return std::has_single_bit(page_size) && page_size >= kMinPageSize &&
         page_size <= kMaxPageSize;
}

bool over_max_transfer(uint64_t length, const DmaLimits& limits) {
  return limits.max_transfer != 0 && length > limits.max_transfer;
}

// ---- SGL -------------------------------------------------------------------------------------

struct SglDescriptor {
  uint64_t addr = 0;
  uint32_t len = 0;
  uint8_t type = 0;
  uint8_t subtype = 0;
};

SglDescriptor decode_sgl(const uint8_t* p) {
  uint8_t id = p[15];
  return {load_le<uint64_t>(p), load_le<uint32_t>(p + 8), sn::sgl_type(id), sn::sgl_subtype(id)};
}

bool is_segment_type(uint8_t type) {
  return type == sn::kSglSegment || type == sn::kSglLastSegment;
}

// Walks one command's SGL: the descriptor in the command, then the chain of segments.
class SglWalker {
 public:
  SglWalker(const dma::DmaView& memory, uint64_t length, bool to_device,
            const DmaLimits& limits)
      : memory_(memory), remaining_(length), to_device_(to_device), limits_(limits) {}

  MapResult run(const SglDescriptor& first) {
    uint16_t status = walk(first);
    if (status != sn::kSuccess) return fail(status);
    // The SGL ended before the transfer did.
    if (remaining_ != 0) return fail(dnr(sn::kDataSglLengthInvalid));
    return finish_map(std::move(builder_), memory_);
  }

 private:
  // Once every byte is placed, an SGL that may be longer needs no further reading.
  bool complete() const { return remaining_ == 0 && limits_.sgl_excess_length; }

  uint16_t walk(const SglDescriptor& first) {
    if (!is_segment_type(first.type)) return take_data(first);
    SglDescriptor segment = first;
    unsigned segments = 0;
    while (!complete()) {
      if (++segments > limits_.max_sgl_segments) return dnr(sn::kInvalidSglDescriptorCount);
      bool last_segment = segment.type == sn::kSglLastSegment;
      SglDescriptor next{};
      bool has_next = false;
      uint16_t status = read_segment(segment, last_segment, next, has_next);
      if (status != sn::kSuccess) return status;
      if (!has_next) break;
      segment = next;
    }
    return sn::kSuccess;
  }

  // Processes the descriptors of the segment `segment` points to. A (Last) Segment
  // descriptor may only be the final one, and not at all in a Last Segment's list.
  uint16_t read_segment(const SglDescriptor& segment, bool last_segment, SglDescriptor& next,
                        bool& has_next) {
    // Subtype 0 is "address"; the others (offsets) belong to fabrics transports.
    if (segment.subtype != 0) return dnr(sn::kSglDescriptorTypeInvalid);
    if (segment.len == 0 || segment.len % sn::kSglDescriptorSize != 0)
      return dnr(sn::kInvalidSglSegmentDescriptor);
    if (segment.addr > std::numeric_limits<uint64_t>::max() - segment.len)
      return dnr(sn::kDataSglLengthInvalid);
    uint64_t count = segment.len / sn::kSglDescriptorSize;
    std::array<uint8_t, kChunkBytes> chunk;
    uint64_t index = 0;
    while (index < count) {
      uint64_t n = std::min<uint64_t>(count - index, kChunkBytes / sn::kSglDescriptorSize);
      auto bytes = std::span(chunk.data(), n * sn::kSglDescriptorSize);
      // Only RAM counts: a list in MMIO space would make the device read registers.
      if (!memory_.read_ram(segment.addr + index * sn::kSglDescriptorSize, bytes).ok())
        return dnr(sn::kDataTransferError);
      for (uint64_t i = 0; i < n; ++i, ++index) {
        if (++descriptors_ > limits_.max_sgl_descriptors)
          return dnr(sn::kInvalidSglDescriptorCount);
        SglDescriptor d = decode_sgl(chunk.data() + i * sn::kSglDescriptorSize);
        if (is_segment_type(d.type)) {
          if (last_segment || index != count - 1) return dnr(sn::kInvalidSglSegmentDescriptor);
          next = d;
          has_next = true;
          return sn::kSuccess;
        }
        uint16_t status = take_data(d);
        if (status != sn::kSuccess) return status;
        if (complete()) return sn::kSuccess;
      }
    }
    return sn::kSuccess;
  }

  // A Data Block or Bit Bucket descriptor: places its share of the transfer.
  uint16_t take_data(const SglDescriptor& d) {
    bool bit_bucket = d.type == sn::kSglBitBucket;
    if (d.type != sn::kSglDataBlock && !bit_bucket) return dnr(sn::kSglDescriptorTypeInvalid);
    if (d.subtype != 0) return dnr(sn::kSglDescriptorTypeInvalid);
    // Bit buckets discard data the controller returns; there is nothing to discard on a
    // write (and a controller that does not advertise them refuses them).
    if (bit_bucket && (to_device_ || !limits_.bit_bucket_supported))
      return dnr(sn::kSglDescriptorTypeInvalid);
    if (d.len == 0) return sn::kSuccess;  // describes nothing
    if (remaining_ == 0) {
      // Only reached when excess length is not allowed (else the walk stopped).
      return dnr(sn::kDataSglLengthInvalid);
    }
    uint64_t take = std::min<uint64_t>(remaining_, d.len);
    if (bit_bucket) {
      builder_.add_bit_bucket(take);
    } else {
      if (d.addr > std::numeric_limits<uint64_t>::max() - d.len)
        return dnr(sn::kDataSglLengthInvalid);
      builder_.add(d.addr, take);
    }
    remaining_ -= take;
    return sn::kSuccess;
  }

  const dma::DmaView& memory_;
  uint64_t remaining_;
  bool to_device_;
  const DmaLimits& limits_;
  uint64_t descriptors_ = 0;
  dma::DataMapBuilder builder_;
};

}  // namespace

MapResult map_prp(const dma::DmaView& memory, uint64_t prp1, uint64_t prp2,
                  uint64_t length, const DmaLimits& limits, DataMap reuse) {
  if (!valid_page_size(limits.page_size)) return fail(dnr(sn::kInternalError));
  if (over_max_transfer(length, limits)) return fail(dnr(sn::kInvalidField));
  if (length == 0) return {};
  const uint64_t page = limits.page_size;
  const uint64_t offset_mask = page - 1;
  // Every PRP entry's offset is dword aligned (PRP Offset Invalid names bits 1:0).
  if (prp1 & 3) return fail(dnr(sn::kPrpOffsetInvalid));

  dma::DataMapBuilder builder(std::move(reuse));
  uint64_t first = std::min(length, page - (prp1 & offset_mask));
  builder.add(prp1, first);
  uint64_t remaining = length - first;
  if (remaining == 0) return finish_map(std::move(builder), memory);

  if (remaining <= page) {
    // PRP2 is the second (and last) page.
    if (prp2 & offset_mask) return fail(dnr(sn::kPrpOffsetInvalid));
    builder.add(prp2, remaining);
    return finish_map(std::move(builder), memory);
  }

  // PRP2 points to a PRP list. The first list may start inside its page (at a qword);
  // a list fills the rest of its page, and when more pages remain than it has entries,
  // its last entry points to the next list (page aligned).
  uint64_t list = prp2;
  if (list & 7) return fail(dnr(sn::kPrpOffsetInvalid));
  std::array<uint8_t, kChunkBytes> chunk;
  while (remaining != 0) {
    uint64_t entries = (page - (list & offset_mask)) / 8;
    uint64_t pages_left = remaining / page + (remaining % page != 0);
    bool chained = pages_left > entries;
    uint64_t to_read = chained ? entries : pages_left;
    uint64_t next_list = 0;
    for (uint64_t index = 0; index < to_read;) {
      uint64_t n = std::min<uint64_t>(to_read - index, kChunkBytes / 8);
      if (!memory.read_ram(list + index * 8, std::span(chunk.data(), n * 8)).ok())
        return fail(dnr(sn::kDataTransferError));
      for (uint64_t i = 0; i < n; ++i, ++index) {
        uint64_t entry = load_le<uint64_t>(chunk.data() + i * 8);
        // Every entry after PRP1 starts at a page boundary; so does a next-list pointer.
        if (entry & offset_mask) return fail(dnr(sn::kPrpOffsetInvalid));
        if (chained && index == entries - 1) {
          next_list = entry;
          continue;
        }
        uint64_t n_bytes = std::min(remaining, page);
        builder.add(entry, n_bytes);
        remaining -= n_bytes;
      }
    }
    if (!chained) break;
    list = next_list;
  }
  return finish_map(std::move(builder), memory);
}

MapResult map_sgl(const dma::DmaView& memory, std::span<const uint8_t, 16> descriptor,
                  uint64_t length, bool to_device, const DmaLimits& limits) {
  if (!limits.sgl_supported) return fail(dnr(sn::kInvalidField));
  if (over_max_transfer(length, limits)) return fail(dnr(sn::kInvalidField));
  if (length == 0) return {};
  SglWalker walker(memory, length, to_device, limits);
  return walker.run(decode_sgl(descriptor.data()));
}

MapResult map_command_data(const dma::DmaView& memory, std::span<const uint8_t, 64> sqe,
                           uint64_t length, bool to_device, const DmaLimits& limits,
                           DataMap reuse) {
  // The one place NVMe meets bus mastering: the view refuses every access anyway, but
  // answering before the pointer is decoded keeps QEMU's status for a command the host
  // sent with bus mastering off (Data Transfer Error, whatever the pointer holds).
  if (!memory.enabled()) return fail(sn::kDataTransferError);
  uint8_t psdt = (sqe[sn::kSqeFlags] >> sn::kPsdtShift) & 3;
  switch (psdt) {
    case sn::kPsdtPrp:
      return map_prp(memory, load_le<uint64_t>(&sqe[sn::kSqePrp1]), load_le<uint64_t>(&sqe[sn::kSqePrp2]),
                     length, limits, std::move(reuse));
    case sn::kPsdtSglMptrContiguous:
      return map_sgl(memory, sqe.subspan<sn::kSqePrp1, sn::kSglDescriptorSize>(), length,
                     to_device, limits);
    default:
      // 10b (metadata through an SGL): Ferry's namespaces have no metadata, and the
      // controller does not advertise MPTR SGLs; 11b is reserved.
      return fail(dnr(sn::kInvalidField));
  }
}

uint16_t transfer_status(const Status& status) {
  if (status.ok()) return sn::kSuccess;
  if (status.code() == ErrorCode::kInternal) return dnr(sn::kInternalError);
  return sn::kDataTransferError;
}

}  // namespace ferry::nvme
