// Two writers on one disk (issue 22): ferry-vm takes QEMU's image lock, so a second process
// or a second -drive writing the same image is refused with QEMU's message, while a
// migration still hands the image over on shared storage (the source releases the lock at
// stop-and-copy, the destination takes it at switchover, a failed migration gives it back
// to the source). And `cont` on a destination awaiting its stream only sets autostart: the
// destination's guest never writes the disk before the switchover.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "support/ferry_vm.h"
#include "support/qemu_vm.h"
#include "support/temp_image.h"
#include "support/vm_waits.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;
constexpr const char* kGuest = "verify,device=n0,rw=randrw,bs=4k,iodepth=16,size=16M,loops=100000";

std::vector<std::string> drive_args(const TempImage& disk, const std::string& id,
                                    const std::string& extra = "") {
  return {"-drive", "if=none,id=" + id + ",file=" + disk.path() + ",format=raw" + extra};
}

std::vector<std::string> vm_args(const TempImage& disk, const std::string& guest,
                                 std::vector<std::string> extra = {}) {
  std::vector<std::string> args = drive_args(disk, "d0");
  args.insert(args.begin(), {"-m", "64M"});
  args.insert(args.end(), {"-device", "nvme,id=n0,serial=LOCK0,drive=d0"});
  if (!guest.empty()) args.insert(args.end(), {"-guest", guest});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// QEMU's message, hint line included.
std::string lock_error(const TempImage& disk, bool shared = false) {
  return std::string("Failed to get ") + (shared ? "shared " : "") +
         "\"write\" lock\nIs another process using the image [" + disk.path() + "]?";
}

// What a ferry-vm refused the image prints before it exits 1.
std::string refused_stderr(const TempImage& disk, bool shared = false) {
  return "ferry-vm: -device nvme: " + lock_error(disk, shared) + "\n";
}

// Runs a ferry-vm that must refuse to start: returns its exit status and stderr.
std::pair<std::optional<int>, std::string> run_refused(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kFerryVm};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::spawn(argv, unique_base("refused") + ".stderr");
  EXPECT_TRUE(child.ok()) << child.status().to_string();
  if (!child.ok()) return {std::nullopt, ""};
  std::optional<int> code = child->wait(Millis(20000));
  return {code, child->stderr_text()};
}

void expect_alive(FerryVm& vm, const std::string& status) {
  EXPECT_TRUE(vm.process().running());
  EXPECT_EQ(vm.ok("query-status")["status"], status);
}

std::string socket_uri() { return "unix:" + unique_base("shared-disk") + ".sock"; }

TEST(SharedDisk, ASecondWriterIsRefusedWithQemusMessage) {
  TempImage disk(16 << 20);
  auto first = FerryVm::start(kFerryVm, vm_args(disk, ""));
  ASSERT_TRUE(first);
  // Another process writing the image.
  auto [code, err] = run_refused(vm_args(disk, ""));
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, refused_stderr(disk));
  // A reader refuses to share write with the writer, as QEMU's devices do.
  std::vector<std::string> read_only = drive_args(disk, "d0", ",read-only=on");
  read_only.insert(read_only.end(), {"-device", "nvme,id=n0,serial=RO,drive=d0"});
  std::tie(code, err) = run_refused(read_only);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, refused_stderr(disk, /*shared=*/true));
  // The first VM never noticed.
  expect_alive(*first, "running");
  first->ok("quit");
  EXPECT_EQ(first->process().wait(Millis(10000)), 0);
  // Once it is gone the image is free.
  auto next = FerryVm::start(kFerryVm, vm_args(disk, ""));
  ASSERT_TRUE(next);
  expect_alive(*next, "running");
}

TEST(SharedDisk, TwoDrivesOfOneProcessOnOneImageAreRefused) {
  TempImage disk(16 << 20);
  std::vector<std::string> args = drive_args(disk, "d0");
  std::vector<std::string> second = drive_args(disk, "d1");
  args.insert(args.end(), second.begin(), second.end());
  args.insert(args.end(), {"-device", "nvme,id=n0,serial=A,drive=d0", "-device",
                           "nvme,id=n1,serial=B,drive=d1"});
  auto [code, err] = run_refused(args);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, refused_stderr(disk));
  // Two read-only drives of one image share it.
  std::vector<std::string> readers = drive_args(disk, "d0", ",read-only=on");
  second = drive_args(disk, "d1", ",read-only=on");
  readers.insert(readers.end(), second.begin(), second.end());
  readers.insert(readers.end(), {"-device", "nvme,id=n0,serial=A,drive=d0", "-device",
                                 "nvme,id=n1,serial=B,drive=d1"});
  auto vm = FerryVm::start(kFerryVm, readers);
  ASSERT_TRUE(vm);
  expect_alive(*vm, "running");
}

// Ferry's lock bytes are QEMU's: each refuses the other.
TEST(SharedDisk, FerryAndQemuRefuseEachOther) {
  const char* qemu = kQemuBinary;
  if (::access(qemu, X_OK) != 0) GTEST_SKIP() << qemu << " is not installed";
  TempImage disk(16 << 20);
  auto ferry = FerryVm::start(kFerryVm, vm_args(disk, ""));
  ASSERT_TRUE(ferry);
  auto refused = ChildProcess::spawn(
      {qemu, "-display", "none", "-S", "-nodefaults", "-drive",
       "if=none,id=d,file=" + disk.path() + ",format=raw", "-device", "virtio-blk-pci,drive=d"},
      unique_base("qemu") + ".stderr");
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->wait(Millis(20000)), 1);
  EXPECT_EQ(refused->stderr_text(), "qemu-system-x86_64: -device virtio-blk-pci,drive=d: " +
                                        lock_error(disk) + "\n");
  ferry->ok("quit");
  EXPECT_EQ(ferry->process().wait(Millis(10000)), 0);

  std::string qmp_path = unique_base("qemu") + ".qmp";
  auto running = ChildProcess::spawn(
      {qemu, "-display", "none", "-S", "-nodefaults", "-qmp",
       "unix:" + qmp_path + ",server=on,wait=off", "-drive", "if=none,id=d,file=" + disk.path() + ",format=raw", "-device",
       "virtio-blk-pci,drive=d"},
      unique_base("qemu") + ".stderr");
  ASSERT_TRUE(running.ok());
  // QEMU has taken its locks once it answers QMP.
  std::optional<QmpClient> qmp;
  for (int i = 0; i < 2000 && !qmp; ++i) {
    auto c = QmpClient::connect(qmp_path);
    if (c.ok()) qmp.emplace(std::move(c).value());
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(qmp) << running->stderr_text();
  auto [code, err] = run_refused(vm_args(disk, ""));
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, refused_stderr(disk));
  EXPECT_TRUE(running->running());
}

// `cont` on a destination awaiting its stream (started with -S, so only that `cont` can
// start it) sets autostart and nothing else: the destination stays in inmigrate, its guest
// program does not run and the disk is not written, while the source's workload goes on.
// The migration then completes into a destination that starts by itself, and the
// workload's final pass finds every block it wrote.
TEST(SharedDisk, ContOnAnIncomingDestinationOnlySetsAutostart) {
  TempImage disk(32 << 20);
  auto src = FerryVm::start(kFerryVm, vm_args(disk, kGuest));
  ASSERT_TRUE(src);
  wait_ops_beyond(*src, 500);
  std::string uri = socket_uri();
  auto dst = FerryVm::start(kFerryVm, vm_args(disk, kGuest, {"-S", "-incoming", uri}));
  ASSERT_TRUE(dst);
  Json reply = dst->ok("cont");
  EXPECT_EQ(reply, Json::object());
  Json status = dst->ok("query-status");
  EXPECT_EQ(status["status"], "inmigrate");
  EXPECT_EQ(status["running"], false);

  // The source stops writing; from here on the image changes only if the destination
  // writes.
  src->ok("stop");
  std::vector<uint8_t> before = disk.read(0, disk.bytes());
  struct stat st_before {};
  ASSERT_EQ(stat(disk.path().c_str(), &st_before), 0);
  // A running destination would be writing its prefill within milliseconds; give it far
  // longer, with the source's workload paused so nothing else touches the image.
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(dst->ok("query-status")["status"], "inmigrate");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Json g = dst->ok("query-guest");
  EXPECT_EQ(g["status"].value("ops", int64_t{-1}), 0) << g.dump();
  EXPECT_EQ(disk.read(0, disk.bytes()), before) << "the destination wrote the disk";
  struct stat st_after {};
  ASSERT_EQ(stat(disk.path().c_str(), &st_after), 0);
  EXPECT_EQ(st_after.st_mtim.tv_sec, st_before.st_mtim.tv_sec);
  EXPECT_EQ(st_after.st_mtim.tv_nsec, st_before.st_mtim.tv_nsec);
  // No RESUME reached the destination's QMP client.
  EXPECT_FALSE(dst->qmp().wait_event("RESUME", Millis(0)).ok());

  // The source runs again (a paused source would leave the destination paused).
  src->ok("cont");
  int64_t at_cont = guest_ops(*src);
  wait_ops_beyond(*src, at_cont + 200);
  src->ok("migrate", Json{{"uri", uri}});
  Json result = wait_migration_end(*src);
  ASSERT_EQ(result["status"], "completed") << result.dump();
  int64_t ops_at_stop = guest_ops(*src);
  // Started by the stream having loaded, though launched with -S: the early `cont`.
  ASSERT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
  expect_alive(*dst, "running");
  expect_alive(*src, "postmigrate");
  wait_ops_beyond(*dst, ops_at_stop + 200);
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  src->ok("quit");
  EXPECT_EQ(src->process().wait(Millis(10000)), 0);
}

// `stop` on an incoming destination clears autostart: it stays paused after the load.
TEST(SharedDisk, StopOnAnIncomingDestinationKeepsItPaused) {
  TempImage disk(32 << 20);
  auto src = FerryVm::start(kFerryVm, vm_args(disk, kGuest));
  ASSERT_TRUE(src);
  wait_ops_beyond(*src, 200);
  std::string uri = socket_uri();
  auto dst = FerryVm::start(kFerryVm, vm_args(disk, kGuest, {"-incoming", uri}));
  ASSERT_TRUE(dst);
  dst->ok("stop");
  EXPECT_EQ(dst->ok("query-status")["status"], "inmigrate");
  src->ok("migrate", Json{{"uri", uri}});
  ASSERT_EQ(wait_migration_end(*src)["status"], "completed");
  for (int i = 0; i < 2000 && dst->ok("query-status")["status"] == "inmigrate"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  expect_alive(*dst, "paused");
  dst->ok("cont");
  expect_alive(*dst, "running");
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
}

// The hand-over on shared storage: after the migration the destination owns the image —
// a new process is refused, and so is the old source's `cont` (it stays in postmigrate and
// alive) — and the workload it carried over goes on without an error.
TEST(SharedDisk, MigrationHandsTheImageOver) {
  TempImage disk(32 << 20);
  auto src = FerryVm::start(kFerryVm, vm_args(disk, kGuest));
  ASSERT_TRUE(src);
  wait_ops_beyond(*src, 500);
  // While the source runs, it owns the image (a destination waiting for it does not lock).
  std::string uri = socket_uri();
  auto dst = FerryVm::start(kFerryVm, vm_args(disk, kGuest, {"-incoming", uri}));
  ASSERT_TRUE(dst);
  auto [code, err] = run_refused(vm_args(disk, ""));
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, refused_stderr(disk));
  src->ok("migrate", Json{{"uri", uri}});
  ASSERT_EQ(wait_migration_end(*src)["status"], "completed");
  ASSERT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
  int64_t ops_at_stop = guest_ops(*src);

  std::tie(code, err) = run_refused(vm_args(disk, ""));
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, refused_stderr(disk));
  auto refused = src->qmp().execute("cont");
  ASSERT_TRUE(refused.ok());
  ASSERT_TRUE(refused->contains("error")) << refused->dump();
  EXPECT_EQ((*refused)["error"]["desc"], "drive d0: " + lock_error(disk));
  expect_alive(*src, "postmigrate");

  wait_ops_beyond(*dst, ops_at_stop + 500);
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
}

// A migration that fails after the source released the image (the destination cannot
// load the device state: it has no guest program for the "guest" section) gives the image
// back: the source runs and writes again, a new process is still refused, and the next
// migration succeeds with the workload intact.
TEST(SharedDisk, AFailedMigrationLetsTheSourceWriteAgain) {
  TempImage disk(32 << 20);
  auto src = FerryVm::start(kFerryVm, vm_args(disk, kGuest));
  ASSERT_TRUE(src);
  wait_ops_beyond(*src, 500);
  std::string uri = socket_uri();
  auto doomed = FerryVm::start(kFerryVm, vm_args(disk, "", {"-incoming", uri}));
  ASSERT_TRUE(doomed);
  src->ok("migrate", Json{{"uri", uri}});
  Json failed = wait_migration_end(*src);
  EXPECT_EQ(failed["status"], "failed") << failed.dump();
  // It got as far as the device state, which the source sends after releasing the image.
  EXPECT_NE(failed.value("error-desc", "").find("guest"), std::string::npos) << failed.dump();
  EXPECT_EQ(doomed->process().wait(Millis(10000)), 1);
  EXPECT_NE(doomed->process().stderr_text().find("incoming migration failed"), std::string::npos)
      << doomed->process().stderr_text();

  expect_alive(*src, "running");
  Json g = src->ok("query-guest");
  int64_t writes_before = g["status"]["phases"]["run"].value("writes", int64_t{0});
  wait_ops_beyond(*src, guest_ops(*src) + 500);
  g = src->ok("query-guest");
  EXPECT_GT(g["status"]["phases"]["run"].value("writes", int64_t{0}), writes_before) << g.dump();
  EXPECT_EQ(g["status"]["errors"], 0) << g.dump();
  auto [code, err] = run_refused(vm_args(disk, ""));
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, refused_stderr(disk));

  uri = socket_uri();
  auto dst = FerryVm::start(kFerryVm, vm_args(disk, kGuest, {"-incoming", uri}));
  ASSERT_TRUE(dst);
  src->ok("migrate", Json{{"uri", uri}});
  ASSERT_EQ(wait_migration_end(*src)["status"], "completed");
  ASSERT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
}

}  // namespace
}  // namespace ferry::testing
