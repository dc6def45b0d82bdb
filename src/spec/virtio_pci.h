// Facts of the virtio 1.x PCI transport (virtio spec §4.1, "Virtio Over PCI Bus") and of the
// legacy (0.9.5) I/O register block, as QEMU 7.2's virtio-pci presents them: PCI identity,
// vendor-capability types and layout, common configuration offsets, device status and ISR
// bits, the transport's feature bits. Shared by the device side (hw/virtio) and guest
// drivers; facts only, no behaviour. Ring feature bits (INDIRECT_DESC, EVENT_IDX) belong to
// spec/virtio_ring.h.
#pragma once

#include <cstdint>

namespace ferry::spec::virtio_pci {

// ---- PCI identity ----
inline constexpr uint16_t kVendorId = 0x1af4;          // Red Hat / Qumranet
inline constexpr uint16_t kSubsystemVendorId = 0x1af4;
// Transitional devices: 0x1000 + (device type's legacy number); modern-only: 0x1040 + id.
inline constexpr uint16_t kTransitionalNetDeviceId = 0x1000;
inline constexpr uint16_t kModernDeviceIdBase = 0x1040;
// A transitional device's subsystem id is its virtio device id (net: 1).
inline constexpr uint16_t kDeviceIdNet = 1;
inline constexpr uint32_t kClassNetworkEthernet = 0x020000;

// ---- vendor-specific capabilities (struct virtio_pci_cap) ----
inline constexpr uint8_t kCapVendor = 0x09;
inline constexpr uint8_t kCapCommonCfg = 1;
inline constexpr uint8_t kCapNotifyCfg = 2;
inline constexpr uint8_t kCapIsrCfg = 3;
inline constexpr uint8_t kCapDeviceCfg = 4;
inline constexpr uint8_t kCapPciCfg = 5;
// Byte offsets inside a capability.
inline constexpr uint32_t kCapLen = 2;       // u8: length of this capability
inline constexpr uint32_t kCapCfgType = 3;   // u8
inline constexpr uint32_t kCapBar = 4;       // u8
inline constexpr uint32_t kCapOffset = 8;    // le32
inline constexpr uint32_t kCapLength = 12;   // le32
inline constexpr uint8_t kCapSize = 16;
// virtio_pci_notify_cap: the common part, then notify_off_multiplier.
inline constexpr uint32_t kNotifyCapMultiplier = 16;  // le32
inline constexpr uint8_t kNotifyCapSize = 20;
// virtio_pci_cfg_cap: the common part, then a 4-byte data window into the BAR it names.
inline constexpr uint32_t kPciCfgCapData = 16;
inline constexpr uint8_t kPciCfgCapSize = 20;

// ---- common configuration (struct virtio_pci_common_cfg), little-endian ----
inline constexpr uint32_t kCommonDfSelect = 0x00;      // le32 device_feature_select
inline constexpr uint32_t kCommonDf = 0x04;            // le32 device_feature (RO)
inline constexpr uint32_t kCommonGfSelect = 0x08;      // le32 driver_feature_select
inline constexpr uint32_t kCommonGf = 0x0c;            // le32 driver_feature
inline constexpr uint32_t kCommonMsix = 0x10;          // le16 config_msix_vector
inline constexpr uint32_t kCommonNumQueues = 0x12;     // le16 num_queues (RO)
inline constexpr uint32_t kCommonStatus = 0x14;        // u8 device_status
inline constexpr uint32_t kCommonCfgGeneration = 0x15; // u8 config_generation (RO)
inline constexpr uint32_t kCommonQueueSelect = 0x16;   // le16
inline constexpr uint32_t kCommonQueueSize = 0x18;     // le16
inline constexpr uint32_t kCommonQueueMsix = 0x1a;     // le16
inline constexpr uint32_t kCommonQueueEnable = 0x1c;   // le16
inline constexpr uint32_t kCommonQueueNotifyOff = 0x1e;  // le16 (RO)
inline constexpr uint32_t kCommonQueueDescLo = 0x20;   // le32 each half
inline constexpr uint32_t kCommonQueueDescHi = 0x24;
inline constexpr uint32_t kCommonQueueDriverLo = 0x28; // the available ring (split)
inline constexpr uint32_t kCommonQueueDriverHi = 0x2c;
inline constexpr uint32_t kCommonQueueDeviceLo = 0x30; // the used ring (split)
inline constexpr uint32_t kCommonQueueDeviceHi = 0x34;
inline constexpr uint32_t kCommonQueueNotifyData = 0x38;  // le16 (virtio 1.2)
inline constexpr uint32_t kCommonQueueReset = 0x3a;       // le16 (virtio 1.2, RING_RESET)

// ---- device status (u8) ----
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusNeedsReset = 0x40;
inline constexpr uint8_t kStatusFailed = 0x80;

// ---- ISR status (u8, read clears) ----
inline constexpr uint8_t kIsrQueue = 0x1;
inline constexpr uint8_t kIsrConfig = 0x2;

// "No MSI-X vector" in config_msix_vector / queue_msix_vector (and legacy equivalents).
inline constexpr uint16_t kNoVector = 0xffff;

// ---- legacy I/O BAR (virtio 0.9.5 header, little-endian) ----
inline constexpr uint32_t kLegacyHostFeatures = 0;   // le32, bits 0..31 (RO)
inline constexpr uint32_t kLegacyGuestFeatures = 4;  // le32
inline constexpr uint32_t kLegacyQueuePfn = 8;       // le32, ring address >> 12
inline constexpr uint32_t kLegacyQueueNum = 12;      // le16 (RO)
inline constexpr uint32_t kLegacyQueueSel = 14;      // le16
inline constexpr uint32_t kLegacyQueueNotify = 16;   // le16
inline constexpr uint32_t kLegacyStatus = 18;        // u8
inline constexpr uint32_t kLegacyIsr = 19;           // u8, read clears
inline constexpr uint32_t kLegacyMsiConfigVector = 20;  // le16, only while MSI-X is enabled
inline constexpr uint32_t kLegacyMsiQueueVector = 22;   // le16, only while MSI-X is enabled
// Where device configuration starts: after the MSI-X vectors only while MSI-X is enabled.
inline constexpr uint32_t kLegacyConfigNoMsix = 20;
inline constexpr uint32_t kLegacyConfigMsix = 24;
inline constexpr uint32_t kLegacyQueueAddrShift = 12;
inline constexpr uint64_t kLegacyVringAlign = 4096;

// ---- transport feature bits ----
inline constexpr unsigned kFeatureNotifyOnEmpty = 24;  // legacy only
inline constexpr unsigned kFeatureAnyLayout = 27;      // legacy only
inline constexpr unsigned kFeatureBadFeature = 30;     // legacy: "the driver did not negotiate"
inline constexpr unsigned kFeatureVersion1 = 32;
inline constexpr unsigned kFeatureAccessPlatform = 33;
inline constexpr unsigned kFeatureRingPacked = 34;
inline constexpr unsigned kFeatureInOrder = 35;
inline constexpr unsigned kFeatureOrderPlatform = 36;
inline constexpr unsigned kFeatureSrIov = 37;
inline constexpr unsigned kFeatureNotificationData = 38;
inline constexpr unsigned kFeatureNotifConfigData = 39;
inline constexpr unsigned kFeatureRingReset = 40;

inline constexpr uint64_t feature_bit(unsigned bit) { return uint64_t{1} << bit; }

// QEMU's limits: queues per device and entries per queue.
inline constexpr unsigned kQueueMax = 1024;
inline constexpr unsigned kQueueMaxSize = 1024;

}  // namespace ferry::spec::virtio_pci
