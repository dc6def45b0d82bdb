// Black-box tests of the VM process: ferry-vm driven through QMP and qtest exactly as a
// management tool or QEMU's own qtests would drive a VM.
#include <gtest/gtest.h>

#include <unistd.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>

#include "support/ferry_vm.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;

std::unique_ptr<FerryVm> start_vm(std::vector<std::string> extra) {
  return FerryVm::start(kFerryVm, std::move(extra));
}

constexpr int kTestdevSlot = 3;
const std::vector<std::string> kWithTestdev = {"-S", "-m", "64M", "-device",
                                               "ferry-testdev,addr=3"};

// ---- QMP and run states ---------------------------------------------------------------------

TEST(FerryVmQmp, StatusStopContAndEvents) {
  auto vm = start_vm({"-S", "-name", "guest-a"});
  ASSERT_TRUE(vm);
  EXPECT_TRUE(vm->qmp().greeting()["QMP"].contains("capabilities"));
  EXPECT_EQ(vm->ok("query-status")["status"], "prelaunch");
  EXPECT_EQ(vm->ok("query-name")["name"], "guest-a");
  vm->ok("cont");
  ASSERT_TRUE(vm->qmp().wait_event("RESUME", Millis(30000)).ok());
  Json status = vm->ok("query-status");
  EXPECT_EQ(status["status"], "running");
  EXPECT_EQ(status["running"], true);
  vm->ok("stop");
  auto stop = vm->qmp().wait_event("STOP", Millis(30000));
  ASSERT_TRUE(stop.ok());
  EXPECT_TRUE((*stop)["timestamp"].contains("seconds"));
  EXPECT_EQ(vm->ok("query-status")["status"], "paused");
}

TEST(FerryVmQmp, ErrorsAreRepliesNotCrashes) {
  auto vm = start_vm({"-S"});
  ASSERT_TRUE(vm);
  auto missing = vm->qmp().execute("no-such-command");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ((*missing)["error"]["class"], "CommandNotFound");
  EXPECT_EQ((*missing)["error"]["desc"], "The command no-such-command has not been found");
  auto extra = vm->qmp().execute("stop", Json{{"bogus", 1}});
  ASSERT_TRUE(extra.ok());
  EXPECT_EQ((*extra)["error"]["class"], "GenericError");
  EXPECT_NE((*extra)["error"]["desc"].get<std::string>().find("bogus"), std::string::npos);
  auto garbage = vm->qmp().send_raw("{\"execute\": [}\n");
  ASSERT_TRUE(garbage.ok()) << garbage.status().to_string();
  EXPECT_EQ((*garbage)["error"]["class"], "GenericError");
  EXPECT_EQ(vm->ok("query-status")["status"], "prelaunch");  // still serving
}

TEST(FerryVmQmp, QuitEmitsShutdownAndExitsCleanly) {
  auto vm = start_vm({"-S"});
  ASSERT_TRUE(vm);
  vm->ok("quit");
  auto shutdown = vm->qmp().wait_event("SHUTDOWN", Millis(30000));
  ASSERT_TRUE(shutdown.ok());
  EXPECT_EQ((*shutdown)["data"]["reason"], "host-qmp-quit");
  EXPECT_EQ(vm->process().wait(Millis(10000)), 0) << vm->process().stderr_text();
}

// ---- PCI --------------------------------------------------------------------------------------

TEST(FerryVmPci, EnumerationThroughPortsAndEcam) {
  auto vm = start_vm(kWithTestdev);
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->config_read(0, 0x00), 0x00081b36u);  // host bridge
  EXPECT_EQ(vm->config_read(0, 0x08) >> 8, 0x060000u);
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x00), 0x01051b36u);
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x00, 16), 0x1b36u);
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x02, 16), 0x0105u);
  EXPECT_EQ(vm->config_read(5, 0x00), 0xffffffffu);  // empty slot
  // ECAM at 0xb0000000: bus 0, slot 3 -> offset 3 << 15.
  EXPECT_EQ(vm->mem(32, 0xb0000000 + (kTestdevSlot << 15)), 0x01051b36u);
  EXPECT_EQ(vm->mem(32, 0xb0000000 + (7 << 15)), 0xffffffffu);
  Json pci = vm->ok("query-pci");
  ASSERT_EQ(pci[0]["devices"].size(), 2u);
  EXPECT_EQ(pci[0]["devices"][1]["slot"], kTestdevSlot);
  EXPECT_EQ(pci[0]["devices"][1]["id"]["device"], 0x0105);
}

TEST(FerryVmPci, BarSizingProgrammingAndDecoding) {
  auto vm = start_vm(kWithTestdev);
  ASSERT_TRUE(vm);
  // BAR0: 64-bit memory, 16 KiB.
  vm->config_write(kTestdevSlot, 0x10, 0xffffffff);
  vm->config_write(kTestdevSlot, 0x14, 0xffffffff);
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x10), 0xffffc004u);
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x14), 0xffffffffu);
  // BAR2: 16 I/O ports.
  vm->config_write(kTestdevSlot, 0x18, 0xffffffff);
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x18) & 0xffff, 0xfff1u);

  vm->config_write(kTestdevSlot, 0x10, 0xc0000000);
  vm->config_write(kTestdevSlot, 0x14, 0);
  vm->config_write(kTestdevSlot, 0x18, 0xc000);
  // Decoding off: nothing answers yet.
  vm->mem_write(32, 0xc0000000, 0xabcd);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0u);
  vm->config_write(kTestdevSlot, 0x04, 0x3, 16);  // I/O + memory space
  vm->mem_write(32, 0xc0000000, 0x600dcafe);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0x600dcafeu);
  ASSERT_TRUE(vm->qtest().out(32, 0xc000, 0x11223344).ok());
  auto io = vm->qtest().in(16, 0xc002);
  ASSERT_TRUE(io.ok());
  EXPECT_EQ(*io, 0x1122u);
  Json regions = vm->ok("query-pci")[0]["devices"][1]["regions"];
  ASSERT_GE(regions.size(), 2u);
  EXPECT_EQ(regions[0]["address"], 0xc0000000u);
  EXPECT_EQ(regions[0]["size"], 0x4000u);
  EXPECT_EQ(regions[0]["mem_type_64"], true);
  // Moving the BAR moves the registers.
  vm->config_write(kTestdevSlot, 0x10, 0xd0000000);
  EXPECT_EQ(vm->mem(32, 0xd0000000), 0x600dcafeu);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0u);
}

TEST(FerryVmPci, TwoDevicesKeepTheirOwnWindowsWhenOneMoves) {
  auto vm = start_vm({"-S", "-device", "ferry-testdev,addr=3", "-device", "ferry-testdev,addr=4"});
  ASSERT_TRUE(vm);
  for (int slot : {3, 4}) {
    vm->config_write(slot, 0x18, 0xc000 + 0x100 * (slot - 3));  // I/O BAR2
    vm->config_write(slot, 0x10, 0xc0000000 + 0x100000 * (slot - 3));
    vm->config_write(slot, 0x14, 0);
    vm->config_write(slot, 0x04, 0x3, 16);
  }
  ASSERT_TRUE(vm->qtest().out(32, 0xc000, 0x33).ok());
  ASSERT_TRUE(vm->qtest().out(32, 0xc100, 0x44).ok());
  vm->mem_write(32, 0xc0000000, 0x333);
  vm->mem_write(32, 0xc0100000, 0x444);
  // Moving slot 4's windows must move exactly those, leaving slot 3's in place.
  vm->config_write(4, 0x18, 0xc200);
  vm->config_write(4, 0x10, 0xc0200000);
  EXPECT_EQ(vm->qtest().in(32, 0xc000).value(), 0x33u);
  EXPECT_EQ(vm->qtest().in(32, 0xc200).value(), 0x44u);
  EXPECT_EQ(vm->qtest().in(32, 0xc100).value(), 0xffffffffu);  // nothing there any more
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0x333u);
  EXPECT_EQ(vm->mem(32, 0xc0200000), 0x444u);
  EXPECT_EQ(vm->mem(32, 0xc0100000), 0u);
}

// Maps BAR0 at 0xc0000000 with memory decoding and bus mastering on.
void map_testdev(FerryVm& vm) {
  vm.config_write(kTestdevSlot, 0x10, 0xc0000000);
  vm.config_write(kTestdevSlot, 0x14, 0);
  vm.config_write(kTestdevSlot, 0x04, 0x6, 16);  // memory space + bus master
}

TEST(FerryVmPci, IntxLevelSeenThroughIrqIntercept) {
  auto vm = start_vm(kWithTestdev);
  ASSERT_TRUE(vm);
  map_testdev(*vm);
  uint32_t line = vm->config_read(kTestdevSlot, 0x3c, 8);
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x3d, 8), 1u);  // pin A
  auto reply = vm->qtest().command("irq_intercept_in ioapic");
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(*reply, "OK");
  vm->mem_write(32, 0xc0000004, 1);
  EXPECT_EQ(vm->mem(32, 0xc0000004), 1u);
  ASSERT_EQ(vm->qtest().irqs().size(), 1u);
  EXPECT_EQ(vm->qtest().irqs().front(), fmt::format("raise {}", line));
  EXPECT_TRUE(vm->config_read(kTestdevSlot, 0x06, 16) & 0x8);  // interrupt status
  vm->mem_write(32, 0xc0000004, 0);
  ASSERT_EQ(vm->qtest().irqs().size(), 2u);
  EXPECT_EQ(vm->qtest().irqs().back(), fmt::format("lower {}", line));
  // INTx disable in the command register keeps the line low.
  vm->config_write(kTestdevSlot, 0x04, 0x406, 16);
  vm->mem_write(32, 0xc0000004, 1);
  EXPECT_EQ(vm->qtest().irqs().size(), 2u);
}

TEST(FerryVmPci, MsixIntoRamAndTheMsiWindowWithMasking) {
  auto vm = start_vm(kWithTestdev);
  ASSERT_TRUE(vm);
  vm->ok("cont");  // a stopped device holds its messages
  map_testdev(*vm);
  uint32_t cap = vm->find_capability(kTestdevSlot, 0x11);
  ASSERT_NE(cap, 0u);
  EXPECT_EQ((vm->config_read(kTestdevSlot, cap + 2, 16) & 0x7ff) + 1, 8u);  // table size
  vm->config_write(kTestdevSlot, cap + 2, 0x8000, 16);  // MSI-X enable
  const uint64_t table = 0xc0002000, pba = 0xc0003000;
  // Vector 0 -> RAM at 0x3000 (a plain memory write), vector 1 -> the MSI window.
  vm->mem_write(32, table + 0, 0x3000);
  vm->mem_write(32, table + 4, 0);
  vm->mem_write(32, table + 8, 0x1234);
  vm->mem_write(32, table + 12, 0);
  vm->mem_write(32, table + 16, 0xfee00000);
  vm->mem_write(32, table + 20, 0);
  vm->mem_write(32, table + 24, 0x41);
  vm->mem_write(32, table + 28, 1);  // masked
  auto reply = vm->qtest().command("irq_intercept_in msi");
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(*reply, "OK");

  vm->mem_write(32, 0xc0000008, 0);  // notify vector 0
  EXPECT_EQ(vm->mem(32, 0x3000), 0x1234u);
  vm->mem_write(32, 0xc0000008, 1);  // vector 1 is masked: pending, nothing delivered
  EXPECT_TRUE(vm->qtest().irqs().empty());
  EXPECT_EQ(vm->mem(32, pba) & 0x2, 0x2u);
  vm->mem_write(32, table + 28, 0);  // unmask: the pending message goes out
  ASSERT_EQ(vm->qtest().irqs().size(), 2u);
  EXPECT_EQ(vm->qtest().irqs().front(), "raise 65");
  EXPECT_EQ(vm->mem(32, pba) & 0x2, 0u);
  EXPECT_EQ(vm->mem(32, 0xc000000c), 2u);  // notify count
}

TEST(FerryVmPci, StoppedDevicesHoldInterruptsUntilCont) {
  auto vm = start_vm(kWithTestdev);
  ASSERT_TRUE(vm);
  vm->ok("cont");
  map_testdev(*vm);
  uint32_t cap = vm->find_capability(kTestdevSlot, 0x11);
  vm->config_write(kTestdevSlot, cap + 2, 0x8000, 16);
  vm->mem_write(32, 0xc0002000, 0x3000);
  vm->mem_write(32, 0xc0002008, 0xabc);
  vm->mem_write(32, 0xc000200c, 0);
  vm->ok("stop");
  vm->mem_write(32, 0xc0000008, 0);  // the device is quiesced: nothing reaches the guest
  EXPECT_EQ(vm->mem(32, 0x3000), 0u);
  vm->ok("cont");
  EXPECT_EQ(vm->mem(32, 0x3000), 0xabcu);
}

TEST(FerryVmPci, SystemResetReturnsDevicesToTheirPlugInState) {
  auto vm = start_vm(kWithTestdev);
  ASSERT_TRUE(vm);
  vm->ok("cont");
  map_testdev(*vm);
  vm->mem_write(32, 0xc0000000, 0x1234);
  uint32_t line = vm->config_read(kTestdevSlot, 0x3c, 8);
  vm->ok("system_reset");
  auto reset = vm->qmp().wait_event("RESET", Millis(30000));
  ASSERT_TRUE(reset.ok());
  EXPECT_EQ((*reset)["data"]["reason"], "host-qmp-system-reset");
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x04, 16) & 0x7, 0u);  // decoding off
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x10), 0x4u);          // BAR0 unprogrammed
  EXPECT_EQ(vm->config_read(kTestdevSlot, 0x3c, 8), line);        // routing kept
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0u);                         // nothing decodes there
  map_testdev(*vm);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0u);  // the scratch register was reset too
  EXPECT_EQ(vm->ok("query-status")["status"], "running");
}

// BARs and the PCI MMIO windows (machine.h): as on QEMU's PC machines, PCI memory space
// lies beneath everything else, so a BAR decodes wherever it is put except under RAM, ECAM
// and the MSI window, and the BAR mapped last wins where two overlap.
void program_bar0(FerryVm& vm, int slot, uint64_t address) {
  vm.config_write(slot, 0x10, static_cast<uint32_t>(address));
  vm.config_write(slot, 0x14, static_cast<uint32_t>(address >> 32));
}

TEST(FerryVmPci, BarsDecodeInBothWindowsAndBeneathRamEcamAndMsi) {
  // 64 MiB + 8 KiB of RAM: RAM ends in the middle of a 16 KiB-aligned BAR position.
  constexpr uint64_t kRamEnd = 0x4002000;
  auto vm = start_vm({"-S", "-m", "65544K", "-device", "ferry-testdev,addr=3", "-device",
                      "ferry-testdev,addr=4"});
  ASSERT_TRUE(vm);
  vm->config_write(3, 0x04, 0x2, 16);  // memory space on, BARs unprogrammed
  // Inside the 32-bit window, then inside the 64-bit window (4 GiB .. 36 GiB).
  program_bar0(*vm, 3, 0xc0000000);
  vm->mem_write(32, 0xc0000000, 0x11111111);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0x11111111u);
  program_bar0(*vm, 3, 0x200000000);
  EXPECT_EQ(vm->mem(32, 0x200000000), 0x11111111u);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0u);
  Json regions = vm->ok("query-pci")[0]["devices"][1]["regions"];
  EXPECT_EQ(regions[0]["address"], 0x200000000u);
  // Outside both windows, where nothing else is: it decodes, as on q35.
  program_bar0(*vm, 3, 0x1000000000);  // 64 GiB
  EXPECT_EQ(vm->mem(32, 0x1000000000), 0x11111111u);
  program_bar0(*vm, 3, 0x8000000);  // 128 MiB: above RAM, below ECAM
  EXPECT_EQ(vm->mem(32, 0x8000000), 0x11111111u);

  // Partly over RAM: RAM wins for its part, the rest of the BAR decodes. BAR0 is 16 KiB at
  // 0x4000000; RAM hides its first 8 KiB (the registers), its MSI-X table (BAR offset
  // 0x2000) shows at the end of RAM.
  vm->mem_write(32, 0x4000000, 0x22222222);  // RAM
  program_bar0(*vm, 3, 0x4000000);
  EXPECT_EQ(vm->mem(32, 0x4000000), 0x22222222u) << "RAM, not the scratch register";
  vm->mem_write(32, kRamEnd + 8, 0x33);  // MSI-X table entry 0, data
  program_bar0(*vm, 3, 0x8000000);
  EXPECT_EQ(vm->mem(32, 0x8002008), 0x33u) << "the write reached the BAR through its visible part";
  EXPECT_EQ(vm->mem(32, 0x4000000), 0x22222222u) << "RAM untouched";
  EXPECT_EQ(vm->mem(32, kRamEnd + 8), 0u) << "nothing there once the BAR moved";

  // Over ECAM and over the MSI window: those win.
  program_bar0(*vm, 3, 0xb0000000);
  EXPECT_EQ(vm->mem(32, 0xb0000000), 0x00081b36u) << "ECAM still answers (host bridge id)";
  program_bar0(*vm, 3, 0xfee00000);
  EXPECT_EQ(vm->mem(32, 0xfee00000), 0u) << "the MSI window reads nothing";
  program_bar0(*vm, 3, 0xc0000000);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0x11111111u) << "nothing was lost while hidden";

  // Two BARs at one address: the one mapped last decodes; when it moves away, the other
  // shows again.
  vm->config_write(4, 0x04, 0x2, 16);
  program_bar0(*vm, 4, 0xd0000000);
  vm->mem_write(32, 0xd0000000, 0x44444444);
  program_bar0(*vm, 4, 0xc0000000);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0x44444444u) << "slot 4, mapped last";
  program_bar0(*vm, 3, 0xe0000000);
  program_bar0(*vm, 3, 0xc0000000);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0x11111111u) << "slot 3, mapped last";
  program_bar0(*vm, 3, 0xe0000000);
  EXPECT_EQ(vm->mem(32, 0xc0000000), 0x44444444u) << "slot 4 uncovered";
  EXPECT_EQ(vm->mem(32, 0xe0000000), 0x11111111u);
  EXPECT_EQ(vm->ok("query-status")["status"], "prelaunch");
}

// ---- qtest at the edges of the address space ---------------------------------------------------

// Accesses ending exactly at 2^64 (or running past it) once crashed ferry-vm. Replies are
// QEMU's: unassigned memory reads as zero and ignores writes.
TEST(FerryVmQtest, AccessesAtTheTopOfTheAddressSpace) {
  auto vm = start_vm({"-S", "-m", "64M"});
  ASSERT_TRUE(vm);
  const std::vector<std::pair<std::string, std::string>> exchanges = {
      {"readb 0xffffffffffffffff", "OK 0x0000000000000000"},
      {"readw 0xfffffffffffffffe", "OK 0x0000000000000000"},
      {"readl 0xfffffffffffffffc", "OK 0x0000000000000000"},
      {"readq 0xfffffffffffffff8", "OK 0x0000000000000000"},
      {"readq 0xfffffffffffffffc", "OK 0x0000000000000000"},
      {"writeb 0xffffffffffffffff 0x5a", "OK"},
      {"writeq 0xfffffffffffffffc 0x5a5a5a5a5a5a5a5a", "OK"},
      {"read 0xffffffffffffffff 1", "OK 0x00"},
      {"read 0xfffffffffffff000 4", "OK 0x00000000"},
      {"b64read 0xffffffffffffffff 1", "OK AA=="},
      {"write 0xffffffffffffffff 1 0x5a", "OK"},
      {"b64write 0xffffffffffffffff 1 Wg==", "OK"},
      {"memset 0xffffffffffffffff 1 0x5a", "OK"},
      {"memset 0xfffffffffffff000 4096 0xff", "OK"},
      {"memset 0xffffffffffffff00 512 0xff", "OK"},  // runs past 2^64: stops there
      {"write 0xfffffffffffffffe 4 0x01020304", "OK"},
  };
  for (const auto& [line, reply] : exchanges) {
    auto got = vm->qtest().command(line);
    ASSERT_TRUE(got.ok()) << line << ": " << got.status().to_string() << "\n"
                          << vm->process().stderr_text();
    EXPECT_EQ(*got, reply) << line;
  }
  // Nothing wrapped around to RAM at address 0.
  EXPECT_EQ(vm->mem(64, 0), 0u);
  EXPECT_EQ(vm->ok("query-status")["status"], "prelaunch") << "the VM still answers QMP";
}

// A range crossing from RAM into unassigned memory transfers its RAM part, as QEMU does.
TEST(FerryVmQtest, RangesPartlyInRamTransferTheirRamPart) {
  auto vm = start_vm({"-S", "-m", "64M"});
  ASSERT_TRUE(vm);
  auto wrote = vm->qtest().command("write 0x3fffffe 4 0xa1a2a3a4");
  ASSERT_TRUE(wrote.ok());
  EXPECT_EQ(*wrote, "OK");
  auto read = vm->qtest().command("read 0x3fffffe 4");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, "OK 0xa1a20000");
  auto memset = vm->qtest().command("memset 0x3ffff00 0x200 0x77");
  ASSERT_TRUE(memset.ok());
  EXPECT_EQ(vm->mem(8, 0x3ffffff), 0x77u);
  EXPECT_EQ(vm->mem(8, 0x4000000), 0u);
}

// ---- memory backends --------------------------------------------------------------------------

TEST(FerryVmMemory, FileBackendSharedWithTheHost) {
  std::string path = unique_base("ram") + ".img";
  auto vm = start_vm({"-S", "-object",
                      "memory-backend-file,id=ram0,size=8M,mem-path=" + path + ",share=on",
                      "-machine", "ferry,memory-backend=ram0"});
  ASSERT_TRUE(vm);
  vm->mem_write(64, 0x2000, 0x0123456789abcdefULL);
  FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  uint64_t word = 0;
  ASSERT_EQ(std::fseek(f, 0x2000, SEEK_SET), 0);
  ASSERT_EQ(std::fread(&word, sizeof word, 1, f), 1u);
  std::fclose(f);
  EXPECT_EQ(word, 0x0123456789abcdefULL);  // guest RAM is the file (little-endian host)
  ::unlink(path.c_str());
}

TEST(FerryVmMemory, MemfdBackendAndSizeChecks) {
  auto vm = start_vm({"-S", "-m", "16M", "-object", "memory-backend-memfd,id=mem,size=16M",
                      "-machine", "memory-backend=mem"});
  ASSERT_TRUE(vm);
  vm->mem_write(32, 0xfff000, 0x5a5a5a5a);
  EXPECT_EQ(vm->mem(32, 0xfff000), 0x5a5a5a5au);
}

// ---- command line ---------------------------------------------------------------------------

std::pair<int, std::string> run_vm(std::vector<std::string> args) {
  args.insert(args.begin(), kFerryVm);
  auto child = ChildProcess::spawn(args, unique_base("cli") + ".stderr");
  if (!child.ok()) return {-1, child.status().to_string()};
  auto code = child->wait(Millis(10000));
  return {code.value_or(-1), child->stderr_text()};
}

TEST(FerryVmCommandLine, BadOptionsNameOptionAndValue) {
  auto [code, err] = run_vm({"-m", "lots"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("-m"), std::string::npos) << err;
  EXPECT_NE(err.find("lots"), std::string::npos) << err;
  std::tie(code, err) = run_vm({"-device", "warp-drive"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("'warp-drive' is not a valid device model name"), std::string::npos) << err;
  std::tie(code, err) = run_vm({"-device", "ferry-testdev,speed=9"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("speed"), std::string::npos) << err;
  std::tie(code, err) = run_vm({"-frobnicate"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("-frobnicate: invalid option"), std::string::npos) << err;
  std::tie(code, err) = run_vm({"-device", "ferry-testdev,addr=40"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("40"), std::string::npos) << err;
  std::tie(code, err) = run_vm({"-m", "32M", "-object", "memory-backend-memfd,id=m,size=16M",
                                "-machine", "memory-backend=m"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("does not match"), std::string::npos) << err;
  std::tie(code, err) = run_vm({"-object", "memory-backend-file,id=m,size=16M"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("mem-path"), std::string::npos) << err;
  std::tie(code, err) = run_vm({"-machine", "memory-backend=nope"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("'nope'"), std::string::npos) << err;
}


// The standard output of a ferry-vm that prints and exits.
std::pair<int, std::string> run_vm_stdout(std::vector<std::string> args) {
  std::string out_path = unique_base("stdout") + ".txt";
  std::string command = kFerryVm;
  for (const std::string& a : args) command += " '" + a + "'";
  command += " > " + out_path + " 2>&1";
  int status = std::system(command.c_str());
  std::string text;
  if (FILE* f = std::fopen(out_path.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  ::unlink(out_path.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

// QEMU's -device help: devices grouped by category, one `name "X", bus B, desc "D"` line each.
TEST(FerryVmCommandLine, DeviceHelpListsModelsByCategory) {
  for (const char* help : {"help", "?"}) {
    auto [code, out] = run_vm_stdout({"-device", help});
    EXPECT_EQ(code, 0) << help;
    EXPECT_EQ(out.rfind("Storage devices:\n", 0), 0u) << out;
    EXPECT_NE(out.find("\nname \"nvme\", bus PCI, desc \"Non-Volatile Memory Express\"\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("\nname \"nvme-ns\", bus nvme-bus, desc \""), std::string::npos) << out;
    size_t misc = out.find("\n\nMisc devices:\nname \"ferry-testdev\", bus PCI, desc \"");
    EXPECT_NE(misc, std::string::npos) << out;
    EXPECT_LT(out.find("nvme-ns"), misc) << out;
  }
}

// QEMU's -device DRIVER,help: "DRIVER options:", then `  name=<type>` padded to 24
// columns, " - " and the description, the default as JSON; the types are qdev's (uint8,
// uint32, size, ...). The expected lines are qemu-system-x86_64 7.2's own, word for word,
// for every property Ferry shares with it.
TEST(FerryVmCommandLine, DevicePropertyHelpShowsTypesAndDefaults) {
  auto [code, out] = run_vm_stdout({"-device", "nvme,help"});
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out.rfind("nvme options:\n", 0), 0u) << out;
  for (const char* qemu_line : {
           "  addr=<int32>           - Slot and optional function number, example: 06.0 or 06 "
           "(default: -1)",
           "  aer_max_queued=<uint32> -  (default: 64)",
           "  aerl=<uint8>           -  (default: 3)",
           "  drive=<str>            - Node name or ID of a block device to use as a backend",
           "  logical_block_size=<size> - A power of two between 512 B and 2 MiB (default: 0)",
           "  max_ioqpairs=<uint32>  -  (default: 64)",
           "  mdts=<uint8>           -  (default: 7)",
           "  msix_qsize=<uint16>    -  (default: 65)",
           "  serial=<str>",
           "  vsl=<uint8>            -  (default: 7)",
       }) {
    EXPECT_NE(out.find(fmt::format("\n{}\n", qemu_line)), std::string::npos)
        << "missing QEMU's line '" << qemu_line << "' in\n" << out;
  }
  // Not in QEMU 7.2 (8.1 has it, as uint16).
  EXPECT_NE(out.find("\n  mqes=<uint16>          -  (default: 2047)\n"), std::string::npos)
      << out;
  // bus is a -device option, not a property: QEMU's listing has no line for it.
  EXPECT_EQ(out.find("bus="), std::string::npos) << out;

  std::tie(code, out) = run_vm_stdout({"-device", "nvme-ns,help"});
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out,
            "nvme-ns options:\n"
            "  drive=<str>            - Node name or ID of a block device to use as a backend\n"
            "  logical_block_size=<size> - A power of two between 512 B and 2 MiB (default: 0)\n"
            "  nsid=<uint32>          -  (default: 0)\n");
  std::tie(code, out) = run_vm_stdout({"-device", "ferry-testdev,help"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("  x-block-migration=<bool> - register a migration blocker (for tests) "
                     "(default: false)\n"),
            std::string::npos)
      << out;
}

// A qdev integer outside its width is refused while the command line is parsed, in QEMU's
// words (qemu-system-x86_64 7.2: "Parameter 'mdts' expects uint8_t").
TEST(FerryVmCommandLine, DeviceIntegerPropertiesAreCheckedAgainstTheirWidths) {
  const std::pair<const char*, const char*> cases[] = {
      {"nvme,serial=W,mdts=300", "-device nvme: Parameter 'mdts' expects uint8_t, found '300'"},
      {"nvme,serial=W,msix_qsize=70000",
       "-device nvme: Parameter 'msix_qsize' expects uint16_t, found '70000'"},
      {"nvme,serial=W,max_ioqpairs=-1",
       "-device nvme: Parameter 'max_ioqpairs' expects uint32_t, found '-1'"},
      {"nvme,serial=W,aerl=1k", "-device nvme: Parameter 'aerl' expects integer, found '1k'"},
  };
  for (const auto& [device, message] : cases) {
    auto [code, err] = run_vm({"-device", device});
    EXPECT_EQ(code, 1) << device;
    EXPECT_NE(err.find(message), std::string::npos) << err;
  }
}

// The device registrar refuses every type's blocker under -only-migratable, naming it.
TEST(FerryVmCommandLine, OnlyMigratableRefusesAnyDeviceTypesBlocker) {
  auto [code, err] = run_vm({"-only-migratable", "-device", "ferry-testdev,addr=4,x-block-migration=on"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("-only-migratable: ferry-testdev at 0000:00:04.0: x-block-migration=on"),
            std::string::npos)
      << err;
  std::tie(code, err) =
      run_vm({"-only-migratable", "-device", "nvme,serial=OM,addr=5,aer_max_queued=1000"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("-only-migratable: nvme at 0000:00:05.0: nvme property 'aer_max_queued=1000'"), std::string::npos) << err;
  EXPECT_NE(err.find("aer_max_queued"), std::string::npos) << err;
}

TEST(FerryVmCommandLine, DevicePropertyHelpHasQemusHeader) {
  auto [code, out] = run_vm_stdout({"-device", "nvme,help"});
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out.rfind("nvme options:\n", 0), 0u) << out;
  EXPECT_EQ(out.find("options options"), std::string::npos) << out;
  EXPECT_NE(out.find("serial=<str>"), std::string::npos) << out;
  std::tie(code, out) = run_vm_stdout({"-device", "ferry-testdev,help"});
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out.rfind("ferry-testdev options:\n", 0), 0u) << out;
}

TEST(FerryVmCommandLine, AccelIsQtestOrNone) {
  for (const char* accel : {"kvm", "tcg", "hvf"}) {
    auto [code, err] = run_vm({"-accel", accel});
    EXPECT_EQ(code, 1) << accel;
    EXPECT_NE(err.find(fmt::format("-accel {}: invalid accelerator {}", accel, accel)),
              std::string::npos)
        << err;
  }
  auto [code, out] = run_vm_stdout({"-accel", "help"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("qtest\nnone\n"), std::string::npos) << out;
  auto vm = start_vm({"-S", "-accel", "none"});
  ASSERT_TRUE(vm);
  vm = start_vm({"-S", "-accel", "qtest"});
  ASSERT_TRUE(vm);
}

TEST(FerryVmCommandLine, DriveErrorsNameTheDriveOnce) {
  auto [code, err] = run_vm({"-drive", "if=none,id=d,file=/nonexistent/ferry.img,format=raw"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("-drive id=d: cannot open '/nonexistent/ferry.img'"), std::string::npos)
      << err;
  EXPECT_EQ(err.find("-drive id=d: -drive id=d"), std::string::npos) << err;
}

// With -accel qtest the clock moves only forward; QEMU answers a clock_set to the past with
// FAIL and the clock's unchanged value.
TEST(FerryVmQtest, ClockSetToThePastFailsWithTheCurrentTime) {
  auto vm = start_vm({"-S", "-accel", "qtest"});
  ASSERT_TRUE(vm);
  auto reply = vm->qtest().command("clock_set 1000000");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "OK 1000000");
  reply = vm->qtest().command("clock_set 500");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "FAIL 1000000");
  reply = vm->qtest().command("clock_set 1000000");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "OK 1000000") << "setting the current time is no move, and no failure";
  reply = vm->qtest().command("clock_step 5");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "OK 1000005");
}

}  // namespace
}  // namespace ferry::testing

namespace ferry::testing {
namespace {

TEST(FerryVmQmp, MigrationCapabilitiesAreQemusNamesWithFerrysFixedStates) {
  auto vm = FerryVm::start(FERRY_VM_PATH, {"-S"});
  ASSERT_TRUE(vm);
  Json caps = vm->ok("query-migrate-capabilities");
  std::map<std::string, bool> state;
  for (const Json& c : caps) state[c["capability"]] = c["state"];
  EXPECT_TRUE(state.at("events"));
  EXPECT_TRUE(state.at("return-path"));
  EXPECT_FALSE(state.at("xbzrle"));
  EXPECT_FALSE(state.at("postcopy-ram"));
  // Asking for what is already so is fine; asking for a missing feature is refused by name.
  vm->ok("migrate-set-capabilities",
         Json{{"capabilities", Json::array({{{"capability", "xbzrle"}, {"state", false}},
                                            {{"capability", "events"}, {"state", true}}})}});
  auto refused = vm->qmp().execute(
      "migrate-set-capabilities",
      Json{{"capabilities", Json::array({{{"capability", "postcopy-ram"}, {"state", true}}})}});
  ASSERT_TRUE(refused.ok());
  EXPECT_NE((*refused)["error"]["desc"].get<std::string>().find("postcopy-ram"), std::string::npos);
  auto unknown = vm->qmp().execute(
      "migrate-set-capabilities",
      Json{{"capabilities", Json::array({{{"capability", "warp"}, {"state", true}}})}});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ((*unknown)["error"]["desc"], "Parameter 'capability' does not accept value 'warp'");
  auto missing = vm->qmp().execute("migrate-set-capabilities");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ((*missing)["error"]["desc"], "Parameter 'capabilities' is missing");
}

// switchover-ack (QEMU 8.1) needs return-path, checked on the whole request as QEMU does;
// return-path may be turned off (QEMU's default) only while switchover-ack is off.
TEST(FerryVmQmp, SwitchoverAckRequiresReturnPath) {
  auto vm = FerryVm::start(FERRY_VM_PATH, {"-S"});
  ASSERT_TRUE(vm);
  auto caps = [&] {
    std::map<std::string, bool> state;
    for (const Json& c : vm->ok("query-migrate-capabilities")) state[c["capability"]] = c["state"];
    return state;
  };
  auto set = [&](std::initializer_list<std::pair<const char*, bool>> list) {
    Json entries = Json::array();
    for (auto [name, on] : list) entries.push_back({{"capability", name}, {"state", on}});
    auto reply = vm->qmp().execute("migrate-set-capabilities", Json{{"capabilities", entries}});
    EXPECT_TRUE(reply.ok());
    return reply.ok() && reply->contains("error") ? (*reply)["error"]["desc"].get<std::string>()
                                                  : std::string();
  };
  EXPECT_FALSE(caps().at("switchover-ack"));
  const std::string kRequires = "Capability 'switchover-ack' requires capability 'return-path'";
  EXPECT_EQ(set({{"return-path", false}, {"switchover-ack", true}}), kRequires);
  EXPECT_TRUE(caps().at("return-path"));  // nothing changed
  EXPECT_EQ(set({{"switchover-ack", true}}), "");
  EXPECT_TRUE(caps().at("switchover-ack"));
  EXPECT_EQ(set({{"return-path", false}}), kRequires);
  EXPECT_EQ(set({{"switchover-ack", false}, {"return-path", false}}), "");
  EXPECT_FALSE(caps().at("return-path"));
  EXPECT_FALSE(caps().at("switchover-ack"));
}

}  // namespace
}  // namespace ferry::testing
