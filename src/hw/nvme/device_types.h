// `-device nvme` and `-device nvme-ns`: the types the machine looks up by name
// (hw/core/device_type.h). nvme-ns plugs into the last nvme created before it.
#pragma once

#include "hw/core/device_type.h"

namespace ferry::nvme {

const hw::DeviceType& controller_type();
const hw::DeviceType& namespace_type();

}  // namespace ferry::nvme
