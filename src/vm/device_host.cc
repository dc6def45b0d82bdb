#include "vm/device_host.h"

#include "migration/section_registry.h"

namespace ferry::vm {

Status DeviceHost::create(const hw::DeviceType& type, const hw::DeviceOptions& options) {
  parent_ = nullptr;
  plugged_ = nullptr;
  if (!type.on_pci_bus()) {
    // None yet: the factory refuses in its own words (it knows what its parent is).
    auto it = last_of_type_.find(type.parent_type);
    if (it != last_of_type_.end()) parent_ = it->second;
  }
  hw::DeviceContext context{resources_.loop,     resources_.clock, resources_.memory,
                            resources_.backends, *this,            *this,
                            resources_.events,   resources_.nics};
  Status built = type.create(context, options);
  parent_ = nullptr;
  if (built.ok() && plugged_) last_of_type_[std::string(type.name)] = plugged_;
  plugged_ = nullptr;
  return built;
}

pci::PciDevice* DeviceHost::find_by_id(std::string_view id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::optional<std::string> DeviceHost::section_name(const pci::PciDevice* device) const {
  auto it = section_names_.find(device);
  if (it == section_names_.end()) return std::nullopt;
  return it->second;
}

Status DeviceHost::add_pci_section(pci::PciDevice& device,
                                   std::unique_ptr<vmstate::StateBinding> state) {
  std::optional<pci::PciAddress> at = device.address();
  if (!at)
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: a migration section needs the device plugged in first", device.type_name());
  std::string idstr = migration::pci_idstr(0, 0, at->slot, at->function, state->vmsd_name());
  section_names_[&device] = idstr;
  return migration_.registry().add(std::move(idstr), std::move(state)).take_status();
}

Status DeviceHost::add_blocker(std::string reason) {
  if (only_migratable_)
    return Error(ErrorCode::kInvalidArgument, "-only-migratable: {}", reason);
  migration_.add_blocker(std::move(reason));
  return {};
}

Result<pci::PciDevice*> DeviceHost::plug_pci(const hw::DeviceOptions& device,
                                             std::unique_ptr<pci::PciDevice> function) {
  auto added = bus_.add(std::move(function), device.addr);
  if (!added.ok()) return added.take_status().prepend_message("-device " + device.driver);
  if (!device.id.empty() && !by_id_.try_emplace(device.id, *added).second)
    return Error(ErrorCode::kInvalidArgument, "-device {}: Duplicate device ID '{}'",
                 device.driver, device.id);
  plugged_ = *added;
  return *added;
}

}  // namespace ferry::vm
