#include "vm/device_models.h"

#include "hw/nvme/nvme_properties.h"

namespace ferry::vm {

namespace {

const OptSchema kTestdevSchema{"-device ferry-testdev", "driver",
                               {{"driver", OptType::kString, "", "device model"},
                                {"id", OptType::kString, "", "device id"},
                                {"addr", OptType::kString, "", "PCI address SLOT[.FN]"},
                                {"x-block-migration", OptType::kBool, "off",
                                 "register a migration blocker (for tests)"}}};

}  // namespace

const std::vector<DeviceModel>& device_models() {
  static const std::vector<DeviceModel> models = {
      {"ferry-testdev", "PCI Express test function: scratch registers, INTx, MSI-X",
       &kTestdevSchema, true},
      {"nvme", "Non-Volatile Memory Express", &nvme::controller_schema(), true},
      {"nvme-ns", "Virtual NVMe namespace (attached to the last nvme before it)",
       &nvme::namespace_schema(), false},
  };
  return models;
}

const DeviceModel* find_device_model(std::string_view name) {
  for (const DeviceModel& model : device_models())
    if (model.name == name) return &model;
  return nullptr;
}

}  // namespace ferry::vm
