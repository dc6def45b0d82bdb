// Builds devices from their types (hw/core/device_type.h) and is what a factory's context
// points at: the PCI bus slot, the parent device (the last one of the parent type), and
// the migration registrar, where -only-migratable turns every blocker into an error.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "hw/core/device_type.h"
#include "hw/pci/pci_bus.h"
#include "vm/migration_control.h"

namespace ferry::vm {

// Forwards devices' QMP events to the machine's monitors (set once the machine has them).
class DeviceEventForwarder final : public hw::DeviceEvents {
 public:
  using Listener = std::function<void(std::string_view name, const nlohmann::ordered_json& data)>;
  void set_listener(Listener listener) { listener_ = std::move(listener); }
  void emit(std::string_view name, const nlohmann::ordered_json& data) override {
    if (listener_) listener_(name, data);
  }

 private:
  Listener listener_;
};

// What a device may use besides its slot and registrar.
struct DeviceResources {
  EventLoop& loop;
  const Clock& clock;
  memory::AddressSpace& memory;
  hw::Backends& backends;
  hw::DeviceEvents& events;  // devices' QMP events (the machine's monitors)
  hw::NicRegistrar& nics;    // the network cards' registry (vm/net_control.h)
};

class DeviceHost final : public hw::MigrationRegistrar, public hw::DeviceSlot {
 public:
  DeviceHost(DeviceResources resources, pci::PciBus& bus, MigrationControl& migration,
             bool only_migratable)
      : resources_(resources), bus_(bus), migration_(migration),
        only_migratable_(only_migratable) {}

  // Builds one -device of `type` through its factory.
  Status create(const hw::DeviceType& type, const hw::DeviceOptions& options);

  // The device a -device id= named, or null.
  pci::PciDevice* find_by_id(std::string_view id) const;
  // The migration section idstr of a device, if it registered one.
  std::optional<std::string> section_name(const pci::PciDevice* device) const;

  // hw::MigrationRegistrar
  using hw::MigrationRegistrar::add_pci_section;
  Status add_pci_section(pci::PciDevice& device,
                         std::unique_ptr<vmstate::StateBinding> state) override;
  Status add_blocker(std::string reason) override;
  // hw::DeviceSlot
  Result<pci::PciDevice*> plug_pci(const hw::DeviceOptions& device,
                                   std::unique_ptr<pci::PciDevice> function) override;
  pci::PciDevice* parent() override { return parent_; }

 private:
  DeviceResources resources_;
  pci::PciBus& bus_;
  MigrationControl& migration_;
  bool only_migratable_;
  pci::PciDevice* parent_ = nullptr;   // for the factory running now
  pci::PciDevice* plugged_ = nullptr;  // what the factory running now plugged in
  std::map<std::string, pci::PciDevice*, std::less<>> last_of_type_;
  std::map<std::string, pci::PciDevice*, std::less<>> by_id_;
  std::map<const pci::PciDevice*, std::string> section_names_;
};

}  // namespace ferry::vm
