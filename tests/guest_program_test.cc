// Black-box tests of guest programs on ferry-vm's vCPU thread: `-guest verify` drives the
// NVMe controller through the machine lock while the main loop serves QMP; `stop` parks it
// between steps, `cont` resumes it; a failure is an event and the process exit status.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "support/ferry_vm.h"
#include "support/temp_image.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;

std::vector<std::string> nvme_vm(const TempImage& image, const std::string& guest) {
  return {"-m", "128M", "-drive", "if=none,id=d0,file=" + image.path() + ",format=raw",
          "-device", "nvme,id=n0,serial=GUEST0,drive=d0", "-guest", guest};
}

Json wait_guest_end(FerryVm& vm) {
  for (int i = 0; i < 3000; ++i) {  // a minute and more: a busy machine is slow, not stuck
    Json g = vm.ok("query-guest");
    std::string state = g.value("state", "");
    if (state == "finished" || state == "failed") return g;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "the guest program did not end";
  return Json();
}

TEST(GuestProgram, VerifyRunsOnTheVcpuToTheEnd) {
  TempImage image(32 << 20);
  auto vm = FerryVm::start(kFerryVm, nvme_vm(image, "verify,device=n0,rw=randrw,size=4M,"
                                                    "loops=2,iodepth=8,seed=5"));
  ASSERT_TRUE(vm);
  Json end = wait_guest_end(*vm);
  EXPECT_EQ(end["program"], "verify");
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_GT(end["status"]["ops"].get<int64_t>(), 1000);
  auto event = vm->qmp().wait_event("GUEST_PROGRAM_END", Millis(30000));
  ASSERT_TRUE(event.ok());
  EXPECT_EQ((*event)["data"]["status"], "finished");
  vm->ok("quit");
  EXPECT_EQ(vm->process().wait(std::chrono::milliseconds(10000)), 0);
}

TEST(GuestProgram, StopParksTheProgramAndContResumesIt) {
  TempImage image(32 << 20);
  auto vm = FerryVm::start(kFerryVm, nvme_vm(image, "verify,device=n0,rw=randwrite,size=4M,"
                                                    "runtime=60000,iodepth=8"));
  ASSERT_TRUE(vm);
  // Wait until it does I/O.
  for (int i = 0; i < 6000 && vm->ok("query-guest")["status"].value("ops", 0) < 100; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  vm->ok("stop");
  Json parked = vm->ok("query-guest");
  EXPECT_EQ(parked["state"], "parked");
  int64_t ops = parked["status"]["ops"].get<int64_t>();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(vm->ok("query-guest")["status"]["ops"].get<int64_t>(), ops) << "parked, no progress";
  vm->ok("cont");
  // The vCPU publishes a fresh status as it resumes, before its first step: the copy that
  // follows RESUME is not the one taken at the stop.
  Json resumed;
  for (int i = 0; i < 30000; ++i) {
    resumed = vm->ok("query-guest");
    if (resumed["state"] != "parked") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(resumed["state"], "running") << resumed.dump();
  EXPECT_GT(resumed["published-ns"].get<int64_t>(), parked["published-ns"].get<int64_t>());
  EXPECT_GE(resumed["status"]["ops"].get<int64_t>(), ops);
  bool moved = false;
  for (int i = 0; i < 6000 && !moved; ++i) {
    moved = vm->ok("query-guest")["status"]["ops"].get<int64_t>() > ops;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(moved);
  Json now = vm->ok("query-guest");
  ASSERT_FALSE(now["status"]["stalls"].empty()) << now.dump();
  EXPECT_GE(now["status"]["stalls"][0]["pause_ns"].get<int64_t>(), 150'000'000);
  EXPECT_EQ(now["status"]["errors"], 0);
}

TEST(GuestProgram, AFailedProgramIsAnEventAndTheExitStatus) {
  TempImage image(32 << 20);
  auto vm = FerryVm::start(kFerryVm, nvme_vm(image, "verify,device=n0,rw=randwrite,size=4M,"
                                                    "loops=3,iodepth=4"));
  ASSERT_TRUE(vm);
  // Every write fails from now on: the program stops at its first error completion.
  vm->ok("x-blkdebug-inject", Json{{"drive", "d0"}, {"op", "write"}, {"errno", "EIO"}});
  Json end = wait_guest_end(*vm);
  EXPECT_EQ(end["state"], "failed") << end.dump();
  std::string error = end.value("error", "");
  EXPECT_NE(error.find("LBA"), std::string::npos) << error;
  auto event = vm->qmp().wait_event("GUEST_PROGRAM_END", Millis(30000));
  ASSERT_TRUE(event.ok());
  EXPECT_EQ((*event)["data"]["status"], "failed");
  vm->ok("quit");
  EXPECT_EQ(vm->process().wait(std::chrono::milliseconds(10000)), 3);
}

TEST(GuestProgram, BadGuestOptionsAreRefused) {
  TempImage image(32 << 20);
  for (const std::string& guest :
       {std::string("verify,device=nope"), std::string("verify,device=n0,bs=100"),
        std::string("fly,device=n0")}) {
    auto argv = nvme_vm(image, guest);
    argv.insert(argv.begin(), kFerryVm);
    std::string log = unique_base("guest-bad") + ".stderr";
    auto child = ChildProcess::spawn(argv, log);
    ASSERT_TRUE(child.ok());
    EXPECT_EQ(child->wait(std::chrono::milliseconds(10000)), 1) << guest;
    EXPECT_NE(child->stderr_text().find("-guest"), std::string::npos)
        << guest << ": " << child->stderr_text();
  }
}

}  // namespace
}  // namespace ferry::testing
