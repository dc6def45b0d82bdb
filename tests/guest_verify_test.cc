// The verify guest program against a real in-process machine: an NVMe controller on a
// temporary file, driven through the in-process GuestBus the way the vCPU drives it (step;
// when the program waits, let the machine's loop run). Covers every rw mode, data pointer
// shapes, corruption detection, device errors and timeouts, and the program's migration
// state (save, load into a fresh program, continue; a differently configured destination
// is refused).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/event_loop.h"
#include "base/qemu_opts.h"
#include "block/drive_config.h"
#include "block/fault_injector.h"
#include "guest/programs/verify.h"
#include "guest/programs/verify_block.h"
#include "hw/nvme/nvme_properties.h"
#include "vm/inprocess_bus.h"
#include "vm/machine.h"

namespace ferry {
namespace {

using guest::StepResult;
using guest::VerifyConfig;
using guest::VerifyProgram;
using guest::verify::Mode;
using guest::verify::Phase;

constexpr uint64_t kDiskBytes = 4ull << 20;
constexpr uint64_t kRamBytes = 64ull << 20;
constexpr uint64_t kDmaBase = 16ull << 20;

// A machine with one NVMe controller (serial VFY0) on a fresh temporary file.
class TestMachine {
 public:
  static std::unique_ptr<TestMachine> create(std::vector<std::string> faults = {}) {
    auto m = std::unique_ptr<TestMachine>(new TestMachine());
    char path[] = "/tmp/ferry-verify-XXXXXX";
    int fd = ::mkstemp(path);
    EXPECT_GE(fd, 0);
    if (fd < 0) return nullptr;
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(kDiskBytes)), 0);
    ::close(fd);
    m->path_ = path;
    auto loop = EventLoop::create();
    EXPECT_TRUE(loop.ok()) << loop.status().to_string();
    if (!loop.ok()) return nullptr;
    m->loop_ = std::move(loop).value();
    vm::MachineConfig config;
    config.name = "verify-test";
    config.ram_size = kRamBytes;
    auto drive = block::parse_drive_config(fmt::format("if=none,id=d0,file={},format=raw", path));
    EXPECT_TRUE(drive.ok()) << drive.status().to_string();
    config.drives.push_back(*drive);
    for (const std::string& text : faults) {
      auto rule = block::parse_fault_rule(text);
      EXPECT_TRUE(rule.ok()) << rule.status().to_string();
      config.faults.push_back({"d0", *rule});
    }
    auto opts = parse_opts(nvme::controller_schema(), "nvme,serial=VFY0,drive=d0");
    EXPECT_TRUE(opts.ok()) << opts.status().to_string();
    config.devices.push_back({"nvme", "nvme0", "", std::move(opts).value()});
    auto machine = vm::Machine::create(*m->loop_, std::move(config));
    EXPECT_TRUE(machine.ok()) << machine.status().to_string();
    if (!machine.ok()) return nullptr;
    m->machine_ = std::move(machine).value();
    m->bus_ = std::make_unique<vm::InProcessBus>(*m->machine_);
    return m;
  }

  ~TestMachine() {
    bus_.reset();
    machine_.reset();
    loop_.reset();
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  vm::InProcessBus& bus() { return *bus_; }
  const std::string& path() const { return path_; }

  std::vector<uint8_t> read_file(uint64_t offset, size_t length) const {
    std::vector<uint8_t> data(length);
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, data.data(), length, static_cast<off_t>(offset)),
              static_cast<ssize_t>(length));
    ::close(fd);
    return data;
  }
  void write_file(uint64_t offset, std::span<const uint8_t> data) const {
    int fd = ::open(path_.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(data.size()));
    ::close(fd);
  }

 private:
  TestMachine() = default;
  std::string path_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<vm::Machine> machine_;
  std::unique_ptr<vm::InProcessBus> bus_;
};

VerifyConfig small_config(Mode rw, uint32_t bs = 4096, uint32_t iodepth = 8) {
  VerifyConfig c;
  c.rw = rw;
  c.block_size = bs;
  c.iodepth = iodepth;
  c.size = 1ull << 20;
  c.loops = 2;
  c.seed = 1234;
  c.dma_base = kDmaBase;
  c.dma_size = guest::verify_dma_bytes(c);
  return c;
}

std::unique_ptr<VerifyProgram> make_program(const VerifyConfig& config) {
  auto program = VerifyProgram::create(config);
  EXPECT_TRUE(program.ok()) << program.status().to_string();
  return program.ok() ? std::move(program).value() : nullptr;
}

// Steps like the vCPU does until the program ends or `stop` holds. Returns the last step's
// result (kProgress when stopped by `stop`).
Result<StepResult> drive(VerifyProgram& program, vm::InProcessBus& bus,
                         const std::function<bool(const VerifyProgram&)>& stop = {}) {
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (unsigned steps = 1;; ++steps) {
    auto result = program.step(bus);
    if (!result.ok() || *result == StepResult::kFinished) return result;
    if (stop && stop(program)) return StepResult::kProgress;
    if (*result == StepResult::kWaiting || steps % 8 == 0) {
      bool waiting = *result == StepResult::kWaiting;
      Status idled = bus.idle(std::chrono::microseconds(waiting ? 1000 : 0));
      if (!idled.ok()) return idled;
    }
    if (std::chrono::steady_clock::now() > give_up)
      return Error(ErrorCode::kInternal, "test: the program did not end within 60 s");
  }
}

// Every block the model says was written holds that generation's header and payload.
void expect_disk_matches_model(const TestMachine& m, const VerifyProgram& p) {
  const auto& s = p.state();
  uint32_t bs = p.config().block_size;
  uint32_t lbas = bs / s.controller.lba_size;
  size_t checked = 0;
  for (uint64_t b = 0; b < s.block_count; ++b) {
    if (s.generations[b] == 0) continue;
    auto data = m.read_file(b * bs, bs);
    auto mismatch = guest::verify::check_block(data, b * lbas, s.generations[b], p.config().seed);
    EXPECT_FALSE(mismatch) << "block " << b << ": " << *mismatch;
    ++checked;
  }
  EXPECT_GT(checked, 0u);
}

class VerifyModes : public ::testing::TestWithParam<Mode> {};

TEST_P(VerifyModes, FinishesCleanAndLeavesValidBlocks) {
  auto m = TestMachine::create();
  ASSERT_TRUE(m);
  auto p = make_program(small_config(GetParam()));
  ASSERT_TRUE(p);
  auto result = drive(*p, m->bus());
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_EQ(*result, StepResult::kFinished);
  auto status = p->status();
  EXPECT_EQ(status["errors"], 0) << status.dump(2);
  EXPECT_EQ(status["phase"], "finished");
  EXPECT_EQ(status["in_flight"], 0);
  const auto& s = p->state();
  EXPECT_EQ(s.block_count, 256u);  // 1 MiB of 4 KiB blocks
  // loops=2: the run phase submits two passes' worth of commands.
  EXPECT_EQ(s.stats[guest::verify::kStatsRun].ops, 512u) << status.dump(2);
  bool prefill = GetParam() == Mode::kRead || GetParam() == Mode::kRandRead;
  EXPECT_EQ(s.stats[guest::verify::kStatsPrefill].ops, prefill ? 256u : 0u);
  EXPECT_EQ(status["phases"].contains("prefill"), prefill);
  // The final pass reads every block the run wrote.
  uint64_t written = 0;
  for (uint32_t g : s.generations) written += g != 0;
  EXPECT_EQ(s.stats[guest::verify::kStatsFinal].ops, written);
  EXPECT_EQ(s.skipped_blocks, 256u - written);
  if (GetParam() == Mode::kWrite || prefill) {
    EXPECT_EQ(written, 256u);
  }
  if (GetParam() == Mode::kWrite) {
    for (uint32_t g : s.generations) EXPECT_EQ(g, 2u);  // two sequential passes
  }
  auto run = status["phases"]["run"];
  EXPECT_GT(run["latency_ns"]["p50"].get<uint64_t>(), 0u) << status.dump(2);
  EXPECT_GE(run["latency_ns"]["p99"].get<uint64_t>(), run["latency_ns"]["p50"].get<uint64_t>());
  EXPECT_TRUE(run["done"].get<bool>());
  expect_disk_matches_model(*m, *p);
  // After the end, stepping again just reports the end.
  auto again = p->step(m->bus());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, StepResult::kFinished);
}

INSTANTIATE_TEST_SUITE_P(AllModes, VerifyModes,
                         ::testing::Values(Mode::kWrite, Mode::kRandWrite, Mode::kRead,
                                           Mode::kRandRead, Mode::kRandRw),
                         [](const auto& info) {
                           return std::string(guest::verify_mode_name(info.param));
                         });

TEST(Verify, DataPointerShapes) {
  // 512 B (one LBA), 8 KiB (PRP1 + PRP2), 64 KiB (a PRP list), 1 MiB region each.
  for (uint32_t bs : {512u, 8192u, 65536u}) {
    auto m = TestMachine::create();
    ASSERT_TRUE(m);
    VerifyConfig c = small_config(Mode::kRandRw, bs, 4);
    c.loops = 1;
    auto p = make_program(c);
    ASSERT_TRUE(p);
    auto result = drive(*p, m->bus());
    ASSERT_TRUE(result.ok()) << "bs=" << bs << ": " << result.status().to_string();
    EXPECT_EQ(p->state().block_count, (1u << 20) / bs);
    // randrw: wrote something, and every write landed where the model says.
    expect_disk_matches_model(*m, *p);
  }
}

TEST(Verify, RuntimeEndsTheRunPhase) {
  auto m = TestMachine::create();
  ASSERT_TRUE(m);
  VerifyConfig c = small_config(Mode::kRandWrite);
  c.loops = 0;
  c.runtime_ms = 100;
  auto p = make_program(c);
  ASSERT_TRUE(p);
  auto result = drive(*p, m->bus());
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_GT(p->state().stats[guest::verify::kStatsRun].ops, 0u);
  auto run = p->status()["phases"]["run"];
  EXPECT_GE(run["elapsed_ms"].get<int64_t>(), 100);
}

// Steps until the run phase ended and the final pass is about to start reading.
bool at_final_pass(const VerifyProgram& p) { return p.phase() == Phase::kFinal; }

// The first block the model says was written.
uint64_t first_written_block(const VerifyProgram& p) {
  const auto& g = p.state().generations;
  for (uint64_t b = 0; b < g.size(); ++b)
    if (g[b] != 0) return b;
  return g.size();
}

TEST(Verify, CorruptPayloadIsDetectedWithItsLba) {
  auto m = TestMachine::create();
  ASSERT_TRUE(m);
  auto p = make_program(small_config(Mode::kRandWrite));
  ASSERT_TRUE(p);
  auto paused = drive(*p, m->bus(), at_final_pass);
  ASSERT_TRUE(paused.ok()) << paused.status().to_string();
  ASSERT_EQ(p->phase(), Phase::kFinal);
  uint64_t block = first_written_block(*p);
  ASSERT_LT(block, p->state().block_count);
  uint64_t lba = block * (4096 / p->state().controller.lba_size);
  uint8_t flipped = static_cast<uint8_t>(m->read_file(block * 4096 + 1000, 1)[0] ^ 0x40);
  m->write_file(block * 4096 + 1000, std::span(&flipped, 1));
  auto result = drive(*p, m->bus());
  ASSERT_FALSE(result.ok());
  std::string error = result.status().to_string();
  EXPECT_NE(error.find(fmt::format("mismatch at LBA {} ", lba)), std::string::npos) << error;
  EXPECT_NE(error.find("payload crc32c"), std::string::npos) << error;
  EXPECT_NE(error.find("final phase"), std::string::npos) << error;
  auto status = p->status();
  EXPECT_EQ(status["phase"], "failed");
  EXPECT_EQ(status["errors"], error);
  // A failed program keeps failing with the same error.
  auto again = p->step(m->bus());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().to_string(), error);
}

TEST(Verify, StaleAndMisplacedBlocksAreDetected) {
  struct Case {
    const char* name;
    std::function<void(std::span<uint8_t>, uint64_t lba, uint32_t generation, uint64_t seed)>
        damage;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"stale",
       [](std::span<uint8_t> block, uint64_t lba, uint32_t generation, uint64_t seed) {
         guest::verify::fill_block(block, lba, generation + 7, seed);
       },
       "expected generation"},
      {"misplaced",
       [](std::span<uint8_t> block, uint64_t lba, uint32_t generation, uint64_t seed) {
         guest::verify::fill_block(block, lba + 8, generation, seed);
       },
       "expected header LBA"},
      {"zeroed",
       [](std::span<uint8_t> block, uint64_t, uint32_t, uint64_t) {
         std::fill(block.begin(), block.end(), uint8_t{0});
       },
       "expected magic"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto m = TestMachine::create();
    ASSERT_TRUE(m);
    auto p = make_program(small_config(Mode::kWrite));
    ASSERT_TRUE(p);
    ASSERT_TRUE(drive(*p, m->bus(), at_final_pass).ok());
    uint64_t block = 37;
    uint64_t lba = block * 8;
    std::vector<uint8_t> data(4096);
    c.damage(data, lba, p->state().generations[block], p->config().seed);
    m->write_file(block * 4096, data);
    auto result = drive(*p, m->bus());
    ASSERT_FALSE(result.ok());
    std::string error = result.status().to_string();
    EXPECT_NE(error.find(fmt::format("mismatch at LBA {} ", lba)), std::string::npos) << error;
    EXPECT_NE(error.find(c.expected), std::string::npos) << error;
  }
}

TEST(Verify, DeviceErrorEndsTheProgram) {
  auto m = TestMachine::create({"op=write,errno=EIO,after=20,once=on"});
  ASSERT_TRUE(m);
  auto p = make_program(small_config(Mode::kRandWrite));
  ASSERT_TRUE(p);
  auto result = drive(*p, m->bus());
  ASSERT_FALSE(result.ok());
  std::string error = result.status().to_string();
  EXPECT_NE(error.find("write of LBA"), std::string::npos) << error;
  EXPECT_NE(error.find("failed: status"), std::string::npos) << error;
}

TEST(Verify, CommandTimeoutEndsTheProgram) {
  // The eleventh write is held until the machine goes away: it certainly outlasts the limit
  // (a 600 ms delay did not, whenever the test thread was descheduled that long).
  auto m = TestMachine::create({"op=write,hold=on,after=10,once=on"});
  ASSERT_TRUE(m);
  VerifyConfig c = small_config(Mode::kRandWrite);
  c.command_timeout_ms = 100;
  auto p = make_program(c);
  ASSERT_TRUE(p);
  auto result = drive(*p, m->bus());
  ASSERT_FALSE(result.ok());
  std::string error = result.status().to_string();
  EXPECT_NE(error.find("has had no completion for"), std::string::npos) << error;
  EXPECT_NE(error.find("limit 100 ms"), std::string::npos) << error;
}

TEST(Verify, PausesAreExcludedFromTimeoutsAndReportedAsStalls) {
  auto m = TestMachine::create();
  ASSERT_TRUE(m);
  VerifyConfig c = small_config(Mode::kRandRw);
  c.command_timeout_ms = 4000;  // far above any command's time, even on a busy machine
  auto p = make_program(c);
  ASSERT_TRUE(p);
  ASSERT_TRUE(drive(*p, m->bus(), [](const VerifyProgram& p) {
                return p.phase() == Phase::kRun && p.state().in_flight > 0;
              }).ok());
  // A 5 s pause: with 4 s of allowed running time, a timeout would fire if pauses counted.
  int64_t pause = 5'000'000'000;
  p->note_pause(pause);
  auto result = drive(*p, m->bus());
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  auto stalls = p->status()["stalls"];
  ASSERT_EQ(stalls.size(), 1u) << stalls.dump();
  EXPECT_EQ(stalls[0]["phase"], "run");
  EXPECT_EQ(stalls[0]["pause_ns"], pause);
  EXPECT_GT(stalls[0]["io_gap_ns"].get<uint64_t>(), 0u);
}

// ---- migration of the program state ------------------------------------------------------

std::vector<uint8_t> save_state(VerifyProgram& p) {
  ByteWriter w;
  Status saved = p.migration_state()->save(w);
  EXPECT_TRUE(saved.ok()) << saved.to_string();
  return w.to_vector();
}

Status load_state(VerifyProgram& p, const std::vector<uint8_t>& bytes) {
  ByteReader r(bytes);
  auto binding = p.migration_state();
  Status loaded = binding->load(r, binding->version());
  if (loaded.ok() && !r.at_end())
    return Error(ErrorCode::kCorrupt, "{} bytes left after the state", r.remaining());
  return loaded;
}

TEST(VerifyMigration, FreshProgramContinuesFromSavedState) {
  for (Mode mode : {Mode::kRandRw, Mode::kRead, Mode::kWrite}) {
    SCOPED_TRACE(std::string(guest::verify_mode_name(mode)));
    auto m = TestMachine::create();
    ASSERT_TRUE(m);
    VerifyConfig c = small_config(mode);
    auto source = make_program(c);
    ASSERT_TRUE(source);
    // Stop mid-run with commands in flight: their completions are the destination's.
    ASSERT_TRUE(drive(*source, m->bus(), [](const VerifyProgram& p) {
                  return p.phase() == Phase::kRun && p.state().in_flight > 0 &&
                         p.state().stats[guest::verify::kStatsRun].ops > 100;
                }).ok());
    uint64_t ops_before = source->state().stats[guest::verify::kStatsRun].ops;
    auto bytes = save_state(*source);
    source.reset();

    auto destination = make_program(c);
    ASSERT_TRUE(destination);
    Status loaded = load_state(*destination, bytes);
    ASSERT_TRUE(loaded.ok()) << loaded.to_string();
    EXPECT_EQ(destination->phase(), Phase::kRun);
    EXPECT_GT(destination->state().in_flight, 0u);
    destination->note_pause(1'000'000);
    auto result = drive(*destination, m->bus());
    ASSERT_TRUE(result.ok()) << result.status().to_string();
    EXPECT_EQ(*result, StepResult::kFinished);
    const auto& s = destination->state();
    EXPECT_EQ(s.stats[guest::verify::kStatsRun].ops, 512u);
    EXPECT_GT(s.stats[guest::verify::kStatsRun].ops, ops_before);
    EXPECT_EQ(destination->status()["errors"], 0);
    auto stalls = destination->status()["stalls"];
    ASSERT_EQ(stalls.size(), 1u);
    EXPECT_EQ(stalls[0]["pause_ns"], 1'000'000);
    EXPECT_GT(stalls[0]["io_gap_ns"].get<uint64_t>(), 0u);
    expect_disk_matches_model(*m, *destination);
  }
}

TEST(VerifyMigration, SaveLoadSaveIsIdentical) {
  auto m = TestMachine::create();
  ASSERT_TRUE(m);
  VerifyConfig c = small_config(Mode::kRandRw);
  auto source = make_program(c);
  ASSERT_TRUE(source);
  ASSERT_TRUE(drive(*source, m->bus(), [](const VerifyProgram& p) {
                return p.phase() == Phase::kRun && p.state().in_flight > 0;
              }).ok());
  auto bytes = save_state(*source);
  auto copy = make_program(c);
  ASSERT_TRUE(copy);
  ASSERT_TRUE(load_state(*copy, bytes).ok());
  EXPECT_EQ(save_state(*copy), bytes);
}

TEST(VerifyMigration, DifferentOptionsAreRefused) {
  auto m = TestMachine::create();
  ASSERT_TRUE(m);
  VerifyConfig c = small_config(Mode::kRandWrite);
  auto source = make_program(c);
  ASSERT_TRUE(source);
  ASSERT_TRUE(drive(*source, m->bus(), [](const VerifyProgram& p) {
                return p.phase() == Phase::kRun;
              }).ok());
  auto bytes = save_state(*source);

  VerifyConfig other = c;
  other.block_size = 8192;
  other.dma_size = guest::verify_dma_bytes(other);
  auto destination = make_program(other);
  ASSERT_TRUE(destination);
  Status loaded = load_state(*destination, bytes);
  ASSERT_FALSE(loaded.ok());
  std::string error = loaded.to_string();
  EXPECT_NE(error.find("options differ from the source's"), std::string::npos) << error;
  EXPECT_NE(error.find("bs=4096 on the source but 8192 here"), std::string::npos) << error;

  VerifyConfig reseeded = c;
  reseeded.seed = 5;
  auto destination2 = make_program(reseeded);
  ASSERT_TRUE(destination2);
  loaded = load_state(*destination2, bytes);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.to_string().find("seed=1234 on the source but 5 here"), std::string::npos)
      << loaded.to_string();
}

TEST(VerifyMigration, DamagedStateIsRefusedNotTrusted) {
  auto m = TestMachine::create();
  ASSERT_TRUE(m);
  VerifyConfig c = small_config(Mode::kRandRw);
  auto source = make_program(c);
  ASSERT_TRUE(source);
  ASSERT_TRUE(drive(*source, m->bus(), [](const VerifyProgram& p) {
                return p.phase() == Phase::kRun && p.state().in_flight > 0;
              }).ok());
  auto bytes = save_state(*source);
  // Every truncation fails cleanly.
  for (size_t cut : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    auto destination = make_program(c);
    std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(cut));
    EXPECT_FALSE(load_state(*destination, truncated).ok()) << "cut at " << cut;
  }
  // Flipping any byte either loads a state that passes the consistency checks, or fails:
  // never a crash (ASan run) or an out-of-range index later.
  for (size_t i = 0; i < bytes.size(); i += 7) {
    auto destination = make_program(c);
    std::vector<uint8_t> damaged = bytes;
    damaged[i] ^= 0x5a;
    Status loaded = load_state(*destination, damaged);
    if (loaded.ok()) {
      EXPECT_TRUE(guest::verify::check_consistency(destination->state()).ok());
    }
  }
}

}  // namespace
}  // namespace ferry
