// CRC-32C (Castagnoli), the checksum NVMe, iSCSI and fio's verify=crc32c use; computed by
// ISA-L with the CPU's CRC32 instruction where available.
#pragma once

#include <cstdint>
#include <span>

namespace ferry {

// Standard CRC-32C of `data` (crc32c("123456789") == 0xE3069283). Pass a previous
// result as `crc` to continue a checksum over several pieces.
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

}  // namespace ferry
