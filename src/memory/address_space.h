// AddressSpace: the guest-physical map — RAM blocks at guest addresses and MMIO regions
// (PCI BARs, the MSI window) — with the DMA helpers devices and guest programs use.
//
// Thread-safety (design.md §3): the map itself (add/remove/move) changes only under the
// machine lock, and every user of this object (device code, the vCPU, qtest) is
// serialised with those changes by the same lock; the AddressSpace takes no lock of its
// own. RAM contents are not protected by any lock: RAM reads and writes go through the
// racy-safe helpers of guest_memory.h, and every RAM write marks the block's dirty
// bitmap after the data is stored. The migration thread never uses the map; it reads
// RamBlocks and their bitmaps directly.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "memory/mmio_handler.h"
#include "memory/ram_block.h"

namespace ferry::memory {

// One guest-physical window onto part of a RAM block (QEMU's RAM aliases: q35 maps one
// "pc.ram" partly below the 32-bit PCI hole and the rest at 4 GiB). The block stays one
// block for migration and dirty tracking; only its guest addresses are split.
struct RamAlias {
  std::string name;     // the region's name in errors ("ram-below-4g")
  uint64_t base = 0;    // guest-physical address
  uint64_t offset = 0;  // into the block
  uint64_t size = 0;
};

struct GuestRange {
  uint64_t addr = 0;
  uint64_t len = 0;
};

class AddressSpace {
 public:
  // Takes ownership of `block` and maps it at guest address `base`.
  Result<RamBlock*> add_ram(uint64_t base, std::unique_ptr<RamBlock> block);
  // Takes ownership of `block` and maps each alias's part of it at the alias's base; the
  // aliases must lie inside the block and overlap nothing. Nothing is mapped on an error.
  Result<RamBlock*> add_ram(std::unique_ptr<RamBlock> block, std::span<const RamAlias> aliases);
  // Maps `handler` (not owned; it must outlive its mapping) at [base, base + size).
  Status add_mmio(std::string name, uint64_t base, uint64_t size, MmioHandler& handler);
  Status remove_mmio(std::string_view name);
  // Moves a mapped MMIO region (a BAR reprogrammed by the guest).
  Status move_mmio(std::string_view name, uint64_t new_base);

  // RAM blocks in the order they were added (the order the RAM section lists them).
  std::vector<RamBlock*> ram_blocks() const;
  RamBlock* find_ram_block(std::string_view idstr) const;

  // DMA: accesses may span several adjacent regions; RAM parts are copied (writes mark
  // dirty pages), MMIO parts are dispatched as naturally sized accesses. An access that
  // reaches an unmapped address fails naming it, before any byte is transferred.
  Status read(uint64_t addr, std::span<uint8_t> out) const;
  Status write(uint64_t addr, std::span<const uint8_t> data);
  Status fill(uint64_t addr, uint8_t value, uint64_t len);

  // Little-endian 1/2/4/8-byte loads and stores (guest programs, qtest readb..writeq).
  Result<uint64_t> load(uint64_t addr, unsigned size) const;
  Status store(uint64_t addr, uint64_t value, unsigned size);

  // Scatter-gather: host iovecs for guest ranges that are all RAM (at most `max_iovecs`
  // entries; ranges crossing adjacent blocks split). A device writing through the
  // iovecs must call mark_written() for each range after the data is stored.
  Result<std::vector<iovec>> translate(std::span<const GuestRange> ranges,
                                       size_t max_iovecs) const;
  // The same, appended to `out` (whose capacity a hot path reuses); on an error `out`
  // may hold part of the translation.
  Status translate_into(std::span<const GuestRange> ranges, size_t max_iovecs,
                        std::vector<iovec>& out) const;
  Status mark_written(GuestRange range);
  // The length (1..max) of the run of bytes from `addr` that are all mapped or all
  // unmapped, and which of the two (`mapped`); the run stops at a region boundary and
  // at 2^64 - 1. 0 only when max is 0.
  uint64_t mapped_run(uint64_t addr, uint64_t max, bool& mapped) const;
  // True when every byte of the range is RAM (no allocation: the check DMA mapping makes
  // before it trusts a guest pointer).
  bool is_ram(GuestRange range) const;

 private:
  struct Region {
    uint64_t base = 0;
    uint64_t size = 0;
    std::string name;
    RamBlock* ram = nullptr;         // one of ram_ when RAM
    MmioHandler* mmio = nullptr;     // when MMIO
    uint64_t ram_offset = 0;         // RAM: where the region starts in its block
    // RAM: the host byte at `offset` into the region, and marking written bytes dirty in
    // the block (after the data: see dirty_bitmap.h).
    uint8_t* host(uint64_t offset) const;
    void mark(uint64_t offset, uint64_t len) const;
  };
  // The region holding `addr`, or null.
  const Region* find(uint64_t addr) const;
  // The one region holding all of [addr, addr + len), or null (also for an empty range or
  // one passing 2^64): the fast path of every access, which rarely straddles regions.
  const Region* find_whole(uint64_t addr, uint64_t len) const;
  Status check_free(uint64_t base, uint64_t size, std::string_view what) const;
  // Checks [addr, addr + len) is fully mapped (and, when ram_only, only by RAM); a range
  // may end exactly at 2^64 but not pass it. An empty range is fine.
  Status check_mapped(uint64_t addr, uint64_t len, bool ram_only) const;
  template <typename Piece>
  Status for_each_piece(uint64_t addr, uint64_t len, Piece&& piece) const;

  std::map<uint64_t, Region> regions_;  // keyed by base; non-overlapping
  // find()'s index over regions_, rebuilt whenever it changes (rarely: BARs move): a binary
  // search over a few contiguous words instead of a tree walk on every guest access. Map
  // nodes never move, so the pointers stay valid until their region is removed.
  std::vector<uint64_t> index_bases_;
  std::vector<const Region*> index_regions_;
  void reindex();
  std::vector<std::unique_ptr<RamBlock>> ram_;
};

}  // namespace ferry::memory
