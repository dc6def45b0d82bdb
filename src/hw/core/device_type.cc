#include "hw/core/device_type.h"

namespace ferry::hw {

std::string_view device_category_name(DeviceCategory category) {
  switch (category) {
    case DeviceCategory::kBridge: return "Controller/Bridge/Hub";
    case DeviceCategory::kUsb: return "USB";
    case DeviceCategory::kStorage: return "Storage";
    case DeviceCategory::kNetwork: return "Network";
    case DeviceCategory::kInput: return "Input";
    case DeviceCategory::kDisplay: return "Display";
    case DeviceCategory::kSound: return "Sound";
    case DeviceCategory::kMisc: return "Misc";
  }
  return "Uncategorized";
}

}  // namespace ferry::hw
