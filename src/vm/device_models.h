// The device models `-device` accepts: name, one-line description and property schema.
// The command line checks every property against the schema; the machine builds the
// device from the parsed options (machine.cc).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/qemu_opts.h"

namespace ferry::vm {

struct DeviceModel {
  std::string name;
  std::string description;
  const OptSchema* schema = nullptr;
  // False for devices that plug into another device rather than the PCI bus (nvme-ns).
  bool on_pci_bus = true;
};

const std::vector<DeviceModel>& device_models();
const DeviceModel* find_device_model(std::string_view name);

}  // namespace ferry::vm
