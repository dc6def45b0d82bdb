// `-device nvme` and `-device nvme-ns`: the properties QEMU 7.2 knows under these names
// (the subset Ferry implements), their defaults, and the checks QEMU makes on them.
// Parsing is base/qemu_opts.h; these functions turn parsed options into configurations
// and refuse values out of range naming the property and the value.
#pragma once

#include <cstdint>
#include <string>

#include "base/qemu_opts.h"
#include "base/status.h"

namespace ferry::nvme {

struct ControllerConfig {
  std::string serial;  // required
  std::string drive;   // optional: namespace 1 on this drive (resolved by the machine)
  uint32_t max_ioqpairs = 64;   // 1..65535
  uint32_t msix_qsize = 65;     // 1..2048
  uint8_t mdts = 7;             // 2^n pages of 4 KiB; 1..(IOV_MAX limit)
  uint8_t aerl = 3;             // 0's based
  uint32_t aer_max_queued = 64;
  uint16_t mqes = 0x7ff;        // 0's based, >= 1
  uint8_t vsl = 7;              // >= 1
  uint32_t logical_block_size = 512;  // for the drive= namespace: 512 or 4096
};

struct NamespaceDeviceConfig {
  std::string drive;       // required
  uint32_t nsid = 0;       // 0: next free
  uint32_t logical_block_size = 512;
};

// Schemas for the option parser; implied key "driver" ("nvme" / "nvme-ns"). Both also
// accept `id`, `bus` and `addr` (used by the machine, ignored here).
const OptSchema& controller_schema();
const OptSchema& namespace_schema();

Result<ControllerConfig> controller_config(const Opts& opts);
Result<NamespaceDeviceConfig> namespace_config(const Opts& opts);

}  // namespace ferry::nvme
