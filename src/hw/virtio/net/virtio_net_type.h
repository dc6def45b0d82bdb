// `-device virtio-net-pci`: the type the machine looks up by name (hw/core/device_type.h),
// with QEMU 7.2's property names, types and defaults.
#pragma once

#include "base/qemu_opts.h"
#include "hw/core/device_type.h"

namespace ferry::virtio::net {

const OptSchema& virtio_net_pci_schema();
const hw::DeviceType& virtio_net_pci_type();

}  // namespace ferry::virtio::net
