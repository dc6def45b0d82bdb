// The machine "ferry": guest RAM from address 0, PCI config through ports 0xcf8/0xcfc and
// an ECAM window, the PCI MMIO windows BARs are meant for, and the MSI window. It owns the
// event loop's devices, the run state, and the QMP and qtest endpoints, and is the one
// object holding mutable process-wide state.
//
// Memory map (the layout of QEMU's q35 where Ferry has the same thing; MemoryMap below):
//   0x0000_0000 .. below-4g      guest RAM (block "pc.ram"): all of it when it is smaller
//                                than 0xb000_0000, else its first 2 GiB
//   0xb000_0000 .. +1 MiB        ECAM, bus 0
//   0xc000_0000 .. 0xfec0_0000   32-bit PCI MMIO window (q35's pci-hole, above MMCONFIG)
//   0xfee0_0000 .. +1 MiB        MSI window: 32-bit writes here are interrupts
//   4 GiB .. 4 GiB + above-4g    the rest of the same block (its offset below-4g on)
//   hole64 .. hole64 + 32 GiB    64-bit PCI MMIO window (q35's pci-hole64, default size),
//                                from the end of RAM above 4 GiB rounded up to 1 GiB
// BAR decoding follows QEMU's PC machines, which map the whole PCI memory space beneath
// system memory at a lower priority: the windows are where software should place BARs,
// but a BAR decodes wherever it is programmed except where RAM, ECAM or the MSI window
// lie (those win, so a BAR partly over RAM decodes only its other part); where BARs
// overlap each other, the one mapped most recently decodes (QEMU renders the newest of
// equal-priority regions first). Nothing is mapped above 2^64 - 1.
//
// Threads (design.md §3): the main loop thread owns the machine and holds the machine
// lock except while its loop sleeps; the vCPU thread (with -guest) takes the lock for each
// device access. Machine::create must be called on the thread that will run the loop, and
// leaves that thread holding the lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/event_loop.h"
#include "base/qemu_opts.h"
#include "block/block_backend.h"
#include "block/drive_config.h"
#include "hw/core/device_type.h"
#include "hw/pci/interfaces.h"
#include "hw/pci/pci_bus.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"
#include "vm/backend_registry.h"
#include "vm/cpu_interrupts.h"
#include "vm/device_host.h"
#include "vm/io_ports.h"
#include "vm/machine_lock.h"
#include "vm/migration_control.h"
#include "vm/net_control.h"
#include "vm/qmp_server.h"
#include "vm/qtest_server.h"
#include "vm/run_state.h"
#include "vm/vcpu.h"

namespace ferry::vm {

inline constexpr std::string_view kMachineType = "ferry-1.0";
inline constexpr uint64_t kEcamBase = 0xb0000000;
// The RAM block's size limit (memory/ram_block.h); q35 itself goes further.
inline constexpr uint64_t kMaxRamSize = memory::kMaxRamBlockSize;
inline constexpr uint64_t kMsiWindowBase = 0xfee00000;
inline constexpr uint64_t kMsiWindowSize = 0x100000;
// The PCI MMIO windows (see the memory map above); ends are exclusive.
inline constexpr uint64_t kPciMmioWindowBase = 0xc0000000;
inline constexpr uint64_t kPciMmioWindowEnd = 0xfec00000;
inline constexpr uint64_t kRamAbove4gBase = uint64_t{1} << 32;
inline constexpr uint64_t kPciHole64Size = uint64_t{32} << 30;

// Where a RAM size puts guest RAM and the 64-bit PCI window: q35's rule (pc_q35.c). RAM of
// 0xb000_0000 bytes or more keeps 2 GiB below 4 GiB (1 GiB-aligned guest and host
// addresses) and puts the rest at 4 GiB; smaller RAM lies wholly below ECAM. One block
// either way, so the migration stream's "ram" section does not change.
struct MemoryMap {
  uint64_t ram_size = 0;
  uint64_t below_4g = 0;         // RAM at guest 0, block offset 0
  uint64_t above_4g = 0;         // RAM at kRamAbove4gBase, block offset below_4g
  uint64_t pci_hole64_base = 0;  // the 64-bit PCI MMIO window; the end is exclusive
  uint64_t pci_hole64_end = 0;

  static MemoryMap for_ram_size(uint64_t ram_size);
  // The block offset of [addr, addr + len) when one part of RAM holds all of it.
  std::optional<uint64_t> ram_offset(uint64_t addr, uint64_t len) const;
};
// ferry-vm's exit status when its guest program failed (e.g. a verification error).
inline constexpr int kGuestFailedExitCode = 3;

// One -device: its properties checked against its type's schema (vm/device_types.h).
using DeviceConfig = hw::DeviceOptions;

// -guest PROGRAM,key=value,...: the program the vCPU runs (vm/guest_programs.h).
struct GuestConfig {
  std::string program;
  Opts opts;
};

struct MachineConfig {
  std::string name;
  uint64_t ram_size = 128ull << 20;
  bool ram_size_given = false;  // -m was on the command line
  // -object memory-backend-file|memfd named by -machine memory-backend=ID: guest RAM
  // lives there (its id becomes the RAM block's name, as in QEMU); else anonymous "pc.ram".
  std::optional<memory::RamBlockSpec> ram_backend;
  bool start_paused = false;  // -S
  bool qtest_clock = false;   // -accel qtest: the clock moves only through qtest
  std::string qmp;            // unix:PATH
  bool qmp_server = false;    // server=on: listen at PATH; off: connect to it, as QEMU
  std::string qtest;          // unix:PATH
  std::string incoming;       // -incoming URI or "defer"; empty: not a destination
  bool only_migratable = false;  // refuse to start with a migration blocker
  std::vector<block::DriveConfig> drives;  // -drive, in command-line order
  std::vector<DriveFault> faults;          // -blkdebug
  std::vector<net::NetdevConfig> netdevs;  // -netdev, in command-line order
  std::vector<DeviceConfig> devices;
  std::optional<GuestConfig> guest;
};

class Machine final : public pci::PciHost,
                      public pci::InterruptSink,
                      public pci::MsiSink,
                      public QtestTarget {
 public:
  static Result<std::unique_ptr<Machine>> create(EventLoop& loop, MachineConfig config);
  ~Machine() override;

  RunState run_state() const { return state_; }
  // Changes the run state, emitting STOP/RESUME as QEMU does.
  Status set_run_state(RunState to);
  // Asks the main loop to end; run() then returns `exit_code`.
  void request_exit(int exit_code);
  // Ends the VM as QEMU does on `quit` or a host signal: a SHUTDOWN event with `reason`
  // ("host-qmp-quit", "host-signal"), then, once queued replies are flushed, the main loop
  // ends as request_exit(0) does (teardown drains guest I/O).
  void shutdown(std::string_view reason);
  bool exit_requested() const { return exit_code_.has_value(); }
  int exit_code() const { return exit_code_.value_or(0); }

  bool start_paused() const { return config_.start_paused; }
  // Whether the VM starts once an incoming migration has loaded: not with -S, unless `cont`
  // came while the stream was still awaited (QEMU's autostart); `stop` clears it.
  bool autostart() const { return autostart_; }
  // The image locks of the drives devices use (QEMU's bdrv_activate_all /
  // bdrv_inactivate_all): a migration source releases them at stop-and-copy, a destination
  // takes them at switchover, a source whose migration failed takes them back. Main loop.
  Status activate_drives();
  Status inactivate_drives();
  // An incoming migration has completed (the VM runs, or stays paused as its source was):
  // every NIC announces itself with the migration's announce-* parameters, as QEMU does
  // once the incoming side has dealt with every error.
  void announce_after_incoming(const net::AnnounceParameters& params);
  memory::AddressSpace& memory() { return memory_; }
  IoPorts& io_ports() { return io_; }
  pci::PciBus& pci_bus() { return *pci_; }
  EventLoop& loop() { return loop_; }
  MachineLock& lock() { return lock_; }
  // RAM block 0 ("pc.ram" or the memory backend), mapped as `memory_map()` says.
  memory::RamBlock& main_ram() const { return *main_ram_; }
  // Fixed once the machine is built: safe to read from any thread.
  const MemoryMap& memory_map() const { return memory_map_; }
  // The interrupts the guest's CPU received (MSI window messages, INTx levels), for guest
  // programs that wait for interrupts; thread-safe.
  CpuInterrupts& cpu_interrupts() { return cpu_interrupts_; }
  // What quiescing each device cost when the VM last stopped, by migration section idstr.
  struct QuiesceTiming {
    std::string idstr;
    int64_t ns = 0;
    int64_t drain_ns = 0;
  };
  const std::vector<QuiesceTiming>& last_quiesce() const { return last_quiesce_; }
  // The -drive backend with this id, or null.
  block::BlockBackend* find_drive(std::string_view id) const { return backends_.find_drive(id); }

  // PciHost
  void map_bar(const pci::BarRegion& region) override;
  void unmap_bar(const pci::BarRegion& region) override;
  // InterruptSink (INTx lines after routing)
  void set_irq(unsigned irq, bool level) override;
  // MsiSink: interrupts inside the MSI window, memory writes elsewhere
  void write(uint64_t address, uint32_t data) override;

  // QtestTarget
  uint64_t read(uint64_t addr, unsigned size) override;
  void write(uint64_t addr, unsigned size, uint64_t value) override;
  void read_bytes(uint64_t addr, std::span<uint8_t> out) override;
  void write_bytes(uint64_t addr, std::span<const uint8_t> data) override;
  uint32_t port_in(uint16_t port, unsigned size) override;
  void port_out(uint16_t port, unsigned size, uint32_t value) override;
  int64_t clock_ns() override;
  std::optional<int64_t> next_deadline_ns() override;
  int64_t advance_clock(int64_t target_ns) override;
  Status intercept_irqs(std::string_view device_path, IrqDirection direction,
                        std::string_view gpio_name, IrqHandler handler) override;

 private:
  Machine(EventLoop& loop, MachineConfig config);
  Status build();
  // A device applied a drive's error policy (block/error_policy.h).
  void on_block_io_error(const block::BlockBackend& drive, const block::IoErrorReport& report);
  // Builds a -device through its type's factory (vm/device_types.h).
  Status add_device(const DeviceConfig& device);
  Status register_qmp_commands();
  Status start_guest_program();
  // Called on the vCPU thread when the guest program ends.
  void guest_program_ended(const Status& error);
  Json query_pci() const;

  class MsiWindow;
  class BarWindow;
  class BarPiece;
  // A memory BAR the PCI layer mapped, and the pieces of it that decode (map_bar above).
  struct BarMapping {
    std::string name;  // "00:03.0/bar0"
    uint64_t address = 0;
    uint64_t size = 0;
    pci::MmioHandler* handler = nullptr;
    uint64_t order = 0;  // when it was mapped: the newest wins where BARs overlap
    std::vector<std::unique_ptr<BarPiece>> pieces;
  };
  // Recomputes which parts of every memory BAR decode and maps exactly those.
  void remap_bars();

  EventLoop& loop_;
  MachineConfig config_;
  RunState state_ = RunState::kPrelaunch;
  bool autostart_ = true;  // see autostart(); set from -S in build()
  std::optional<int> exit_code_;
  MachineLock lock_;
  memory::RamBlock* main_ram_ = nullptr;
  MemoryMap memory_map_;
  MonotonicClock real_clock_;
  VirtualClock virtual_clock_;
  memory::AddressSpace memory_;
  IoPorts io_;
  // Declared before the bus: devices (owned by the bus) go first, then the drives they use.
  BackendRegistry backends_;
  DeviceEventForwarder device_events_;  // outlives the devices (owned by the bus)
  std::unique_ptr<pci::PciBus> pci_;
  // Builds devices; knows their ids and migration sections.
  std::unique_ptr<DeviceHost> devices_;
  // The NICs' set_link and announcements; gone before the devices its timers reach.
  std::unique_ptr<NetControl> net_;
  std::unique_ptr<MsiWindow> msi_window_;
  std::unique_ptr<BarWindow> ecam_window_;
  std::map<std::pair<const pci::PciDevice*, int>, BarMapping> bar_mappings_;
  uint64_t bar_map_count_ = 0;
  CpuInterrupts cpu_interrupts_;
  std::vector<QuiesceTiming> last_quiesce_;
  IrqHandler intx_intercept_;
  IrqHandler msi_intercept_;
  std::unique_ptr<QmpServer> qmp_;
  std::unique_ptr<QtestServer> qtest_;
  // The vCPU running -guest; stopped before the devices and drives it touches go.
  std::unique_ptr<Vcpu> vcpu_;
  bool guest_failed_ = false;
  // Bottom halves the vCPU schedules check this first: the machine may be gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Declared last: destroyed first, so its threads stop before the state they use goes.
  std::unique_ptr<MigrationControl> migration_;
};

}  // namespace ferry::vm
