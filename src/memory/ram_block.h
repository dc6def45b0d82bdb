// RamBlock: one named region of guest RAM ("pc.ram"), a page-aligned host mapping the
// block owns (unmapped on destruction), and the block's dirty bitmap.
//
// Backings, as QEMU's memory backends:
//   anonymous — private anonymous memory (plain `-m`);
//   memfd     — `memory-backend-memfd`: a memfd_create() file, MAP_SHARED so another
//               process can map the same RAM (share=off maps it MAP_PRIVATE);
//   file      — `memory-backend-file,mem-path=P,share=on|off`: P is a file, or a
//               directory in which an unlinked file is created. share=on → MAP_SHARED
//               (writes reach the file), share=off → MAP_PRIVATE (copy-on-write).
// File sizing follows QEMU: an empty (new) file is grown to the block size; a non-empty
// file smaller than the block is refused ("backing store size ... does not match");
// a larger file is fine and only its first `size` bytes are mapped.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "memory/dirty_bitmap.h"
#include "memory/guest_memory.h"

namespace ferry::memory {

enum class RamBacking { kAnonymous, kMemfd, kFile };

struct RamBlockSpec {
  std::string idstr;                  // e.g. "pc.ram"; 1..255 bytes (u8 length on the wire)
  uint64_t size = 0;                  // bytes; a non-zero multiple of 4096
  RamBacking backing = RamBacking::kAnonymous;
  std::string mem_path;               // kFile only: file or directory
  bool share = false;                 // MAP_SHARED vs MAP_PRIVATE (memfd defaults to shared)
};

inline constexpr uint64_t kMaxRamBlockSize = uint64_t{1} << 40;  // 1 TiB: a sanity bound

class RamBlock {
 public:
  static Result<std::unique_ptr<RamBlock>> create(const RamBlockSpec& spec);
  static Result<std::unique_ptr<RamBlock>> anonymous(std::string idstr, uint64_t size);

  RamBlock(const RamBlock&) = delete;
  RamBlock& operator=(const RamBlock&) = delete;
  ~RamBlock();

  const std::string& idstr() const { return idstr_; }
  uint64_t size() const { return size_; }
  uint64_t pages() const { return size_ >> kPageShift; }
  uint8_t* host() const { return host_; }
  std::span<uint8_t> bytes() const { return {host_, static_cast<size_t>(size_)}; }
  uint8_t* page(uint64_t index) const { return host_ + (index << kPageShift); }
  RamBacking backing() const { return backing_; }
  // The backing file descriptor (memfd or file), or -1 for anonymous memory.
  int fd() const { return fd_; }

  // True when the page is certainly all zeros without reading it: the block held only
  // zeros at creation (anonymous memory, a new memfd or a new file) and, as every write
  // path marks the dirty bitmap, a bitmap never synced shows the page unwritten since.
  // An incoming migration skips such pages on ZERO records instead of faulting them in.
  bool page_known_zero(uint64_t page) const {
    return starts_zeroed_ && dirty_.never_synced() && !dirty_.test(page);
  }

  DirtyBitmap& dirty() { return dirty_; }
  const DirtyBitmap& dirty() const { return dirty_; }

 private:
  RamBlock(std::string idstr, uint64_t size, RamBacking backing, uint8_t* host, int fd,
           bool starts_zeroed);

  std::string idstr_;
  uint64_t size_;
  RamBacking backing_;
  uint8_t* host_;  // the mapping this block owns
  int fd_;         // owned; -1 when none
  bool starts_zeroed_;
  DirtyBitmap dirty_;
};

}  // namespace ferry::memory
