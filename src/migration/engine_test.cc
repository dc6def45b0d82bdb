// The live engines in one process: a source and a destination thread over a unix socket,
// with a guest "vCPU" thread dirtying RAM while precopy runs. Fake hooks stand in for the
// machine.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "memory/guest_memory.h"
#include "migration/buffer_channel.h"
#include "migration/destination.h"
#include "migration/source.h"
#include "migration/stream.h"
#include "migration/stream_writer.h"
#include "migration/test_devices.h"

namespace ferry::migration {
namespace {

using namespace std::chrono_literals;

// One side of the migration: RAM, a timer device, and its registry.
struct Side {
  std::vector<std::unique_ptr<memory::RamBlock>> ram;
  test::Timer timer;
  SectionRegistry registry;

  Side(bool fill, uint32_t seed) : ram(test::make_ram({{"pc.ram", 2048}, {"vga.vram", 64}}, fill, seed)) {
    EXPECT_TRUE(registry.add_ram().ok());
    EXPECT_TRUE(registry.add("timer", vmstate::bind(test::kTimerDesc, timer)).ok());
  }
};

// A guest that keeps writing to RAM (through the dirty-marking helpers) until stopped.
class Writer {
 public:
  explicit Writer(memory::RamBlock& block) : block_(block) {
    thread_ = std::thread([this] {
      uint64_t i = 0;
      while (!stop_.load(std::memory_order_acquire)) {
        uint64_t page = (i * 7919) % block_.pages();
        uint64_t value = ++i;
        memory::guest_write(block_.page(page) + 8, reinterpret_cast<const uint8_t*>(&value), 8);
        block_.dirty().mark_page(page);
        if (i % 64 == 0) std::this_thread::sleep_for(50us);
      }
    });
  }
  ~Writer() { stop(); }
  void stop() {
    stop_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
  }

 private:
  memory::RamBlock& block_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Guest activity in lockstep with the migration: every write the source makes to the
// channel first dirties a page, so each pass ends with dirty pages left, deterministically.
class DirtyingChannel final : public Channel {
 public:
  DirtyingChannel(std::unique_ptr<Channel> inner, memory::RamBlock& block)
      : inner_(std::move(inner)), block_(block) {}
  void stop() { active_.store(false, std::memory_order_release); }
  Result<size_t> read_some(std::span<uint8_t> out) override { return inner_->read_some(out); }
  Status write_all(std::span<const uint8_t> data) override {
    dirty();
    return inner_->write_all(data);
  }
  Status writev_all(std::span<iovec> iov) override {
    dirty();
    return inner_->writev_all(iov);
  }
  Status shutdown_write() override { return inner_->shutdown_write(); }
  Status close() override { return inner_->close(); }
  const std::string& name() const override { return inner_->name(); }

 private:
  void dirty() {
    if (!active_.load(std::memory_order_acquire)) return;
    uint64_t page = ++writes_ % block_.pages();
    memory::guest_write(block_.page(page), reinterpret_cast<const uint8_t*>(&writes_), 8);
    block_.dirty().mark_page(page);
  }
  std::unique_ptr<Channel> inner_;
  memory::RamBlock& block_;
  std::atomic<bool> active_{true};
  uint64_t writes_ = 0;
};

class FakeSourceMachine final : public SourceHooks {
 public:
  FakeSourceMachine(Side& side, Writer* writer, DirtyingChannel* dirtier = nullptr)
      : side_(side), writer_(writer), dirtier_(dirtier) {}
  Result<DeviceCapture> capture_early_setup() override { return DeviceCapture{}; }
  Result<DeviceCapture> stop_and_capture() override {
    if (writer_) writer_->stop();  // the VM stops: no more guest writes
    if (dirtier_) dirtier_->stop();
    stopped = true;
    DeviceCapture capture;
    BufferChannel sink;
    StreamWriter w(sink);
    for (const auto& e : side_.registry.entries())
      if (!e->is_ram()) {
        Status st = write_device_section(w, *e, &capture.vmdesc_devices);
        if (!st.ok()) return st;
      }
    if (Status st = w.flush(); !st.ok()) return st;
    capture.records = sink.written();
    return capture;
  }
  void resume_after_failure() override { resumed = true; }
  void completed() override { done = true; }
  void status_changed(std::string_view status) override {
    std::lock_guard lock(mutex);
    statuses.emplace_back(status);
  }
  std::atomic<bool> stopped{false}, resumed{false}, done{false};
  std::mutex mutex;
  std::vector<std::string> statuses;

 private:
  Side& side_;
  Writer* writer_;
  DirtyingChannel* dirtier_;
};

class FakeDestinationMachine final : public DestinationHooks {
 public:
  std::string loaded() override {
    ran = true;
    return "running";
  }
  void failed(const Status& error) override {
    std::lock_guard lock(mutex);
    failure = error.to_string();
  }
  void status_changed(std::string_view) override {}
  std::atomic<bool> ran{false};
  std::mutex mutex;
  std::string failure;
};

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 30s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::string socket_uri() {
  static std::atomic<int> n{0};
  return fmt::format("unix:/tmp/ferry-engine-test-{}-{}.sock", ::getpid(), n++);
}

// A destination listening on a fresh unix socket, already waiting for its connection.
std::unique_ptr<DestinationMigration> waiting_destination(Side& dst, DestinationHooks& machine,
                                                          std::string& uri) {
  uri = socket_uri();
  auto listener = listen_incoming(uri);
  EXPECT_TRUE(listener.ok()) << listener.status().to_string();
  if (!listener.ok()) return nullptr;
  auto destination = std::make_unique<DestinationMigration>(
      std::move(listener).value(), "ferry-1.0", dst.registry, test::raw(dst.ram), machine);
  destination->start();
  return destination;
}

struct Outcome {
  MigrationStats source;
  bool destination_ran = false;
  std::string destination_failure;
};

Outcome migrate(Side& src, Side& dst, MigrationParams params, Writer* writer) {
  std::string uri;
  FakeDestinationMachine dst_machine;
  auto waiting = waiting_destination(dst, dst_machine, uri);
  if (!waiting) return {};
  DestinationMigration& destination = *waiting;
  auto channel = connect_outgoing(uri);
  EXPECT_TRUE(channel.ok()) << channel.status().to_string();
  FakeSourceMachine src_machine(src, writer);
  SourceMigration source(std::move(channel).value(), "ferry-1.0", src.registry,
                         test::raw(src.ram), params, src_machine);
  source.start();
  EXPECT_TRUE(wait_until([&] { return source.finished() && destination.finished(); }));
  Outcome run{source.stats(), dst_machine.ran, dst_machine.failure};
  EXPECT_TRUE(src_machine.done || src_machine.resumed);
  return run;
}

TEST(Engine, PrecopyWithAGuestWritingConvergesAndRamEndsIdentical) {
  Side src(true, 1), dst(false, 2);
  src.timer = {123456, 10};
  Writer writer(*src.ram[0]);
  Outcome run = migrate(src, dst, {}, &writer);
  ASSERT_EQ(run.source.status, "completed") << run.source.error;
  EXPECT_TRUE(run.destination_ran);
  EXPECT_GE(run.source.dirty_sync_count, 1u);
  EXPECT_TRUE(test::same_ram(src.ram, dst.ram));
  EXPECT_EQ(dst.timer, src.timer);
}

TEST(Engine, NoConvergenceForcesCompletionAfterThePassLimit) {
  Side src(true, 3), dst(false, 4);
  std::string uri;
  FakeDestinationMachine dst_machine;
  auto waiting = waiting_destination(dst, dst_machine, uri);
  ASSERT_TRUE(waiting);
  DestinationMigration& destination = *waiting;
  auto channel = connect_outgoing(uri);
  ASSERT_TRUE(channel.ok());
  auto dirtying = std::make_unique<DirtyingChannel>(std::move(channel).value(), *src.ram[0]);
  DirtyingChannel* dirtier = dirtying.get();
  FakeSourceMachine src_machine(src, nullptr, dirtier);
  // A zero downtime limit can never be met while every write dirties a page.
  SourceMigration source(std::move(dirtying), "ferry-1.0", src.registry, test::raw(src.ram),
                         {.max_bandwidth = 0, .downtime_limit_ms = 0}, src_machine);
  source.start();
  ASSERT_TRUE(wait_until([&] { return source.finished() && destination.finished(); }));
  ASSERT_EQ(source.stats().status, "completed") << source.stats().error;
  EXPECT_EQ(source.stats().dirty_sync_count, 30u);
  EXPECT_TRUE(dst_machine.ran);
  EXPECT_TRUE(test::same_ram(src.ram, dst.ram));
}

TEST(Engine, CancelDuringPrecopyResumesAndTheDestinationNeverRuns) {
  Side src(true, 5), dst(false, 6);
  std::string uri;
  FakeDestinationMachine dst_machine;
  auto waiting = waiting_destination(dst, dst_machine, uri);
  ASSERT_TRUE(waiting);
  DestinationMigration& destination = *waiting;
  auto channel = connect_outgoing(uri);
  ASSERT_TRUE(channel.ok());
  FakeSourceMachine src_machine(src, nullptr);
  SourceMigration source(std::move(channel).value(), "ferry-1.0", src.registry,
                         test::raw(src.ram), {.max_bandwidth = 2 << 20}, src_machine);
  source.start();
  ASSERT_TRUE(wait_until([&] { return source.stats().status == "active"; }));
  source.cancel();
  ASSERT_TRUE(wait_until([&] { return source.finished() && destination.finished(); }));
  EXPECT_EQ(source.stats().status, "cancelled");
  EXPECT_TRUE(src_machine.resumed);
  EXPECT_FALSE(src_machine.stopped);
  EXPECT_FALSE(dst_machine.ran);
  std::lock_guard lock(dst_machine.mutex);
  EXPECT_FALSE(dst_machine.failure.empty());
  std::lock_guard status_lock(src_machine.mutex);
  EXPECT_NE(std::find(src_machine.statuses.begin(), src_machine.statuses.end(), "cancelling"),
            src_machine.statuses.end());
}

TEST(Engine, FileChannelCompletesWithoutAReturnPath) {
  Side src(true, 7), dst(false, 8);
  std::string file = fmt::format("/tmp/ferry-engine-test-{}.mig", ::getpid());
  auto channel = connect_outgoing("file:" + file);
  ASSERT_TRUE(channel.ok());
  FakeSourceMachine src_machine(src, nullptr);
  {
    SourceMigration source(std::move(channel).value(), "ferry-1.0", src.registry,
                           test::raw(src.ram), {}, src_machine);
    source.start();
    ASSERT_TRUE(wait_until([&] { return source.finished(); }));
    EXPECT_EQ(source.stats().status, "completed") << source.stats().error;
  }
  auto listener = listen_incoming("file:" + file);
  ASSERT_TRUE(listener.ok());
  FakeDestinationMachine dst_machine;
  DestinationMigration destination(std::move(listener).value(), "ferry-1.0", dst.registry,
                                   test::raw(dst.ram), dst_machine);
  destination.start();
  ASSERT_TRUE(wait_until([&] { return destination.finished(); }));
  EXPECT_TRUE(dst_machine.ran);
  EXPECT_TRUE(test::same_ram(src.ram, dst.ram));
  ::unlink(file.c_str());
}

TEST(Engine, DestinationStopsWhileWaitingForAConnectionOrForBytes) {
  Side dst(false, 9);
  FakeDestinationMachine machine;
  std::string uri;
  {
    auto waiting = waiting_destination(dst, machine, uri);
    ASSERT_TRUE(waiting);
  }  // destroyed while accept() blocks: must return, not hang
  auto started = waiting_destination(dst, machine, uri);
  ASSERT_TRUE(started);
  DestinationMigration& loading = *started;
  auto stalled = connect_outgoing(uri);  // connects, sends nothing
  ASSERT_TRUE(stalled.ok());
  ASSERT_TRUE(wait_until([&] { return loading.status() == "active"; }));
  loading.stop();
  ASSERT_TRUE(wait_until([&] { return loading.finished(); }, 10s));
  EXPECT_EQ(loading.status(), "failed");
  EXPECT_FALSE(machine.ran);
}

}  // namespace
}  // namespace ferry::migration
