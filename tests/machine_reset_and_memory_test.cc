// Black-box tests of two machine behaviours a careless operator meets (issue 22):
//   - system_reset while `-guest verify` runs: the program notices the reset (its controller
//     is back at its plug-in state), restarts its bring-up, resumes its work and finishes
//     its verification with no error; the VM keeps answering QMP.
//   - RAM of 4 GiB and more: as on q35, one block "pc.ram" (or the memory backend) of the
//     full size, its first 2 GiB at guest 0 and the rest at 4 GiB; the 64-bit PCI window
//     above the end of RAM; devices DMA above 4 GiB; live migration carries that RAM.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "client/qtest_bus.h"
#include "guest/dma_memory.h"
#include "guest/nvme/command.h"
#include "guest/nvme/controller.h"
#include "guest/pci.h"
#include "spec/nvme.h"
#include "support/ferry_vm.h"
#include "support/temp_image.h"
#include "support/vm_waits.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t k4GiB = 4 * kGiB;

std::vector<std::string> verify_vm(const TempImage& image, const std::string& ram,
                                   const std::string& guest) {
  return {"-m", ram, "-drive", "if=none,id=d0,file=" + image.path() + ",format=raw",
          "-device", "nvme,id=n0,serial=RESET0,drive=d0", "-guest", guest};
}

// query-guest until `done` says so; generous, for a busy machine.
template <typename Done>
Json wait_guest(FerryVm& vm, Done&& done, std::chrono::seconds limit = std::chrono::seconds(60)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  Json g;
  while (std::chrono::steady_clock::now() < deadline) {
    g = vm.ok("query-guest");
    if (done(g)) return g;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "query-guest never showed what the test waits for; last: " << g.dump();
  return g;
}

int64_t ops_of(const Json& g) { return g["status"].value("ops", int64_t{0}); }

// ---- system_reset ----------------------------------------------------------------------------

TEST(MachineReset, SystemResetDuringVerifyRestartsTheProgramWhichFinishesClean) {
  TempImage image(32 << 20);
  auto vm = FerryVm::start(kFerryVm, verify_vm(image, "128M", "verify,device=n0,rw=randrw,"
                                                              "size=4M,runtime=600000,iodepth=16"));
  ASSERT_TRUE(vm);
  // Several resets, each while commands are in flight in the run phase.
  int64_t ops = 0;
  for (int reset = 1; reset <= 3; ++reset) {
    Json before = wait_guest(*vm, [&](const Json& g) { return ops_of(g) > ops + 300; });
    ASSERT_EQ(before["status"]["phase"], "run") << before.dump();
    vm->ok("system_reset");
    auto event = vm->qmp().wait_event("RESET", Millis(10000));
    ASSERT_TRUE(event.ok()) << event.status().to_string();
    EXPECT_EQ((*event)["data"]["reason"], "host-qmp-system-reset");
    // The program saw the reset and, after a new bring-up, does I/O again.
    Json after = wait_guest(*vm, [&](const Json& g) {
      return g["status"].value("resets", 0) == reset && g["status"]["phase"] == "run" &&
             ops_of(g) > ops_of(before) + 100;
    });
    EXPECT_EQ(after["state"], "running") << after.dump();
    EXPECT_EQ(after["status"]["errors"], 0) << after.dump();
    ops = ops_of(after);
  }
  EXPECT_EQ(vm->ok("query-status")["status"], "running");
  // The final pass re-reads every block written, across the resets, and finds each one.
  vm->ok("x-guest-finish");
  Json end = wait_guest(*vm, [](const Json& g) {
    return g["state"] == "finished" || g["state"] == "failed";
  });
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_EQ(end["status"]["resets"], 3);
  EXPECT_EQ(end["status"]["uncertain_blocks"], 0) << "the final pass settles every one";
  EXPECT_GT(end["status"]["phases"]["final"]["reads"].get<int64_t>(), 500) << end.dump();
  auto event = vm->qmp().wait_event("GUEST_PROGRAM_END", Millis(10000));
  ASSERT_TRUE(event.ok());
  EXPECT_EQ((*event)["data"]["status"], "finished");
  EXPECT_EQ(vm->ok("query-status")["status"], "running");  // still alive, still answering
  vm->ok("quit");
  EXPECT_EQ(vm->process().wait(std::chrono::milliseconds(20000)), 0);
}

TEST(MachineReset, SystemResetOfAStoppedVmRestartsTheProgramAtCont) {
  TempImage image(32 << 20);
  // read mode: a prefill phase first, then verified reads only.
  auto vm = FerryVm::start(kFerryVm, verify_vm(image, "128M", "verify,device=n0,rw=randread,"
                                                              "size=8M,loops=4,iodepth=8"));
  ASSERT_TRUE(vm);
  wait_guest(*vm, [](const Json& g) { return ops_of(g) > 200; });
  vm->ok("stop");
  vm->ok("system_reset");
  Json parked = vm->ok("query-guest");
  EXPECT_EQ(parked["state"], "parked");
  EXPECT_EQ(parked["status"]["resets"], 1) << parked.dump();
  EXPECT_EQ(parked["status"]["phase"], "probe") << parked.dump();
  EXPECT_EQ(parked["status"]["in_flight"], 0);
  EXPECT_EQ(vm->ok("query-status")["status"], "paused");  // a reset does not start the VM
  vm->ok("cont");
  Json end = wait_guest(*vm, [](const Json& g) {
    return g["state"] == "finished" || g["state"] == "failed";
  });
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_EQ(end["status"]["unverified_reads"], 0) << end.dump();
  vm->ok("quit");
  EXPECT_EQ(vm->process().wait(std::chrono::milliseconds(20000)), 0);
}

// ---- RAM above 4 GiB -----------------------------------------------------------------------

// A sparse file the guest RAM lives in (share=on), so the test can read the block itself.
struct RamFile {
  std::string path = unique_base("ram") + ".mem";
  ~RamFile() { ::unlink(path.c_str()); }
  uint64_t read64(uint64_t offset) const {
    int fd = ::open(path.c_str(), O_RDONLY);
    uint64_t v = 0;
    EXPECT_EQ(::pread(fd, &v, 8, static_cast<off_t>(offset)), 8) << path;
    ::close(fd);
    return v;
  }
};

std::vector<std::string> file_ram(const RamFile& file, const std::string& size) {
  return {"-object", "memory-backend-file,id=mem0,size=" + size + ",mem-path=" + file.path +
                         ",share=on",
          "-machine", "memory-backend=mem0"};
}

class MachineMemory : public ::testing::TestWithParam<uint64_t> {};

TEST_P(MachineMemory, RamAbove4GiBIsTheBlockFrom2GiBOn) {
  const uint64_t ram = GetParam();
  const uint64_t above = ram - 2 * kGiB;
  RamFile file;
  TempImage image(16 << 20);
  std::vector<std::string> args = file_ram(file, std::to_string(ram >> 20) + "M");
  args.insert(args.end(), {"-drive", "if=none,id=d0,file=" + image.path() + ",format=raw",
                           "-device", "nvme,id=n0,serial=HIGH0,drive=d0"});
  auto vm = FerryVm::start(kFerryVm, args);
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->ok("query-memory-size-summary")["base-memory"].get<uint64_t>(), ram);

  // Guest 4 GiB + x is block offset 2 GiB + x; the top byte of RAM is reachable, the next
  // one is not RAM.
  for (uint64_t x : {uint64_t{0}, uint64_t{0x1238}, above - 8}) {
    uint64_t value = 0x5a5a000000000000ull | x;
    vm->mem_write(64, k4GiB + x, value);
    EXPECT_EQ(vm->mem(64, k4GiB + x), value) << x;
    EXPECT_EQ(file.read64(2 * kGiB + x), value) << "block offset 2 GiB + " << x;
  }
  vm->mem_write(64, 0x1000, 0x1111);
  EXPECT_EQ(file.read64(0x1000), 0x1111u);
  vm->mem_write(64, k4GiB + above, 0x77);  // past RAM (and below the 64-bit window): unassigned
  EXPECT_EQ(vm->mem(64, k4GiB + above), 0u);
  // Between 2 GiB and ECAM there is no RAM any more: q35's 32-bit PCI hole starts at 2 GiB.
  vm->mem_write(64, 2 * kGiB + 0x100, 0x99);
  EXPECT_EQ(vm->mem(64, 2 * kGiB + 0x100), 0u);

  // The guest driver places the 64-bit BAR0 in the window above RAM, and the controller
  // works there, with its queues and data above 4 GiB too.
  guest::MmioWindow window = guest::MmioWindow::standard64(ram);
  client::QtestBus bus(vm->qtest());
  auto memory = guest::DmaMemory::create(k4GiB + 16 * (1 << 20), k4GiB + 64 * (1 << 20));
  ASSERT_TRUE(memory.ok());
  auto ctrl = guest::nvme::Controller::probe(bus, *memory, window);
  ASSERT_TRUE(ctrl.ok()) << ctrl.status().to_string();
  uint64_t hole64 = (k4GiB + above + kGiB - 1) / kGiB * kGiB;
  EXPECT_GE((*ctrl)->bar0(), hole64);
  EXPECT_GE((*ctrl)->bar0(), k4GiB + above) << "the 64-bit window lies above RAM";
  EXPECT_LT((*ctrl)->bar0(), hole64 + 32 * kGiB);
  ASSERT_TRUE((*ctrl)->enable().ok());
  ASSERT_TRUE((*ctrl)->create_io_queue_pair(1, 16).ok());
  auto buffer = memory->allocate(4096);
  ASSERT_TRUE(buffer.ok());
  std::vector<uint8_t> data(4096);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
  ASSERT_TRUE(bus.memory_write(*buffer, data).ok());
  auto wrote = (*ctrl)->execute(1, guest::nvme::commands::write(1, 5, 8),
                                guest::nvme::Transfer::prp(*buffer, 4096));
  ASSERT_TRUE(wrote.ok()) << wrote.status().to_string();
  EXPECT_TRUE(wrote->ok());
  std::vector<uint8_t> zeros(4096, 0);
  ASSERT_TRUE(bus.memory_write(*buffer, zeros).ok());
  auto read = (*ctrl)->execute(1, guest::nvme::commands::read(1, 5, 8),
                               guest::nvme::Transfer::prp(*buffer, 4096));
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_TRUE(read->ok());
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(bus.memory_read(*buffer, back).ok());
  EXPECT_EQ(back, data) << "the controller's DMA above 4 GiB";
  uint64_t first8 = 0;
  std::memcpy(&first8, data.data(), 8);
  EXPECT_EQ(file.read64(2 * kGiB + (*buffer - k4GiB)), first8);
  EXPECT_EQ(vm->ok("query-status")["status"], "running");
  ctrl->reset();  // the driver goes before the VM it talks to
  vm->ok("quit");
  EXPECT_EQ(vm->process().wait(std::chrono::milliseconds(20000)), 0);
}

INSTANTIATE_TEST_SUITE_P(Sizes, MachineMemory, ::testing::Values(4 * kGiB, 5 * kGiB),
                         [](const auto& info) { return std::to_string(info.param >> 30) + "GiB"; });

TEST(MachineMemoryLimits, RamBelowTheSplitStaysBelowEcam) {
  // 2,815 MiB: RAM smaller than 0xb0000000 (2,816 MiB) lies wholly below ECAM; nothing at
  // 4 GiB. (A plain -m number is MiB, as in QEMU.)
  constexpr uint64_t kTop = uint64_t{2815} << 20;
  auto vm = FerryVm::start(kFerryVm, {"-m", "2815"});
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->ok("query-memory-size-summary")["base-memory"].get<uint64_t>(), kTop);
  vm->mem_write(64, kTop - 8, 0x4242);
  EXPECT_EQ(vm->mem(64, kTop - 8), 0x4242u);
  vm->mem_write(64, kTop, 0x4141);  // past RAM, below ECAM: unassigned
  EXPECT_EQ(vm->mem(64, kTop), 0u);
  vm->mem_write(64, k4GiB, 0x4343);
  EXPECT_EQ(vm->mem(64, k4GiB), 0u);
  vm->ok("quit");
  EXPECT_EQ(vm->process().wait(std::chrono::milliseconds(20000)), 0);
}

TEST(MachineMemoryLimits, VerifyRunsInA5GiBVm) {
  TempImage image(32 << 20);
  auto vm = FerryVm::start(kFerryVm, verify_vm(image, "5G", "verify,device=n0,rw=randrw,"
                                                            "size=4M,loops=1,iodepth=8"));
  ASSERT_TRUE(vm);
  Json end = wait_guest(*vm, [](const Json& g) {
    return g["state"] == "finished" || g["state"] == "failed";
  });
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  vm->ok("quit");
  EXPECT_EQ(vm->process().wait(std::chrono::milliseconds(20000)), 0);
}

TEST(MachineMemoryMigration, A4GiBVmArrivesWithItsRamAbove4GiB) {
  const std::vector<std::string> machine = {"-m", "4G"};
  std::string sock = unique_base("mig4g") + ".sock";
  auto src = FerryVm::start(kFerryVm, machine);
  std::vector<std::string> incoming = machine;
  incoming.insert(incoming.end(), {"-incoming", "unix:" + sock});
  auto dst = FerryVm::start(kFerryVm, incoming);
  ASSERT_TRUE(src && dst);
  const std::vector<std::pair<uint64_t, uint64_t>> words = {
      {0x2000, 0x0102030405060708ull},
      {2 * kGiB - 8, 0x1111222233334444ull},        // the last word below the hole
      {k4GiB, 0xaaaabbbbccccddddull},               // the first above 4 GiB
      {k4GiB + 0x12345678, 0x5555666677778888ull},
      {k4GiB + 2 * kGiB - 8, 0x9999000011112222ull}};  // the top of RAM
  for (auto [addr, value] : words) src->mem_write(64, addr, value);
  // Slow enough that the first pass takes seconds (a zero page costs ~9 bytes), so a page
  // above 4 GiB can be written after that pass sent it: only its dirty bit, at the block's
  // offset 2 GiB + x, makes the next pass send it again.
  src->ok("migrate-set-parameters", Json{{"max-bandwidth", 2'000'000}});
  src->ok("migrate", Json{{"uri", "unix:" + sock}});
  constexpr uint64_t kLate = k4GiB + 0x40000;  // block offset 2 GiB + 256 KiB
  const uint64_t sent_past = (2 * kGiB + 0x40000) / 4096 + 256;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  for (;;) {
    Json r = src->ok("query-migrate");
    ASSERT_TRUE(r["status"] == "setup" || r["status"] == "active")
        << "the first pass must still run: " << r.dump();
    // Pages go out in block order, each counted once sent.
    if (r["ram"]["duplicate"].get<uint64_t>() + r["ram"]["normal"].get<uint64_t>() > sent_past)
      break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  src->mem_write(64, kLate, 0x1a7e1a7e1a7e1a7eull);
  // Generous: the source scans all 4 GiB for zero pages in its first pass (about 15 s in a
  // debug build on a busy 2-core machine; sanitizer builds are slower).
  Json result = wait_migration_end(*src, std::chrono::seconds(300));
  ASSERT_EQ(result["status"], "completed") << result.dump();
  EXPECT_EQ(result["ram"]["total"].get<uint64_t>(), 4 * kGiB) << result.dump();
  ASSERT_TRUE(dst->qmp().wait_event("RESUME", Millis(30000)).ok());
  EXPECT_EQ(dst->ok("query-status")["status"], "running");
  for (auto [addr, value] : words)
    EXPECT_EQ(dst->mem(64, addr), value) << "guest 0x" << std::hex << addr;
  EXPECT_EQ(dst->mem(64, kLate), 0x1a7e1a7e1a7e1a7eull) << "written after its page was sent";
  EXPECT_EQ(dst->ok("query-memory-size-summary")["base-memory"].get<uint64_t>(), 4 * kGiB);
}

}  // namespace
}  // namespace ferry::testing
