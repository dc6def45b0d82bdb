#include "hw/pci/pci_bus.h"

#include "hw/pci/host_bridge.h"

namespace ferry::pci {

PciBus::PciBus(PciHost& host, InterruptSink& irqs, MsiSink& msi, PciBusOptions options)
    : host_(host), irqs_(irqs), msi_(msi), options_(options) {
  auto bridge = std::make_unique<PciHostBridge>();
  bridge->attach(*this, PciAddress{0, 0});
  functions_[0] = std::move(bridge);
}

PciBus::~PciBus() {
  // Devices go before the bus: detach them so nothing they do on the way reaches the host.
  for (auto& fn : functions_)
    if (fn) fn->bus_ = nullptr;
}

Result<PciAddress> PciBus::free_slot(std::string_view type_name) const {
  for (int slot = 1; slot < kSlotCount; ++slot) {
    bool empty = true;
    for (int fn = 0; fn < kFunctionCount && empty; ++fn)
      empty = functions_[slot * kFunctionCount + fn] == nullptr;
    if (empty) return PciAddress{static_cast<uint8_t>(slot), 0};
  }
  return Error(ErrorCode::kFailedPrecondition, "no free PCI slot on bus 0 for {}", type_name);
}

Result<PciDevice*> PciBus::add(std::unique_ptr<PciDevice> device, std::string_view addr) {
  if (!device) return Error(ErrorCode::kInvalidArgument, "no device to add to the PCI bus");
  Result<PciAddress> where = addr.empty() ? free_slot(device->type_name())
                                          : parse_pci_address(addr);
  if (!where.ok()) return where.take_status();
  const PciAddress at = *where;
  if (const PciDevice* used = find(at))
    return Error(ErrorCode::kInvalidArgument,
                 "PCI address addr='{}' ({}) is already used by {}; cannot add {}", addr,
                 at.to_string(), used->type_name(), device->type_name());
  PciDevice* dev = device.get();
  functions_[at.devfn()] = std::move(device);
  // Several functions in one slot: every one of them says so in its header type.
  int in_slot = 0;
  for (int fn = 0; fn < kFunctionCount; ++fn)
    in_slot += functions_[at.slot * kFunctionCount + fn] != nullptr;
  if (in_slot > 1) {
    for (int fn = 0; fn < kFunctionCount; ++fn)
      if (PciDevice* f = functions_[at.slot * kFunctionCount + fn].get())
        f->set_config_u8(kHeaderType, f->config_u8(kHeaderType) | kHeaderTypeMultiFunction);
  }
  if (dev->interrupt_pin() != 0) {
    dev->address_ = at;  // irq_of needs the slot
    dev->set_config_u8(kInterruptLine, static_cast<uint8_t>(irq_of(*dev)));
  }
  dev->attach(*this, at);
  return dev;
}

PciDevice* PciBus::find(PciAddress address) const {
  if (address.slot >= kSlotCount || address.function >= kFunctionCount) return nullptr;
  return functions_[address.devfn()].get();
}

PciDevice& PciBus::host_bridge() const { return *functions_[0]; }

std::vector<PciDevice*> PciBus::devices() const {
  std::vector<PciDevice*> out;
  for (const auto& fn : functions_)
    if (fn) out.push_back(fn.get());
  return out;
}

std::vector<PciDeviceInfo> PciBus::query() const {
  std::vector<PciDeviceInfo> out;
  for (PciDevice* dev : devices()) {
    PciDeviceInfo info{.bus = 0,
                       .slot = dev->address_.slot,
                       .function = dev->address_.function,
                       .type_name = dev->type_name(),
                       .class_code = dev->class_code(),
                       .vendor = dev->vendor_id(),
                       .device = dev->device_id(),
                       .subsystem_vendor = dev->config_u16(kSubsystemVendorId),
                       .subsystem = dev->config_u16(kSubsystemId),
                       .revision = dev->revision(),
                       .pin = dev->interrupt_pin()};
    if (info.pin != 0) info.irq = static_cast<int>(irq_of(*dev));
    for (int i = 0; i < kBarCount; ++i) {
      if (!dev->bar_registered(i)) continue;
      info.bars.push_back({.bar = i, .type = dev->bar_type(i),
                           .prefetchable = dev->bar_prefetchable(i),
                           .address = dev->bar_address(i), .size = dev->bar_size(i)});
    }
    out.push_back(std::move(info));
  }
  return out;
}

// ---- configuration access ----------------------------------------------------------------------

uint32_t PciBus::config_read(unsigned bus, unsigned devfn, uint32_t reg, unsigned size) const {
  if (bus != 0 || devfn >= functions_.size() || !functions_[devfn]) return all_ones(size);
  return functions_[devfn]->config_read(reg, size);
}

void PciBus::config_write(unsigned bus, unsigned devfn, uint32_t reg, uint32_t value,
                          unsigned size) {
  if (bus != 0 || devfn >= functions_.size() || !functions_[devfn]) return;
  functions_[devfn]->config_write(reg, value, size);
}

// Offset 0..3 is the address register (dword access only), 4..7 the data window into the
// register the address selects.
uint64_t PciBus::ConfigPorts::read(uint64_t offset, unsigned size) {
  if (offset == 0 && size == 4) return address_;
  if (offset < 4 || offset + size > 8 || size > 4) return all_ones(size);
  if (!(address_ & kConfigAddressEnable)) return all_ones(size);
  const uint32_t reg = (address_ & 0xfc) + static_cast<uint32_t>(offset - 4);
  return bus_.config_read((address_ >> 16) & 0xff, (address_ >> 8) & 0xff, reg, size);
}

void PciBus::ConfigPorts::write(uint64_t offset, uint64_t value, unsigned size) {
  if (offset == 0 && size == 4) {
    address_ = static_cast<uint32_t>(value);
    return;
  }
  if (offset < 4 || offset + size > 8 || size > 4) return;
  if (!(address_ & kConfigAddressEnable)) return;
  const uint32_t reg = (address_ & 0xfc) + static_cast<uint32_t>(offset - 4);
  bus_.config_write((address_ >> 16) & 0xff, (address_ >> 8) & 0xff, reg,
                    static_cast<uint32_t>(value), size);
}

uint64_t PciBus::Ecam::read(uint64_t offset, unsigned size) {
  if (size > 4) return ~uint64_t{0};
  const uint32_t reg = offset & 0xfff;
  if (reg + size > kExpressConfigSize) return all_ones(size);
  return bus_.config_read(static_cast<unsigned>(offset >> 20), (offset >> 12) & 0xff, reg, size);
}

void PciBus::Ecam::write(uint64_t offset, uint64_t value, unsigned size) {
  if (size > 4) return;
  const uint32_t reg = offset & 0xfff;
  if (reg + size > kExpressConfigSize) return;
  bus_.config_write(static_cast<unsigned>(offset >> 20), (offset >> 12) & 0xff, reg,
                    static_cast<uint32_t>(value), size);
}

// ---- INTx routing ----------------------------------------------------------------------------

int PciBus::pirq_of(const PciDevice& device) const {
  return (device.address_.slot + device.interrupt_pin() - 1) % 4;
}

unsigned PciBus::irq_of(const PciDevice& device) const {
  return options_.pirq_irqs[pirq_of(device)];
}

bool PciBus::irq_level(unsigned irq) const {
  for (int pirq = 0; pirq < 4; ++pirq)
    if (options_.pirq_irqs[pirq] == irq && pirq_count_[pirq] > 0) return true;
  return false;
}

void PciBus::intx_changed(const PciDevice& device, bool asserted) {
  if (device.interrupt_pin() == 0) return;
  pirq_count_[pirq_of(device)] += asserted ? 1 : -1;
  const unsigned irq = irq_of(device);
  const bool level = irq_level(irq);
  auto [it, inserted] = reported_level_.try_emplace(irq, false);
  if (it->second == level) return;
  it->second = level;
  irqs_.set_irq(irq, level);
}

}  // namespace ferry::pci
