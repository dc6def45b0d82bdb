// Where one virtqueue lives in guest memory, as the driver programmed it through the
// transport (virtio-pci's common configuration: queue_size, queue_enable, queue_desc,
// queue_driver, queue_device). The transport owns these registers; the queue reads them
// when the driver enables it. Kept apart so the transport and the rings meet only here.
#pragma once

#include <cstdint>

namespace ferry::virtio {

struct QueueLayout {
  uint16_t size = 0;     // entries; a power of two for split rings
  bool enabled = false;  // queue_enable written 1
  uint64_t desc = 0;     // descriptor table (split) or descriptor ring (packed)
  uint64_t driver = 0;   // available ring (split) or driver event suppression (packed)
  uint64_t device = 0;   // used ring (split) or device event suppression (packed)
};

}  // namespace ferry::virtio
