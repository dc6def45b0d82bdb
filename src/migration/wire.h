// Bytes of QEMU's migration stream (design.md §5), as named constants.
#pragma once

#include <cstdint>
#include <string_view>

namespace ferry::migration::wire {

inline constexpr uint32_t kMagic = 0x5145564D;  // "QEVM"
inline constexpr uint32_t kVersion = 3;

// Top-level record types.
inline constexpr uint8_t kEof = 0x00;
inline constexpr uint8_t kSectionStart = 0x01;
inline constexpr uint8_t kSectionPart = 0x02;
inline constexpr uint8_t kSectionEnd = 0x03;
inline constexpr uint8_t kSectionFull = 0x04;
inline constexpr uint8_t kSubsection = 0x05;
inline constexpr uint8_t kVmdescription = 0x06;
inline constexpr uint8_t kConfiguration = 0x07;
inline constexpr uint8_t kCommand = 0x08;
inline constexpr uint8_t kFooter = 0x7e;

// COMMAND numbers (QEMU's enum MigrationCommand).
inline constexpr uint16_t kCmdOpenReturnPath = 1;
inline constexpr uint16_t kCmdPing = 2;
inline constexpr uint16_t kCmdSwitchoverStart = 11;
inline constexpr uint16_t kCmdMax = 11;
std::string_view command_name(uint16_t cmd);

inline constexpr size_t kMaxIdstr = 127;  // QEMU's idstr is char[256], names stay <= 127

// The "ram" section.
inline constexpr std::string_view kRamIdstr = "ram";
inline constexpr uint32_t kRamVersion = 4;
inline constexpr uint64_t kRamZero = 0x02;
inline constexpr uint64_t kRamMemSize = 0x04;
inline constexpr uint64_t kRamPage = 0x08;
inline constexpr uint64_t kRamEos = 0x10;
inline constexpr uint64_t kRamContinue = 0x20;
inline constexpr uint64_t kRamXbzrle = 0x40;
inline constexpr uint64_t kRamHook = 0x80;
inline constexpr uint64_t kRamCompressPage = 0x100;
inline constexpr uint64_t kRamMultifdFlush = 0x200;
inline constexpr uint64_t kRamFlagMask = 0xfff;  // flags live in the low 12 bits

inline constexpr uint32_t kVmdescPageSize = 4096;

}  // namespace ferry::migration::wire
