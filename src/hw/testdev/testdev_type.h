// `-device ferry-testdev`: the type the machine looks up by name (hw/core/device_type.h).
#pragma once

#include "hw/core/device_type.h"

namespace ferry::testdev {

const hw::DeviceType& testdev_type();

}  // namespace ferry::testdev
