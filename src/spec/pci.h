// Facts of the PCI Local Bus 3.0 and PCI Express Base specifications: configuration-space
// offsets, register bits, capability layouts and configuration mechanism #1. Shared by
// the PCI layer and device models (hw/pci, through pci_regs.h) and the guest's bus code
// (guest/pci.h): both sides of the bus speak the specification, neither sees the other's
// code. Header only, no behaviour.
#pragma once

#include <cstdint>

namespace ferry::spec::pci {

// ---- configuration space ------------------------------------------------------------------
inline constexpr uint32_t kConfigSize = 256;           // conventional PCI
inline constexpr uint32_t kExpressConfigSize = 4096;   // PCI Express (extended space)

// Type 0 header.
inline constexpr uint32_t kVendorId = 0x00;            // 16 bit
inline constexpr uint32_t kDeviceId = 0x02;            // 16 bit
inline constexpr uint32_t kCommand = 0x04;             // 16 bit
inline constexpr uint32_t kStatus = 0x06;              // 16 bit
inline constexpr uint32_t kRevisionId = 0x08;          // 8 bit
inline constexpr uint32_t kClassProgIf = 0x09;         // 8 bit; class code is 0x09..0x0b
inline constexpr uint32_t kCacheLineSize = 0x0c;
inline constexpr uint32_t kLatencyTimer = 0x0d;
inline constexpr uint32_t kHeaderType = 0x0e;
inline constexpr uint32_t kBar0 = 0x10;                // six 32-bit BAR registers
inline constexpr uint32_t kSubsystemVendorId = 0x2c;
inline constexpr uint32_t kSubsystemId = 0x2e;
inline constexpr uint32_t kRomAddress = 0x30;
inline constexpr uint32_t kCapabilityPointer = 0x34;
inline constexpr uint32_t kInterruptLine = 0x3c;
inline constexpr uint32_t kInterruptPin = 0x3d;
inline constexpr uint32_t kFirstCapability = 0x40;     // where standard capabilities start
inline constexpr uint32_t kExtendedCapabilities = 0x100;

inline constexpr int kBarCount = 6;

// Command register bits.
inline constexpr uint16_t kCommandIo = 1u << 0;
inline constexpr uint16_t kCommandMemory = 1u << 1;
inline constexpr uint16_t kCommandBusMaster = 1u << 2;
inline constexpr uint16_t kCommandSerr = 1u << 8;
inline constexpr uint16_t kCommandParity = 1u << 6;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;

// Status register bits.
inline constexpr uint16_t kStatusInterrupt = 1u << 3;
inline constexpr uint16_t kStatusCapabilityList = 1u << 4;
// The error bits software clears by writing 1 (parity, aborts, SERR).
inline constexpr uint16_t kStatusW1cErrors = 0xf900;

inline constexpr uint8_t kHeaderTypeMultiFunction = 0x80;

// BAR register low bits.
inline constexpr uint32_t kBarIoSpace = 0x1;
inline constexpr uint32_t kBarMem64 = 0x4;
inline constexpr uint32_t kBarPrefetchable = 0x8;
inline constexpr uint32_t kBarMemFlagBits = 0xf;
inline constexpr uint32_t kBarIoFlagBits = 0x3;

// ---- capabilities ---------------------------------------------------------------------------
inline constexpr uint8_t kCapPowerManagement = 0x01;
inline constexpr uint8_t kCapMsi = 0x05;
inline constexpr uint8_t kCapExpress = 0x10;
inline constexpr uint8_t kCapMsix = 0x11;

// Power management (8 bytes): PMC at +2, PMCSR at +4.
inline constexpr uint8_t kPmSize = 8;
inline constexpr uint32_t kPmCapabilities = 2;
inline constexpr uint32_t kPmControlStatus = 4;
inline constexpr uint16_t kPmStateMask = 0x3;          // D0..D3hot
inline constexpr uint16_t kPmNoSoftReset = 1u << 3;
inline constexpr uint16_t kPmD0 = 0;
inline constexpr uint16_t kPmD3Hot = 3;

// MSI-X (12 bytes): message control at +2, table offset/BIR at +4, PBA offset/BIR at +8.
inline constexpr uint8_t kMsixCapSize = 12;
inline constexpr uint32_t kMsixControl = 2;
inline constexpr uint32_t kMsixTable = 4;
inline constexpr uint32_t kMsixPba = 8;
inline constexpr uint16_t kMsixTableSizeMask = 0x07ff;  // N-1
inline constexpr uint16_t kMsixFunctionMask = 1u << 14;
inline constexpr uint16_t kMsixEnable = 1u << 15;
inline constexpr uint32_t kMsixBirMask = 0x7;
inline constexpr uint32_t kMsixEntrySize = 16;          // addr lo, addr hi, data, control
inline constexpr uint32_t kMsixEntryAddrLo = 0;
inline constexpr uint32_t kMsixEntryAddrHi = 4;
inline constexpr uint32_t kMsixEntryData = 8;
inline constexpr uint32_t kMsixEntryControl = 12;
inline constexpr uint32_t kMsixEntryMasked = 0x1;
inline constexpr unsigned kMsixMaxVectors = 2048;

// PCI Express capability, version 2 layout (0x3c bytes).
inline constexpr uint8_t kExpressCapSize = 0x3c;
inline constexpr uint32_t kExpFlags = 0x02;            // version 3:0, port type 7:4
inline constexpr uint32_t kExpDeviceCaps = 0x04;
inline constexpr uint32_t kExpDeviceControl = 0x08;
inline constexpr uint32_t kExpDeviceStatus = 0x0a;
inline constexpr uint32_t kExpLinkCaps = 0x0c;
inline constexpr uint32_t kExpLinkControl = 0x10;
inline constexpr uint32_t kExpLinkStatus = 0x12;
inline constexpr uint32_t kExpDeviceCaps2 = 0x24;
inline constexpr uint32_t kExpDeviceControl2 = 0x28;
inline constexpr uint32_t kExpLinkCaps2 = 0x2c;
inline constexpr uint32_t kExpLinkControl2 = 0x30;
inline constexpr uint16_t kExpVersion2 = 0x2;
inline constexpr uint16_t kExpTypeEndpoint = 0x0;

// ---- configuration mechanism #1 (PC I/O ports) ----------------------------------------------
// The address register and the data window.
inline constexpr uint16_t kConfigAddressPort = 0xcf8;
inline constexpr uint16_t kConfigDataPort = 0xcfc;
inline constexpr uint32_t kConfigAddressEnable = 1u << 31;

// The address register value selecting bus 0's `slot`.`function`, dword `offset`.
inline constexpr uint32_t config_address(uint8_t slot, uint8_t function, uint32_t offset) {
  return kConfigAddressEnable | uint32_t{slot} << 11 | uint32_t{function} << 8 | (offset & 0xfc);
}

}  // namespace ferry::spec::pci
