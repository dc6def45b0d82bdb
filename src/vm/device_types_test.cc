#include "vm/device_types.h"

#include <set>

#include <gtest/gtest.h>

namespace ferry::vm {
namespace {

TEST(DeviceTypes, LookupFindsEveryRegisteredTypeByItsName) {
  for (const char* name : {"nvme", "nvme-ns", "ferry-testdev"}) {
    const hw::DeviceType* type = find_device_type(name);
    ASSERT_NE(type, nullptr) << name;
    EXPECT_EQ(type->name, name);
    ASSERT_NE(type->schema, nullptr) << name;
    ASSERT_NE(type->create, nullptr) << name;
    // The schema names the option as errors print it.
    EXPECT_EQ(type->schema().option, std::string("-device ") + name);
  }
  EXPECT_EQ(find_device_type("warp-drive"), nullptr);
  EXPECT_EQ(find_device_type(""), nullptr);
  EXPECT_EQ(find_device_type("NVME"), nullptr);  // QEMU's type names are case-sensitive
}

TEST(DeviceTypes, NamesAreUniqueAndParentsAreRegistered) {
  std::set<std::string_view> names;
  for (const hw::DeviceType* type : device_types())
    EXPECT_TRUE(names.insert(type->name).second) << type->name;
  for (const hw::DeviceType* type : device_types()) {
    if (type->on_pci_bus()) {
      EXPECT_EQ(type->bus_name, "PCI") << type->name;
      continue;
    }
    const hw::DeviceType* parent = find_device_type(type->parent_type);
    ASSERT_NE(parent, nullptr) << type->name << " plugs into " << type->parent_type;
  }
  const hw::DeviceType* ns = find_device_type("nvme-ns");
  ASSERT_NE(ns, nullptr);
  EXPECT_EQ(ns->parent_type, "nvme");
  EXPECT_EQ(ns->bus_name, "nvme-bus");
}

TEST(DeviceTypes, HelpGroupsTypesByCategoryInQemusFormat) {
  EXPECT_EQ(format_device_types_help(),
            "Storage devices:\n"
            "name \"nvme\", bus PCI, desc \"Non-Volatile Memory Express\"\n"
            "name \"nvme-ns\", bus nvme-bus, desc \"Virtual NVMe namespace (attached to the "
            "last nvme before it)\"\n"
            "\n"
            "Network devices:\n"
            "name \"virtio-net-pci\", bus PCI\n"
            "\n"
            "Misc devices:\n"
            "name \"ferry-testdev\", bus PCI, desc \"PCI Express test function: scratch "
            "registers, INTx, MSI-X\"\n");
}

TEST(DeviceTypes, PropertyHelpFollowsQemusDevicePropertyFormat) {
  const hw::DeviceType* testdev = find_device_type("ferry-testdev");
  ASSERT_NE(testdev, nullptr);
  // Padded to 24 columns with the indent, the default as JSON, no driver or id; addr is
  // QEMU's int32 devfn, -1 when not given.
  EXPECT_EQ(format_device_help(*testdev),
            "ferry-testdev options:\n"
            "  addr=<int32>           - Slot and optional function number, example: 06.0 or 06 "
            "(default: -1)\n"
            "  x-block-migration=<bool> - register a migration blocker (for tests) "
            "(default: false)\n");
  const hw::DeviceType* nvme = find_device_type("nvme");
  ASSERT_NE(nvme, nullptr);
  std::string help = format_device_help(*nvme);
  EXPECT_EQ(help.rfind("nvme options:\n  addr=<int32>", 0), 0u) << help;
  EXPECT_NE(help.find("\n  max_ioqpairs=<uint32>  -  (default: 64)\n"), std::string::npos)
      << help;
  EXPECT_NE(help.find("\n  serial=<str>\n"), std::string::npos) << help;
  EXPECT_EQ(help.find("driver="), std::string::npos) << help;
  EXPECT_EQ(help.find("bus="), std::string::npos) << help;
}

}  // namespace
}  // namespace ferry::vm
