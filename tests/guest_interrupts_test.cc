// The guest NVMe driver taking its completions by interrupt instead of polling: MSI-X
// messages into the MSI window and the INTx line, over both GuestBus transports — the
// in-process bus (on the machine's loop thread, and on a vCPU thread while the main thread
// runs the loop) and qtest against a ferry-vm process.
//
// Every run writes blocks and reads them back on an I/O queue pair whose CQ interrupts; the
// data must match and the interrupts must be the ones the controller sent: one MSI-X
// message per completion on the CQ's vector (nothing coalesces by default), or an INTx
// line that is up while completions wait and down once they are consumed.
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/event_loop.h"
#include "base/qemu_opts.h"
#include "block/drive_config.h"
#include "guest/dma_memory.h"
#include "guest/nvme/controller.h"
#include "guest/pci.h"
#include "hw/nvme/nvme_properties.h"
#include "support/nvme_rig.h"
#include "vm/inprocess_bus.h"
#include "vm/machine.h"

namespace ferry::testing {
namespace {

using guest::nvme::CompletionSignal;
using guest::nvme::Controller;
using guest::nvme::Transfer;
namespace commands = guest::nvme::commands;
using std::chrono::milliseconds;

constexpr uint64_t kRamBytes = 64ull << 20;
constexpr uint64_t kDmaBase = 16ull << 20;
constexpr uint32_t kBlocks = 8;  // commands of each kind per run
constexpr uint16_t kIoVector = 1;

// An in-process machine with one NVMe controller on a temporary 4 MiB file, its block I/O
// delayed by `io_delay_ms` when given (so a driver on another thread surely waits).
class InProcessMachine {
 public:
  static std::unique_ptr<InProcessMachine> create(int io_delay_ms = 0) {
    auto m = std::unique_ptr<InProcessMachine>(new InProcessMachine());
    m->image_ = std::make_unique<TempImage>(4 << 20);
    auto loop = EventLoop::create();
    EXPECT_TRUE(loop.ok()) << loop.status().to_string();
    if (!loop.ok()) return nullptr;
    m->loop_ = std::move(loop).value();
    vm::MachineConfig config;
    config.ram_size = kRamBytes;
    auto drive = block::parse_drive_config(
        fmt::format("if=none,id=d0,file={},format=raw", m->image_->path()));
    EXPECT_TRUE(drive.ok()) << drive.status().to_string();
    if (!drive.ok()) return nullptr;
    config.drives.push_back(*drive);
    if (io_delay_ms > 0)
      config.faults.push_back({"d0", {.delay_ns = int64_t{io_delay_ms} * 1'000'000}});
    auto opts = parse_opts(nvme::controller_schema(), "nvme,serial=IRQ0,drive=d0");
    EXPECT_TRUE(opts.ok()) << opts.status().to_string();
    if (!opts.ok()) return nullptr;
    config.devices.push_back({"nvme", "nvme0", "", std::move(opts).value()});
    auto machine = vm::Machine::create(*m->loop_, std::move(config));
    EXPECT_TRUE(machine.ok()) << machine.status().to_string();
    if (!machine.ok()) return nullptr;
    m->machine_ = std::move(machine).value();
    return m;
  }
  ~InProcessMachine() {
    machine_.reset();  // before the loop it runs on
  }
  vm::Machine& machine() { return *machine_; }
  EventLoop& loop() { return *loop_; }

 private:
  InProcessMachine() = default;
  std::unique_ptr<TempImage> image_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<vm::Machine> machine_;
};

// What one driver run saw.
struct RunResult {
  uint64_t interrupts_taken = 0;  // during the I/O phase
  unsigned intx_irq = 0;          // the line waited for (INTx)
  std::string error;              // empty when everything checked out
};

// Brings the controller up over `bus`, switches wait() to `signal`, creates I/O queue pair 1
// interrupting on kIoVector (MSI-X) or the pin (INTx), then writes kBlocks blocks and reads
// them back. Runs on whatever thread owns `bus`; reports instead of asserting, so it can
// run on a vCPU thread.
RunResult run_driver(guest::GuestBus& bus, CompletionSignal signal) {
  RunResult result;
  auto fail = [&](const std::string& what) {
    if (result.error.empty()) result.error = what;
    return result;
  };
  auto memory = guest::DmaMemory::create(kDmaBase, kRamBytes);
  if (!memory.ok()) return fail(memory.status().to_string());
  guest::MmioWindow window = guest::MmioWindow::standard();
  auto ctrl = Controller::probe(bus, *memory, window);
  if (!ctrl.ok()) return fail(ctrl.status().to_string());
  Controller& c = **ctrl;
  if (Status st = c.enable(); !st.ok()) return fail(st.to_string());
  Status chosen = signal == CompletionSignal::kMsix ? c.use_msix_interrupts()
                                                   : c.use_intx_interrupts();
  if (!chosen.ok()) return fail("choosing the signal: " + chosen.to_string());
  if (c.completion_signal() != signal) return fail("the controller did not switch signals");
  // An admin command now completes through the admin CQ's interrupt (vector 0).
  auto identify = c.identify(spec::nvme::kCnsController);
  if (!identify.ok()) return fail("identify: " + identify.status().to_string());
  uint16_t vector = signal == CompletionSignal::kMsix ? kIoVector : 0;
  if (Status st = c.create_io_queue_pair(1, 16, {true, vector}); !st.ok()) return fail(st.to_string());

  uint64_t buffer = *memory->allocate(4096);
  uint64_t taken_before = c.interrupts_taken();
  for (uint32_t lba = 0; lba < kBlocks; ++lba) {
    std::vector<uint8_t> data(512, static_cast<uint8_t>(0xa0 + lba));
    if (Status st = bus.memory_write(buffer, data); !st.ok()) return fail(st.to_string());
    auto done = c.execute(1, commands::write(1, lba, 1), Transfer::prp(buffer, 512));
    if (!done.ok()) return fail(fmt::format("write {}: {}", lba, done.status().to_string()));
    if (!done->ok()) return fail(fmt::format("write {}: {}", lba, guest::nvme::describe_status(done->status)));
  }
  for (uint32_t lba = 0; lba < kBlocks; ++lba) {
    std::vector<uint8_t> zero(512, 0);
    if (Status st = bus.memory_write(buffer, zero); !st.ok()) return fail(st.to_string());
    auto done = c.execute(1, commands::read(1, lba, 1), Transfer::prp(buffer, 512));
    if (!done.ok()) return fail(fmt::format("read {}: {}", lba, done.status().to_string()));
    if (!done->ok()) return fail(fmt::format("read {}: {}", lba, guest::nvme::describe_status(done->status)));
    std::vector<uint8_t> back(512);
    if (Status st = bus.memory_read(buffer, back); !st.ok()) return fail(st.to_string());
    if (back != std::vector<uint8_t>(512, static_cast<uint8_t>(0xa0 + lba)))
      return fail(fmt::format("block {} read back wrong data", lba));
  }
  result.interrupts_taken = c.interrupts_taken() - taken_before;
  result.intx_irq = c.intx_irq();

  // A queue pair without interrupts still completes: wait() polls for it.
  if (Status st = c.create_io_queue_pair(2, 16, {false, 0}); !st.ok()) return fail(st.to_string());
  auto flush = c.execute(2, commands::flush(1));
  if (!flush.ok() || !flush->ok()) return fail("flush on a queue without interrupts");
  return result;
}

// ---- in-process RAM fields a device reads while the guest writes them -----------------------

// Ring indices and flags go through memory_store16/memory_load16 as one 16-bit access (a
// device thread never sees half an index) and a store marks its page dirty like any write.
TEST(InProcessBusRam, SixteenBitFieldsAreOneAccessAndMarkTheirPageDirty) {
  auto m = InProcessMachine::create();
  ASSERT_NE(m, nullptr);
  const uint64_t page = (kDmaBase + 0x3000) / memory::kPageSize;
  ASSERT_FALSE(m->machine().main_ram().dirty().test(page)) << "nothing wrote it yet";
  for (auto discipline : {vm::InProcessBus::Discipline::kLoopThread,
                          vm::InProcessBus::Discipline::kVcpuThread}) {
    vm::InProcessBus bus(m->machine(), discipline);
    const uint64_t addr = kDmaBase + 0x3002;
    ASSERT_TRUE(bus.memory_store16(addr, 0xbeef).ok());
    std::array<uint8_t, 2> bytes{};
    ASSERT_TRUE(bus.memory_read(addr, bytes).ok());
    EXPECT_EQ(bytes[0], 0xef);  // little-endian, as the guest sees it
    EXPECT_EQ(bytes[1], 0xbe);
    auto v = bus.memory_load16(addr);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_EQ(*v, 0xbeef);
    EXPECT_TRUE(m->machine().main_ram().dirty().test(page));
    EXPECT_FALSE(bus.memory_store16(addr + 1, 1).ok()) << "a misaligned field is refused";
    EXPECT_FALSE(bus.memory_load16(addr + 1).ok());
  }
}

// ---- in-process, on the loop thread -----------------------------------------------------------

TEST(GuestInterrupts, InProcessMsixIntoTheMsiWindow) {
  auto m = InProcessMachine::create();
  ASSERT_NE(m, nullptr);
  vm::InProcessBus bus(m->machine());
  uint64_t delivered_before = m->machine().cpu_interrupts().msi_delivered();
  RunResult r = run_driver(bus, CompletionSignal::kMsix);
  ASSERT_EQ(r.error, "");
  // The loop runs only inside the driver's waits, so every completion was waited for and
  // its message taken: exactly one per command.
  EXPECT_EQ(r.interrupts_taken, 2u * kBlocks);
  EXPECT_GE(m->machine().cpu_interrupts().msi_delivered() - delivered_before, 2u * kBlocks);
}

TEST(GuestInterrupts, InProcessIntx) {
  auto m = InProcessMachine::create();
  ASSERT_NE(m, nullptr);
  vm::InProcessBus bus(m->machine());
  RunResult r = run_driver(bus, CompletionSignal::kIntx);
  ASSERT_EQ(r.error, "");
  EXPECT_GE(r.interrupts_taken, 2u * kBlocks) << "the line was up for every completion";
  EXPECT_NE(r.intx_irq, 0u) << "routed by the bus, as firmware would";
  EXPECT_FALSE(m->machine().cpu_interrupts().line(r.intx_irq)) << "all consumed: the line is down";
}

TEST(GuestInterrupts, InProcessPollingTakesNoInterrupts) {
  auto m = InProcessMachine::create();
  ASSERT_NE(m, nullptr);
  vm::InProcessBus bus(m->machine());
  auto memory = guest::DmaMemory::create(kDmaBase, kRamBytes);
  ASSERT_TRUE(memory.ok());
  guest::MmioWindow window = guest::MmioWindow::standard();
  auto ctrl = Controller::probe(bus, *memory, window);
  ASSERT_TRUE(ctrl.ok());
  ASSERT_TRUE((*ctrl)->enable().ok());
  ASSERT_TRUE((*ctrl)->identify(spec::nvme::kCnsController).ok());
  EXPECT_EQ((*ctrl)->completion_signal(), CompletionSignal::kPolling);
  EXPECT_EQ((*ctrl)->interrupts_taken(), 0u);
}

// ---- in-process, the driver on a vCPU thread ----------------------------------------------------

// The main thread runs the machine's loop; the driver waits on the CPU's interrupt record
// from its own thread, taking the machine lock only for device accesses (TSan-checked).
// Block I/O is delayed 20 ms: otherwise a completion can land before the driver looks for
// it, and it takes no interrupt at all.
void run_on_vcpu_thread(CompletionSignal signal) {
  auto m = InProcessMachine::create(20);
  ASSERT_NE(m, nullptr);
  RunResult r;
  std::atomic<bool> done{false};
  std::thread vcpu([&] {
    vm::InProcessBus bus(m->machine(), vm::InProcessBus::Discipline::kVcpuThread);
    r = run_driver(bus, signal);
    done = true;
    m->loop().schedule([] {});  // wake the loop
  });
  Status ran = m->loop().run_until([&] { return done.load(); }, milliseconds(30000));
  vcpu.join();
  ASSERT_TRUE(ran.ok()) << ran.to_string();
  ASSERT_EQ(r.error, "");
  EXPECT_GE(r.interrupts_taken, 1u);
}

TEST(GuestInterrupts, VcpuThreadMsix) { run_on_vcpu_thread(CompletionSignal::kMsix); }
TEST(GuestInterrupts, VcpuThreadIntx) { run_on_vcpu_thread(CompletionSignal::kIntx); }

// ---- qtest against ferry-vm -------------------------------------------------------------------

// Over qtest each access is a round trip, so the driver would often find a completion
// before its interrupt; delaying every block operation by 20 ms makes it wait for them.
std::unique_ptr<FerryVm> start_ferry_vm(const TempImage& image) {
  return FerryVm::start(FERRY_VM_PATH, {"-m", "64M", "-drive",
                                        "if=none,id=d0,file=" + image.path() + ",format=raw",
                                        "-blkdebug", "drive=d0,op=any,delay-ms=20",
                                        "-device", "nvme,serial=IRQ1,drive=d0"});
}

TEST(GuestInterrupts, QtestMsixIntoTheMsiWindow) {
  TempImage image(4 << 20);
  auto vm = start_ferry_vm(image);
  ASSERT_NE(vm, nullptr);
  client::QtestBus bus(vm->qtest());
  RunResult r = run_driver(bus, CompletionSignal::kMsix);
  ASSERT_EQ(r.error, "") << vm->process().stderr_text();
  // The driver may find a completion before its message arrives; a message it did not
  // wait for is still there to take. Together: one per command on the I/O vector.
  auto left = bus.wait_msi(guest::nvme::kDefaultMsiDataBase + kIoVector, std::chrono::milliseconds(200));
  ASSERT_TRUE(left.ok()) << left.status().to_string();
  EXPECT_GE(r.interrupts_taken, kBlocks) << "the driver waited by interrupt";
  EXPECT_EQ(r.interrupts_taken + *left, 2u * kBlocks);
  EXPECT_TRUE(vm->qmp().execute("query-status").ok());
}

TEST(GuestInterrupts, QtestIntx) {
  TempImage image(4 << 20);
  auto vm = start_ferry_vm(image);
  ASSERT_NE(vm, nullptr);
  client::QtestBus bus(vm->qtest());
  RunResult r = run_driver(bus, CompletionSignal::kIntx);
  ASSERT_EQ(r.error, "") << vm->process().stderr_text();
  EXPECT_GE(r.interrupts_taken, kBlocks) << "the driver waited for the line";
  // All completions consumed: the line ends low.
  auto level = bus.wait_intx(r.intx_irq, false, std::chrono::milliseconds(1000));
  ASSERT_TRUE(level.ok()) << level.status().to_string();
  EXPECT_FALSE(*level);
}

// One interception per qtest connection, as in QEMU: asking for the other source fails.
TEST(GuestInterrupts, QtestBusInterceptsOneSource) {
  auto vm = FerryVm::start(FERRY_VM_PATH, {"-S"});
  ASSERT_NE(vm, nullptr);
  client::QtestBus bus(vm->qtest());
  ASSERT_TRUE(bus.enable_interrupts(guest::InterruptSource::kIntx).ok());
  EXPECT_TRUE(bus.enable_interrupts(guest::InterruptSource::kIntx).ok());
  Status other = bus.enable_interrupts(guest::InterruptSource::kMsi);
  EXPECT_FALSE(other.ok());
  auto msi = bus.wait_msi(0x41, std::chrono::milliseconds(0));
  EXPECT_FALSE(msi.ok()) << "MSI interception is not on";
  auto low = bus.wait_intx(10, true, std::chrono::milliseconds(30));
  ASSERT_TRUE(low.ok());
  EXPECT_FALSE(*low) << "nothing raised it";
}

}  // namespace
}  // namespace ferry::testing
