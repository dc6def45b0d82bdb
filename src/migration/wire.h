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
// Ferry's switchover handshake, above QEMU's range (return_path.h): the source's go-ahead,
// sent after the vmdesc on a socket once nothing can cancel the migration any more.
inline constexpr uint16_t kCmdFerryGo = 0x100;

// Return-path message types, destination to source: be16 type, be16 length, data
// (QEMU's enum mig_rp_message_type; SWITCHOVER_ACK is QEMU 8.1's).
inline constexpr uint16_t kRpShut = 1;           // be32 status, 0 = the load succeeded
inline constexpr uint16_t kRpPong = 2;           // be32, the PING's value
inline constexpr uint16_t kRpSwitchoverAck = 7;  // no data: the source may stop the VM
inline constexpr uint16_t kRpQemuMax = 7;        // QEMU's types end here
// Ferry's switchover handshake in the same framing (return_path.h).
inline constexpr uint16_t kRpFerryLoadTime = 0x100;    // be64 ns, u8 idstr length, idstr
inline constexpr uint16_t kRpFerryLoaded = 0x101;      // no data: waiting for FERRY_GO
inline constexpr uint16_t kRpFerryLoadFailed = 0x102;  // the reason, text
inline constexpr uint16_t kRpFerryRunning = 0x103;     // no data: the VM runs here now
inline constexpr uint16_t kRpFerryPaused = 0x104;      // no data: loaded, left paused (-S)

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
