#include "block/block_backend.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <random>

namespace ferry::block {
namespace {

using namespace std::chrono_literals;

// A temporary image file (removed on destruction), filled with a byte pattern.
class TempImage {
 public:
  TempImage(uint64_t size, const std::string& dir = "/tmp") {
    path_ = dir + "/ferry-block-test-XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd < 0) {
      path_.clear();
      return;
    }
    contents_.resize(size);
    for (uint64_t i = 0; i < size; ++i) contents_[i] = static_cast<uint8_t>(i * 7 + (i >> 12));
    ssize_t written = pwrite(fd, contents_.data(), contents_.size(), 0);
    close(fd);
    if (written != static_cast<ssize_t>(size)) path_.clear();
  }
  ~TempImage() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  // What the file should hold (tests update it as they write).
  std::vector<uint8_t>& expected() { return contents_; }
  // What the file holds now.
  std::vector<uint8_t> read_back() const {
    std::vector<uint8_t> out(contents_.size());
    int fd = open(path_.c_str(), O_RDONLY);
    if (fd >= 0) {
      ssize_t n = pread(fd, out.data(), out.size(), 0);
      (void)n;
      close(fd);
    }
    return out;
  }

 private:
  std::string path_;
  std::vector<uint8_t> contents_;
};

DriveConfig make_config(const std::string& file, AioMode aio) {
  DriveConfig config;
  config.id = "d0";
  config.file = file;
  config.aio = aio;
  config.aio_given = true;
  return config;
}

// Opens a backend on a fresh loop and records every completion.
class Harness {
 public:
  Status open(const DriveConfig& config, const BackendTuning& tuning = {},
              Activation activation = Activation::kActive) {
    auto loop = EventLoop::create();
    if (!loop.ok()) return loop.take_status();
    loop_ = std::move(loop).value();
    auto backend = BlockBackend::open(*loop_, config, tuning, activation);
    if (!backend.ok()) return backend.take_status();
    backend_ = std::move(backend).value();
    backend_->set_completion_handler([this](uint64_t opaque, int result) {
      EXPECT_EQ(results_.count(opaque), 0u) << "completed twice: " << opaque;
      results_[opaque] = result;
      if (on_complete_) on_complete_(opaque, result);
    });
    return Status::Ok();
  }

  BlockBackend& backend() { return *backend_; }
  EventLoop& loop() { return *loop_; }
  std::map<uint64_t, int>& results() { return results_; }
  void on_complete(std::function<void(uint64_t, int)> f) { on_complete_ = std::move(f); }
  void close() { backend_.reset(); }

  void submit(BlockOp op, uint64_t offset, uint64_t length, std::vector<iovec> iov = {}) {
    BlockRequest request{op, offset, length, iov, next_opaque_};  // submit copies the iovecs
    submitted_.push_back(next_opaque_++);
    backend_->submit(std::move(request));
  }
  // Runs the loop until every submitted request completed; true on success.
  bool wait_all() {
    Status status = loop_->run_until(
        [this] { return results_.size() == submitted_.size(); }, 10s);
    EXPECT_TRUE(status.ok()) << status.to_string();
    return status.ok();
  }
  // Submits one request, waits for it, returns its result.
  int run(BlockOp op, uint64_t offset, uint64_t length, std::vector<iovec> iov = {}) {
    uint64_t opaque = next_opaque_;
    submit(op, offset, length, std::move(iov));
    if (!wait_all()) return INT_MIN;
    return results_[opaque];
  }
  int write(uint64_t offset, std::vector<uint8_t>& data) {
    return run(BlockOp::kWrite, offset, data.size(), {{data.data(), data.size()}});
  }
  int read(uint64_t offset, std::vector<uint8_t>& data) {
    return run(BlockOp::kRead, offset, data.size(), {{data.data(), data.size()}});
  }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<BlockBackend> backend_;
  std::map<uint64_t, int> results_;
  std::vector<uint64_t> submitted_;
  std::function<void(uint64_t, int)> on_complete_;
  uint64_t next_opaque_ = 1;
};

std::vector<uint8_t> pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(seed + i * 13 + (i >> 8));
  return out;
}

class BlockEngineTest : public ::testing::TestWithParam<AioMode> {};

std::string engine_label(const ::testing::TestParamInfo<AioMode>& info) {
  return info.param == AioMode::kIoUring ? "io_uring" : "threads";
}

TEST_P(BlockEngineTest, OpensWithTheAskedEngine) {
  TempImage image(1 << 20);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  EXPECT_EQ(h.backend().engine_name(), GetParam() == AioMode::kIoUring ? "io_uring" : "threads");
  EXPECT_EQ(h.backend().size_bytes(), 1u << 20);
  EXPECT_EQ(h.backend().required_alignment(), 1u);
  EXPECT_FALSE(h.backend().read_only());
  EXPECT_EQ(h.backend().config().id, "d0");
}

TEST_P(BlockEngineTest, MultiIovecRoundTrip) {
  TempImage image(1 << 20);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());

  std::vector<uint8_t> a = pattern(512, 1), b = pattern(1536, 2), c = pattern(2053, 3);
  uint64_t offset = 8192 + 3;
  uint64_t total = a.size() + b.size() + c.size();
  EXPECT_EQ(h.run(BlockOp::kWrite, offset, total,
                  {{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}}),
            0);
  std::vector<uint8_t> joined;
  for (auto* part : {&a, &b, &c}) joined.insert(joined.end(), part->begin(), part->end());
  std::copy(joined.begin(), joined.end(), image.expected().begin() + offset);
  EXPECT_EQ(image.read_back(), image.expected());

  // Read back split differently, including an empty iovec.
  std::vector<uint8_t> x(100), y(4000), z(total - 4100);
  EXPECT_EQ(h.run(BlockOp::kRead, offset, total,
                  {{x.data(), x.size()}, {nullptr, 0}, {y.data(), y.size()},
                   {z.data(), z.size()}}),
            0);
  std::vector<uint8_t> got;
  for (auto* part : {&x, &y, &z}) got.insert(got.end(), part->begin(), part->end());
  EXPECT_EQ(got, joined);
  EXPECT_EQ(h.backend().in_flight(), 0u);
}

TEST_P(BlockEngineTest, ManyConcurrentRandomRequests) {
  constexpr uint64_t kSize = 1 << 20, kSlot = 4096, kSlots = kSize / kSlot;
  TempImage image(kSize);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  std::vector<uint8_t>& reference = image.expected();
  std::mt19937 rng(42);

  for (int round = 0; round < 8; ++round) {
    // Up to 96 requests in flight at once, on distinct slots so their order is free.
    std::vector<uint64_t> slots(kSlots);
    for (uint64_t i = 0; i < kSlots; ++i) slots[i] = i;
    std::shuffle(slots.begin(), slots.end(), rng);
    struct Pending {
      uint64_t offset;
      std::vector<uint8_t> buffer;
      bool is_read;
    };
    std::vector<Pending> pending(96);
    std::vector<uint8_t> before = reference;
    for (size_t i = 0; i < pending.size(); ++i) {
      Pending& p = pending[i];
      uint64_t in_slot = rng() % 2048;
      uint64_t length = 1 + rng() % (kSlot - in_slot);
      p.offset = slots[i] * kSlot + in_slot;
      p.is_read = rng() % 2 == 0;
      p.buffer = p.is_read ? std::vector<uint8_t>(length) : pattern(length, uint8_t(rng()));
      // Two iovecs when possible.
      size_t split = length / 3;
      std::vector<iovec> iov{{p.buffer.data(), split}, {p.buffer.data() + split, length - split}};
      h.submit(p.is_read ? BlockOp::kRead : BlockOp::kWrite, p.offset, length, std::move(iov));
      if (!p.is_read) std::copy(p.buffer.begin(), p.buffer.end(), reference.begin() + p.offset);
    }
    EXPECT_GT(h.backend().in_flight(), 0u);
    ASSERT_TRUE(h.wait_all());
    for (const Pending& p : pending) {
      if (!p.is_read) continue;
      ASSERT_TRUE(std::equal(p.buffer.begin(), p.buffer.end(), before.begin() + p.offset))
          << "round " << round << " offset " << p.offset;
    }
  }
  for (const auto& [opaque, result] : h.results()) EXPECT_EQ(result, 0) << opaque;
  EXPECT_EQ(image.read_back(), reference);
}

TEST_P(BlockEngineTest, FlushDiscardAndWriteZeroes) {
  TempImage image(1 << 20);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);

  EXPECT_EQ(h.run(BlockOp::kDiscard, 64 * 1024, 128 * 1024), 0);
  std::fill_n(image.expected().begin() + 64 * 1024, 128 * 1024, 0);
  std::vector<uint8_t> back(128 * 1024, 0xff);
  EXPECT_EQ(h.read(64 * 1024, back), 0);
  EXPECT_EQ(back, std::vector<uint8_t>(128 * 1024, 0));

  // Write-zeroes on an unaligned range leaves its neighbours intact.
  EXPECT_EQ(h.run(BlockOp::kWriteZeroes, 300 * 1024 + 17, 12 * 1024 + 5), 0);
  std::fill_n(image.expected().begin() + 300 * 1024 + 17, 12 * 1024 + 5, 0);
  EXPECT_EQ(image.read_back(), image.expected());
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);

  struct stat st {};
  ASSERT_EQ(stat(image.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);  // discard keeps the size
}

TEST_P(BlockEngineTest, ImmediateErrorsComeThroughTheHandler) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  std::vector<uint8_t> buf(4096);
  iovec v{buf.data(), buf.size()};

  h.submit(BlockOp::kRead, 64 * 1024 - 4095, 4096, {v});      // one byte past the end
  h.submit(BlockOp::kWrite, UINT64_MAX - 100, 4096, {v});     // offset + length wraps
  h.submit(BlockOp::kDiscard, 0, 64 * 1024 + 1);
  h.submit(BlockOp::kRead, 0, 4095, {v});                      // length != iovec total
  h.submit(BlockOp::kWrite, 0, 4096, {v, v});
  h.submit(static_cast<BlockOp>(42), 0, 0);                    // not an op
  h.submit(BlockOp::kRead, 64 * 1024, 0);                      // empty at the end: fine
  // Nothing runs inside submit.
  EXPECT_TRUE(h.results().empty());
  EXPECT_EQ(h.backend().in_flight(), 7u);
  ASSERT_TRUE(h.wait_all());
  EXPECT_EQ(h.results()[1], -EIO);
  EXPECT_EQ(h.results()[2], -EIO);
  EXPECT_EQ(h.results()[3], -EIO);
  EXPECT_EQ(h.results()[4], -EINVAL);
  EXPECT_EQ(h.results()[5], -EINVAL);
  EXPECT_EQ(h.results()[6], -EINVAL);
  EXPECT_EQ(h.results()[7], 0);
  EXPECT_EQ(h.backend().in_flight(), 0u);
  EXPECT_EQ(image.read_back(), image.expected());
}

TEST_P(BlockEngineTest, ReadOnlyRefusesWrites) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  chmod(image.path().c_str(), 0444);  // read-only open must not need write permission
  DriveConfig config = make_config(image.path(), GetParam());
  config.read_only = true;
  Harness h;
  Status opened = h.open(config);
  ASSERT_TRUE(opened.ok()) << opened.to_string();
  EXPECT_TRUE(h.backend().read_only());
  std::vector<uint8_t> data = pattern(4096, 9);
  EXPECT_EQ(h.write(0, data), -EROFS);
  EXPECT_EQ(h.run(BlockOp::kDiscard, 0, 4096), -EROFS);
  EXPECT_EQ(h.run(BlockOp::kWriteZeroes, 0, 4096), -EROFS);
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);
  std::vector<uint8_t> back(4096);
  EXPECT_EQ(h.read(0, back), 0);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), image.expected().begin()));
  EXPECT_EQ(image.read_back(), image.expected());
}

TEST_P(BlockEngineTest, LongIovecListsContinue) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  // More iovecs than one preadv takes (IOV_MAX).
  std::vector<uint8_t> data = pattern(3 * IOV_MAX * 8, 5);
  std::vector<iovec> iov;
  for (size_t i = 0; i < data.size(); i += 8) iov.push_back({data.data() + i, 8});
  EXPECT_EQ(h.run(BlockOp::kWrite, 100, data.size(), iov), 0);
  std::copy(data.begin(), data.end(), image.expected().begin() + 100);
  EXPECT_EQ(image.read_back(), image.expected());
  std::vector<uint8_t> back(data.size());
  iov.clear();
  for (size_t i = 0; i < back.size(); i += 8) iov.push_back({back.data() + i, 8});
  EXPECT_EQ(h.run(BlockOp::kRead, 100, back.size(), iov), 0);
  EXPECT_EQ(back, data);
}

TEST_P(BlockEngineTest, DrainWaitsForEverythingIncludingDelays) {
  TempImage image(1 << 20);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  h.backend().faults().add({.op = BlockOp::kWrite, .offset = 0, .length = 4096,
                            .delay_ns = 20'000'000});
  std::vector<std::vector<uint8_t>> buffers;
  for (int i = 0; i < 16; ++i) buffers.push_back(pattern(4096, uint8_t(i)));
  for (int i = 0; i < 16; ++i) {
    h.submit(BlockOp::kWrite, i * 4096, 4096, {{buffers[i].data(), 4096}});
    std::copy(buffers[i].begin(), buffers[i].end(), image.expected().begin() + i * 4096);
  }
  h.submit(BlockOp::kDiscard, 1 << 20, 1);  // an immediate error is drained too
  h.submit(BlockOp::kFlush, 0, 0);
  EXPECT_EQ(h.backend().in_flight(), 18u);
  auto took = h.backend().drain();
  ASSERT_TRUE(took.ok()) << took.status().to_string();
  EXPECT_GT(*took, 0);
  EXPECT_EQ(h.backend().in_flight(), 0u);
  ASSERT_EQ(h.results().size(), 18u);  // every handler ran inside drain
  for (int i = 1; i <= 16; ++i) EXPECT_EQ(h.results()[i], 0);
  EXPECT_EQ(h.results()[17], -EIO);
  EXPECT_EQ(image.read_back(), image.expected());
  // Nothing is left for the loop to deliver later.
  ASSERT_TRUE(h.loop().run_once(std::chrono::milliseconds(30)).ok());
  EXPECT_EQ(h.results().size(), 18u);
  auto idle = h.backend().drain();
  ASSERT_TRUE(idle.ok());
}

TEST_P(BlockEngineTest, DrainRunsRequestsSubmittedByHandlers) {
  TempImage image(256 * 1024);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  std::vector<uint8_t> data = pattern(4096, 77);
  int chained = 0;
  h.on_complete([&](uint64_t, int) {
    if (chained < 10) {
      ++chained;
      h.submit(BlockOp::kWrite, chained * 4096, 4096, {{data.data(), 4096}});
    }
  });
  h.submit(BlockOp::kWrite, 0, 4096, {{data.data(), 4096}});
  ASSERT_TRUE(h.backend().drain().ok());
  EXPECT_EQ(chained, 10);
  EXPECT_EQ(h.results().size(), 11u);
  EXPECT_EQ(h.backend().in_flight(), 0u);
}

TEST_P(BlockEngineTest, InjectedErrorsNeverTouchTheFile) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  FaultInjector& faults = h.backend().faults();
  std::vector<uint8_t> data = pattern(4096, 3);

  // op + errno
  faults.add({.op = BlockOp::kWrite, .error = ENOSPC});
  EXPECT_EQ(h.write(0, data), -ENOSPC);
  EXPECT_EQ(image.read_back(), image.expected());
  std::vector<uint8_t> back(4096);
  EXPECT_EQ(h.read(0, back), 0);  // other ops pass
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);
  faults.clear();
  EXPECT_EQ(h.write(0, data), 0);
  std::copy(data.begin(), data.end(), image.expected().begin());

  // offset/length
  faults.add({.offset = 8192, .length = 4096, .error = EIO});
  EXPECT_EQ(h.read(4096, back), 0);
  EXPECT_EQ(h.read(8192 + 100, back), -EIO);
  EXPECT_EQ(h.run(BlockOp::kDiscard, 12 * 1024, 4096), 0);
  std::fill_n(image.expected().begin() + 12 * 1024, 4096, 0);
  EXPECT_EQ(h.run(BlockOp::kWriteZeroes, 6 * 1024, 4096), -EIO);
  faults.clear();

  // after + once
  faults.add({.op = BlockOp::kFlush, .after = 2, .once = true, .error = EIO});
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), -EIO);
  EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);
  EXPECT_TRUE(faults.rules().empty());

  // delay alone: the request still succeeds; delay with errno: fails after the delay
  faults.add({.op = BlockOp::kRead, .delay_ns = 5'000'000});
  EXPECT_EQ(h.read(0, back), 0);
  EXPECT_EQ(back, data);
  faults.clear();
  faults.add({.op = BlockOp::kWrite, .error = EIO, .delay_ns = 5'000'000});
  std::vector<uint8_t> other = pattern(4096, 99);
  EXPECT_EQ(h.write(0, other), -EIO);
  faults.clear();
  EXPECT_EQ(image.read_back(), image.expected());
}

// A held write stays at the backend however long the loop runs, reaches the file only
// after the release, and completes once.
TEST_P(BlockEngineTest, HeldRequestsWaitForTheRelease) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  h.backend().faults().add({.op = BlockOp::kWrite, .hold = true});
  std::vector<uint8_t> a = pattern(4096, 5), b = pattern(4096, 6), back(4096);
  h.submit(BlockOp::kWrite, 0, 4096, {{a.data(), 4096}});
  h.submit(BlockOp::kWrite, 8192, 4096, {{b.data(), 4096}});
  EXPECT_EQ(h.backend().held(), 2u);
  h.submit(BlockOp::kRead, 0, 4096, {{back.data(), 4096}});  // other ops pass the held ones
  ASSERT_TRUE(h.loop().run_until([&] { return h.results().count(3) == 1; }, 10s).ok());
  EXPECT_EQ(h.results()[3], 0);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.loop().run_once(std::chrono::milliseconds(2)).ok());
  EXPECT_EQ(h.results().size(), 1u);
  EXPECT_EQ(h.backend().held(), 2u);
  EXPECT_EQ(h.backend().in_flight(), 2u);
  EXPECT_EQ(image.read_back(), image.expected());  // nothing written yet
  EXPECT_EQ(h.backend().release_held(), 2u);
  EXPECT_EQ(h.backend().held(), 0u);
  ASSERT_TRUE(h.wait_all());
  EXPECT_EQ(h.results()[1], 0);
  EXPECT_EQ(h.results()[2], 0);
  std::copy(a.begin(), a.end(), image.expected().begin());
  std::copy(b.begin(), b.end(), image.expected().begin() + 8192);
  EXPECT_EQ(image.read_back(), image.expected());
  EXPECT_EQ(h.backend().release_held(), 0u);
}

// A drain cannot wait for a release (it blocks the loop thread the release would come
// from): it releases held requests, which then wait out their rule's delay, so the drain
// lasts at least that long.
TEST_P(BlockEngineTest, DrainReleasesHeldRequestsThenWaitsOutTheirDelay) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  h.backend().faults().add({.op = BlockOp::kWrite, .delay_ns = 30'000'000, .hold = true});
  std::vector<uint8_t> a = pattern(4096, 8);
  int resubmitted = 0;
  h.on_complete([&](uint64_t, int) {
    // A write submitted by a handler during the drain is held, and released, too.
    if (resubmitted++ == 0) h.submit(BlockOp::kWrite, 4096, 4096, {{a.data(), 4096}});
  });
  h.submit(BlockOp::kWrite, 0, 4096, {{a.data(), 4096}});
  // Held for far longer than the delay before the drain begins.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(h.loop().run_once(std::chrono::milliseconds(20)).ok());
  EXPECT_EQ(h.backend().held(), 1u);
  auto took = h.backend().drain();
  ASSERT_TRUE(took.ok()) << took.status().to_string();
  EXPECT_GE(*took, 2 * 30'000'000);  // both delays counted from their release in the drain
  EXPECT_EQ(h.backend().in_flight(), 0u);
  EXPECT_EQ(h.backend().held(), 0u);
  ASSERT_EQ(h.results().size(), 2u);
  EXPECT_EQ(h.results()[1], 0);
  EXPECT_EQ(h.results()[2], 0);
  std::copy(a.begin(), a.end(), image.expected().begin());
  std::copy(a.begin(), a.end(), image.expected().begin() + 4096);
  EXPECT_EQ(image.read_back(), image.expected());
}

TEST_P(BlockEngineTest, DestroyDropsHeldRequests) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  std::vector<uint8_t> a = pattern(4096, 9);
  {
    Harness h;
    ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
    h.backend().faults().add({.op = BlockOp::kWrite, .hold = true});
    h.submit(BlockOp::kWrite, 0, 4096, {{a.data(), 4096}});
    h.close();  // must not hang, write, or call the handler
    EXPECT_TRUE(h.results().empty());
  }
  EXPECT_EQ(image.read_back(), image.expected());
}

TEST_P(BlockEngineTest, DestroyWithRequestsInFlightWaitsForThem) {
  TempImage image(1 << 20);
  ASSERT_TRUE(image.ok());
  std::vector<std::vector<uint8_t>> buffers;
  {
    Harness h;
    ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
    h.backend().faults().add({.op = BlockOp::kRead, .delay_ns = 1'000'000'000});
    for (int i = 0; i < 64; ++i) {
      buffers.push_back(pattern(8192, uint8_t(i)));
      h.submit(BlockOp::kWrite, i * 8192, 8192, {{buffers.back().data(), 8192}});
      std::copy(buffers.back().begin(), buffers.back().end(),
                image.expected().begin() + i * 8192);
    }
    std::vector<uint8_t> held(512);
    h.submit(BlockOp::kRead, 0, held.size(), {{held.data(), held.size()}});  // delayed 1 s
    ASSERT_TRUE(h.loop().run_once(std::chrono::milliseconds(0)).ok());  // some reach the kernel
    h.close();  // must wait for the kernel, and must not call the handler
    EXPECT_LE(h.results().size(), 64u);
  }
  EXPECT_EQ(image.read_back(), image.expected());
}

// A tiny ring (and a single worker) makes requests queue behind the engine's capacity.
TEST_P(BlockEngineTest, MoreRequestsThanTheEngineHoldsAtOnce) {
  TempImage image(512 * 1024);
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam()),
                     BackendTuning{.ring_entries = 2, .worker_threads = 1})
                  .ok());
  std::vector<std::vector<uint8_t>> buffers;
  for (int i = 0; i < 100; ++i) buffers.push_back(pattern(4096, uint8_t(i)));
  for (int i = 0; i < 100; ++i) {
    h.submit(BlockOp::kWrite, i * 4096, 4096, {{buffers[i].data(), 4096}});
    std::copy(buffers[i].begin(), buffers[i].end(), image.expected().begin() + i * 4096);
  }
  h.submit(BlockOp::kFlush, 0, 0);
  ASSERT_TRUE(h.wait_all());
  for (const auto& [opaque, result] : h.results()) EXPECT_EQ(result, 0) << opaque;
  EXPECT_EQ(image.read_back(), image.expected());
  // And once more through drain instead of the loop.
  for (int i = 0; i < 100; ++i) {
    h.submit(BlockOp::kRead, i * 4096, 4096, {{buffers[99 - i].data(), 4096}});
  }
  ASSERT_TRUE(h.backend().drain().ok());
  EXPECT_EQ(h.results().size(), 201u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(buffers[99 - i], pattern(4096, uint8_t(i))) << i;
}

INSTANTIATE_TEST_SUITE_P(Engines, BlockEngineTest,
                         ::testing::Values(AioMode::kIoUring, AioMode::kThreads), engine_label);

// --- O_DIRECT ---

// Opens `config` with cache=none on an image in /tmp, else in the current directory;
// false (with a reason) when no file system here takes O_DIRECT.
struct DirectImage {
  std::unique_ptr<TempImage> image;
  std::string skip_reason;
};

DirectImage make_direct_image(uint64_t size) {
  DirectImage out;
  for (const char* dir : {"/tmp", "."}) {
    auto image = std::make_unique<TempImage>(size, dir);
    if (!image->ok()) continue;
    int fd = open(image->path().c_str(), O_RDWR | O_DIRECT);
    if (fd >= 0) {
      close(fd);
      out.image = std::move(image);
      return out;
    }
    out.skip_reason += std::string(dir) + ": " + std::strerror(errno) + "; ";
  }
  out.skip_reason = "O_DIRECT is refused here (" + out.skip_reason + ")";
  return out;
}

TEST_P(BlockEngineTest, CacheNoneAlignedAndBounced) {
  DirectImage direct = make_direct_image(1 << 20);
  if (!direct.image) GTEST_SKIP() << direct.skip_reason;
  TempImage& image = *direct.image;
  for (CacheMode cache : {CacheMode::kNone, CacheMode::kDirectsync}) {
    SCOPED_TRACE(cache_mode_name(cache));
    DriveConfig config = make_config(image.path(), GetParam());
    config.cache = cache;
    Harness h;
    Status opened = h.open(config);
    ASSERT_TRUE(opened.ok()) << opened.to_string();
    uint32_t alignment = h.backend().required_alignment();
    EXPECT_TRUE(alignment == 512 || alignment == 4096) << alignment;

    // Aligned buffers and range: straight to the file.
    auto aligned = std::unique_ptr<uint8_t, decltype(&free)>(
        static_cast<uint8_t*>(aligned_alloc(4096, 16384)), &free);
    std::vector<uint8_t> data = pattern(16384, 11);
    std::memcpy(aligned.get(), data.data(), data.size());
    EXPECT_EQ(h.run(BlockOp::kWrite, 32768, 16384,
                    {{aligned.get(), 8192}, {aligned.get() + 8192, 8192}}),
              0);
    std::copy(data.begin(), data.end(), image.expected().begin() + 32768);
    std::memset(aligned.get(), 0, 16384);
    EXPECT_EQ(h.run(BlockOp::kRead, 32768, 16384, {{aligned.get(), 16384}}), 0);
    EXPECT_EQ(std::memcmp(aligned.get(), data.data(), data.size()), 0);

    // Unaligned buffer address, aligned range: bounced.
    std::vector<uint8_t> odd(4096 + 1);
    std::vector<uint8_t> more = pattern(4096, 12);
    std::memcpy(odd.data() + 1, more.data(), 4096);
    EXPECT_EQ(h.run(BlockOp::kWrite, 65536, 4096, {{odd.data() + 1, 4096}}), 0);
    std::copy(more.begin(), more.end(), image.expected().begin() + 65536);

    // Unaligned range: read-modify-write of the edge blocks.
    std::vector<uint8_t> small = pattern(1000, 13);
    EXPECT_EQ(h.write(4096 * 3 + 100, small), 0);
    std::copy(small.begin(), small.end(), image.expected().begin() + 4096 * 3 + 100);
    std::vector<uint8_t> wide = pattern(9000, 14);
    EXPECT_EQ(h.run(BlockOp::kWrite, 200000 + 7, 9000,
                    {{wide.data(), 1}, {wide.data() + 1, 8999}}),
              0);
    std::copy(wide.begin(), wide.end(), image.expected().begin() + 200000 + 7);
    EXPECT_EQ(image.read_back(), image.expected());

    // Unaligned reads.
    std::vector<uint8_t> back(777);
    EXPECT_EQ(h.read(4096 * 3 + 50, back), 0);
    EXPECT_TRUE(std::equal(back.begin(), back.end(), image.expected().begin() + 4096 * 3 + 50));
    std::vector<uint8_t> back2(9000);
    EXPECT_EQ(h.run(BlockOp::kRead, 200000 + 7, 9000,
                    {{back2.data(), 4500}, {back2.data() + 4500, 4500}}),
              0);
    EXPECT_EQ(back2, wide);

    // Zeroing and flush work under O_DIRECT too.
    EXPECT_EQ(h.run(BlockOp::kWriteZeroes, 4096, 8192), 0);
    std::fill_n(image.expected().begin() + 4096, 8192, 0);
    EXPECT_EQ(h.run(BlockOp::kFlush, 0, 0), 0);
    EXPECT_EQ(image.read_back(), image.expected());
  }
}

// Concurrent small writes into the same aligned blocks: each is a read-modify-write of
// the whole block, so they must take turns or some would be lost.
TEST_P(BlockEngineTest, CacheNoneSerialisesReadModifyWrites) {
  DirectImage direct = make_direct_image(256 * 1024);
  if (!direct.image) GTEST_SKIP() << direct.skip_reason;
  TempImage& image = *direct.image;
  DriveConfig config = make_config(image.path(), GetParam());
  config.cache = CacheMode::kNone;
  Harness h;
  ASSERT_TRUE(h.open(config).ok());
  std::vector<std::vector<uint8_t>> pieces;
  for (int i = 0; i < 80; ++i) pieces.push_back(pattern(100, uint8_t(i + 1)));
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 80; ++i) {
      uint64_t offset = 8192 - 3000 + i * 100;  // across two or three blocks
      h.submit(BlockOp::kWrite, offset, 100, {{pieces[i].data(), 100}});
      std::copy(pieces[i].begin(), pieces[i].end(), image.expected().begin() + offset);
    }
    // Aligned writes and zeroing next to and inside the same blocks.
    h.submit(BlockOp::kWriteZeroes, 8192 + 4096, 4096);
    std::fill_n(image.expected().begin() + 8192 + 4096, 4096, 0);
    if (round == 0) {
      ASSERT_TRUE(h.wait_all());
    } else {
      ASSERT_TRUE(h.backend().drain().ok());
    }
  }
  for (const auto& [opaque, result] : h.results()) EXPECT_EQ(result, 0) << opaque;
  EXPECT_EQ(image.read_back(), image.expected());
}

TEST(BlockBackend, CacheNoneRefusesSizesOffAlignment) {
  DirectImage direct = make_direct_image(4096 + 100);
  if (!direct.image) GTEST_SKIP() << direct.skip_reason;
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  DriveConfig config = make_config(direct.image->path(), AioMode::kThreads);
  config.cache = CacheMode::kNone;
  auto backend = BlockBackend::open(**loop, config);
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.status().message().find("is not a multiple of its O_DIRECT alignment"),
            std::string_view::npos)
      << backend.status().message();
}

// tmpfs lacks FALLOC_FL_ZERO_RANGE, so write-zeroes falls back to writing zeroes.
TEST_P(BlockEngineTest, WriteZeroesFallbackOnTmpfs) {
  struct statfs fs {};
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994 /* TMPFS_MAGIC */) {
    GTEST_SKIP() << "/dev/shm is not tmpfs";
  }
  TempImage image(1 << 20, "/dev/shm");
  ASSERT_TRUE(image.ok());
  Harness h;
  ASSERT_TRUE(h.open(make_config(image.path(), GetParam())).ok());
  // Larger than the zero buffer, so it takes several chunks.
  EXPECT_EQ(h.run(BlockOp::kWriteZeroes, 1000, 600 * 1024 + 3), 0);
  std::fill_n(image.expected().begin() + 1000, 600 * 1024 + 3, 0);
  EXPECT_EQ(h.run(BlockOp::kWriteZeroes, 900 * 1024, 4096), 0);  // the known-unsupported path
  std::fill_n(image.expected().begin() + 900 * 1024, 4096, 0);
  EXPECT_EQ(h.run(BlockOp::kDiscard, 700 * 1024, 8192), 0);
  std::fill_n(image.expected().begin() + 700 * 1024, 8192, 0);
  EXPECT_EQ(image.read_back(), image.expected());
}

// --- opening ---

TEST(BlockBackend, FallsBackToThreadsWhenIoUringIsMissing) {
  TempImage image(64 * 1024);
  ASSERT_TRUE(image.ok());
  for (int error : {ENOSYS, EPERM}) {
    DriveConfig config = make_config(image.path(), AioMode::kIoUring);
    config.aio_given = false;
    Harness h;
    Status opened = h.open(config, BackendTuning{.simulate_io_uring_error = error});
    ASSERT_TRUE(opened.ok()) << opened.to_string();
    EXPECT_EQ(h.backend().engine_name(), "threads");
    std::vector<uint8_t> data = pattern(4096, 21);
    EXPECT_EQ(h.write(0, data), 0);
    std::vector<uint8_t> back(4096);
    EXPECT_EQ(h.read(0, back), 0);
    EXPECT_EQ(back, data);
  }
  // Asked for explicitly: no silent fallback.
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  DriveConfig config = make_config(image.path(), AioMode::kIoUring);
  auto explicit_uring =
      BlockBackend::open(**loop, config, BackendTuning{.simulate_io_uring_error = ENOSYS});
  ASSERT_FALSE(explicit_uring.ok());
  EXPECT_NE(explicit_uring.status().message().find("-drive id=d0: aio=io_uring is not available"),
            std::string_view::npos)
      << explicit_uring.status().message();
  // Other setup failures are not "io_uring is missing".
  config.aio_given = false;
  auto other = BlockBackend::open(**loop, config, BackendTuning{.simulate_io_uring_error = ENOMEM});
  EXPECT_FALSE(other.ok());
}

TEST(BlockBackend, OpenErrorsNameTheFile) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  auto missing =
      BlockBackend::open(**loop, make_config("/nonexistent/ferry.img", AioMode::kThreads));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'/nonexistent/ferry.img'"), std::string_view::npos);
  EXPECT_NE(missing.status().message().find("No such file"), std::string_view::npos);

  auto dir = BlockBackend::open(**loop, make_config("/tmp", AioMode::kThreads));
  EXPECT_FALSE(dir.ok());

  TempImage image(4096);
  ASSERT_TRUE(image.ok());
  DriveConfig qcow = make_config(image.path(), AioMode::kThreads);
  qcow.format = "qcow2";
  auto bad_format = BlockBackend::open(**loop, qcow);
  ASSERT_FALSE(bad_format.ok());
  EXPECT_NE(bad_format.status().message().find("format 'qcow2'"), std::string_view::npos);
}

TEST(BlockBackend, TmpfsRefusingODirectIsAClearError) {
  // Only meaningful where tmpfs refuses O_DIRECT (kernels before 6.6).
  struct statfs fs {};
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994) GTEST_SKIP() << "no tmpfs";
  TempImage image(8192, "/dev/shm");
  ASSERT_TRUE(image.ok());
  int fd = open(image.path().c_str(), O_RDWR | O_DIRECT);
  if (fd >= 0) {
    close(fd);
    GTEST_SKIP() << "this kernel's tmpfs takes O_DIRECT";
  }
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  DriveConfig config = make_config(image.path(), AioMode::kThreads);
  config.cache = CacheMode::kNone;
  auto backend = BlockBackend::open(**loop, config);
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.status().message().find("does not support O_DIRECT"), std::string_view::npos);
  EXPECT_NE(backend.status().message().find(image.path()), std::string_view::npos);
}

// ---- activation: the image lock (block/file_lock.h) ----

TEST_P(BlockEngineTest, SecondWriterOfAnImageIsRefused) {
  TempImage image(1 << 20);
  ASSERT_TRUE(image.ok());
  Harness first;
  ASSERT_TRUE(first.open(make_config(image.path(), GetParam())).ok());
  EXPECT_TRUE(first.backend().active());
  Harness second;
  Status refused = second.open(make_config(image.path(), GetParam()));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.message(), "-drive id=d0: Failed to get \"write\" lock\nIs another process "
                               "using the image [" + image.path() + "]?");
  // A read-only opener does not share write either.
  DriveConfig read_only = make_config(image.path(), GetParam());
  read_only.read_only = true;
  refused = second.open(read_only);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("Failed to get shared \"write\" lock"), std::string::npos)
      << refused.message();
  // Closing the first frees the image.
  first.close();
  EXPECT_TRUE(second.open(make_config(image.path(), GetParam())).ok());
}

TEST_P(BlockEngineTest, InactiveBackendRefusesWritesUntilActivated) {
  TempImage image(1 << 20);
  ASSERT_TRUE(image.ok());
  // The source holds the image; the destination opens it inactive, beside it.
  Harness source;
  ASSERT_TRUE(source.open(make_config(image.path(), GetParam())).ok());
  Harness destination;
  ASSERT_TRUE(
      destination.open(make_config(image.path(), GetParam()), {}, Activation::kInactive).ok());
  EXPECT_FALSE(destination.backend().active());
  // Reads work, nothing that changes the image does, and the file is untouched.
  std::vector<uint8_t> data = pattern(4096, 3);
  EXPECT_EQ(destination.read(0, data), 0);
  EXPECT_EQ(destination.write(0, data), -EPERM);
  EXPECT_EQ(destination.run(BlockOp::kDiscard, 0, 4096), -EPERM);
  EXPECT_EQ(destination.run(BlockOp::kWriteZeroes, 0, 4096), -EPERM);
  EXPECT_EQ(destination.run(BlockOp::kFlush, 0, 0), 0);
  EXPECT_EQ(image.read_back(), image.expected());
  // Switchover while the source still holds the lock fails and changes nothing.
  Status early = destination.backend().activate();
  ASSERT_FALSE(early.ok());
  EXPECT_NE(early.message().find("Failed to get \"write\" lock"), std::string::npos);
  EXPECT_FALSE(destination.backend().active());
  // The hand-over: the source drains and releases, the destination takes the lock.
  std::vector<uint8_t> last = pattern(4096, 9);
  source.submit(BlockOp::kWrite, 8192, last.size(), {{last.data(), last.size()}});
  ASSERT_TRUE(source.backend().inactivate().ok());
  EXPECT_EQ(source.backend().in_flight(), 0u);  // drained before the lock went
  EXPECT_FALSE(source.backend().active());
  EXPECT_EQ(source.write(0, data), -EPERM);
  ASSERT_TRUE(destination.backend().activate().ok());
  EXPECT_TRUE(destination.backend().activate().ok());  // idempotent
  EXPECT_EQ(destination.write(0, data), 0);
  // The source cannot take the image back now; after the destination lets go it can.
  EXPECT_FALSE(source.backend().activate().ok());
  ASSERT_TRUE(destination.backend().inactivate().ok());
  ASSERT_TRUE(source.backend().activate().ok());
  EXPECT_EQ(source.write(4096, data), 0);
  std::copy(data.begin(), data.end(), image.expected().begin());
  std::copy(last.begin(), last.end(), image.expected().begin() + 8192);
  std::copy(data.begin(), data.end(), image.expected().begin() + 4096);
  EXPECT_EQ(image.read_back(), image.expected());
}

}  // namespace
}  // namespace ferry::block
