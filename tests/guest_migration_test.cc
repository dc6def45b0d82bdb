// The verify guest program migrating with its VM (issue: guest programs that migrate):
// ping-pong at varied moments of its I/O loop, a deep queue whose CQ is nearly always
// full, and a migration that dies half-way (destination killed) — after which the source
// workload goes on and the next migration succeeds. Every run ends with the program's own
// final pass re-reading and checking every block it wrote.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "support/ferry_vm.h"
#include "support/temp_image.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;

// The disk both ends of every migration share, as on shared storage.
using SharedDisk = TempImage;

std::vector<std::string> vm_args(const SharedDisk& disk, const std::string& guest,
                                 std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {
      "-m", "128M", "-drive", "if=none,id=d0,file=" + disk.path() + ",format=raw",
      "-device", "nvme,id=n0,serial=MIG0,drive=d0", "-guest", guest};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

Json wait_migration_end(FerryVm& vm) {
  for (int i = 0; i < 3000; ++i) {
    Json r = vm.ok("query-migrate");
    std::string status = r.value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "migration did not end";
  return Json();
}

int64_t ops(FerryVm& vm) { return vm.ok("query-guest")["status"].value("ops", int64_t{0}); }

void wait_ops_beyond(FerryVm& vm, int64_t n) {
  for (int i = 0; i < 1000 && ops(vm) <= n; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(ops(vm), n) << "the workload does not progress";
}

// Ends the run phase and waits for the final verification pass.
Json finish_and_verify(FerryVm& vm) {
  vm.ok("x-guest-finish");
  for (int i = 0; i < 3000; ++i) {
    Json g = vm.ok("query-guest");
    std::string state = g.value("state", "");
    if (state == "finished" || state == "failed") return g;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the final pass did not end";
  return Json();
}

// Migrates `src` into a fresh destination and returns it, checking the workload is intact.
std::unique_ptr<FerryVm> migrate(FerryVm& src, const SharedDisk& disk, const std::string& guest) {
  std::string uri = "unix:" + unique_base("guest-mig") + ".sock";
  auto dst = FerryVm::start(kFerryVm, vm_args(disk, guest, {"-incoming", uri}));
  if (!dst) return nullptr;
  src.ok("migrate", Json{{"uri", uri}});
  Json result = wait_migration_end(src);
  EXPECT_EQ(result["status"], "completed") << result.dump();
  if (result["status"] != "completed") return nullptr;
  EXPECT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
  Json g = dst->ok("query-guest");
  EXPECT_NE(g["state"], "failed") << g.dump();
  src.ok("quit");
  return dst;
}

TEST(GuestMigration, PingPongAtVariedMomentsOfTheIoLoop) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randrw,bs=4k,iodepth=16,size=16M,loops=100000";
  auto vm = FerryVm::start(kFerryVm, vm_args(disk, guest));
  ASSERT_TRUE(vm);
  std::mt19937 rng(11);
  for (int hop = 0; hop < 8; ++hop) {
    wait_ops_beyond(*vm, ops(*vm));
    // Between 0 and 40 ms into a stretch of I/O: submissions, completions and reaping
    // are caught at different points each time.
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
    auto next = migrate(*vm, disk, guest);
    ASSERT_TRUE(next) << "hop " << hop;
    vm = std::move(next);
  }
  wait_ops_beyond(*vm, ops(*vm));
  Json end = finish_and_verify(*vm);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_GT(end["status"]["phases"]["final"]["ops"].get<int64_t>(), 0);
  // Every migration shows as a stall the guest measured itself.
  EXPECT_EQ(end["status"]["stalls"].size(), 8u) << end.dump();
}

TEST(GuestMigration, DeepQueueWithTheCompletionQueueNearlyFull) {
  SharedDisk disk(64 << 20);
  // The program's I/O queues have iodepth + 1 entries: the CQ is one entry from full.
  const std::string guest = "verify,device=n0,rw=randwrite,bs=4k,iodepth=255,size=32M,loops=100000";
  auto vm = FerryVm::start(kFerryVm, vm_args(disk, guest));
  ASSERT_TRUE(vm);
  for (int hop = 0; hop < 4; ++hop) {
    wait_ops_beyond(*vm, ops(*vm) + 500);
    auto next = migrate(*vm, disk, guest);
    ASSERT_TRUE(next) << "hop " << hop;
    vm = std::move(next);
  }
  Json end = finish_and_verify(*vm);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
}

TEST(GuestMigration, ADestinationKilledHalfWayLeavesTheSourceWorkloadIntact) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randrw,bs=4k,iodepth=16,size=16M,loops=100000";
  auto src = FerryVm::start(kFerryVm, vm_args(disk, guest));
  ASSERT_TRUE(src);
  wait_ops_beyond(*src, 1000);
  // Slow enough to be caught half-way.
  src->ok("migrate-set-parameters", Json{{"max-bandwidth", 64 * 1024}});
  std::string uri = "unix:" + unique_base("guest-mig") + ".sock";
  {
    auto doomed = FerryVm::start(kFerryVm, vm_args(disk, guest, {"-incoming", uri}));
    ASSERT_TRUE(doomed);
    src->ok("migrate", Json{{"uri", uri}});
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(src->ok("query-migrate")["status"], "active");
    ::kill(doomed->process().pid(), SIGKILL);
    Json failed = wait_migration_end(*src);
    EXPECT_EQ(failed["status"], "failed") << failed.dump();
  }
  EXPECT_EQ(src->ok("query-status")["status"], "running");
  int64_t before = ops(*src);
  wait_ops_beyond(*src, before + 500);  // the source workload goes on
  EXPECT_NE(src->ok("query-guest")["state"], "failed");
  src->ok("migrate-set-parameters", Json{{"max-bandwidth", 0}});
  auto dst = migrate(*src, disk, guest);
  ASSERT_TRUE(dst);
  wait_ops_beyond(*dst, ops(*dst));
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_GT(end["status"]["phases"]["final"]["ops"].get<int64_t>(), 0) << end.dump();
}

}  // namespace
}  // namespace ferry::testing

namespace ferry::testing {
namespace {

// A write error under werror=stop pauses the source in io-error with the failed writes
// held; the paused VM migrates; the destination (whose storage works) stays in io-error
// until `cont`, then retries the held writes: the workload never sees an error and its
// final pass re-reads every block it wrote.
TEST(GuestMigration, AVmPausedOnAWriteErrorMigratesAndContinuesWithoutAnError) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randwrite,bs=4k,iodepth=16,size=16M,loops=100000";
  auto with_stop = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = vm_args(disk, guest, std::move(extra));
    for (std::string& a : args)
      if (a.starts_with("if=none,id=d0")) a += ",werror=stop";
    return args;
  };
  auto src = FerryVm::start(kFerryVm, with_stop({"-blkdebug", "drive=d0,op=write,errno=EIO,after=1500"}));
  ASSERT_TRUE(src);
  auto stopped = src->qmp().wait_event("STOP", Millis(20000));
  ASSERT_TRUE(stopped.ok()) << stopped.status().to_string();
  EXPECT_EQ(src->ok("query-status")["status"], "io-error");
  Json paused = src->ok("query-guest");
  EXPECT_NE(paused["state"], "failed") << paused.dump();
  EXPECT_EQ(paused["status"]["errors"], 0) << paused.dump();

  std::string uri = "unix:" + unique_base("guest-mig") + ".sock";
  auto dst = FerryVm::start(kFerryVm, with_stop({"-incoming", uri}));
  ASSERT_TRUE(dst);
  src->ok("migrate", Json{{"uri", uri}});
  Json result = wait_migration_end(*src);
  ASSERT_EQ(result["status"], "completed") << result.dump();
  for (int i = 0; i < 500 && dst->ok("query-status")["status"] == "inmigrate"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(dst->ok("query-status")["status"], "io-error") << "the destination must not run";
  src->ok("quit");
  int64_t before = ops(*dst);
  dst->ok("cont");
  wait_ops_beyond(*dst, before + 500);
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_GT(end["status"]["phases"]["final"]["ops"].get<int64_t>(), 0) << end.dump();
}

}  // namespace
}  // namespace ferry::testing
