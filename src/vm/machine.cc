#include "vm/machine.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "vm/device_types.h"
#include "vm/guest_programs.h"
#include "vm/inprocess_bus.h"
#include "memory/ram_block.h"
#include "migration/section_registry.h"

namespace ferry::vm {

// ---- windows the machine places in its address space ------------------------------------

// The MSI window: a 32-bit write is an interrupt message (address bits 19:12 name the
// destination, the data its vector); nothing is readable.
class Machine::MsiWindow final : public memory::MmioHandler {
 public:
  explicit MsiWindow(Machine& machine) : machine_(machine) {}
  uint64_t read(uint64_t, unsigned) override { return 0; }
  void write(uint64_t offset, uint64_t value, unsigned) override {
    machine_.write(kMsiWindowBase + offset, static_cast<uint32_t>(value));
  }

 private:
  Machine& machine_;
};

// A PCI-layer handler (BAR, ECAM) seen through the memory layer's handler interface.
class Machine::BarWindow final : public memory::MmioHandler {
 public:
  BarWindow(std::string name, pci::MmioHandler& inner) : name_(std::move(name)), inner_(inner) {}
  const std::string& name() const { return name_; }
  uint64_t read(uint64_t offset, unsigned size) override { return inner_.read(offset, size); }
  void write(uint64_t offset, uint64_t value, unsigned size) override {
    inner_.write(offset, value, size);
  }

 private:
  std::string name_;
  pci::MmioHandler& inner_;
};

// The part of a BAR that decodes at one guest address range: offsets are shifted back to
// the BAR's own.
class Machine::BarPiece final : public memory::MmioHandler {
 public:
  BarPiece(std::string name, uint64_t offset_in_bar, pci::MmioHandler& inner)
      : name_(std::move(name)), offset_in_bar_(offset_in_bar), inner_(inner) {}
  const std::string& name() const { return name_; }
  uint64_t read(uint64_t offset, unsigned size) override {
    return inner_.read(offset_in_bar_ + offset, size);
  }
  void write(uint64_t offset, uint64_t value, unsigned size) override {
    inner_.write(offset_in_bar_ + offset, value, size);
  }

 private:
  std::string name_;
  uint64_t offset_in_bar_;
  pci::MmioHandler& inner_;
};

// ---- the memory map -----------------------------------------------------------------------

MemoryMap MemoryMap::for_ram_size(uint64_t ram_size) {
  constexpr uint64_t kSplitFrom = kEcamBase;             // RAM this large is split...
  constexpr uint64_t kBelow4gWhenSplit = uint64_t{2} << 30;  // ...keeping 2 GiB below 4 GiB
  constexpr uint64_t kHole64Align = uint64_t{1} << 30;
  MemoryMap map;
  map.ram_size = ram_size;
  map.below_4g = ram_size >= kSplitFrom ? kBelow4gWhenSplit : ram_size;
  map.above_4g = ram_size - map.below_4g;
  // q35 starts pci-hole64 at the end of RAM above 4 GiB (4 GiB when there is none),
  // rounded up to 1 GiB.
  uint64_t ram_end = kRamAbove4gBase + map.above_4g;
  map.pci_hole64_base = (ram_end + kHole64Align - 1) / kHole64Align * kHole64Align;
  map.pci_hole64_end = map.pci_hole64_base + kPciHole64Size;
  return map;
}

std::optional<uint64_t> MemoryMap::ram_offset(uint64_t addr, uint64_t len) const {
  if (addr <= below_4g && len <= below_4g - addr) return addr;
  if (addr >= kRamAbove4gBase && addr - kRamAbove4gBase <= above_4g &&
      len <= above_4g - (addr - kRamAbove4gBase))
    return below_4g + (addr - kRamAbove4gBase);
  return std::nullopt;
}

// ---- construction ------------------------------------------------------------------------

Machine::Machine(EventLoop& loop, MachineConfig config)
    : loop_(loop), config_(std::move(config)), backends_(loop_, !config_.incoming.empty()) {
  // The creating thread runs the loop: it holds the lock except while the loop sleeps.
  lock_.lock();
  loop_.set_wait_hooks([this] { lock_.unlock(); }, [this] { lock_.lock(); });
}

Machine::~Machine() {
  // Migration threads first, then the vCPU (which may be waiting for the lock we hold),
  // then the endpoints holding callbacks into the machine.
  migration_.reset();
  if (vcpu_) {
    lock_.unlock();
    vcpu_.reset();
    lock_.lock();
  }
  qtest_.reset();
  qmp_.reset();
  loop_.set_wait_hooks({}, {});
  lock_.unlock();
}

Result<std::unique_ptr<Machine>> Machine::create(EventLoop& loop, MachineConfig config) {
  std::unique_ptr<Machine> machine(new Machine(loop, std::move(config)));
  FERRY_RETURN_IF_ERROR(machine->build());
  return machine;
}

Status Machine::build() {
  if (config_.ram_backend && !config_.ram_size_given) config_.ram_size = config_.ram_backend->size;
  if (config_.ram_size == 0 || config_.ram_size % 4096 != 0)
    return Error(ErrorCode::kInvalidArgument, "-m: RAM size {} is not a positive multiple of 4 KiB",
                 config_.ram_size);
  if (config_.ram_size > kMaxRamSize)
    return Error(ErrorCode::kInvalidArgument, "-m: {} MiB of RAM is more than the {} MiB supported",
                 config_.ram_size >> 20, kMaxRamSize >> 20);
  memory::RamBlockSpec spec{.idstr = "pc.ram", .size = config_.ram_size};
  if (config_.ram_backend) {
    spec = *config_.ram_backend;
    if (config_.ram_size_given && spec.size != config_.ram_size)
      return Error(ErrorCode::kInvalidArgument,
                   "-m: size {} does not match the memory backend '{}' size {}",
                   config_.ram_size, spec.idstr, spec.size);
    config_.ram_size = spec.size;
  }
  auto ram = memory::RamBlock::create(spec);
  if (!ram.ok()) return ram.take_status();
  // One block, mapped below the 32-bit PCI hole and, when it does not fit there, at 4 GiB
  // (QEMU's "ram-below-4g" and "ram-above-4g" aliases of it).
  memory_map_ = MemoryMap::for_ram_size(config_.ram_size);
  std::vector<memory::RamAlias> aliases = {{"ram-below-4g", 0, 0, memory_map_.below_4g}};
  if (memory_map_.above_4g != 0)
    aliases.push_back(
        {"ram-above-4g", kRamAbove4gBase, memory_map_.below_4g, memory_map_.above_4g});
  auto added = memory_.add_ram(std::move(ram).value(), aliases);
  if (!added.ok()) return added.take_status();
  main_ram_ = *added;

  msi_window_ = std::make_unique<MsiWindow>(*this);
  FERRY_RETURN_IF_ERROR(memory_.add_mmio("msi", kMsiWindowBase, kMsiWindowSize, *msi_window_));

  pci_ = std::make_unique<pci::PciBus>(*this, *this, *this);
  FERRY_RETURN_IF_ERROR(io_.add("pci-config", pci::PciBus::kConfigPortsBase,
                                pci::PciBus::kConfigPortsSize, pci_->config_ports()));
  ecam_window_ = std::make_unique<BarWindow>("ecam", pci_->ecam());
  FERRY_RETURN_IF_ERROR(memory_.add_mmio("ecam", kEcamBase, pci::PciBus::kEcamSize, *ecam_window_));

  migration_ = std::make_unique<MigrationControl>(*this, loop_);
  if (auto ram_section = migration_->registry().add_ram(); !ram_section.ok())
    return ram_section.take_status();
  FERRY_RETURN_IF_ERROR(migration_->register_global_state());
  FERRY_RETURN_IF_ERROR(backends_.open(
      config_.drives, config_.faults,
      [this](const block::BlockBackend& drive, const block::IoErrorReport& report) {
        on_block_io_error(drive, report);
      }));
  FERRY_RETURN_IF_ERROR(backends_.open_netdevs(
      config_.netdevs, [this, alive = std::weak_ptr<bool>(alive_)](std::string_view name,
                                                                    const Json& data) {
        if (!alive.expired() && qmp_) qmp_->emit_event(name, data);
      }));
  const Clock& clock = config_.qtest_clock ? static_cast<const Clock&>(virtual_clock_)
                                           : static_cast<const Clock&>(real_clock_);
  device_events_.set_listener([this, alive = std::weak_ptr<bool>(alive_)](
                                  std::string_view name, const Json& data) {
    if (!alive.expired() && qmp_) qmp_->emit_event(name, data);
  });
  // Announce rounds run on real time whatever the VM clock (QEMU's QEMU_CLOCK_REALTIME).
  net_ = std::make_unique<NetControl>(loop_, real_clock_, backends_);
  devices_ = std::make_unique<DeviceHost>(
      DeviceResources{loop_, clock, memory_, backends_, device_events_, *net_}, *pci_,
                                          *migration_, config_.only_migratable);
  for (const DeviceConfig& device : config_.devices) FERRY_RETURN_IF_ERROR(add_device(device));
  backends_.warn_unclaimed_netdevs();
  FERRY_RETURN_IF_ERROR(start_guest_program());

  if (!config_.qmp.empty()) {
    auto qmp = config_.qmp_server ? QmpServer::listen(loop_, config_.qmp, QmpVersion{})
                                  : QmpServer::connect(loop_, config_.qmp, QmpVersion{});
    if (!qmp.ok()) return qmp.take_status().prepend_message("-qmp " + config_.qmp);
    qmp_ = std::move(qmp).value();
    FERRY_RETURN_IF_ERROR(register_qmp_commands());
    FERRY_RETURN_IF_ERROR(backends_.register_qmp_commands(*qmp_));
    FERRY_RETURN_IF_ERROR(net_->register_qmp_commands(*qmp_));
    FERRY_RETURN_IF_ERROR(migration_->register_qmp_commands(*qmp_));
  }
  if (!config_.qtest.empty()) {
    auto qtest = QtestServer::connect(loop_, config_.qtest, *this);
    if (!qtest.ok()) return qtest.take_status().prepend_message("-qtest");
    qtest_ = std::move(qtest).value();
  }
  state_ = config_.start_paused ? RunState::kPrelaunch : RunState::kRunning;
  autostart_ = !config_.start_paused;
  // Devices of a VM that does not run yet start quiesced.
  if (config_.start_paused || !config_.incoming.empty())
    for (pci::PciDevice* dev : pci_->devices()) dev->quiesce();
  if (!config_.incoming.empty()) {
    state_ = RunState::kInMigrate;
    if (config_.incoming != "defer") FERRY_RETURN_IF_ERROR(migration_->listen(config_.incoming));
  }
  if (vcpu_) {
    vcpu_->start();
    if (is_running(state_)) vcpu_->unpark();
  }
  return {};
}

Status Machine::start_guest_program() {
  if (!config_.guest) return {};
  GuestProgramContext context;
  context.ram_size = config_.ram_size;
  context.ram_below_4g = memory_map_.below_4g;
  context.find_device = [this](std::string_view id) -> std::optional<pci::PciAddress> {
    pci::PciDevice* device = devices_->find_by_id(id);
    if (!device) return std::nullopt;
    return device->address();
  };
  auto program = create_guest_program(*config_.guest, context);
  if (!program.ok()) return program.take_status();
  // The program's state travels as the "guest" section, loaded before its first step on
  // a destination.
  auto section = migration_->registry().add("guest", (*program)->migration_state());
  if (!section.ok()) return section.take_status();
  auto bus = std::make_unique<InProcessBus>(*this, InProcessBus::Discipline::kVcpuThread);
  vcpu_ = std::make_unique<Vcpu>(lock_, std::move(bus), std::move(program).value(),
                                 [this](const Status& error) { guest_program_ended(error); });
  return {};
}

void Machine::guest_program_ended(const Status& error) {
  // On the vCPU thread: report from the main loop.
  std::string message = error.ok() ? "" : error.to_string();
  loop_.schedule([this, alive = std::weak_ptr<bool>(alive_), message] {
    if (alive.expired()) return;
    if (!message.empty()) {
      guest_failed_ = true;
      log(LogLevel::kError, "guest program failed: {}", message);
    }
    if (qmp_) {
      Json data = {{"program", config_.guest->program},
                   {"status", message.empty() ? "finished" : "failed"}};
      if (!message.empty()) data["error"] = message;
      qmp_->emit_event("GUEST_PROGRAM_END", data);
    }
  });
}

void Machine::on_block_io_error(const block::BlockBackend& drive,
                                const block::IoErrorReport& report) {
  // QEMU's blk_error_action: the event for every action; for stop, the VM pauses in
  // io-error — from a bottom half, since we are inside the device's completion handling
  // (stopping quiesces the device, which drains the very backend reporting this).
  if (qmp_)
    qmp_->emit_event("BLOCK_IO_ERROR",
                     Json{{"device", drive.config().id},
                          {"operation", report.is_read ? "read" : "write"},
                          {"action", std::string(block::error_action_name(report.action))},
                          {"nospace", report.error == ENOSPC},
                          {"reason", std::strerror(report.error)}});
  if (report.action != block::ErrorAction::kStop) return;
  log(LogLevel::kWarn, "drive {}: {} failed ({}): VM paused (io-error)", drive.config().id,
      block::block_op_name(report.op), std::strerror(report.error));
  loop_.schedule([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired() || state_ != RunState::kRunning) return;
    Status st = set_run_state(RunState::kIoError);
    if (!st.ok()) log(LogLevel::kError, "cannot pause on an I/O error: {}", st.to_string());
  });
}

void Machine::announce_after_incoming(const net::AnnounceParameters& params) {
  net_->announce_after_incoming(params);
}

Status Machine::activate_drives() { return backends_.activate_claimed(); }

Status Machine::inactivate_drives() { return backends_.inactivate_all(); }

Status Machine::add_device(const DeviceConfig& device) {
  const hw::DeviceType* type = find_device_type(device.driver);
  if (!type)
    return Error(ErrorCode::kInvalidArgument, "-device: '{}' is not a valid device model name",
                 device.driver);
  return devices_->create(*type, device);
}

// ---- run state ---------------------------------------------------------------------------

Status Machine::set_run_state(RunState to) {
  RunState from = state_;
  FERRY_RETURN_IF_ERROR(check_transition(from, to));
  state_ = to;
  // An incoming migration has loaded everything: query-guest shows the program it loaded.
  if (from == RunState::kInMigrate && vcpu_) vcpu_->state_loaded();
  if (is_running(from) && !is_running(to)) {
    // The guest program first, between two of its steps; then nothing drives the devices.
    if (vcpu_) vcpu_->park();
    last_quiesce_.clear();
    for (pci::PciDevice* dev : pci_->devices()) {
      int64_t start = real_clock_.now_ns();
      dev->quiesce();
      last_quiesce_.push_back({devices_->section_name(dev).value_or(dev->type_name()),
                               real_clock_.now_ns() - start, dev->last_drain_ns()});
    }
    if (qmp_) qmp_->emit_event("STOP");
  }
  if (!is_running(from) && is_running(to)) {
    for (pci::PciDevice* dev : pci_->devices()) dev->resume();
    if (vcpu_) vcpu_->unpark();
    if (qmp_) qmp_->emit_event("RESUME");
  }
  return {};
}

void Machine::request_exit(int exit_code) {
  // A failed guest program makes the process fail too (its error was logged and sent).
  if (exit_code == 0 && guest_failed_) exit_code = kGuestFailedExitCode;
  exit_code_ = exit_code;
  loop_.quit();
}

void Machine::shutdown(std::string_view reason) {
  if (qmp_) qmp_->emit_event("SHUTDOWN", Json{{"guest", false}, {"reason", reason}});
  // Exit once the reply and the event have been queued and flushed by the next loop
  // iteration. Teardown then stops the vCPU first and each device drains its backend's
  // in-flight I/O as it goes (no STOP event, as QEMU's shutdown).
  loop_.schedule([this] {
    if (!exit_requested()) request_exit(0);
  });
}

// ---- PCI host side -------------------------------------------------------------------------

// "00:03.0/bar2": unique per device and BAR, so unmapping finds exactly this region.
static std::string bar_region_name(const pci::BarRegion& region) {
  auto at = region.device->address();
  return fmt::format("{}/bar{}", at ? at->to_bdf() : region.device->type_name(), region.bar);
}

void Machine::map_bar(const pci::BarRegion& region) {
  std::string name = bar_region_name(region);
  if (region.is_io) {
    Status st = io_.add(name, static_cast<uint32_t>(region.address),
                        static_cast<uint32_t>(region.size), *region.handler);
    if (!st.ok()) log(LogLevel::kWarn, "I/O BAR not mapped: {}", st.to_string());
    return;
  }
  BarMapping& mapping = bar_mappings_[{region.device, region.bar}];
  mapping.name = std::move(name);
  mapping.address = region.address;
  mapping.size = region.size;
  mapping.handler = region.handler;
  mapping.order = ++bar_map_count_;
  remap_bars();
}

void Machine::unmap_bar(const pci::BarRegion& region) {
  if (region.is_io) {
    io_.remove(bar_region_name(region));
    return;
  }
  auto it = bar_mappings_.find({region.device, region.bar});
  if (it == bar_mappings_.end()) return;
  for (const auto& piece : it->second.pieces) (void)memory_.remove_mmio(piece->name());
  bar_mappings_.erase(it);
  remap_bars();  // what this BAR hid decodes again
}

// PCI memory space lies beneath RAM, ECAM and the MSI window (QEMU maps it at priority -1
// under system memory), and among BARs the newest mapping wins: so with every BAR piece
// removed, each BAR in turn, newest first, takes the parts of its range nothing holds yet.
void Machine::remap_bars() {
  std::vector<BarMapping*> newest_first;
  for (auto& [key, mapping] : bar_mappings_) {
    for (const auto& piece : mapping.pieces) (void)memory_.remove_mmio(piece->name());
    mapping.pieces.clear();
    newest_first.push_back(&mapping);
  }
  std::sort(newest_first.begin(), newest_first.end(),
            [](const BarMapping* a, const BarMapping* b) { return a->order > b->order; });
  for (BarMapping* m : newest_first) {
    // The PCI layer never maps a BAR that passes 2^64 (QEMU's rule too).
    for (uint64_t done = 0; done < m->size;) {
      bool mapped = false;
      uint64_t run = memory_.mapped_run(m->address + done, m->size - done, mapped);
      if (run == 0) break;
      if (!mapped) {
        std::string name = run == m->size ? m->name : fmt::format("{}+0x{:x}", m->name, done);
        auto piece = std::make_unique<BarPiece>(std::move(name), done, *m->handler);
        Status st = memory_.add_mmio(piece->name(), m->address + done, run, *piece);
        if (st.ok()) {
          m->pieces.push_back(std::move(piece));
        } else {
          log(LogLevel::kError, "BAR piece not mapped: {}", st.to_string());
        }
      }
      done += run;
    }
    if (m->pieces.empty())
      log(LogLevel::kInfo, "BAR {} at 0x{:x} is hidden entirely (RAM, ECAM, MSI or a newer BAR)",
          m->name, m->address);
  }
}

void Machine::set_irq(unsigned irq, bool level) {
  cpu_interrupts_.set_line(irq, level);
  if (intx_intercept_) intx_intercept_(static_cast<int>(irq), level);
}

void Machine::write(uint64_t address, uint32_t data) {
  if (address >= kMsiWindowBase && address - kMsiWindowBase < kMsiWindowSize) {
    // An interrupt: the CPU records it for guest programs; intercepting tests see it as a
    // raise and lower of line `data`.
    cpu_interrupts_.deliver_msi(data);
    if (msi_intercept_) {
      msi_intercept_(static_cast<int>(data), true);
      msi_intercept_(static_cast<int>(data), false);
    }
    return;
  }
  Status st = memory_.store(address, data, 4);
  if (!st.ok()) log(LogLevel::kWarn, "MSI write dropped: {}", st.to_string());
}

// ---- qtest -------------------------------------------------------------------------------

uint64_t Machine::read(uint64_t addr, unsigned size) {
  auto v = memory_.load(addr, size);
  if (v.ok()) return *v;
  // Not one mapped region: byte by byte as QEMU's address_space_read does, unassigned
  // bytes reading as zero (as on QEMU's PC machines).
  uint8_t bytes[8] = {};
  read_bytes(addr, std::span(bytes, std::min(size, 8u)));
  uint64_t value = 0;
  for (unsigned k = 0; k < size && k < 8; ++k) value |= uint64_t{bytes[k]} << (8 * k);
  return value;
}

void Machine::write(uint64_t addr, unsigned size, uint64_t value) {
  if (memory_.store(addr, value, size).ok()) return;
  uint8_t bytes[8];
  for (unsigned k = 0; k < 8; ++k) bytes[k] = static_cast<uint8_t>(value >> (8 * k));
  write_bytes(addr, std::span<const uint8_t>(bytes, std::min(size, 8u)));  // unassigned: dropped
}

// qtest's read/write/memset act like QEMU's address_space_read/write: mapped parts are
// transferred, unassigned parts read as zero and ignore writes. A range running past
// 2^64 - 1 stops there (QEMU would wrap around to address 0; Ferry does not).
void Machine::read_bytes(uint64_t addr, std::span<uint8_t> out) {
  for (size_t done = 0; done < out.size();) {
    if (done > 0 && addr + done == 0) {  // passed 2^64
      std::fill(out.begin() + static_cast<ptrdiff_t>(done), out.end(), 0);
      return;
    }
    bool mapped = false;
    uint64_t run = memory_.mapped_run(addr + done, out.size() - done, mapped);
    std::span<uint8_t> part = out.subspan(done, static_cast<size_t>(run));
    if (!mapped || !memory_.read(addr + done, part).ok()) std::fill(part.begin(), part.end(), 0);
    done += static_cast<size_t>(run);
  }
}

void Machine::write_bytes(uint64_t addr, std::span<const uint8_t> data) {
  for (size_t done = 0; done < data.size();) {
    if (done > 0 && addr + done == 0) return;  // passed 2^64
    bool mapped = false;
    uint64_t run = memory_.mapped_run(addr + done, data.size() - done, mapped);
    if (mapped) (void)memory_.write(addr + done, data.subspan(done, static_cast<size_t>(run)));
    done += static_cast<size_t>(run);
  }
}

uint32_t Machine::port_in(uint16_t port, unsigned size) { return io_.read(port, size); }

void Machine::port_out(uint16_t port, unsigned size, uint32_t value) {
  io_.write(port, size, value);
}

int64_t Machine::clock_ns() {
  return config_.qtest_clock ? virtual_clock_.now_ns() : real_clock_.now_ns();
}

std::optional<int64_t> Machine::next_deadline_ns() {
  return loop_.next_deadline(config_.qtest_clock ? static_cast<const Clock&>(virtual_clock_)
                                                 : static_cast<const Clock&>(real_clock_));
}

int64_t Machine::advance_clock(int64_t target_ns) {
  if (!config_.qtest_clock) return real_clock_.now_ns();  // a real clock is not steered
  return loop_.advance_clock(virtual_clock_, target_ns);
}

Status Machine::intercept_irqs(std::string_view device_path, IrqDirection, std::string_view,
                               IrqHandler handler) {
  if (device_path == "ioapic" || device_path == "/machine/ioapic") {
    if (intx_intercept_) return Error(ErrorCode::kFailedPrecondition, "IRQ intercept already enabled");
    intx_intercept_ = std::move(handler);
    return {};
  }
  if (device_path == "msi" || device_path == "/machine/msi") {
    if (msi_intercept_) return Error(ErrorCode::kFailedPrecondition, "IRQ intercept already enabled");
    msi_intercept_ = std::move(handler);
    return {};
  }
  return Error(ErrorCode::kInvalidArgument, "Unknown device");
}

// ---- QMP -----------------------------------------------------------------------------------

Json Machine::query_pci() const {
  Json devices = Json::array();
  for (const pci::PciDeviceInfo& d : pci_->query()) {
    Json regions = Json::array();
    for (const auto& bar : d.bars) {
      Json r = {{"bar", bar.bar},
                {"type", bar.type == pci::BarType::kIo ? "io" : "memory"},
                {"address", bar.address},
                {"size", bar.size}};
      if (bar.type != pci::BarType::kIo) {
        r["prefetch"] = bar.prefetchable;
        r["mem_type_64"] = bar.type == pci::BarType::kMem64;
      }
      regions.push_back(std::move(r));
    }
    Json dev = {{"bus", d.bus},
                {"slot", d.slot},
                {"function", d.function},
                {"class_info", {{"class", d.class_code >> 8}}},
                {"id",
                 {{"device", d.device},
                  {"vendor", d.vendor},
                  {"subsystem", d.subsystem},
                  {"subsystem-vendor", d.subsystem_vendor}}},
                {"qdev_id", ""},
                {"regions", std::move(regions)}};
    if (d.pin != 0) {
      dev["irq"] = d.irq;
      dev["irq_pin"] = d.pin;
    }
    devices.push_back(std::move(dev));
  }
  return Json::array({{{"bus", 0}, {"devices", std::move(devices)}}});
}

Status Machine::register_qmp_commands() {
  FERRY_RETURN_IF_ERROR(qmp_->add_command("query-status", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    return Json{{"status", run_state_name(state_)},
                {"singlestep", false},
                {"running", is_running(state_)}};
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("stop", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    // As QEMU: a destination awaiting its stream stays paused after it loads.
    if (state_ == RunState::kInMigrate) autostart_ = false;
    if (state_ == RunState::kRunning || state_ == RunState::kPrelaunch)
      FERRY_RETURN_IF_ERROR(set_run_state(RunState::kPaused));
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("cont", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    if (state_ == RunState::kShutdown)
      return Error(ErrorCode::kFailedPrecondition,
                   "Resetting the Virtual Machine is required");
    // As QEMU's cont: every drive's I/O status starts over; requests held on an error are
    // retried by their devices as they resume.
    backends_.reset_io_status();
    // A destination awaiting its stream only learns to start once it has loaded (QEMU's
    // autostart): running now would let its guest write the image the source still owns.
    if (state_ == RunState::kInMigrate) {
      autostart_ = true;
      return Json::object();
    }
    // A source after a migration (or one whose drives could not be taken back after a
    // failed one) writes again only if it gets the image locks back.
    FERRY_RETURN_IF_ERROR(activate_drives());
    FERRY_RETURN_IF_ERROR(set_run_state(RunState::kRunning));
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("quit", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    shutdown("host-qmp-quit");
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("query-pci", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    // The incoming thread owns device state until the stream is loaded.
    if (state_ == RunState::kInMigrate)
      return Error(ErrorCode::kFailedPrecondition,
                   "device state is being loaded by an incoming migration");
    return query_pci();
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("system_reset", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    if (state_ == RunState::kInMigrate)
      return Error(ErrorCode::kFailedPrecondition,
                   "device state is being loaded by an incoming migration");
    // As QEMU, between two steps of the vCPU (it is paused while the machine resets), then
    // devices return to their plug-in state; RAM keeps its contents, as on QEMU's PCs.
    if (vcpu_) vcpu_->park();
    for (pci::PciDevice* dev : pci_->devices()) dev->reset();
    cpu_interrupts_.reset();  // the local APIC forgets what it had not delivered
    // The CPU is reset too: the guest program learns it lost its devices' state and starts
    // again from its bring-up (guest/program.h).
    if (vcpu_) {
      vcpu_->reset_program();
      if (is_running(state_)) vcpu_->unpark();
    }
    qmp_->emit_event("RESET", Json{{"guest", false}, {"reason", "host-qmp-system-reset"}});
    if (state_ == RunState::kShutdown) FERRY_RETURN_IF_ERROR(set_run_state(RunState::kRunning));
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("query-guest", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    if (!vcpu_) return Error(ErrorCode::kFailedPrecondition, "no guest program (-guest) runs");
    return vcpu_->status();
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("x-guest-finish", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    if (!vcpu_) return Error(ErrorCode::kFailedPrecondition, "no guest program (-guest) runs");
    vcpu_->request_finish();
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("query-memory-size-summary", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    // QEMU's answer without memory hotplug: the whole RAM, below and above 4 GiB.
    return Json{{"base-memory", config_.ram_size}};
  }));
  FERRY_RETURN_IF_ERROR(qmp_->add_command("query-name", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    Json reply = Json::object();
    if (!config_.name.empty()) reply["name"] = config_.name;
    return reply;
  }));
  return {};
}

}  // namespace ferry::vm
