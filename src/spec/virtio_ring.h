// Facts of the Virtio 1.x specification (sections 2.7 split virtqueues, 2.8 packed
// virtqueues, 6 reserved feature bits): ring layouts, descriptor and suppression flags,
// feature bit numbers and the event-index rule. Shared by the device side (hw/virtio) and
// guest drivers; all fields are little-endian. Header only, no behaviour.
#pragma once

#include <cstdint>

namespace ferry::spec::virtio {

// ---- reserved (transport-independent) feature bits --------------------------------------------
inline constexpr unsigned kFNotifyOnEmpty = 24;     // legacy: interrupt when the avail ring empties
inline constexpr unsigned kFAnyLayout = 27;         // legacy
inline constexpr unsigned kFIndirectDesc = 28;      // VIRTIO_F_INDIRECT_DESC
inline constexpr unsigned kFEventIdx = 29;          // VIRTIO_F_EVENT_IDX
inline constexpr unsigned kFVersion1 = 32;          // VIRTIO_F_VERSION_1
inline constexpr unsigned kFAccessPlatform = 33;
inline constexpr unsigned kFRingPacked = 34;        // VIRTIO_F_RING_PACKED
inline constexpr unsigned kFInOrder = 35;
inline constexpr unsigned kFOrderPlatform = 36;
inline constexpr unsigned kFSrIov = 37;
inline constexpr unsigned kFNotificationData = 38;

inline constexpr uint64_t feature(unsigned bit) { return uint64_t{1} << bit; }

inline constexpr uint32_t kMaxQueueSize = 32768;  // Queue Size field maximum (2^15)

// ---- descriptor flags (split and packed) -------------------------------------------------------
inline constexpr uint16_t kDescFNext = 1;      // the chain continues (split: at `next`)
inline constexpr uint16_t kDescFWrite = 2;     // device-writable buffer
inline constexpr uint16_t kDescFIndirect = 4;  // the buffer is a table of descriptors
// Packed ring only: available/used bits compared with the wrap counters.
inline constexpr uint16_t kDescFAvail = 1u << 7;
inline constexpr uint16_t kDescFUsed = 1u << 15;

// ---- split virtqueue ---------------------------------------------------------------------------
// Descriptor table: entries of 16 bytes {le64 addr, le32 len, le16 flags, le16 next}.
inline constexpr uint32_t kDescSize = 16;
inline constexpr uint32_t kDescAddr = 0;
inline constexpr uint32_t kDescLen = 8;
inline constexpr uint32_t kDescFlags = 12;
inline constexpr uint32_t kDescNext = 14;
// Available ring (driver area): {le16 flags, le16 idx, le16 ring[size], le16 used_event}.
inline constexpr uint32_t kAvailFlags = 0;
inline constexpr uint32_t kAvailIdx = 2;
inline constexpr uint32_t kAvailRing = 4;
inline constexpr uint16_t kAvailFNoInterrupt = 1;  // driver: no used-buffer notification wanted
// Used ring (device area): {le16 flags, le16 idx, {le32 id, le32 len} ring[size],
// le16 avail_event}.
inline constexpr uint32_t kUsedFlags = 0;
inline constexpr uint32_t kUsedIdx = 2;
inline constexpr uint32_t kUsedRing = 4;
inline constexpr uint32_t kUsedElemSize = 8;
inline constexpr uint16_t kUsedFNoNotify = 1;  // device: no available-buffer notification wanted

inline constexpr uint64_t desc_table_bytes(uint32_t size) { return uint64_t{kDescSize} * size; }
// With EVENT_IDX the trailing used_event / avail_event field is included (always reserved).
inline constexpr uint64_t avail_ring_bytes(uint32_t size) { return 6 + uint64_t{2} * size; }
inline constexpr uint64_t used_ring_bytes(uint32_t size) { return 6 + uint64_t{kUsedElemSize} * size; }
inline constexpr uint64_t used_event_offset(uint32_t size) { return kAvailRing + uint64_t{2} * size; }
inline constexpr uint64_t avail_event_offset(uint32_t size) {
  return kUsedRing + uint64_t{kUsedElemSize} * size;
}
// Alignment the driver must give each part (2.7 "Virtqueue Alignment").
inline constexpr uint64_t kDescAlign = 16;
inline constexpr uint64_t kAvailAlign = 2;
inline constexpr uint64_t kUsedAlign = 4;

// ---- packed virtqueue --------------------------------------------------------------------------
// Descriptor ring: entries of 16 bytes {le64 addr, le32 len, le16 id, le16 flags}.
inline constexpr uint32_t kPackedDescAddr = 0;
inline constexpr uint32_t kPackedDescLen = 8;
inline constexpr uint32_t kPackedDescId = 12;
inline constexpr uint32_t kPackedDescFlags = 14;
// Event suppression structures (driver and device areas): {le16 off_wrap, le16 flags}.
inline constexpr uint32_t kEventOffWrap = 0;
inline constexpr uint32_t kEventFlags = 2;
inline constexpr uint32_t kEventSize = 4;
inline constexpr uint16_t kEventFlagEnable = 0;   // notify on every buffer
inline constexpr uint16_t kEventFlagDisable = 1;  // never notify
inline constexpr uint16_t kEventFlagDesc = 2;     // notify at off_wrap (needs EVENT_IDX)
inline constexpr unsigned kEventWrapShift = 15;   // off_wrap: bit 15 wrap counter, 0..14 offset
inline constexpr uint64_t kPackedEventAlign = 4;

// ---- event index rule (2.7.7.2 / 2.7.10) -------------------------------------------------------
// Whether moving an index from `old_idx` to `new_idx` crosses `event_idx`, i.e. the other
// side asked to be notified when the entry at `event_idx` is published. 16-bit modular.
inline constexpr bool vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

}  // namespace ferry::spec::virtio
