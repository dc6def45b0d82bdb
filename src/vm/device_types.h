// The device types `-device` accepts, one registration line each in device_types.cc; each
// type is declared next to its model (hw/<device>/). The command line checks properties
// against a type's schema and prints `-device help`; the machine builds devices through
// the type's factory.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "hw/core/device_type.h"

namespace ferry::vm {

// Every type, in registration order.
std::span<const hw::DeviceType* const> device_types();
const hw::DeviceType* find_device_type(std::string_view name);

// `-device help`, in QEMU's format: types grouped under "<Category> devices:" headings
// (QEMU's category order, a blank line between groups), sorted by name within a group,
// each as `name "nvme", bus PCI, desc "..."`.
std::string format_device_types_help();

// `-device NAME,help`, in QEMU's format for device properties: "NAME options:", then one
// line per property sorted by name, `  serial=<str>` padded to 24 columns (indent
// included), ` - ` and the description, and the default as JSON (` (default: 64)`,
// ` (default: false)`, ` (default: "x")`).
std::string format_device_help(const hw::DeviceType& type);

}  // namespace ferry::vm
