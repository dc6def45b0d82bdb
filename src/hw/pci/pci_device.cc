// Config space, masks, BARs and mappings, INTx and the standard capabilities.
// MSI-X is in msix.cc, the migration hooks in pci_migration.cc.
#include "hw/pci/pci_device.h"

#include <algorithm>

#include <bit>

#include "base/byte_order.h"
#include "hw/pci/pci_bus.h"

namespace ferry::pci {

namespace {

bool overlaps(uint32_t offset, unsigned size, uint32_t start, uint32_t length) {
  return offset < start + length && start < offset + size;
}

bool valid_access_size(unsigned size) { return size == 1 || size == 2 || size == 4; }

}  // namespace

std::string_view bar_type_name(BarType type) {
  switch (type) {
    case BarType::kMem32: return "mem32";
    case BarType::kMem64: return "mem64";
    case BarType::kIo: return "io";
  }
  return "?";
}

PciDevice::PciDevice(std::string type_name, PciKind kind)
    : type_name_(std::move(type_name)), kind_(kind) {
  pci_.owner = this;
  pci_.config_size = is_express() ? kExpressConfigSize : kConfigSize;
  msix_.owner = this;
  for (int i = 0; i < kBarCount; ++i) {
    windows_[i].device = this;
    windows_[i].index = i;
  }
  set_writable_mask(kCommand, 2,
                    kCommandIo | kCommandMemory | kCommandBusMaster | kCommandParity |
                        kCommandSerr | kCommandIntxDisable);
  set_w1c_mask(kStatus, 2, kStatusW1cErrors);
  set_volatile_mask(kStatus, 2, kStatusInterrupt);
  set_writable_mask(kCacheLineSize, 1, 0xff);
  set_writable_mask(kLatencyTimer, 1, 0xff);
  set_writable_mask(kInterruptLine, 1, 0xff);
}

PciDevice::~PciDevice() = default;

std::optional<PciAddress> PciDevice::address() const {
  if (bus_ == nullptr) return std::nullopt;
  return address_;
}

void PciDevice::attach_dma(memory::AddressSpace& memory) {
  dma_ = dma::DmaView(memory, bus_master_gate_, type_name_);
}

void PciDevice::set_ids(const PciIds& ids) {
  set_config_u16(kVendorId, ids.vendor);
  set_config_u16(kDeviceId, ids.device);
  set_config_u8(kRevisionId, ids.revision);
  set_config_u8(kClassProgIf, static_cast<uint8_t>(ids.class_code));
  set_config_u16(kClassProgIf + 1, static_cast<uint16_t>(ids.class_code >> 8));
  set_config_u16(kSubsystemVendorId, ids.subsystem_vendor);
  set_config_u16(kSubsystemId, ids.subsystem);
}

// ---- raw access -------------------------------------------------------------------------------

uint16_t PciDevice::config_u16(uint32_t offset) const {
  return static_cast<uint16_t>(config_u8(offset) | config_u8(offset + 1) << 8);
}

uint32_t PciDevice::config_u32(uint32_t offset) const {
  return uint32_t{config_u16(offset)} | uint32_t{config_u16(offset + 2)} << 16;
}

void PciDevice::set_config_u16(uint32_t offset, uint16_t value) {
  set_config_u8(offset, static_cast<uint8_t>(value));
  set_config_u8(offset + 1, static_cast<uint8_t>(value >> 8));
}

void PciDevice::set_config_u32(uint32_t offset, uint32_t value) {
  set_config_u16(offset, static_cast<uint16_t>(value));
  set_config_u16(offset + 2, static_cast<uint16_t>(value >> 16));
}

namespace {
void set_mask_bytes(std::array<uint8_t, kExpressConfigSize>& mask, uint32_t offset,
                    unsigned size, uint32_t value) {
  for (unsigned i = 0; i < size && offset + i < mask.size(); ++i)
    mask[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}
}  // namespace

void PciDevice::set_writable_mask(uint32_t offset, unsigned size, uint32_t mask) {
  set_mask_bytes(wmask_, offset, size, mask);
}
void PciDevice::set_w1c_mask(uint32_t offset, unsigned size, uint32_t mask) {
  set_mask_bytes(w1cmask_, offset, size, mask);
}
void PciDevice::set_volatile_mask(uint32_t offset, unsigned size, uint32_t mask) {
  set_mask_bytes(volatile_mask_, offset, size, mask);
}

// ---- guest access ------------------------------------------------------------------------------

uint32_t PciDevice::config_read(uint32_t offset, unsigned size) const {
  if (!valid_access_size(size) || offset >= config_size() || size > config_size() - offset)
    return all_ones(size);
  return static_cast<uint32_t>(load_le(pci_.config, offset, size));
}

void PciDevice::config_write(uint32_t offset, uint32_t value, unsigned size) {
  if (!valid_access_size(size) || offset >= config_size() || size > config_size() - offset)
    return;
  const uint16_t old_command = command();
  const uint16_t old_msix_control = msix_cap_ ? msix_control() : 0;
  const uint16_t old_pmcsr = pm_cap_ ? config_u16(pm_cap_ + kPmControlStatus) : 0;
  for (unsigned i = 0; i < size; ++i) {
    const uint32_t at = offset + i;
    const uint8_t byte = static_cast<uint8_t>(value >> (8 * i));
    uint8_t& b = pci_.config[at];
    b = static_cast<uint8_t>((b & ~wmask_[at]) | (byte & wmask_[at]));
    b = static_cast<uint8_t>(b & ~(byte & w1cmask_[at]));
  }

  if (overlaps(offset, size, kCommand, 2) || overlaps(offset, size, kBar0, 4 * kBarCount))
    update_mappings();
  const bool msix_control_written =
      msix_cap_ && overlaps(offset, size, msix_cap_ + kMsixControl, 2);
  if (overlaps(offset, size, kCommand, 2) || msix_control_written) update_intx();
  // Pending MSI-X messages leave once nothing holds them back any more.
  if ((!(old_command & kCommandBusMaster) && bus_master_enabled()) ||
      (msix_control_written && old_msix_control != msix_control()))
    msix_deliver_pending();
  if (pm_cap_ && overlaps(offset, size, pm_cap_ + kPmControlStatus, 2))
    apply_power_state_rules(old_pmcsr);
  on_config_write(offset, value, size);
}

void PciDevice::on_config_write(uint32_t, uint32_t, unsigned) {}

// ---- capabilities ----------------------------------------------------------------------------

Result<uint8_t> PciDevice::add_capability(uint8_t id, uint8_t size) {
  if (size < 2)
    return Error(ErrorCode::kInvalidArgument, "{}: capability {:#04x} size {} is below 2",
                 type_name_, id, size);
  const uint32_t offset = next_capability_;
  if (offset + size > kConfigSize)
    return Error(ErrorCode::kInvalidArgument,
                 "{}: no room for capability {:#04x} ({} bytes) at {:#x}", type_name_, id,
                 size, offset);
  // Append to the end of the list so a walk meets capabilities in the order added.
  uint32_t link = kCapabilityPointer;
  for (int steps = 0; pci_.config[link] != 0 && steps < 48; ++steps)
    link = pci_.config[link] + 1u;
  pci_.config[link] = static_cast<uint8_t>(offset);
  pci_.config[offset] = id;
  pci_.config[offset + 1] = 0;
  set_config_u16(kStatus, config_u16(kStatus) | kStatusCapabilityList);
  next_capability_ = (offset + size + 3) & ~3u;
  return static_cast<uint8_t>(offset);
}

std::optional<uint8_t> PciDevice::find_capability(uint8_t id) const {
  if (!(config_u16(kStatus) & kStatusCapabilityList)) return std::nullopt;
  uint8_t at = config_u8(kCapabilityPointer);
  // Bounded walk: a list can hold at most 48 dword-aligned capabilities.
  for (int steps = 0; at != 0 && steps < 48; ++steps) {
    if (config_u8(at) == id) return at;
    at = config_u8(at + 1u);
  }
  return std::nullopt;
}

Result<uint8_t> PciDevice::add_express_capability() {
  if (!is_express())
    return Error(ErrorCode::kInvalidArgument,
                 "{}: a conventional PCI device cannot have a PCI Express capability",
                 type_name_);
  auto cap = add_capability(kCapExpress, kExpressCapSize);
  if (!cap.ok()) return cap;
  const uint32_t at = *cap;
  set_config_u16(at + kExpFlags, kExpVersion2 | kExpTypeEndpoint << 4);
  // Device capabilities: 128-byte max payload, role-based error reporting.
  set_config_u32(at + kExpDeviceCaps, 1u << 15);
  // Device control: error reporting, relaxed ordering, max payload, no-snoop, max read
  // request; status: the error-detected bits are write-1-to-clear.
  set_config_u16(at + kExpDeviceControl, 0x2810);  // relaxed ordering, no-snoop, 512 B MRRS
  set_writable_mask(at + kExpDeviceControl, 2, 0x7cff);
  set_w1c_mask(at + kExpDeviceStatus, 2, 0x000f);
  // Link: 2.5 GT/s, x1, up and trained at that speed and width.
  set_config_u32(at + kExpLinkCaps, 0x1 | 0x1 << 4);
  set_writable_mask(at + kExpLinkControl, 2, 0x00cb);
  set_config_u16(at + kExpLinkStatus, 0x1 | 0x1 << 4);
  // Version-2 registers: completion timeout disable supported and controllable; the
  // supported-speeds vector lists 2.5 GT/s; target link speed 2.5 GT/s.
  set_config_u32(at + kExpDeviceCaps2, 1u << 4);
  set_writable_mask(at + kExpDeviceControl2, 2, 1u << 4);
  set_config_u32(at + kExpLinkCaps2, 1u << 1);
  set_config_u16(at + kExpLinkControl2, 0x1);
  set_writable_mask(at + kExpLinkControl2, 2, 0x000f);
  return cap;
}

Result<uint8_t> PciDevice::add_power_management_capability() {
  auto cap = add_capability(kCapPowerManagement, kPmSize);
  if (!cap.ok()) return cap;
  pm_cap_ = *cap;
  set_config_u16(pm_cap_ + kPmCapabilities, 0x3);  // spec version 1.2, no D1/D2, no PME
  set_config_u16(pm_cap_ + kPmControlStatus, kPmD0 | kPmNoSoftReset);
  set_writable_mask(pm_cap_ + kPmControlStatus, 2, kPmStateMask);
  return cap;
}

uint16_t PciDevice::power_state() const {
  return pm_cap_ ? config_u16(pm_cap_ + kPmControlStatus) & kPmStateMask : kPmD0;
}

// D1 and D2 are not supported: a write asking for them leaves the state unchanged.
void PciDevice::apply_power_state_rules(uint16_t old_pmcsr) {
  const uint32_t at = pm_cap_ + kPmControlStatus;
  const uint16_t now = config_u16(at);
  const uint16_t state = now & kPmStateMask;
  if (state == 1 || state == 2)
    set_config_u16(at, static_cast<uint16_t>((now & ~kPmStateMask) | (old_pmcsr & kPmStateMask)));
}

// ---- BARs ---------------------------------------------------------------------------------------

Status PciDevice::register_bar(int index, uint64_t size, BarType type, bool prefetchable,
                               MmioHandler* handler) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::kInvalidArgument, "{}: BAR {} ({} bytes, {}): {}", type_name_,
                 index, size, bar_type_name(type), why);
  };
  if (index < 0 || index >= kBarCount) return bad("index outside 0..5");
  const bool wide = type == BarType::kMem64;
  if (wide && index == kBarCount - 1) return bad("a 64-bit BAR needs the next slot too");
  if (bars_[index].registered || bars_[index].upper_half ||
      (wide && (bars_[index + 1].registered || bars_[index + 1].upper_half)))
    return bad("slot already in use");
  if (!std::has_single_bit(size)) return bad("size is not a power of two");
  if (type == BarType::kIo) {
    if (size < 4 || size > 256) return bad("I/O BARs hold 4..256 ports");
    if (prefetchable) return bad("I/O BARs cannot be prefetchable");
  } else if (size < 16) {
    return bad("memory BARs hold at least 16 bytes");
  } else if (!wide && size > (uint64_t{1} << 31)) {
    return bad("a 32-bit BAR holds at most 2 GiB");
  }

  Bar& bar = bars_[index];
  bar = Bar{.registered = true, .size = size, .type = type, .prefetchable = prefetchable,
            .handler = handler};
  const uint32_t reg = kBar0 + 4 * index;
  const uint64_t address_mask = ~(size - 1);
  if (type == BarType::kIo) {
    set_config_u32(reg, kBarIoSpace);
    set_writable_mask(reg, 4, static_cast<uint32_t>(address_mask) & ~kBarIoFlagBits);
  } else {
    uint32_t flags = (wide ? kBarMem64 : 0) | (prefetchable ? kBarPrefetchable : 0);
    set_config_u32(reg, flags);
    set_writable_mask(reg, 4, static_cast<uint32_t>(address_mask) & ~kBarMemFlagBits);
    if (wide) {
      bars_[index + 1].upper_half = true;
      set_config_u32(reg + 4, 0);
      set_writable_mask(reg + 4, 4, static_cast<uint32_t>(address_mask >> 32));
    }
  }
  return {};
}

bool PciDevice::bar_registered(int index) const {
  return index >= 0 && index < kBarCount && bars_[index].registered;
}
uint64_t PciDevice::bar_size(int index) const {
  return bar_registered(index) ? bars_[index].size : 0;
}
BarType PciDevice::bar_type(int index) const {
  return bar_registered(index) ? bars_[index].type : BarType::kMem32;
}
bool PciDevice::bar_prefetchable(int index) const {
  return bar_registered(index) && bars_[index].prefetchable;
}
uint64_t PciDevice::bar_address(int index) const {
  return bar_registered(index) ? bars_[index].mapped : kUnmapped;
}
MmioHandler& PciDevice::bar_handler(int index) { return windows_[index]; }

uint64_t PciDevice::decoded_bar_address(int index) const {
  const Bar& bar = bars_[index];
  const uint32_t reg = kBar0 + 4 * index;
  uint64_t address;
  uint64_t last;
  switch (bar.type) {
    case BarType::kIo:
      if (!io_enabled()) return kUnmapped;
      address = config_u32(reg) & ~kBarIoFlagBits;
      last = address + bar.size - 1;
      // Port space is 64 KiB; an all-ones sizing value never maps.
      if (address == 0 || last > 0xffff) return kUnmapped;
      return address;
    case BarType::kMem32:
      if (!memory_enabled()) return kUnmapped;
      address = config_u32(reg) & ~kBarMemFlagBits;
      last = address + bar.size - 1;
      // Like QEMU, a 32-bit BAR reaching the last byte below 4 GiB counts as being sized.
      if (address == 0 || last >= 0xffffffffu) return kUnmapped;
      return address;
    case BarType::kMem64:
      if (!memory_enabled()) return kUnmapped;
      address = (config_u32(reg) & ~kBarMemFlagBits) | uint64_t{config_u32(reg + 4)} << 32;
      last = address + bar.size - 1;
      if (address == 0 || last < address || last == kUnmapped) return kUnmapped;
      return address;
  }
  return kUnmapped;
}

BarRegion PciDevice::region(int index, uint64_t address) {
  const Bar& bar = bars_[index];
  return BarRegion{.device = this, .bar = index, .address = address, .size = bar.size,
                   .is_io = bar.type == BarType::kIo, .handler = &windows_[index]};
}

void PciDevice::update_mappings() {
  for (int i = 0; i < kBarCount; ++i) {
    Bar& bar = bars_[i];
    if (!bar.registered) continue;
    const uint64_t want = decoded_bar_address(i);
    if (want == bar.mapped) continue;
    const uint64_t old = bar.mapped;
    bar.mapped = want;
    if (bus_ == nullptr) continue;
    if (old != kUnmapped) bus_->unmap_bar(region(i, old));
    if (want != kUnmapped) bus_->map_bar(region(i, want));
  }
}

uint64_t PciDevice::BarWindow::read(uint64_t offset, unsigned size) {
  if (device->in_msix_table(index, offset, size))
    return device->msix_table_read(offset - device->msix_layout_.table_offset, size);
  if (device->in_msix_pba(index, offset, size))
    return device->msix_pba_read(offset - device->msix_layout_.pba_offset, size);
  MmioHandler* handler = device->bars_[index].handler;
  return handler ? handler->read(offset, size) : 0;
}

void PciDevice::BarWindow::write(uint64_t offset, uint64_t value, unsigned size) {
  if (device->in_msix_table(index, offset, size))
    return device->msix_table_write(offset - device->msix_layout_.table_offset, value, size);
  if (device->in_msix_pba(index, offset, size)) return;  // the PBA is read-only
  if (MmioHandler* handler = device->bars_[index].handler) handler->write(offset, value, size);
}

// ---- INTx ---------------------------------------------------------------------------------------

Status PciDevice::set_interrupt_pin(uint8_t pin) {
  if (pin > 4)
    return Error(ErrorCode::kInvalidArgument, "{}: interrupt pin {} is outside 0..4 (none, A..D)",
                 type_name_, pin);
  if (bus_ != nullptr)
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: the interrupt pin is fixed once the device is plugged in", type_name_);
  set_config_u8(kInterruptPin, pin);
  return {};
}

void PciDevice::set_irq(bool level) {
  const uint8_t pin = interrupt_pin();
  if (pin == 0) return;
  pci_.irq_state[pin - 1] = level ? 1 : 0;
  update_intx();
}

bool PciDevice::irq_level() const {
  const uint8_t pin = interrupt_pin();
  return pin != 0 && pci_.irq_state[pin - 1] != 0;
}

// The status bit mirrors the device's level; the line follows it unless INTx is disabled
// or MSI-X has taken over.
void PciDevice::update_intx() {
  const bool level = irq_level();
  uint16_t status = config_u16(kStatus);
  status = level ? (status | kStatusInterrupt) : (status & ~kStatusInterrupt);
  set_config_u16(kStatus, status);
  const bool assert = level && !(command() & kCommandIntxDisable) && !msix_enabled();
  if (assert == intx_asserted_) return;
  intx_asserted_ = assert;
  if (bus_ != nullptr) bus_->intx_changed(*this, assert);
}

void PciDevice::reset() {
  pci_.config = reset_config_;
  pci_.irq_state.fill(0);
  msix_.table = reset_msix_table_;
  std::fill(msix_.pba.begin(), msix_.pba.end(), uint8_t{0});
  update_mappings();
  update_intx();
  on_reset();
}

void PciDevice::attach(PciBus& bus, PciAddress address) {
  bus_ = &bus;
  address_ = address;
  reset_config_ = pci_.config;
  reset_msix_table_ = msix_.table;
  // Anything the device already decodes or drives now reaches the machine.
  for (Bar& bar : bars_) bar.mapped = kUnmapped;
  update_mappings();
  if (intx_asserted_) {
    intx_asserted_ = false;
    update_intx();
  }
}

}  // namespace ferry::pci
