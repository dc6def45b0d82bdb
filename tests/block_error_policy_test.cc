// Block error policies (-drive werror=/rerror=) on the emulated NVMe controller, black box:
// a ferry-vm with fault injection (-blkdebug / x-blkdebug-inject) or a really full tmpfs,
// the guest NVMe driver over qtest, and what the guest and the operator see — completion
// statuses, data in the image, run states, BLOCK_IO_ERROR/STOP/RESUME events and
// query-block's io-status.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "support/nvme_rig.h"

namespace ferry::testing {
namespace {

namespace sn = spec::nvme;
namespace commands = guest::nvme::commands;
using guest::nvme::Completion;
using guest::nvme::Transfer;
using Millis = std::chrono::milliseconds;

constexpr const char* kFerryVm = FERRY_VM_PATH;
constexpr uint64_t kPage = 4096;
constexpr uint16_t kQ = 1;

std::vector<uint8_t> pattern(uint32_t seed, size_t n) {
  std::vector<uint8_t> out(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;
  for (size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out[i] = static_cast<uint8_t>(x >> 33);
  }
  return out;
}

// A VM whose drive d0 on `file` has `policy` appended to its -drive options.
std::unique_ptr<NvmeRig> start_with(const std::string& file, const std::string& policy,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"-drive",
                                   "if=none,id=d0,file=" + file + ",format=raw" + policy,
                                   "-device", "nvme,serial=POLICY,drive=d0"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto rig = start_rig(kFerryVm, args);
  if (rig) {
    EXPECT_TRUE(rig->c().create_io_queue_pair(kQ, 32).ok());
  }
  return rig;
}

void inject(NvmeRig& rig, Json rule) {
  rule["drive"] = "d0";
  rig.vm->ok("x-blkdebug-inject", rule);
}
void clear(NvmeRig& rig) { rig.vm->ok("x-blkdebug-clear", {{"drive", "d0"}}); }

std::string run_state(NvmeRig& rig) { return rig.vm->ok("query-status")["status"]; }
std::string io_status(NvmeRig& rig) {
  Json drives = rig.vm->ok("query-block");
  return drives.empty() ? "" : drives[0].value("io-status", "");
}

// Waits for BLOCK_IO_ERROR and checks its data.
void expect_io_error_event(NvmeRig& rig, const std::string& operation, const std::string& action,
                           bool nospace) {
  auto event = rig.vm->qmp().wait_event("BLOCK_IO_ERROR", Millis(30000));
  ASSERT_TRUE(event.ok()) << event.status().to_string();
  const Json& data = (*event)["data"];
  EXPECT_EQ(data["device"], "d0") << data.dump();
  EXPECT_EQ(data["operation"], operation) << data.dump();
  EXPECT_EQ(data["action"], action) << data.dump();
  EXPECT_EQ(data["nospace"], nospace) << data.dump();
  EXPECT_EQ(data["reason"], std::strerror(nospace ? ENOSPC : EIO)) << data.dump();
}

uint64_t le(const std::vector<uint8_t>& d, size_t at, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes; ++i) v |= uint64_t{d[at + i]} << (8 * i);
  return v;
}

// Dataset Management, deallocate one range of `blocks` at `slba`; the range list goes in
// `list` (guest memory).
Result<uint16_t> deallocate(NvmeRig& rig, uint64_t list, uint64_t slba, uint32_t blocks) {
  std::vector<uint8_t> range(16, 0);
  for (int i = 0; i < 4; ++i) range[4 + i] = static_cast<uint8_t>(blocks >> (8 * i));
  for (int i = 0; i < 8; ++i) range[8 + i] = static_cast<uint8_t>(slba >> (8 * i));
  rig.put(list, range);
  guest::nvme::Sqe dsm;
  dsm.set_opcode(sn::kNvmDatasetManagement).set_nsid(1).set_cdw(10, 0).set_cdw(11, 1u << 2);
  return rig.c().submit(kQ, dsm, Transfer::prp(list, 16));
}

struct Io {
  NvmeRig& rig;
  uint64_t buf;
  explicit Io(NvmeRig& r) : rig(r), buf(r.alloc(16 * kPage)) {}
  uint64_t slot(unsigned i) const { return buf + i * kPage; }
  Result<uint16_t> write(uint64_t slba, uint32_t seed, unsigned slot_index = 0) {
    rig.put(slot(slot_index), pattern(seed, 512));
    return rig.c().submit(kQ, commands::write(1, slba, 1), Transfer::prp(slot(slot_index), 512));
  }
  Result<uint16_t> read(uint64_t slba, unsigned slot_index = 0) {
    return rig.c().submit(kQ, commands::read(1, slba, 1), Transfer::prp(slot(slot_index), 512));
  }
  Completion done(Result<uint16_t> cid) {
    EXPECT_TRUE(cid.ok()) << cid.status().to_string();
    auto c = rig.c().wait(kQ, cid.ok() ? *cid : 0, Millis(30000));
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    if (!c.ok()) {
      Completion failed;
      failed.status = 0xffff;
      return failed;
    }
    return *c;
  }
  // No completion at all on the queue for `wait`.
  bool quiet(Millis wait = Millis(200)) {
    std::this_thread::sleep_for(wait);
    auto c = rig.c().poll(kQ);
    return c.ok() && !c->has_value();
  }
};

// ---- report and ignore ----------------------------------------------------------------------

TEST(BlockErrorPolicy, ReportCompletesWithTheMatchingNvmeStatus) {
  TempImage image(4 << 20);
  auto rig = start_with(image.path(), ",werror=report,rerror=report");
  ASSERT_NE(rig, nullptr);
  Io io(*rig);

  inject(*rig, {{"op", "write"}, {"errno", "EIO"}});
  EXPECT_EQ(io.done(io.write(4, 1)).code(), sn::kWriteFault);
  expect_io_error_event(*rig, "write", "report", false);
  clear(*rig);

  inject(*rig, {{"op", "write"}, {"errno", "ENOSPC"}});
  EXPECT_EQ(io.done(io.write(5, 2)).code(), sn::kCapacityExceeded);
  expect_io_error_event(*rig, "write", "report", true);
  clear(*rig);

  inject(*rig, {{"op", "read"}, {"errno", "EIO"}});
  EXPECT_EQ(io.done(io.read(6)).code(), sn::kUnrecoveredReadError);
  expect_io_error_event(*rig, "read", "report", false);
  clear(*rig);

  inject(*rig, {{"op", "flush"}, {"errno", "EIO"}});
  auto flush = rig->c().submit(kQ, commands::flush(1));
  EXPECT_EQ(io.done(flush).code(), sn::kWriteFault);
  expect_io_error_event(*rig, "write", "report", false);
  clear(*rig);

  EXPECT_EQ(run_state(*rig), "running");
  EXPECT_EQ(io_status(*rig), "ok");
  EXPECT_EQ(image.read(4 * 512, 512), std::vector<uint8_t>(512, 0)) << "failed write reached disk";

  // Each reported failure is in the Error Information log, newest first, and its
  // completion said so (More). SMART counts the media errors among them (not ENOSPC).
  auto log = rig->c().get_log_page(sn::kLogErrorInformation, 4 * 64);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  struct Expected {
    uint16_t status;
    uint64_t lba;
  };
  const Expected expected[] = {{sn::kWriteFault, 0},  // the flush
                               {sn::kUnrecoveredReadError, 6},
                               {sn::kCapacityExceeded, 5},
                               {sn::kWriteFault, 4}};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    size_t at = 64 * i;
    EXPECT_EQ(le(*log, at, 8), 4 - i) << "error count";
    EXPECT_EQ(le(*log, at + 8, 2), kQ) << "SQ id";
    uint16_t status = static_cast<uint16_t>(le(*log, at + 12, 2) >> 1);
    EXPECT_EQ(status & 0x7ff, expected[i].status);
    EXPECT_TRUE(status & sn::kStatusMore);
    EXPECT_EQ(le(*log, at + 16, 8), expected[i].lba);
    EXPECT_EQ(le(*log, at + 24, 4), 1u) << "namespace";
  }
  auto smart = rig->c().get_log_page(sn::kLogSmartHealth, 512);
  ASSERT_TRUE(smart.ok());
  EXPECT_EQ(le(*smart, sn::kSmartMediaErrors, 8), 3u);
  EXPECT_EQ(le(*smart, sn::kSmartErrorLogEntries, 8), 4u);
}

// Deallocation (Dataset Management) and Write Zeroes are writes for the error policy, as
// discards and write-zeroes are in QEMU's virtio-blk: werror=report completes them with
// QEMU's NVMe statuses (Internal Error for a failed deallocation, Write Fault for write
// zeroes) and BLOCK_IO_ERROR says "write".
TEST(BlockErrorPolicy, ReportAppliesToDeallocateAndWriteZeroes) {
  TempImage image(4 << 20);
  auto rig = start_with(image.path(), ",werror=report,rerror=report");
  ASSERT_NE(rig, nullptr);
  Io io(*rig);
  uint64_t list = rig->alloc(kPage);

  inject(*rig, {{"op", "discard"}, {"errno", "EIO"}});
  Completion d = io.done(deallocate(*rig, list, 8, 8));
  EXPECT_EQ(d.code(), sn::kInternalError) << guest::nvme::describe_status(d.status);
  EXPECT_TRUE(d.status & sn::kStatusMore) << "the error log has an entry for it";
  expect_io_error_event(*rig, "write", "report", false);
  clear(*rig);
  EXPECT_EQ(io.done(deallocate(*rig, list, 8, 8)).code(), 0) << "cleared";

  image.write(16 * 512, pattern(7, 4 * 512));
  inject(*rig, {{"op", "write-zeroes"}, {"errno", "EIO"}});
  Completion z = io.done(rig->c().submit(kQ, commands::write_zeroes(1, 16, 4)));
  EXPECT_EQ(z.code(), sn::kWriteFault) << guest::nvme::describe_status(z.status);
  expect_io_error_event(*rig, "write", "report", false);
  EXPECT_EQ(image.read(16 * 512, 4 * 512), pattern(7, 4 * 512)) << "failed write zeroes wrote";
  clear(*rig);
  EXPECT_EQ(run_state(*rig), "running");
  auto log = rig->c().get_log_page(sn::kLogErrorInformation, 128);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((le(*log, 12, 2) >> 1) & 0x7ff, sn::kWriteFault);
  EXPECT_EQ(le(*log, 16, 8), 16u) << "the write zeroes' first LBA";
  EXPECT_EQ((le(*log, 64 + 12, 2) >> 1) & 0x7ff, sn::kInternalError);
}

TEST(BlockErrorPolicy, IgnoreCompletesAsSuccessAndTheVmRuns) {
  TempImage image(4 << 20);
  auto rig = start_with(image.path(), ",werror=ignore,rerror=ignore");
  ASSERT_NE(rig, nullptr);
  Io io(*rig);
  inject(*rig, {{"op", "write"}, {"errno", "ENOSPC"}});
  EXPECT_EQ(io.done(io.write(4, 1)).code(), 0);
  expect_io_error_event(*rig, "write", "ignore", true);
  clear(*rig);
  inject(*rig, {{"op", "read"}, {"errno", "EIO"}});
  EXPECT_EQ(io.done(io.read(4)).code(), 0);
  expect_io_error_event(*rig, "read", "ignore", false);
  clear(*rig);
  EXPECT_EQ(run_state(*rig), "running");
  EXPECT_EQ(io_status(*rig), "ok");
  EXPECT_EQ(image.read(4 * 512, 512), std::vector<uint8_t>(512, 0)) << "ignored, not performed";
}

// ---- stop (and enospc): pause, hold, retry on cont ---------------------------------------

// The failed command pauses the VM in io-error and gets no completion; `cont` with the
// fault gone retries it and the guest sees a success.
void expect_stop_then_retry(NvmeRig& rig, Io& io, Result<uint16_t> cid,
                            const std::string& operation, bool nospace) {
  ASSERT_TRUE(cid.ok());
  expect_io_error_event(rig, operation, "stop", nospace);
  ASSERT_TRUE(rig.vm->qmp().wait_event("STOP", Millis(30000)).ok());
  EXPECT_EQ(run_state(rig), "io-error");
  EXPECT_EQ(io_status(rig), nospace ? "nospace" : "failed");
  EXPECT_TRUE(io.quiet()) << "the guest saw a completion for a held command";
  clear(rig);
  rig.vm->ok("cont");
  ASSERT_TRUE(rig.vm->qmp().wait_event("RESUME", Millis(30000)).ok());
  EXPECT_EQ(io.done(cid).code(), 0) << "the retried command failed";
  EXPECT_EQ(run_state(rig), "running");
  EXPECT_EQ(io_status(rig), "ok") << "cont resets the I/O status";
  EXPECT_TRUE(io.quiet()) << "a held command completed twice";
}

TEST(BlockErrorPolicy, StopHoldsAFailedWriteReadAndFlushAndContRetriesThem) {
  TempImage image(4 << 20);
  auto rig = start_with(image.path(), ",werror=stop,rerror=stop");
  ASSERT_NE(rig, nullptr);
  Io io(*rig);

  inject(*rig, {{"op", "write"}, {"errno", "EIO"}});
  expect_stop_then_retry(*rig, io, io.write(8, 31), "write", false);
  EXPECT_EQ(image.read(8 * 512, 512), pattern(31, 512));

  image.write(9 * 512, pattern(32, 512));
  inject(*rig, {{"op", "read"}, {"errno", "EIO"}});
  rig->fill(io.slot(1), 512, 0);
  expect_stop_then_retry(*rig, io, io.read(9, 1), "read", false);
  EXPECT_EQ(rig->get(io.slot(1), 512), pattern(32, 512)) << "the retried read's data";

  inject(*rig, {{"op", "flush"}, {"errno", "ENOSPC"}});
  expect_stop_then_retry(*rig, io, rig->c().submit(kQ, commands::flush(1)), "write", true);
}

TEST(BlockErrorPolicy, StopHoldsDeallocateAndWriteZeroesAndContRetriesThem) {
  TempImage image(4 << 20);
  image.write(0, pattern(60, 64 * 512));
  auto rig = start_with(image.path(), ",werror=stop");
  ASSERT_NE(rig, nullptr);
  Io io(*rig);
  uint64_t list = rig->alloc(kPage);

  inject(*rig, {{"op", "write-zeroes"}, {"errno", "EIO"}});
  expect_stop_then_retry(*rig, io, rig->c().submit(kQ, commands::write_zeroes(1, 8, 8)),
                         "write", false);
  EXPECT_EQ(image.read(8 * 512, 8 * 512), std::vector<uint8_t>(8 * 512, 0))
      << "the retried write zeroes did not zero the blocks";

  inject(*rig, {{"op", "discard"}, {"errno", "EIO"}});
  expect_stop_then_retry(*rig, io, deallocate(*rig, list, 32, 16), "write", false);
  // Deallocated blocks read as zeroes (DLFEAT 001b): the retried deallocation happened.
  uint64_t buf = rig->alloc(16 * 512);
  rig->fill(buf, 16 * 512, 0xa5);
  Completion r = io.done(rig->c().submit(kQ, commands::read(1, 32, 16), Transfer::prp(buf, 16 * 512)));
  ASSERT_EQ(r.code(), 0);
  EXPECT_EQ(rig->get(buf, 16 * 512), std::vector<uint8_t>(16 * 512, 0));
  std::vector<uint8_t> all = pattern(60, 64 * 512);
  EXPECT_EQ(image.read(48 * 512, 16 * 512),
            std::vector<uint8_t>(all.begin() + 48 * 512, all.end()))
      << "blocks outside the ranges changed";
}

// rerror=enospc (and werror=enospc, the default): stop only when the host storage is full,
// report anything else — for reads and for deallocations alike.
TEST(BlockErrorPolicy, EnospcPolicyStopsOnlyOnEnospcForReadsAndDeallocations) {
  TempImage image(4 << 20);
  image.write(3 * 512, pattern(70, 512));
  auto rig = start_with(image.path(), ",rerror=enospc");
  ASSERT_NE(rig, nullptr);
  Io io(*rig);
  uint64_t list = rig->alloc(kPage);

  inject(*rig, {{"op", "read"}, {"errno", "EIO"}});
  EXPECT_EQ(io.done(io.read(3)).code(), sn::kUnrecoveredReadError);
  expect_io_error_event(*rig, "read", "report", false);
  clear(*rig);
  inject(*rig, {{"op", "read"}, {"errno", "ENOSPC"}});
  rig->fill(io.slot(0), 512, 0);
  expect_stop_then_retry(*rig, io, io.read(3), "read", true);
  EXPECT_EQ(rig->get(io.slot(0), 512), pattern(70, 512)) << "the retried read's data";

  inject(*rig, {{"op", "discard"}, {"errno", "EIO"}});
  EXPECT_EQ(io.done(deallocate(*rig, list, 8, 8)).code(), sn::kInternalError);
  expect_io_error_event(*rig, "write", "report", false);
  clear(*rig);
  inject(*rig, {{"op", "discard"}, {"errno", "ENOSPC"}});
  expect_stop_then_retry(*rig, io, deallocate(*rig, list, 8, 8), "write", true);
}

TEST(BlockErrorPolicy, EnospcStopsOnlyForAFullDiskAndIsTheWriteDefault) {
  TempImage image(4 << 20);
  auto rig = start_with(image.path(), "");  // werror=enospc, rerror=report
  ASSERT_NE(rig, nullptr);
  Io io(*rig);
  inject(*rig, {{"op", "write"}, {"errno", "EIO"}});
  EXPECT_EQ(io.done(io.write(3, 1)).code(), sn::kWriteFault);
  expect_io_error_event(*rig, "write", "report", false);
  clear(*rig);
  inject(*rig, {{"op", "read"}, {"errno", "ENOSPC"}});
  EXPECT_EQ(io.done(io.read(3)).code(), sn::kUnrecoveredReadError) << "rerror=report";
  expect_io_error_event(*rig, "read", "report", true);
  clear(*rig);
  inject(*rig, {{"op", "write"}, {"errno", "ENOSPC"}});
  expect_stop_then_retry(*rig, io, io.write(4, 41), "write", true);
  EXPECT_EQ(image.read(4 * 512, 512), pattern(41, 512));
}

TEST(BlockErrorPolicy, EveryCommandFailingAfterTheFirstIsHeldAndAllAreRetried) {
  TempImage image(4 << 20);
  auto rig = start_with(image.path(), ",werror=stop");
  ASSERT_NE(rig, nullptr);
  Io io(*rig);
  inject(*rig, {{"op", "write"}, {"errno", "EIO"}});
  std::vector<uint16_t> cids;
  for (unsigned i = 0; i < 8; ++i) {
    auto cid = io.write(16 + i, 50 + i, i);
    ASSERT_TRUE(cid.ok());
    cids.push_back(*cid);
  }
  ASSERT_TRUE(rig->vm->qmp().wait_event("STOP", Millis(30000)).ok());
  EXPECT_EQ(run_state(*rig), "io-error");
  EXPECT_TRUE(io.quiet());
  // While paused: the host may queue more; nothing runs before `cont`.
  auto later = io.write(40, 90, 9);
  ASSERT_TRUE(later.ok());
  EXPECT_TRUE(io.quiet());
  EXPECT_EQ(image.read(40 * 512, 512), std::vector<uint8_t>(512, 0));
  // `cont` with the fault still there: the retries fail again, the VM stops again, and
  // still the guest sees nothing.
  rig->vm->ok("cont");
  ASSERT_TRUE(rig->vm->qmp().wait_event("STOP", Millis(30000)).ok());
  EXPECT_EQ(run_state(*rig), "io-error");
  EXPECT_TRUE(io.quiet());
  clear(*rig);
  rig->vm->ok("cont");
  for (uint16_t cid : cids) EXPECT_EQ(io.done(cid).code(), 0);
  EXPECT_EQ(io.done(later).code(), 0);
  EXPECT_TRUE(io.quiet());
  for (unsigned i = 0; i < 8; ++i) EXPECT_EQ(image.read((16 + i) * 512, 512), pattern(50 + i, 512));
  EXPECT_EQ(image.read(40 * 512, 512), pattern(90, 512));
}

// ---- a real full disk ------------------------------------------------------------------

// A tmpfs of its own, unmounted on destruction; `ok` false (with the reason) where
// mounting is not permitted.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(uint64_t bytes) : dir_(unique_base("tmpfs")) {
    if (::mkdir(dir_.c_str(), 0700) != 0) {
      reason_ = fmt::format("mkdir {}: {}", dir_, std::strerror(errno));
      return;
    }
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, fmt::format("size={}", bytes).c_str()) != 0) {
      reason_ = fmt::format("mount -t tmpfs on {}: {}", dir_, std::strerror(errno));
      ::rmdir(dir_.c_str());
      return;
    }
    mounted_ = true;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  bool ok() const { return mounted_; }
  const std::string& reason() const { return reason_; }
  const std::string& dir() const { return dir_; }
  bool grow(uint64_t bytes) {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT,
                   fmt::format("size={}", bytes).c_str()) == 0;
  }

 private:
  std::string dir_;
  std::string reason_;
  bool mounted_ = false;
};

TEST(BlockErrorPolicy, AFullHostDiskPausesTheVmAndGrowingItLetsContFinishTheWrites) {
  SmallTmpfs fs(256 << 10);  // 256 KiB of space under a 4 MiB sparse image
  if (!fs.ok()) GTEST_SKIP() << "cannot mount a tmpfs here: " << fs.reason();
  std::string file = fs.dir() + "/disk.img";
  {
    FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
    ASSERT_EQ(::truncate(file.c_str(), 4 << 20), 0);
  }
  auto rig = start_with(file, "");  // default werror=enospc
  ASSERT_NE(rig, nullptr);
  Io io(*rig);
  // 4 KiB writes to distinct pages until the tmpfs is full: 64 pages fit at most.
  uint64_t data = rig->alloc(kPage);
  std::vector<uint16_t> cids;
  for (uint32_t i = 0; i < 96; ++i) {
    rig->put(data, pattern(100 + i, kPage));
    auto cid = rig->c().submit(kQ, commands::write(1, i * 8, 8), Transfer::prp(data, kPage));
    ASSERT_TRUE(cid.ok());
    // It completes, or the VM pauses on it (the disk is full): both observed, neither guessed
    // from a timeout (a slow write on a busy machine is not a held one).
    std::optional<Completion> done;
    bool paused = false;
    for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
         !done && !paused && std::chrono::steady_clock::now() < end;) {
      auto c = rig->c().poll(kQ);
      ASSERT_TRUE(c.ok()) << c.status().to_string();
      if (c->has_value()) {
        done = **c;
      } else if (run_state(*rig) == "io-error") {
        paused = true;
      } else {
        std::this_thread::sleep_for(Millis(2));
      }
    }
    if (paused) {  // held: the disk is full
      auto late = rig->c().poll(kQ);
      ASSERT_TRUE(late.ok());
      ASSERT_FALSE(late->has_value()) << "write " << i << " completed although the VM paused";
      cids.push_back(*cid);
      break;
    }
    ASSERT_TRUE(done) << "write " << i << " neither completed nor paused the VM";
    EXPECT_EQ(done->cid, *cid);
    ASSERT_EQ(done->code(), 0) << "write " << i << " failed instead of pausing the VM";
  }
  ASSERT_EQ(cids.size(), 1u) << "the tmpfs never filled up";
  EXPECT_EQ(run_state(*rig), "io-error");
  EXPECT_EQ(io_status(*rig), "nospace");
  ASSERT_TRUE(fs.grow(8 << 20));
  rig->vm->ok("cont");
  EXPECT_EQ(io.done(cids[0]).code(), 0);
  EXPECT_EQ(run_state(*rig), "running");
  // And the disk keeps taking writes; then every page reads back.
  std::vector<uint8_t> all;
  for (uint32_t i = 0; i < 96; ++i) {
    rig->put(data, pattern(100 + i, kPage));
    auto c = rig->c().execute(kQ, commands::write(1, i * 8, 8), Transfer::prp(data, kPage));
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->code(), 0);
  }
  std::ifstream in(file, std::ios::binary);
  std::vector<uint8_t> bytes(std::istreambuf_iterator<char>(in), {});
  ASSERT_GE(bytes.size(), 96 * kPage);
  for (uint32_t i = 0; i < 96; ++i)
    ASSERT_TRUE(std::equal(bytes.begin() + i * kPage, bytes.begin() + (i + 1) * kPage,
                           pattern(100 + i, kPage).begin()))
        << "page " << i;
}

}  // namespace
}  // namespace ferry::testing
