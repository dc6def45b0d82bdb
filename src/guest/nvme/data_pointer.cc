#include "guest/nvme/data_pointer.h"

#include <algorithm>

#include "base/byte_order.h"

namespace ferry::guest::nvme {

namespace sn = spec::nvme;

void DataPointer::apply(Sqe& sqe) const {
  sqe.set_psdt(psdt);
  sqe.set_prp1(dptr1);
  sqe.set_prp2(dptr2);
}

namespace {

// Writes `entries` little-endian u64 values at `address`.
Status write_u64s(GuestBus& bus, uint64_t address, std::span<const uint64_t> values) {
  std::vector<uint8_t> bytes(values.size() * 8);
  for (size_t i = 0; i < values.size(); ++i) store_le(&bytes[8 * i], values[i]);
  return bus.memory_write(address, bytes);
}

// Allocates one list page, remembering it in `pointer` so that errors and release() free it.
Result<uint64_t> list_page(DmaMemory& memory, DataPointer& pointer, uint64_t bytes) {
  auto page = memory.allocate(bytes);
  if (!page.ok()) return page.take_status().prepend_message("data pointer list: ");
  pointer.list_pages.push_back(*page);
  return *page;
}

// On failure, returns the list pages taken so far.
Status fail(DmaMemory& memory, DataPointer& pointer, Status error) {
  (void)release(memory, pointer);
  return error;
}

}  // namespace

Result<DataPointer> build_prp(GuestBus& bus, DmaMemory& memory,
                              std::span<const DataSegment> segments) {
  // One entry per memory page touched, the first one keeping its offset.
  std::vector<uint64_t> entries;
  for (size_t i = 0; i < segments.size(); ++i) {
    const DataSegment& seg = segments[i];
    if (seg.bit_bucket) {
      return Error(ErrorCode::kInvalidArgument, "prp: segment {} is a bit bucket (SGL only)", i);
    }
    if (seg.length == 0) continue;
    // Segments are handled by their last byte: one may end exactly at 2^64 (a test aiming
    // at the top of the address space), none can pass it.
    if (seg.length - 1 > ~seg.address) {
      return Error(ErrorCode::kInvalidArgument,
                   "prp: segment {} at 0x{:x} of {} bytes passes the end of the address space",
                   i, seg.address, seg.length);
    }
    const uint64_t seg_last = seg.address + (seg.length - 1);
    bool first = entries.empty();
    bool last = std::all_of(segments.begin() + i + 1, segments.end(),
                            [](const DataSegment& s) { return s.length == 0; });
    if (first && seg.address % 4 != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "prp: the first segment starts at 0x{:x}, not dword-aligned", seg.address);
    }
    if (!first && seg.address % kMemoryPageSize != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "prp: segment {} starts at 0x{:x}, not on a page boundary", i, seg.address);
    }
    if (!last && (seg_last + 1) % kMemoryPageSize != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "prp: segment {} ends at 0x{:x}, not on a page boundary", i, seg_last + 1);
    }
    for (uint64_t at = seg.address;;) {
      entries.push_back(at);
      uint64_t page_last = at | (kMemoryPageSize - 1);
      if (page_last >= seg_last) break;
      at = page_last + 1;
    }
  }

  DataPointer pointer;
  pointer.psdt = sn::kPsdtPrp;
  if (entries.empty()) return pointer;
  pointer.dptr1 = entries[0];
  if (entries.size() == 1) return pointer;
  if (entries.size() == 2) {
    pointer.dptr2 = entries[1];
    return pointer;
  }
  // PRP2 points to a list; a full list page's last entry chains to the next page.
  constexpr size_t kPerPage = kMemoryPageSize / 8;
  std::span<const uint64_t> rest(entries.begin() + 1, entries.end());
  uint64_t previous_slot = 0;  // where the address of the next list page goes
  bool first_page = true;
  while (!rest.empty()) {
    auto page = list_page(memory, pointer, kMemoryPageSize);
    if (!page.ok()) return fail(memory, pointer, page.take_status());
    if (first_page) {
      pointer.dptr2 = *page;
      first_page = false;
    } else {
      uint64_t link = *page;
      Status linked = write_u64s(bus, previous_slot, std::span(&link, 1));
      if (!linked.ok()) return fail(memory, pointer, std::move(linked));
    }
    size_t here = rest.size() <= kPerPage ? rest.size() : kPerPage - 1;
    Status written = write_u64s(bus, *page, rest.first(here));
    if (!written.ok()) return fail(memory, pointer, std::move(written));
    previous_slot = *page + 8 * here;
    rest = rest.subspan(here);
  }
  return pointer;
}

Result<DataPointer> build_sgl(GuestBus& bus, DmaMemory& memory,
                              std::span<const DataSegment> segments, const SglOptions& options) {
  if (options.max_descriptors_per_segment < 2 ||
      options.max_descriptors_per_segment > kMemoryPageSize / sn::kSglDescriptorSize) {
    return Error(ErrorCode::kInvalidArgument,
                 "sgl: {} descriptors per segment is outside [2, {}]",
                 options.max_descriptors_per_segment, kMemoryPageSize / sn::kSglDescriptorSize);
  }
  using Descriptor = std::array<uint8_t, sn::kSglDescriptorSize>;
  std::vector<Descriptor> data;
  for (size_t i = 0; i < segments.size(); ++i) {
    const DataSegment& seg = segments[i];
    if (seg.length > 0xffffffffu) {
      return Error(ErrorCode::kInvalidArgument,
                   "sgl: segment {} of {} bytes exceeds a descriptor's 32-bit length", i,
                   seg.length);
    }
    if (seg.length == 0) continue;
    data.push_back(sgl_descriptor(seg.bit_bucket ? 0 : seg.address,
                                  static_cast<uint32_t>(seg.length),
                                  seg.bit_bucket ? sn::kSglBitBucket : sn::kSglDataBlock));
  }

  DataPointer pointer;
  pointer.psdt = sn::kPsdtSglMptrContiguous;
  auto store = [&pointer](const Descriptor& d) {
    pointer.dptr1 = pointer.dptr2 = 0;
    for (unsigned b = 0; b < 8; ++b) {
      pointer.dptr1 |= uint64_t{d[b]} << (8 * b);
      pointer.dptr2 |= uint64_t{d[8 + b]} << (8 * b);
    }
  };
  if (data.empty()) {
    store(sgl_descriptor(0, 0, sn::kSglDataBlock));
    return pointer;
  }
  if (data.size() == 1 && !options.always_use_segment_list) {
    store(data[0]);
    return pointer;
  }

  // Split into segments: each but the last ends with a descriptor pointing to the next.
  const size_t per_segment = options.max_descriptors_per_segment;
  std::span<const Descriptor> rest(data);
  uint64_t pending_link_slot = 0;  // where the descriptor to the next segment goes
  bool in_sqe = true;
  while (!rest.empty()) {
    bool last = rest.size() <= per_segment;
    size_t here = last ? rest.size() : per_segment - 1;
    uint64_t bytes = here * sn::kSglDescriptorSize;
    auto page = list_page(memory, pointer, kMemoryPageSize);
    if (!page.ok()) return fail(memory, pointer, page.take_status());
    Descriptor link = sgl_descriptor(*page, static_cast<uint32_t>(last ? bytes
                                                                       : bytes + sn::kSglDescriptorSize),
                                     last ? sn::kSglLastSegment : sn::kSglSegment);
    if (in_sqe) {
      store(link);
      in_sqe = false;
    } else {
      Status linked = bus.memory_write(pending_link_slot, link);
      if (!linked.ok()) return fail(memory, pointer, std::move(linked));
    }
    std::vector<uint8_t> content;
    content.reserve(bytes);
    for (const Descriptor& d : rest.first(here)) content.insert(content.end(), d.begin(), d.end());
    Status written = bus.memory_write(*page, content);
    if (!written.ok()) return fail(memory, pointer, std::move(written));
    pending_link_slot = *page + bytes;
    rest = rest.subspan(here);
  }
  return pointer;
}

Status release(DmaMemory& memory, DataPointer& pointer) {
  Status first_error;
  for (uint64_t page : pointer.list_pages) {
    Status freed = memory.free(page);
    if (!freed.ok() && first_error.ok()) first_error = std::move(freed);
  }
  pointer.list_pages.clear();
  return first_error;
}

}  // namespace ferry::guest::nvme
