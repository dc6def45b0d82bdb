#include "memory/dirty_bitmap.h"

#include <bit>

#include "memory/guest_memory.h"

namespace ferry::memory {

uint64_t PageBitmap::count() const {
  uint64_t n = 0;
  for (uint64_t w : words) n += static_cast<uint64_t>(std::popcount(w));
  return n;
}

uint64_t PageBitmap::next_set(uint64_t page) const {
  if (page >= pages) return pages;
  size_t i = page >> 6;
  uint64_t w = words[i] & (~uint64_t{0} << (page & 63));
  while (true) {
    if (w != 0) {
      uint64_t found = (uint64_t{i} << 6) + static_cast<uint64_t>(std::countr_zero(w));
      return found < pages ? found : pages;
    }
    if (++i >= words.size()) return pages;
    w = words[i];
  }
}

DirtyBitmap::DirtyBitmap(uint64_t length_bytes)
    : pages_((length_bytes + kPageSize - 1) >> kPageShift),
      nwords_((pages_ + 63) / 64),
      words_(std::make_unique<std::atomic<uint64_t>[]>(nwords_)) {}

void DirtyBitmap::mark(uint64_t offset, uint64_t len) {
  if (len == 0 || offset >= pages_ * kPageSize) return;
  uint64_t first = offset >> kPageShift;
  uint64_t last = (offset + len - 1) >> kPageShift;
  if (last >= pages_ || offset + len < offset) last = pages_ - 1;
  for (uint64_t p = first; p <= last;) {
    // Whole words at once where the range covers them.
    uint64_t bit = p & 63;
    uint64_t n = std::min<uint64_t>(64 - bit, last - p + 1);
    uint64_t mask = (n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << bit;
    words_[p >> 6].fetch_or(mask, std::memory_order_release);
    p += n;
  }
}

void DirtyBitmap::mark_all() { mark(0, pages_ * kPageSize); }

uint64_t DirtyBitmap::count() const {
  uint64_t n = 0;
  for (size_t i = 0; i < nwords_; ++i)
    n += static_cast<uint64_t>(std::popcount(words_[i].load(std::memory_order_relaxed)));
  return n;
}

uint64_t DirtyBitmap::sync(PageBitmap& out) {
  synced_.store(true, std::memory_order_release);
  out.pages = pages_;
  out.words.resize(nwords_);
  uint64_t n = 0;
  for (size_t i = 0; i < nwords_; ++i) {
    uint64_t w = words_[i].load(std::memory_order_relaxed) == 0
                     ? 0  // skip the locked exchange on clean words
                     : words_[i].exchange(0, std::memory_order_acquire);
    out.words[i] = w;
    n += static_cast<uint64_t>(std::popcount(w));
  }
  return n;
}

}  // namespace ferry::memory
