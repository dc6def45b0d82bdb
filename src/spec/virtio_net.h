// Facts of the virtio 1.x network device (virtio spec §5.1, Linux's virtio_net.h): feature
// bit numbers, the device configuration layout, status bits, the packet headers and the
// control-queue classes, commands and acks. Shared by the device side (hw/virtio/net) and
// guest drivers; all multi-byte fields are little-endian. Header only, no behaviour.
#pragma once

#include <cstdint>

namespace ferry::spec::virtio_net {

// ---- feature bits -----------------------------------------------------------------------------
inline constexpr unsigned kFCsum = 0;              // device handles packets with partial csum
inline constexpr unsigned kFGuestCsum = 1;         // driver handles packets with partial csum
inline constexpr unsigned kFCtrlGuestOffloads = 2; // control class GUEST_OFFLOADS
inline constexpr unsigned kFMtu = 3;               // config `mtu` is valid
inline constexpr unsigned kFMac = 5;               // config `mac` is valid
inline constexpr unsigned kFGso = 6;               // legacy: any GSO type
inline constexpr unsigned kFGuestTso4 = 7;
inline constexpr unsigned kFGuestTso6 = 8;
inline constexpr unsigned kFGuestEcn = 9;
inline constexpr unsigned kFGuestUfo = 10;
inline constexpr unsigned kFHostTso4 = 11;
inline constexpr unsigned kFHostTso6 = 12;
inline constexpr unsigned kFHostEcn = 13;
inline constexpr unsigned kFHostUfo = 14;
inline constexpr unsigned kFMrgRxbuf = 15;         // driver can merge receive buffers
inline constexpr unsigned kFStatus = 16;           // config `status` is valid
inline constexpr unsigned kFCtrlVq = 17;           // control virtqueue
inline constexpr unsigned kFCtrlRx = 18;           // control class RX (promisc, allmulti)
inline constexpr unsigned kFCtrlVlan = 19;         // control class VLAN filtering
inline constexpr unsigned kFCtrlRxExtra = 20;      // RX commands ALLUNI .. NOBCAST
inline constexpr unsigned kFGuestAnnounce = 21;    // driver sends gratuitous packets
inline constexpr unsigned kFMq = 22;               // multiqueue with automatic steering
inline constexpr unsigned kFCtrlMacAddr = 23;      // control command MAC ADDR_SET
inline constexpr unsigned kFHashReport = 57;       // per-packet hash in the header
inline constexpr unsigned kFRss = 60;              // receive-side scaling
inline constexpr unsigned kFRscExt = 61;           // receive segment coalescing info
inline constexpr unsigned kFStandby = 62;          // failover standby of a primary device
inline constexpr unsigned kFSpeedDuplex = 63;      // config `speed` and `duplex` are valid

inline constexpr uint64_t bit(unsigned feature) { return uint64_t{1} << feature; }

// ---- device configuration (offsets) -----------------------------------------------------------
inline constexpr uint32_t kCfgMac = 0;                       // u8[6]
inline constexpr uint32_t kCfgStatus = 6;                    // le16
inline constexpr uint32_t kCfgMaxVirtqueuePairs = 8;         // le16
inline constexpr uint32_t kCfgMtu = 10;                      // le16
inline constexpr uint32_t kCfgSpeed = 12;                    // le32, Mb/s; 0xffffffff unknown
inline constexpr uint32_t kCfgDuplex = 16;                   // u8
inline constexpr uint32_t kCfgRssMaxKeySize = 17;            // u8
inline constexpr uint32_t kCfgRssMaxIndirectionTableLength = 18;  // le16
inline constexpr uint32_t kCfgSupportedHashTypes = 20;       // le32
inline constexpr uint32_t kConfigSize = 24;                  // the whole structure

// Config `status` bits.
inline constexpr uint16_t kStatusLinkUp = 1;
inline constexpr uint16_t kStatusAnnounce = 2;

// Config `duplex` values (ethtool's).
inline constexpr uint8_t kDuplexHalf = 0;
inline constexpr uint8_t kDuplexFull = 1;
inline constexpr uint8_t kDuplexUnknown = 0xff;
inline constexpr int32_t kSpeedUnknown = -1;

// ---- RSS and hash report ----------------------------------------------------------------------
inline constexpr uint32_t kHashTypeIpv4 = 1u << 0;
inline constexpr uint32_t kHashTypeTcpv4 = 1u << 1;
inline constexpr uint32_t kHashTypeUdpv4 = 1u << 2;
inline constexpr uint32_t kHashTypeIpv6 = 1u << 3;
inline constexpr uint32_t kHashTypeTcpv6 = 1u << 4;
inline constexpr uint32_t kHashTypeUdpv6 = 1u << 5;
inline constexpr uint32_t kHashTypeIpEx = 1u << 6;
inline constexpr uint32_t kHashTypeTcpEx = 1u << 7;
inline constexpr uint32_t kHashTypeUdpEx = 1u << 8;

// ---- packet headers ---------------------------------------------------------------------------
// struct virtio_net_hdr (legacy, 10 bytes) and virtio_net_hdr_v1 (12 bytes: VERSION_1 or
// MRG_RXBUF, with num_buffers).
inline constexpr uint32_t kHdrFlags = 0;        // u8
inline constexpr uint32_t kHdrGsoType = 1;      // u8
inline constexpr uint32_t kHdrHdrLen = 2;       // le16
inline constexpr uint32_t kHdrGsoSize = 4;      // le16
inline constexpr uint32_t kHdrCsumStart = 6;    // le16
inline constexpr uint32_t kHdrCsumOffset = 8;   // le16
inline constexpr uint32_t kHdrNumBuffers = 10;  // le16, v1 / mergeable only
inline constexpr uint32_t kHdrLegacySize = 10;
inline constexpr uint32_t kHdrV1Size = 12;

inline constexpr uint8_t kHdrFNeedsCsum = 1;
inline constexpr uint8_t kHdrFDataValid = 2;
inline constexpr uint8_t kHdrFRscInfo = 4;

inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpv4 = 1;
inline constexpr uint8_t kGsoUdp = 3;
inline constexpr uint8_t kGsoTcpv6 = 4;
inline constexpr uint8_t kGsoEcn = 0x80;

// ---- control virtqueue ------------------------------------------------------------------------
// A request is {u8 class, u8 command} + command data, read by the device; the reply is one
// u8 ack written by the device.
inline constexpr uint32_t kCtrlHeaderSize = 2;

inline constexpr uint8_t kCtrlOk = 0;
inline constexpr uint8_t kCtrlErr = 1;

inline constexpr uint8_t kCtrlRx = 0;            // data: u8 on/off
inline constexpr uint8_t kCtrlRxPromisc = 0;
inline constexpr uint8_t kCtrlRxAllmulti = 1;
inline constexpr uint8_t kCtrlRxAlluni = 2;      // CTRL_RX_EXTRA
inline constexpr uint8_t kCtrlRxNomulti = 3;
inline constexpr uint8_t kCtrlRxNouni = 4;
inline constexpr uint8_t kCtrlRxNobcast = 5;

inline constexpr uint8_t kCtrlMac = 1;
inline constexpr uint8_t kCtrlMacTableSet = 0;   // le32 n, n×6 unicast; le32 m, m×6 multicast
inline constexpr uint8_t kCtrlMacAddrSet = 1;    // u8[6]

inline constexpr uint8_t kCtrlVlan = 2;          // data: le16 vid
inline constexpr uint8_t kCtrlVlanAdd = 0;
inline constexpr uint8_t kCtrlVlanDel = 1;

inline constexpr uint8_t kCtrlAnnounce = 3;
inline constexpr uint8_t kCtrlAnnounceAck = 0;   // no data

inline constexpr uint8_t kCtrlMq = 4;
inline constexpr uint8_t kCtrlMqVqPairsSet = 0;  // le16 virtqueue_pairs
inline constexpr uint8_t kCtrlMqRssConfig = 1;   // struct virtio_net_rss_config
inline constexpr uint8_t kCtrlMqHashConfig = 2;  // struct virtio_net_hash_config
inline constexpr uint16_t kCtrlMqVqPairsMin = 1;
inline constexpr uint16_t kCtrlMqVqPairsMax = 0x8000;

inline constexpr uint8_t kCtrlGuestOffloads = 5;
inline constexpr uint8_t kCtrlGuestOffloadsSet = 0;  // le64 offloads (feature bit positions)

// struct virtio_net_rss_config: le32 hash_types, le16 indirection_table_mask, le16
// unclassified_queue, le16 indirection_table[mask + 1], le16 max_tx_vq, u8 hash_key_length,
// u8 hash_key_data[]. struct virtio_net_hash_config has the same prefix bytes (le32
// hash_types, le16 reserved[4], u8 hash_key_length, key).
inline constexpr uint32_t kRssConfigFixedSize = 8;  // up to the indirection table

}  // namespace ferry::spec::virtio_net
