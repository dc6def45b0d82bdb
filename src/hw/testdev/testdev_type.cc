#include "hw/testdev/testdev_type.h"

#include <fmt/format.h>

#include "hw/testdev/testdev.h"

namespace ferry::testdev {

namespace {

const OptSchema& testdev_schema() {
  static const OptSchema schema{"-device ferry-testdev", "driver",
                                {{"driver", OptType::kString, "", "device model"},
                                 {"id", OptType::kString, "", "device id"},
                                 {"addr", OptType::kPciDevfn, "",
                                  "Slot and optional function number, example: 06.0 or 06"},
                                 {"x-block-migration", OptType::kBool, "off",
                                  "register a migration blocker (for tests)"}}};
  return schema;
}

Status create_testdev(hw::DeviceContext& context, const hw::DeviceOptions& options) {
  auto dev = TestDevice::create();
  if (!dev.ok()) return dev.take_status();
  TestDevice& testdev = **dev;
  auto plugged = context.slot.plug_pci(options, std::move(dev).value());
  if (!plugged.ok()) return plugged.take_status();
  FERRY_RETURN_IF_ERROR(context.migration.add_pci_section(kTestDeviceState, testdev));
  if (options.opts.boolean("x-block-migration").value_or(false))
    return context.migration.add_blocker(
        fmt::format("{} at {}: x-block-migration=on makes it unmigratable", options.driver,
                    testdev.address()->to_bdf()));
  return {};
}

}  // namespace

const hw::DeviceType& testdev_type() {
  static const hw::DeviceType type{
      .name = "ferry-testdev",
      .category = hw::DeviceCategory::kMisc,
      .description = "PCI Express test function: scratch registers, INTx, MSI-X",
      .schema = testdev_schema,
      .bus_name = "PCI",
      .create = create_testdev,
  };
  return type;
}

}  // namespace ferry::testdev
