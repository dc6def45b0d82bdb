// A driver thread and the device side running at once over split and packed rings, as a
// guest vCPU and the device's loop do: each chain carries a sequence number the device
// reads and answers in the chain's writable buffer. Exercises the fences and the
// single-access index reads (run under TSan with the threaded tests).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "hw/virtio/test_driver.h"
#include "memory/guest_memory.h"

namespace ferry::virtio {
namespace {

using testing::kFeaturesPacked;
using testing::kFeaturesSplit;
using testing::kBufferBase;
namespace vr = spec::virtio;

constexpr uint32_t kChains = 4000;
constexpr uint16_t kSize = 32;

// The guest side's view of RAM: host pointers with the atomic accesses a real driver's
// plain loads and stores are on x86.
class HostRam {
 public:
  explicit HostRam(uint8_t* base) : base_(base) {}
  void put16(uint64_t at, uint16_t v) {
    __atomic_store_n(reinterpret_cast<uint16_t*>(base_ + at), v, __ATOMIC_RELAXED);
  }
  uint16_t get16(uint64_t at) const {
    return __atomic_load_n(reinterpret_cast<const uint16_t*>(base_ + at), __ATOMIC_RELAXED);
  }
  template <typename T>
  void put(uint64_t at, T v) {
    memory::guest_write(base_ + at, reinterpret_cast<const uint8_t*>(&v), sizeof v);
  }
  template <typename T>
  T get(uint64_t at) const {
    T v;
    memory::guest_read(reinterpret_cast<uint8_t*>(&v), base_ + at, sizeof v);
    return v;
  }

 private:
  uint8_t* base_;
};

uint64_t out_buf(uint16_t id) { return kBufferBase + uint64_t{id} * 0x2000; }
uint64_t in_buf(uint16_t id) { return out_buf(id) + 0x1000; }
uint64_t answer(uint64_t seq) { return seq * 3 + 1; }

using ConcurrentRingTest = testing::VirtqueueTest;

// The device side: pops, checks the sequence, answers, flushes in small batches.
// Returns early (test failed) if `driver_gone` is set: the driver thread stopped on a mismatch.
void run_device(Virtqueue& vq, dma::DmaView& view, VirtqueueElement& elem,
                const std::atomic<bool>& driver_gone) {
  uint64_t expected = 0;
  unsigned staged = 0;
  while (expected < kChains) {
    auto popped = vq.pop(elem);
    ASSERT_TRUE(popped.ok()) << popped.status().to_string();
    if (!*popped) {
      if (driver_gone) return;
      ASSERT_TRUE(vq.flush().ok());
      staged = 0;
      std::this_thread::yield();
      continue;
    }
    ASSERT_EQ(elem.out.size(), 1u);
    ASSERT_EQ(elem.in.size(), 1u);
    uint64_t seq = 0;
    ASSERT_TRUE(view.read(elem.out[0].addr, std::span(reinterpret_cast<uint8_t*>(&seq), 8)).ok());
    ASSERT_EQ(seq, expected) << "chain " << elem.id;
    const uint64_t reply = answer(seq);
    ASSERT_TRUE(view.write(elem.in[0].addr, std::span(reinterpret_cast<const uint8_t*>(&reply), 8)).ok());
    ASSERT_TRUE(vq.push(elem, 8).ok());
    if (++staged == 4) {
      ASSERT_TRUE(vq.flush().ok());
      staged = 0;
    }
    ++expected;
  }
  ASSERT_TRUE(vq.flush().ok());
}

TEST_F(ConcurrentRingTest, SplitRingWithADriverThread) {
  testing::SplitDriver layout_of(as, kSize);
  ASSERT_TRUE(vq.configure(layout_of.layout(), kFeaturesSplit).ok());
  HostRam ram(block->host());
  const uint64_t desc = layout_of.desc_addr(), avail = layout_of.avail_addr(),
                 used = layout_of.used_addr();
  std::atomic<bool> driver_ok{true};
  std::atomic<bool> stop{false};  // either side failed: the other one stops waiting

  std::thread driver([&] {
    std::vector<uint16_t> free_ids;
    for (uint16_t id = 0; id < kSize / 2; ++id) free_ids.push_back(id);
    std::vector<uint64_t> seq_of(kSize / 2);
    uint16_t avail_idx = 0, used_seen = 0;
    uint64_t sent = 0, done = 0;
    while (done < kChains && !stop) {
      const uint16_t used_idx = ram.get16(used + vr::kUsedIdx);
      std::atomic_thread_fence(std::memory_order_acquire);
      for (; used_seen != used_idx; ++used_seen, ++done) {
        const uint64_t at = used + vr::kUsedRing + uint64_t(used_seen % kSize) * vr::kUsedElemSize;
        const auto id = static_cast<uint16_t>(ram.get<uint32_t>(at) / 2);
        if (ram.get<uint32_t>(at + 4) != 8 || ram.get<uint64_t>(in_buf(id)) != answer(seq_of[id])) {
          driver_ok = false;
          stop = true;
          return;
        }
        free_ids.push_back(id);
      }
      if (sent == kChains || free_ids.empty()) {
        std::this_thread::yield();
        continue;
      }
      const uint16_t id = free_ids.back();
      free_ids.pop_back();
      seq_of[id] = sent;
      ram.put<uint64_t>(out_buf(id), sent);
      // Chain id uses descriptors 2id (readable) and 2id+1 (writable).
      const uint16_t head = static_cast<uint16_t>(2 * id);
      const uint64_t d0 = desc + uint64_t{head} * vr::kDescSize;
      ram.put<uint64_t>(d0 + vr::kDescAddr, out_buf(id));
      ram.put<uint32_t>(d0 + vr::kDescLen, 8);
      ram.put<uint16_t>(d0 + vr::kDescFlags, vr::kDescFNext);
      ram.put<uint16_t>(d0 + vr::kDescNext, static_cast<uint16_t>(head + 1));
      const uint64_t d1 = d0 + vr::kDescSize;
      ram.put<uint64_t>(d1 + vr::kDescAddr, in_buf(id));
      ram.put<uint32_t>(d1 + vr::kDescLen, 8);
      ram.put<uint16_t>(d1 + vr::kDescFlags, vr::kDescFWrite);
      ram.put16(avail + vr::kAvailRing + 2 * uint64_t(avail_idx % kSize), head);
      std::atomic_thread_fence(std::memory_order_release);
      ram.put16(avail + vr::kAvailIdx, ++avail_idx);
      ++sent;
    }
  });
  run_device(vq, view, elem, stop);
  if (HasFatalFailure()) stop = true;  // else the driver still reaps the last chains
  driver.join();
  EXPECT_TRUE(driver_ok);
  EXPECT_FALSE(vq.broken()) << vq.error().to_string();
  EXPECT_EQ(vq.inuse(), 0u);
}

TEST_F(ConcurrentRingTest, PackedRingWithADriverThread) {
  testing::PackedDriver layout_of(as, kSize);
  ASSERT_TRUE(vq.configure(layout_of.layout(), kFeaturesPacked).ok());
  HostRam ram(block->host());
  const uint64_t desc = layout_of.layout().desc;
  std::atomic<bool> driver_ok{true};
  std::atomic<bool> stop{false};  // either side failed: the other one stops waiting

  std::thread driver([&] {
    std::vector<uint64_t> seq_of(kSize);
    uint16_t next_avail = 0, next_used = 0;
    bool avail_wrap = true, used_wrap = true;
    unsigned free_descs = kSize;
    uint16_t next_id = 0;
    uint64_t sent = 0, done = 0;
    auto advance = [](uint16_t& pos, bool& wrap) {
      if (++pos == kSize) {
        pos = 0;
        wrap = !wrap;
      }
    };
    while (done < kChains && !stop) {
      for (;;) {  // reap
        const uint64_t at = desc + uint64_t{next_used} * vr::kDescSize;
        const uint16_t flags = ram.get16(at + vr::kPackedDescFlags);
        if (((flags & vr::kDescFAvail) != 0) != used_wrap || ((flags & vr::kDescFUsed) != 0) != used_wrap)
          break;
        std::atomic_thread_fence(std::memory_order_acquire);
        const uint16_t id = ram.get<uint16_t>(at + vr::kPackedDescId);
        if (id >= kSize || ram.get<uint32_t>(at + vr::kPackedDescLen) != 8 ||
            ram.get<uint64_t>(in_buf(id)) != answer(seq_of[id])) {
          driver_ok = false;
          stop = true;
          return;
        }
        advance(next_used, used_wrap);
        advance(next_used, used_wrap);  // every chain is two descriptors
        free_descs += 2;
        ++done;
      }
      if (sent == kChains || free_descs < 2) {
        std::this_thread::yield();
        continue;
      }
      const uint16_t id = next_id;
      next_id = static_cast<uint16_t>((next_id + 1) % kSize);
      seq_of[id] = sent;
      ram.put<uint64_t>(out_buf(id), sent);
      const uint16_t avail_bits = avail_wrap ? vr::kDescFAvail : vr::kDescFUsed;
      const uint64_t head = desc + uint64_t{next_avail} * vr::kDescSize;
      const uint16_t head_flags = static_cast<uint16_t>(vr::kDescFNext | avail_bits);
      ram.put<uint64_t>(head + vr::kPackedDescAddr, out_buf(id));
      ram.put<uint32_t>(head + vr::kPackedDescLen, 8);
      ram.put<uint16_t>(head + vr::kPackedDescId, id);
      advance(next_avail, avail_wrap);
      const uint64_t second = desc + uint64_t{next_avail} * vr::kDescSize;
      ram.put<uint64_t>(second + vr::kPackedDescAddr, in_buf(id));
      ram.put<uint32_t>(second + vr::kPackedDescLen, 8);
      ram.put<uint16_t>(second + vr::kPackedDescId, id);
      ram.put16(second + vr::kPackedDescFlags,
                static_cast<uint16_t>(vr::kDescFWrite | (avail_wrap ? vr::kDescFAvail : vr::kDescFUsed)));
      advance(next_avail, avail_wrap);
      std::atomic_thread_fence(std::memory_order_release);
      ram.put16(head + vr::kPackedDescFlags, head_flags);
      free_descs -= 2;
      ++sent;
    }
  });
  run_device(vq, view, elem, stop);
  if (HasFatalFailure()) stop = true;  // else the driver still reaps the last chains
  driver.join();
  EXPECT_TRUE(driver_ok);
  EXPECT_FALSE(vq.broken()) << vq.error().to_string();
  EXPECT_EQ(vq.inuse(), 0u);
}

}  // namespace
}  // namespace ferry::virtio
