#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "memory/dirty_bitmap.h"
#include "memory/guest_memory.h"

namespace ferry::memory {
namespace {

TEST(DirtyBitmap, MarkCoversEveryTouchedPage) {
  DirtyBitmap bm(100 * kPageSize);
  EXPECT_EQ(bm.pages(), 100u);
  bm.mark(kPageSize - 1, 2);  // straddles pages 0 and 1
  EXPECT_TRUE(bm.test(0));
  EXPECT_TRUE(bm.test(1));
  EXPECT_FALSE(bm.test(2));
  bm.mark(10 * kPageSize, 70 * kPageSize);  // crosses a word boundary
  EXPECT_EQ(bm.count(), 72u);
  bm.mark(99 * kPageSize, 100 * kPageSize);  // clipped to the block
  EXPECT_TRUE(bm.test(99));
  EXPECT_EQ(bm.count(), 73u);
  bm.mark(200 * kPageSize, 1);  // outside: ignored
  EXPECT_EQ(bm.count(), 73u);
}

TEST(DirtyBitmap, SyncTakesAndClears) {
  DirtyBitmap bm(130 * kPageSize);
  bm.mark_all();
  EXPECT_EQ(bm.count(), 130u);
  PageBitmap taken;
  EXPECT_EQ(bm.sync(taken), 130u);
  EXPECT_EQ(taken.count(), 130u);
  EXPECT_EQ(bm.count(), 0u);
  EXPECT_EQ(taken.next_set(0), 0u);
  EXPECT_EQ(taken.next_set(129), 129u);
  EXPECT_EQ(taken.next_set(130), 130u);
  bm.mark_page(65);
  EXPECT_EQ(bm.sync(taken), 1u);
  EXPECT_EQ(taken.next_set(0), 65u);
  EXPECT_EQ(taken.next_set(66), 130u);
}

// Writers store a sequence number into their pages, then mark. A syncing thread copies
// every page it takes. When the writers are done and a final sync ran, the copy must
// hold every writer's last value: no mark was lost between exchange and page read.
TEST(DirtyBitmap, ConcurrentWritersLoseNoPage) {
  constexpr uint64_t kPages = 256;
  std::vector<uint64_t> ram(kPages * kPageSize / 8);
  std::vector<uint64_t> copy(ram.size());
  DirtyBitmap bm(kPages * kPageSize);
  std::atomic<bool> done{false};
  auto writer = [&](uint64_t first) {
    for (uint64_t seq = 1; seq <= 3000; ++seq) {
      uint64_t page = first + (seq * 7) % (kPages / 2);
      __atomic_store_n(&ram[page * kPageSize / 8], seq, __ATOMIC_RELAXED);
      bm.mark(page * kPageSize, 8);
    }
  };
  auto copy_taken = [&](const PageBitmap& taken) {
    for (uint64_t p = taken.next_set(0); p < kPages; p = taken.next_set(p + 1)) {
      size_t w = p * kPageSize / 8;
      copy[w] = __atomic_load_n(&ram[w], __ATOMIC_RELAXED);
    }
  };
  std::thread syncer([&] {
    PageBitmap taken;
    while (!done.load()) {
      bm.sync(taken);
      copy_taken(taken);
    }
  });
  std::thread a(writer, 0), b(writer, kPages / 2);
  a.join();
  b.join();
  done = true;
  syncer.join();
  PageBitmap taken;
  bm.sync(taken);  // the final pass, writers stopped
  copy_taken(taken);
  for (uint64_t p = 0; p < kPages; ++p) {
    size_t w = p * kPageSize / 8;
    ASSERT_EQ(copy[w], ram[w]) << "page " << p;
  }
}

}  // namespace
}  // namespace ferry::memory
