// DirtyBitmap: one bit per 4 KiB page of a RAM block, set by every write path.
//
// Ordering contract (why no dirty page is ever lost):
//   writer:    store the data into guest RAM, then mark() — fetch_or with release order.
//   migration: sync() exchanges each word with 0 (acquire), then reads the pages whose
//              bits it took.
// For a write W to page P, either W's mark lands before sync's exchange of P's word —
// then sync takes the bit, and acquire/release makes W's data visible to the page read
// that follows — or it lands after, and the bit stays set for the next pass. The
// exchange is a single atomic read-modify-write, so no bit set by a concurrent mark can
// be cleared without being returned. The last pass runs with the VM stopped, so nothing
// is left behind.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "memory/guest_memory.h"

namespace ferry::memory {

// A plain (single-threaded) page bitmap, as sync() hands it to a migration pass.
struct PageBitmap {
  uint64_t pages = 0;
  std::vector<uint64_t> words;

  bool test(uint64_t page) const { return (words[page >> 6] >> (page & 63)) & 1; }
  uint64_t count() const;
  // Index of the first set bit at or after `page`, or `pages` if none.
  uint64_t next_set(uint64_t page) const;
};

class DirtyBitmap {
 public:
  explicit DirtyBitmap(uint64_t length_bytes);

  uint64_t pages() const { return pages_; }

  // Marks every page overlapping [offset, offset + len); the range is clipped to the
  // block (callers have already validated it). Safe from any thread.
  void mark(uint64_t offset, uint64_t len);
  void mark_page(uint64_t page) {
    words_[page >> 6].fetch_or(uint64_t{1} << (page & 63), std::memory_order_release);
  }
  void mark_all();
  bool test(uint64_t page) const {
    return (words_[page >> 6].load(std::memory_order_relaxed) >> (page & 63)) & 1;
  }
  // Pages currently marked (a moment's view while writers run).
  uint64_t count() const;

  // Takes and clears every bit, word by word with an atomic exchange, into `out`
  // (resized to this bitmap). Returns the number of pages taken.
  uint64_t sync(PageBitmap& out);
  // True until the first sync: until then a set bit means "written since creation".
  bool never_synced() const { return !synced_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> synced_{false};
  uint64_t pages_;
  size_t nwords_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace ferry::memory
