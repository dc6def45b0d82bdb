#include "vm/device_types.h"

#include <algorithm>
#include <array>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hw/nvme/device_types.h"
#include "hw/testdev/testdev_type.h"
#include "hw/virtio/net/virtio_net_type.h"

namespace ferry::vm {

std::span<const hw::DeviceType* const> device_types() {
  // The registration list: adding a device type is one line here.
  static const std::array<const hw::DeviceType*, 4> types = {
      &testdev::testdev_type(),
      &nvme::controller_type(),
      &nvme::namespace_type(),
      &virtio::net::virtio_net_pci_type(),
  };
  return types;
}

const hw::DeviceType* find_device_type(std::string_view name) {
  for (const hw::DeviceType* type : device_types())
    if (type->name == name) return type;
  return nullptr;
}

std::string format_device_types_help() {
  std::vector<const hw::DeviceType*> sorted(device_types().begin(), device_types().end());
  std::sort(sorted.begin(), sorted.end(), [](const hw::DeviceType* a, const hw::DeviceType* b) {
    if (a->category != b->category) return a->category < b->category;
    return a->name < b->name;
  });
  std::string out;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const hw::DeviceType& type = *sorted[i];
    if (i == 0 || sorted[i - 1]->category != type.category)
      out += fmt::format("{}{} devices:\n", i == 0 ? "" : "\n",
                         hw::device_category_name(type.category));
    // QEMU leaves desc out for a type without one (virtio-net-pci).
    out += type.description.empty()
               ? fmt::format("name \"{}\", bus {}\n", type.name, type.bus_name)
               : fmt::format("name \"{}\", bus {}, desc \"{}\"\n", type.name, type.bus_name,
                             type.description);
  }
  return out;
}

namespace {

// A property's default as QEMU prints it: JSON (numbers bare, booleans true/false,
// strings quoted).
std::string default_as_json(const OptSpec& spec) {
  // A PCI address not given is devfn -1 (the bus picks a slot).
  if (spec.type == OptType::kPciDevfn && spec.default_value.empty()) return "-1";
  if (is_signed_integer(spec.type)) {
    auto value = parse_signed_number(spec.default_value);
    if (value.ok()) return std::to_string(*value);
  }
  if (spec.type == OptType::kSize || integer_range(spec.type)) {
    auto value = spec.type == OptType::kSize ? parse_size(spec.default_value)
                                             : parse_number(spec.default_value);
    if (value.ok()) return std::to_string(*value);
  }
  if (spec.type == OptType::kBool) {
    auto value = parse_bool(spec.default_value);
    if (value.ok()) return *value ? "true" : "false";
  }
  return nlohmann::json(spec.default_value).dump();
}

}  // namespace

std::string format_device_help(const hw::DeviceType& type) {
  std::vector<std::string> lines;
  const OptSchema& schema = type.schema();
  for (const OptSpec& spec : schema.properties) {
    // The driver name, id and bus are the command line's, not the device's properties:
    // QEMU's listing has none of them.
    if (spec.name == schema.implied_key || spec.name == "id" || spec.name == "bus") continue;
    std::string line = fmt::format("  {}=<{}>", spec.name, opt_type_name(spec.type));
    std::string help = spec.help;
    if (!spec.choices.empty()) {
      std::string choices;
      for (size_t i = 0; i < spec.choices.size(); ++i)
        choices += (i == 0 ? "" : i + 1 == spec.choices.size() ? " or " : ", ") + spec.choices[i];
      help += fmt::format("{}({})", help.empty() ? "" : " ", choices);
    }
    bool has_default = !spec.default_value.empty() || spec.type == OptType::kPciDevfn;
    if (!help.empty() || has_default) {
      if (line.size() < 24) line.resize(24, ' ');
      line += " - " + help;
    }
    if (has_default) line += fmt::format(" (default: {})", default_as_json(spec));
    lines.push_back(std::move(line));
  }
  // QEMU sorts the finished lines.
  std::sort(lines.begin(), lines.end());
  std::string out = fmt::format("{} options:\n", type.name);
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

}  // namespace ferry::vm
