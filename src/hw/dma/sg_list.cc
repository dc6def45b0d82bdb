#include "hw/dma/sg_list.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace ferry::dma {

DataMapBuilder::DataMapBuilder(DataMap reuse) : map_(std::move(reuse)) {
  map_.segments.clear();
  map_.length = 0;
}

void DataMapBuilder::add(uint64_t addr, uint64_t len) {
  if (len == 0) return;
  if (!map_.segments.empty()) {
    DataSegment& last = map_.segments.back();
    if (!last.bit_bucket && last.len <= ~last.addr && last.addr + last.len == addr) {
      last.len += len;
      map_.length += len;
      return;
    }
  }
  map_.segments.push_back({addr, len, false});
  map_.length += len;
}

void DataMapBuilder::add_bit_bucket(uint64_t len) {
  if (len == 0) return;
  if (!map_.segments.empty() && map_.segments.back().bit_bucket) {
    map_.segments.back().len += len;
  } else {
    map_.segments.push_back({0, len, true});
  }
  map_.length += len;
}

Result<DataMap> DataMapBuilder::finish(const DmaView& memory) && {
  for (const DataSegment& seg : map_.segments) {
    if (seg.bit_bucket) continue;
    FERRY_RETURN_IF_ERROR(memory.check_ram({seg.addr, seg.len}));
  }
  return std::move(map_);
}

namespace {

Status longer_than_map(size_t size, uint64_t length) {
  return Error(ErrorCode::kInternal, "a {}-byte buffer does not fit a {}-byte transfer", size,
               length);
}

}  // namespace

Status copy_to_guest(DmaView& memory, const DataMap& map, std::span<const uint8_t> data) {
  if (data.size() > map.length) return longer_than_map(data.size(), map.length);
  uint64_t done = 0;
  for (const DataSegment& seg : map.segments) {
    if (done == data.size()) break;
    uint64_t n = std::min<uint64_t>(seg.len, data.size() - done);
    if (!seg.bit_bucket) FERRY_RETURN_IF_ERROR(memory.write(seg.addr, data.subspan(done, n)));
    done += n;
  }
  return {};
}

Status copy_from_guest(const DmaView& memory, const DataMap& map, std::span<uint8_t> out) {
  if (out.size() > map.length) return longer_than_map(out.size(), map.length);
  uint64_t done = 0;
  for (const DataSegment& seg : map.segments) {
    if (done == out.size()) break;
    uint64_t n = std::min<uint64_t>(seg.len, out.size() - done);
    auto piece = out.subspan(done, n);
    if (seg.bit_bucket) {
      std::fill(piece.begin(), piece.end(), uint8_t{0});  // a bucket holds nothing
    } else {
      FERRY_RETURN_IF_ERROR(memory.read(seg.addr, piece));
    }
    done += n;
  }
  return {};
}

Status to_iovecs(const DmaView& memory, const DataMap& map, std::span<uint8_t> sink,
                 std::vector<iovec>& out) {
  out.clear();
  for (const DataSegment& seg : map.segments) {
    if (seg.bit_bucket) {
      if (sink.empty())
        return Error(ErrorCode::kInternal, "a {}-byte bit bucket has no sink buffer", seg.len);
      for (uint64_t left = seg.len; left != 0;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left, sink.size()));
        out.push_back({sink.data(), n});
        left -= n;
      }
      continue;
    }
    memory::GuestRange range{seg.addr, seg.len};
    Status status =
        memory.translate_into(std::span(&range, 1), std::numeric_limits<size_t>::max(), out);
    if (!status.ok()) {
      out.clear();
      return status;
    }
  }
  return {};
}

void mark_written(DmaView& memory, const DataMap& map) {
  for (const DataSegment& seg : map.segments) {
    if (seg.bit_bucket) continue;
    // The map was checked to be RAM when it was made; a failure here would mean the
    // memory map changed under a transfer in flight, which the machine lock excludes.
    Status status = memory.mark_written({seg.addr, seg.len});
    (void)status;
  }
}

}  // namespace ferry::dma
