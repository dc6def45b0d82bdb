#include "memory/address_space.h"

#include <algorithm>
#include <cstring>

#include "base/byte_order.h"
#include "memory/guest_memory.h"

namespace ferry::memory {
namespace {

// Ranges are handled by their last byte, addr + len - 1, so a range ending exactly at 2^64
// is representable; this is false for an empty range and for one that would pass 2^64.
bool last_byte(uint64_t addr, uint64_t len, uint64_t& last) {
  if (len == 0 || len - 1 > UINT64_MAX - addr) return false;
  last = addr + (len - 1);
  return true;
}

// Largest natural access size (8/4/2/1) that fits at `offset` with `left` bytes left.
unsigned access_size(uint64_t offset, uint64_t left) {
  for (unsigned s : {8u, 4u, 2u}) {
    if (left >= s && offset % s == 0) return s;
  }
  return 1;
}

}  // namespace

uint8_t* AddressSpace::Region::host(uint64_t offset) const {
  return ram->host() + (ram_offset + offset);
}

void AddressSpace::Region::mark(uint64_t offset, uint64_t len) const {
  ram->dirty().mark(ram_offset + offset, len);  // after the data: see dirty_bitmap.h
}

const AddressSpace::Region* AddressSpace::find(uint64_t addr) const {
  auto it = std::upper_bound(index_bases_.begin(), index_bases_.end(), addr);
  if (it == index_bases_.begin()) return nullptr;
  const Region& r = *index_regions_[static_cast<size_t>(it - index_bases_.begin()) - 1];
  return addr - r.base < r.size ? &r : nullptr;
}

const AddressSpace::Region* AddressSpace::find_whole(uint64_t addr, uint64_t len) const {
  const Region* r = find(addr);
  // addr - base < size, so the room left in the region cannot wrap.
  return r && len != 0 && len <= r->size - (addr - r->base) ? r : nullptr;
}

bool AddressSpace::is_ram(GuestRange range) const {
  if (const Region* r = find_whole(range.addr, range.len)) return r->ram != nullptr;
  return check_mapped(range.addr, range.len, true).ok();
}

void AddressSpace::reindex() {
  index_bases_.clear();
  index_regions_.clear();
  for (const auto& [base, region] : regions_) {
    index_bases_.push_back(base);
    index_regions_.push_back(&region);
  }
}

Status AddressSpace::check_free(uint64_t base, uint64_t size, std::string_view what) const {
  uint64_t last = 0;
  if (!last_byte(base, size, last))
    return Error(ErrorCode::kInvalidArgument, "{}: bad range base 0x{:x} size 0x{:x}", what, base,
                 size);
  auto it = regions_.lower_bound(base);
  if (it != regions_.end() && it->first <= last)
    return Error(ErrorCode::kInvalidArgument,
                 "{} at [0x{:x}, 0x{:x}] overlaps '{}' at 0x{:x}", what, base, last,
                 it->second.name, it->first);
  if (it != regions_.begin()) {
    const Region& prev = std::prev(it)->second;
    if (base - prev.base < prev.size)
      return Error(ErrorCode::kInvalidArgument,
                   "{} at [0x{:x}, 0x{:x}] overlaps '{}' at 0x{:x}", what, base, last,
                   prev.name, prev.base);
  }
  return {};
}

Result<RamBlock*> AddressSpace::add_ram(uint64_t base, std::unique_ptr<RamBlock> block) {
  if (!block) return Error(ErrorCode::kInvalidArgument, "add_ram: no block");
  RamAlias whole{block->idstr(), base, 0, block->size()};
  return add_ram(std::move(block), std::span(&whole, 1));
}

Result<RamBlock*> AddressSpace::add_ram(std::unique_ptr<RamBlock> block,
                                        std::span<const RamAlias> aliases) {
  if (!block) return Error(ErrorCode::kInvalidArgument, "add_ram: no block");
  if (find_ram_block(block->idstr()))
    return Error(ErrorCode::kInvalidArgument, "RAM block '{}' is already mapped", block->idstr());
  if (aliases.empty())
    return Error(ErrorCode::kInvalidArgument, "RAM block '{}': no guest address to map it at",
                 block->idstr());
  // Every alias must lie inside the block and be free, also of the aliases before it; on
  // an error the map is left as it was.
  std::vector<uint64_t> inserted;
  for (const RamAlias& a : aliases) {
    Status st;
    if (a.size == 0 || a.offset > block->size() || a.size > block->size() - a.offset)
      st = Error(ErrorCode::kInvalidArgument,
                 "RAM alias '{}': [0x{:x}, +0x{:x}) is not inside block '{}' of 0x{:x} bytes",
                 a.name, a.offset, a.size, block->idstr(), block->size());
    else
      st = check_free(a.base, a.size, fmt::format("RAM alias '{}'", a.name));
    if (!st.ok()) {
      for (uint64_t base : inserted) regions_.erase(base);
      return st;
    }
    regions_[a.base] = Region{a.base, a.size, a.name, block.get(), nullptr, a.offset};
    inserted.push_back(a.base);
  }
  RamBlock* raw = block.get();
  reindex();
  ram_.push_back(std::move(block));
  return raw;
}

Status AddressSpace::add_mmio(std::string name, uint64_t base, uint64_t size,
                              MmioHandler& handler) {
  for (const auto& [b, r] : regions_) {
    if (r.name == name)
      return Error(ErrorCode::kInvalidArgument, "MMIO region '{}' is already mapped", name);
  }
  FERRY_RETURN_IF_ERROR(check_free(base, size, fmt::format("MMIO region '{}'", name)));
  regions_[base] = Region{base, size, std::move(name), nullptr, &handler};
  reindex();
  return {};
}

Status AddressSpace::remove_mmio(std::string_view name) {
  for (auto it = regions_.begin(); it != regions_.end(); ++it) {
    if (it->second.mmio && it->second.name == name) {
      regions_.erase(it);
      reindex();
      return {};
    }
  }
  return Error(ErrorCode::kInvalidArgument, "no MMIO region named '{}'", name);
}

Status AddressSpace::move_mmio(std::string_view name, uint64_t new_base) {
  for (auto it = regions_.begin(); it != regions_.end(); ++it) {
    if (!it->second.mmio || it->second.name != name) continue;
    Region moved = it->second;
    regions_.erase(it);
    Status st = check_free(new_base, moved.size, fmt::format("MMIO region '{}'", moved.name));
    if (!st.ok()) {
      regions_[moved.base] = moved;  // leave the map as it was
      reindex();
      return st;
    }
    moved.base = new_base;
    regions_[new_base] = std::move(moved);
    reindex();
    return {};
  }
  return Error(ErrorCode::kInvalidArgument, "no MMIO region named '{}'", name);
}

std::vector<RamBlock*> AddressSpace::ram_blocks() const {
  std::vector<RamBlock*> out;
  for (const auto& b : ram_) out.push_back(b.get());
  return out;
}

RamBlock* AddressSpace::find_ram_block(std::string_view idstr) const {
  for (const auto& b : ram_)
    if (b->idstr() == idstr) return b.get();
  return nullptr;
}

uint64_t AddressSpace::mapped_run(uint64_t addr, uint64_t max, bool& mapped) const {
  // Bytes from addr to the top of the address space, less one when that is all of it.
  uint64_t room = addr == 0 ? UINT64_MAX : UINT64_MAX - addr + 1;
  max = std::min(max, room);
  if (max == 0) return 0;
  if (const Region* r = find(addr)) {
    mapped = true;
    return std::min(max, r->size - (addr - r->base));
  }
  mapped = false;
  auto next = regions_.upper_bound(addr);
  return next == regions_.end() ? max : std::min(max, next->first - addr);
}

Status AddressSpace::check_mapped(uint64_t addr, uint64_t len, bool ram_only) const {
  if (len == 0) return {};
  uint64_t last = 0;
  if (!last_byte(addr, len, last))
    return Error(ErrorCode::kOutOfRange, "access at 0x{:x} of {} bytes wraps the address space",
                 addr, len);
  for (uint64_t a = addr;;) {
    const Region* r = find(a);
    if (!r)
      return Error(ErrorCode::kOutOfRange,
                   "access at 0x{:x} of {} bytes: guest address 0x{:x} is not mapped", addr, len,
                   a);
    if (ram_only && !r->ram)
      return Error(ErrorCode::kInvalidArgument,
                   "range at 0x{:x} of {} bytes: guest address 0x{:x} is MMIO region '{}', "
                   "not RAM",
                   addr, len, a, r->name);
    // Regions never pass 2^64 (check_free), so their last byte is representable.
    uint64_t region_last = r->base + (r->size - 1);
    if (region_last >= last) return {};
    a = region_last + 1;
  }
}

// Splits [addr, addr + len), already checked to be mapped, into its parts per region and
// calls piece(region, offset in region, offset in the access, length) for each. A part
// that is no longer mapped is an internal error rather than a null dereference.
template <typename Piece>
Status AddressSpace::for_each_piece(uint64_t addr, uint64_t len, Piece&& piece) const {
  uint64_t done = 0;
  while (done < len) {
    const Region* r = find(addr + done);
    if (!r)
      return Error(ErrorCode::kInternal, "access at 0x{:x} of {} bytes: 0x{:x} is not mapped",
                   addr, len, addr + done);
    uint64_t off = addr + done - r->base;
    uint64_t n = std::min<uint64_t>(len - done, r->size - off);
    piece(*r, off, static_cast<size_t>(done), static_cast<size_t>(n));
    done += n;
  }
  return {};
}

Status AddressSpace::read(uint64_t addr, std::span<uint8_t> out) const {
  if (const Region* r = find_whole(addr, out.size()); r && r->ram) {
    guest_read(out.data(), r->host(addr - r->base), out.size());
    return {};
  }
  FERRY_RETURN_IF_ERROR(check_mapped(addr, out.size(), false));
  return for_each_piece(addr, out.size(), [&](const Region& r, uint64_t off, size_t done, size_t n) {
    if (r.ram) {
      guest_read(out.data() + done, r.host(off), n);
      return;
    }
    for (size_t i = 0; i < n;) {
      unsigned s = access_size(off + i, n - i);
      uint64_t v = r.mmio->read(off + i, s);
      store_le(out, done + i, v, s);
      i += s;
    }
  });
}

Status AddressSpace::write(uint64_t addr, std::span<const uint8_t> data) {
  if (const Region* r = find_whole(addr, data.size()); r && r->ram) {
    guest_write(r->host(addr - r->base), data.data(), data.size());
    r->mark(addr - r->base, data.size());
    return {};
  }
  FERRY_RETURN_IF_ERROR(check_mapped(addr, data.size(), false));
  return for_each_piece(addr, data.size(), [&](const Region& r, uint64_t off, size_t done, size_t n) {
    if (r.ram) {
      guest_write(r.host(off), data.data() + done, n);
      r.mark(off, n);
      return;
    }
    for (size_t i = 0; i < n;) {
      unsigned s = access_size(off + i, n - i);
      r.mmio->write(off + i, load_le(data, done + i, s), s);
      i += s;
    }
  });
}

Status AddressSpace::fill(uint64_t addr, uint8_t value, uint64_t len) {
  FERRY_RETURN_IF_ERROR(check_mapped(addr, len, false));
  return for_each_piece(addr, len, [&](const Region& r, uint64_t off, size_t, size_t n) {
    if (r.ram) {
      guest_fill(r.host(off), value, n);
      r.mark(off, n);
      return;
    }
    for (uint64_t i = 0; i < n; ++i) r.mmio->write(off + i, value, 1);
  });
}

Result<uint64_t> AddressSpace::load(uint64_t addr, unsigned size) const {
  if (size != 1 && size != 2 && size != 4 && size != 8)
    return Error(ErrorCode::kInvalidArgument, "load at 0x{:x}: size {} is not 1, 2, 4 or 8", addr,
                 size);
  const Region* r = find(addr);
  if (r && r->mmio && size <= r->size - (addr - r->base)) return r->mmio->read(addr - r->base, size);
  uint8_t bytes[8] = {};
  FERRY_RETURN_IF_ERROR(read(addr, std::span(bytes, size)));
  return load_le(bytes, 0, size);
}

Status AddressSpace::store(uint64_t addr, uint64_t value, unsigned size) {
  if (size != 1 && size != 2 && size != 4 && size != 8)
    return Error(ErrorCode::kInvalidArgument, "store at 0x{:x}: size {} is not 1, 2, 4 or 8",
                 addr, size);
  const Region* r = find(addr);
  if (r && r->mmio && size <= r->size - (addr - r->base)) {
    r->mmio->write(addr - r->base, value, size);
    return {};
  }
  uint8_t bytes[8];
  store_le(bytes, 0, value, size);
  return write(addr, std::span<const uint8_t>(bytes, size));
}

Result<std::vector<iovec>> AddressSpace::translate(std::span<const GuestRange> ranges,
                                                   size_t max_iovecs) const {
  std::vector<iovec> out;
  FERRY_RETURN_IF_ERROR(translate_into(ranges, max_iovecs, out));
  return out;
}

Status AddressSpace::translate_into(std::span<const GuestRange> ranges, size_t max_iovecs,
                                    std::vector<iovec>& out) const {
  const size_t first = out.size();
  for (const GuestRange& range : ranges) {
    const Region* whole = find_whole(range.addr, range.len);
    if (whole && whole->ram && out.size() - first < max_iovecs) {
      out.push_back({whole->host(range.addr - whole->base),
                     static_cast<size_t>(range.len)});
      continue;
    }
    FERRY_RETURN_IF_ERROR(check_mapped(range.addr, range.len, true));
    uint64_t done = 0;
    while (done < range.len) {
      if (out.size() - first == max_iovecs)
        return Error(ErrorCode::kOutOfRange,
                     "scatter-gather list needs more than {} host segments (at guest 0x{:x})",
                     max_iovecs, range.addr + done);
      const Region* r = find(range.addr + done);
      if (!r || !r->ram)
        return Error(ErrorCode::kInternal, "guest 0x{:x} is no longer RAM", range.addr + done);
      uint64_t off = range.addr + done - r->base;
      uint64_t n = std::min<uint64_t>(range.len - done, r->size - off);
      out.push_back({r->host(off), static_cast<size_t>(n)});
      done += n;
    }
  }
  return {};
}

Status AddressSpace::mark_written(GuestRange range) {
  if (const Region* r = find_whole(range.addr, range.len); r && r->ram) {
    r->mark(range.addr - r->base, range.len);
    return {};
  }
  FERRY_RETURN_IF_ERROR(check_mapped(range.addr, range.len, true));
  uint64_t done = 0;
  while (done < range.len) {
    const Region* r = find(range.addr + done);
    if (!r || !r->ram)
      return Error(ErrorCode::kInternal, "guest 0x{:x} is no longer RAM", range.addr + done);
    uint64_t off = range.addr + done - r->base;
    uint64_t n = std::min<uint64_t>(range.len - done, r->size - off);
    r->mark(off, n);
    done += n;
  }
  return {};
}

}  // namespace ferry::memory
