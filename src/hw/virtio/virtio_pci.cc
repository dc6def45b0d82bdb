// The virtio-pci transport: identity and capabilities, the modern regions of BAR4, the
// legacy header of BAR0, interrupts, status handshake and resets.
#include "hw/virtio/virtio_pci.h"

#include <algorithm>
#include <bit>

#include "base/byte_order.h"
#include "base/log.h"

namespace ferry::virtio {

namespace {

uint64_t access_mask(unsigned size) {
  return size >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * size)) - 1;
}

uint32_t low_dword(uint64_t v) { return static_cast<uint32_t>(v); }
uint32_t high_dword(uint64_t v) { return static_cast<uint32_t>(v >> 32); }
uint64_t join_dwords(const std::array<uint32_t, 2>& halves) {
  return uint64_t{halves[0]} | uint64_t{halves[1]} << 32;
}

// The split ring's legacy placement: avail right after the descriptors, used at the next
// alignment boundary after the avail ring's entries (QEMU leaves used_event out).
uint64_t legacy_ring_align(uint64_t v, uint64_t align) { return (v + align - 1) & ~(align - 1); }

}  // namespace

VirtioPci::VirtioPci(std::unique_ptr<VirtioDevice> device, const VirtioPciOptions& options)
    : pci::PciDevice(options.type_name, pci::PciKind::kConventional), device_(std::move(device)) {}

VirtioPci::~VirtioPci() = default;

Result<std::unique_ptr<VirtioPci>> VirtioPci::create(std::unique_ptr<VirtioDevice> device,
                                                     const VirtioPciOptions& options) {
  if (!device)
    return Error(ErrorCode::kInvalidArgument, "{}: no virtio device to present",
                 options.type_name);
  std::unique_ptr<VirtioPci> pci(new VirtioPci(std::move(device), options));
  Status st = pci->realize(options);
  if (!st.ok()) return st.prepend_message(options.type_name);
  return pci;
}

Status VirtioPci::realize(const VirtioPciOptions& options) {
  const uint16_t nqueues = device_->num_queues();
  if (nqueues == 0 || nqueues > vpci::kQueueMax)
    return Error(ErrorCode::kInvalidArgument, "the device has {} queues, expected 1..{}", nqueues,
                 vpci::kQueueMax);
  const uint32_t config_len = device_->config_size();
  if (config_len > 256 - vpci::kLegacyConfigMsix)
    return Error(ErrorCode::kInvalidArgument,
                 "device configuration of {} bytes does not fit the legacy I/O BAR", config_len);
  if (options.vectors < -1 || options.vectors > static_cast<int>(pci::kMsixMaxVectors))
    return Error(ErrorCode::kInvalidArgument, "vectors {} is outside 0..{}", options.vectors,
                 pci::kMsixMaxVectors);
  vectors_ = options.vectors < 0 ? nqueues + 1u : static_cast<unsigned>(options.vectors);
  // A legacy driver cannot honour ACCESS_PLATFORM, so a transitional device may not offer it.
  if (device_->host_features() & vpci::feature_bit(vpci::kFeatureAccessPlatform))
    return Error(ErrorCode::kInvalidArgument,
                 "VIRTIO_F_IOMMU_PLATFORM was supported by neither legacy nor transitional "
                 "device");

  const VirtioPciIdentity id = device_->pci_identity();
  set_ids({.vendor = vpci::kVendorId, .device = id.pci_device_id, .class_code = id.class_code,
           .revision = 0, .subsystem_vendor = vpci::kSubsystemVendorId,
           .subsystem = id.subsystem_id});
  FERRY_RETURN_IF_ERROR(set_interrupt_pin(1));

  // BAR0: the legacy header (24 bytes while MSI-X exists) and the device configuration.
  const uint32_t header = vectors_ ? vpci::kLegacyConfigMsix : vpci::kLegacyConfigNoMsix;
  FERRY_RETURN_IF_ERROR(register_bar(kLegacyBar, std::max<uint64_t>(4, std::bit_ceil(header + config_len)),
                                     pci::BarType::kIo, false, &legacy_bar_));
  FERRY_RETURN_IF_ERROR(
      register_bar(kModernBar, kModernBarSize, pci::BarType::kMem64, true, &modern_bar_));

  // Vendor capabilities in QEMU's offsets: common, ISR, device, notify, PCI_CFG.
  struct CapSpec {
    uint8_t at, size, type;
    uint32_t offset, length;
  };
  const CapSpec caps[] = {
      {kCommonCap, vpci::kCapSize, vpci::kCapCommonCfg, kCommonOffset, kRegionSize},
      {kIsrCap, vpci::kCapSize, vpci::kCapIsrCfg, kIsrOffset, kRegionSize},
      {kDeviceCap, vpci::kCapSize, vpci::kCapDeviceCfg, kDeviceCfgOffset, kRegionSize},
      {kNotifyCap, vpci::kNotifyCapSize, vpci::kCapNotifyCfg, kNotifyOffset, kRegionSize},
      {kPciCfgCap, vpci::kPciCfgCapSize, vpci::kCapPciCfg, 0, 0},
  };
  for (const CapSpec& c : caps) {
    auto at = add_capability(vpci::kCapVendor, c.size);
    if (!at.ok()) return at.take_status();
    if (*at != c.at)
      return Error(ErrorCode::kInternal, "capability type {} landed at {:#x}, expected {:#x}",
                   c.type, *at, c.at);
    set_config_u8(c.at + vpci::kCapLen, c.size);
    set_config_u8(c.at + vpci::kCapCfgType, c.type);
    // QEMU leaves the PCI_CFG capability's BAR, offset and length zero for the driver.
    set_config_u8(c.at + vpci::kCapBar, c.type == vpci::kCapPciCfg ? 0 : kModernBar);
    set_config_u32(c.at + vpci::kCapOffset, c.offset);
    set_config_u32(c.at + vpci::kCapLength, c.length);
  }
  set_config_u32(kNotifyCap + vpci::kNotifyCapMultiplier, kNotifyMultiplier);
  set_writable_mask(kPciCfgCap + vpci::kCapBar, 1, 0xff);
  set_writable_mask(kPciCfgCap + vpci::kCapOffset, 4, 0xffffffff);
  set_writable_mask(kPciCfgCap + vpci::kCapLength, 4, 0xffffffff);
  set_writable_mask(kPciCfgCap + vpci::kPciCfgCapData, 4, 0xffffffff);

  if (vectors_ != 0) {
    auto msix = init_msix_exclusive_bar(kMsixBar, vectors_);
    if (!msix.ok()) return msix.take_status();
    if (*msix != kMsixCap)
      return Error(ErrorCode::kInternal, "MSI-X capability landed at {:#x}, expected {:#x}",
                   *msix, kMsixCap);
  }
  // QEMU adds each capability at the head of the list; walk order is newest first.
  uint8_t head = vectors_ ? kMsixCap : kPciCfgCap;
  set_config_u8(pci::kCapabilityPointer, head);
  if (vectors_) set_config_u8(kMsixCap + 1, kPciCfgCap);
  set_config_u8(kPciCfgCap + 1, kNotifyCap);
  set_config_u8(kNotifyCap + 1, kDeviceCap);
  set_config_u8(kDeviceCap + 1, kIsrCap);
  set_config_u8(kIsrCap + 1, kCommonCap);
  set_config_u8(kCommonCap + 1, 0);

  legacy_features_ = kLegacyOnlyFeatures | device_->legacy_only_features();
  host_features_ = device_->host_features() | kTransportFeatures;
  queues_.resize(nqueues);
  queue_vectors_.assign(nqueues, vpci::kNoVector);
  modern_.queue_max.resize(nqueues);
  for (uint16_t i = 0; i < nqueues; ++i) {
    const uint16_t max = device_->queue_max_size(i);
    if (max == 0 || max > vpci::kQueueMaxSize)
      return Error(ErrorCode::kInvalidArgument, "queue {} has maximum size {}, expected 1..{}", i,
                   max, vpci::kQueueMaxSize);
    modern_.queue_max[i] = max;
  }
  config_.assign(config_len, 0);
  device_->attach(transport_);
  virtio_reset();
  return {};
}

// ---- resets ---------------------------------------------------------------------------------

void VirtioPci::on_reset() { virtio_reset(); }

void VirtioPci::virtio_reset() {
  status_ = 0;
  isr_ = 0;
  queue_sel_ = 0;
  driver_features_ = 0;
  config_vector_ = vpci::kNoVector;
  broken_ = false;
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    queues_[i].layout = QueueLayout{.size = modern_.queue_max[i]};
    queue_vectors_[i] = vpci::kNoVector;
  }
  modern_.dfselect = modern_.gfselect = 0;
  modern_.guest_features = {};
  modern_.vqs = {};
  set_irq(false);
  device_->reset();
}

// ---- status ---------------------------------------------------------------------------------

void VirtioPci::set_status(uint8_t value) {
  const bool version1 = driver_features_ & vpci::feature_bit(vpci::kFeatureVersion1);
  if (version1 && !(status_ & vpci::kStatusFeaturesOk) && (value & vpci::kStatusFeaturesOk)) {
    // A refused set leaves the status as it was: the driver reads FEATURES_OK clear.
    const uint64_t platform = vpci::feature_bit(vpci::kFeatureAccessPlatform);
    if ((host_features_ & platform) && !(driver_features_ & platform)) {
      log(LogLevel::kInfo, "{}: driver did not accept ACCESS_PLATFORM; FEATURES_OK refused",
          type_name());
      return;
    }
    Status st = device_->features_negotiated(driver_features_);
    if (!st.ok()) {
      log(LogLevel::kInfo, "{}: features {:#x} refused: {}", type_name(), driver_features_,
          st.to_string());
      return;
    }
  }
  status_ = value;
  device_->status_changed(status_);
  if (status_ == 0) virtio_reset();
}

void VirtioPci::set_driver_features(uint64_t features) {
  // Once FEATURES_OK is set the negotiated set is fixed (QEMU's virtio_set_features).
  if (status_ & vpci::kStatusFeaturesOk) return;
  driver_features_ = features & host_features_;
}

// ---- interrupts -------------------------------------------------------------------------------

uint16_t VirtioPci::accept_vector(uint32_t value) const {
  return value < vectors_ ? static_cast<uint16_t>(value) : vpci::kNoVector;
}

void VirtioPci::notify_vector(uint16_t vector) {
  if (msix_enabled()) {
    if (vector != vpci::kNoVector) msix_notify(vector);
  } else {
    set_irq(isr_ & vpci::kIsrQueue);
  }
}

void VirtioPci::Transport::notify_queue(uint16_t index) {
  if (index >= pci_.queues_.size() || pci_.broken_) return;
  pci_.isr_ |= vpci::kIsrQueue;
  pci_.notify_vector(pci_.queue_vectors_[index]);
}

void VirtioPci::raise_config_interrupt() {
  if (!(status_ & vpci::kStatusDriverOk)) return;
  isr_ |= vpci::kIsrQueue | vpci::kIsrConfig;  // QEMU sets both; INTx follows bit 0
  ++generation_;
  notify_vector(config_vector_);
}

void VirtioPci::Transport::notify_config() {
  if (pci_.broken_) return;
  pci_.raise_config_interrupt();
}

void VirtioPci::Transport::set_needs_reset() {
  pci_.broken_ = true;
  if (pci_.driver_features_ & vpci::feature_bit(vpci::kFeatureVersion1)) {
    pci_.status_ |= vpci::kStatusNeedsReset;
    pci_.raise_config_interrupt();
  }
}

uint8_t VirtioPci::isr_read() {
  const uint8_t v = isr_;
  isr_ = 0;
  set_irq(false);
  return v;
}

// ---- queues -------------------------------------------------------------------------------------

bool VirtioPci::queue_size_acceptable(uint16_t index, uint32_t size) const {
  if (size == 0 || size > modern_.queue_max[index]) return false;
  const bool packed = driver_features_ & vpci::feature_bit(vpci::kFeatureRingPacked);
  return packed || std::has_single_bit(size);
}

void VirtioPci::enable_queue(uint16_t index) {
  ModernQueueState& q = modern_.vqs[index];
  QueueLayout& layout = queues_[index].layout;
  if (q.num != 0) layout.size = q.num;
  layout.desc = join_dwords(q.desc);
  layout.driver = join_dwords(q.avail);
  layout.device = join_dwords(q.used);
  layout.enabled = true;
  q.enabled = true;
  device_->queue_enabled(index, layout, driver_features_);
}

void VirtioPci::reset_queue(uint16_t index) {
  if (!(driver_features_ & vpci::feature_bit(vpci::kFeatureRingReset))) return;
  device_->queue_reset(index);
  queues_[index].layout = QueueLayout{.size = modern_.queue_max[index]};
  queue_vectors_[index] = vpci::kNoVector;
  modern_.vqs[index] = ModernQueueState{};
}

void VirtioPci::queue_notify(uint16_t index) {
  if (index >= queues_.size() || broken_) return;
  if (queues_[index].layout.desc == 0) return;  // not set up: QEMU ignores the kick
  device_->queue_notify(index);
}

Status VirtioPci::restore_queue_layout(uint16_t index, const QueueLayout& layout) {
  if (index >= queues_.size())
    return Error(ErrorCode::kCorrupt, "queue {} does not exist ({} queues)", index,
                 queues_.size());
  if (layout.size > modern_.queue_max[index])
    return Error(ErrorCode::kCorrupt, "queue {}: size {} exceeds the maximum {}", index,
                 layout.size, modern_.queue_max[index]);
  queues_[index].layout = layout;
  return {};
}

Status VirtioPci::restore_queue_vector(uint16_t index, uint16_t vector) {
  if (index >= queues_.size())
    return Error(ErrorCode::kCorrupt, "queue {} does not exist ({} queues)", index,
                 queues_.size());
  if (vector != vpci::kNoVector && vector >= vectors_)
    return Error(ErrorCode::kCorrupt,
                 "queue {}: vector {} is not one of the device's {} MSI-X vectors", index, vector,
                 vectors_);
  queue_vectors_[index] = vector;
  return {};
}

Status VirtioPci::restore_config_vector(uint16_t vector) {
  if (vector != vpci::kNoVector && vector >= vectors_)
    return Error(ErrorCode::kCorrupt, "vector {} is not one of the device's {} MSI-X vectors",
                 vector, vectors_);
  config_vector_ = vector;
  return {};
}

// ---- common configuration --------------------------------------------------------------------

uint64_t VirtioPci::common_read(uint64_t offset, unsigned size) {
  const bool valid_queue = queue_sel_ < queues_.size();
  const ModernQueueState* q = valid_queue ? &modern_.vqs[queue_sel_] : nullptr;
  uint64_t v = 0;
  switch (offset) {
    case vpci::kCommonDfSelect: v = modern_.dfselect; break;
    case vpci::kCommonDf:
      if (modern_.dfselect <= 1) v = static_cast<uint32_t>(modern_features() >> (32 * modern_.dfselect));
      break;
    case vpci::kCommonGfSelect: v = modern_.gfselect; break;
    case vpci::kCommonGf:
      if (modern_.gfselect <= 1) v = modern_.guest_features[modern_.gfselect];
      break;
    case vpci::kCommonMsix: v = config_vector_; break;
    case vpci::kCommonNumQueues: v = queues_.size(); break;
    case vpci::kCommonStatus: v = status_; break;
    case vpci::kCommonCfgGeneration: v = generation_; break;
    case vpci::kCommonQueueSelect: v = queue_sel_; break;
    case vpci::kCommonQueueSize: v = valid_queue ? queues_[queue_sel_].layout.size : 0; break;
    case vpci::kCommonQueueMsix:
      v = valid_queue ? queue_vectors_[queue_sel_] : vpci::kNoVector;
      break;
    case vpci::kCommonQueueEnable: v = q && q->enabled; break;
    case vpci::kCommonQueueNotifyOff: v = queue_sel_; break;  // queues in order, QEMU's map
    case vpci::kCommonQueueDescLo: v = q ? q->desc[0] : 0; break;
    case vpci::kCommonQueueDescHi: v = q ? q->desc[1] : 0; break;
    case vpci::kCommonQueueDriverLo: v = q ? q->avail[0] : 0; break;
    case vpci::kCommonQueueDriverHi: v = q ? q->avail[1] : 0; break;
    case vpci::kCommonQueueDeviceLo: v = q ? q->used[0] : 0; break;
    case vpci::kCommonQueueDeviceHi: v = q ? q->used[1] : 0; break;
    case vpci::kCommonQueueReset: v = 0; break;  // a reset completes within the write
    default: break;
  }
  return v & access_mask(size);
}

void VirtioPci::common_write(uint64_t offset, uint32_t value, unsigned /*size*/) {
  const bool valid_queue = queue_sel_ < queues_.size();
  ModernQueueState* q = valid_queue ? &modern_.vqs[queue_sel_] : nullptr;
  switch (offset) {
    case vpci::kCommonDfSelect: modern_.dfselect = value; break;
    case vpci::kCommonGfSelect: modern_.gfselect = value; break;
    case vpci::kCommonGf:
      if (modern_.gfselect <= 1) {
        modern_.guest_features[modern_.gfselect] = value;
        set_driver_features(join_dwords(modern_.guest_features));
      }
      break;
    case vpci::kCommonMsix: config_vector_ = accept_vector(value & 0xffff); break;
    case vpci::kCommonStatus: set_status(static_cast<uint8_t>(value)); break;
    case vpci::kCommonQueueSelect:
      if (value < vpci::kQueueMax) queue_sel_ = static_cast<uint16_t>(value);
      break;
    case vpci::kCommonQueueSize:
      if (valid_queue && queue_size_acceptable(queue_sel_, value & 0xffff)) {
        q->num = static_cast<uint16_t>(value);
        queues_[queue_sel_].layout.size = q->num;
      }
      break;
    case vpci::kCommonQueueMsix:
      if (valid_queue) queue_vectors_[queue_sel_] = accept_vector(value & 0xffff);
      break;
    case vpci::kCommonQueueEnable:
      if ((value & 0xffff) != 1) {
        log(LogLevel::kWarn, "{}: wrong value for queue_enable {:x}", type_name(), value);
        transport_.set_needs_reset();
      } else if (valid_queue) {
        enable_queue(queue_sel_);
      }
      break;
    case vpci::kCommonQueueDescLo: if (q) q->desc[0] = value; break;
    case vpci::kCommonQueueDescHi: if (q) q->desc[1] = value; break;
    case vpci::kCommonQueueDriverLo: if (q) q->avail[0] = value; break;
    case vpci::kCommonQueueDriverHi: if (q) q->avail[1] = value; break;
    case vpci::kCommonQueueDeviceLo: if (q) q->used[0] = value; break;
    case vpci::kCommonQueueDeviceHi: if (q) q->used[1] = value; break;
    case vpci::kCommonQueueReset:
      if ((value & 0xffff) == 1 && valid_queue) reset_queue(queue_sel_);
      break;
    default: break;  // read-only or reserved
  }
}

// ---- device configuration ------------------------------------------------------------------------

uint64_t VirtioPci::device_config_read(uint64_t offset, unsigned size) {
  if (offset + size > config_.size()) return access_mask(size);
  device_->get_config(config_);
  return load_le(std::span<const uint8_t>(config_), offset, size);
}

void VirtioPci::device_config_write(uint64_t offset, uint64_t value, unsigned size) {
  if (offset + size > config_.size()) return;
  store_le(std::span<uint8_t>(config_), offset, value, size);
  device_->set_config(config_);
}

// ---- BAR4 -------------------------------------------------------------------------------------

void VirtioPci::notify_write(uint64_t offset) {
  const uint64_t queue = offset / kNotifyMultiplier;  // the address names the queue
  if (queue < vpci::kQueueMax) queue_notify(static_cast<uint16_t>(queue));
}

uint64_t VirtioPci::modern_read(uint64_t offset, unsigned size) {
  const uint64_t at = offset % kRegionSize;
  switch (offset / kRegionSize) {
    case kCommonOffset / kRegionSize: return common_read(at, size);
    case kIsrOffset / kRegionSize: return isr_read();
    case kDeviceCfgOffset / kRegionSize: return device_config_read(at, size);
    default: return 0;  // notify reads 0
  }
}

void VirtioPci::modern_write(uint64_t offset, uint64_t value, unsigned size) {
  const uint64_t at = offset % kRegionSize;
  switch (offset / kRegionSize) {
    case kCommonOffset / kRegionSize: common_write(at, static_cast<uint32_t>(value), size); break;
    case kDeviceCfgOffset / kRegionSize: device_config_write(at, value, size); break;
    case kNotifyOffset / kRegionSize: notify_write(at); break;
    default: break;  // the ISR is read-only
  }
}

// QEMU's regions take at most 4 bytes; a wider access arrives as two.
uint64_t VirtioPci::ModernBar::read(uint64_t offset, unsigned size) {
  if (size == 8) return pci_.modern_read(offset, 4) | pci_.modern_read(offset + 4, 4) << 32;
  return pci_.modern_read(offset, size);
}

void VirtioPci::ModernBar::write(uint64_t offset, uint64_t value, unsigned size) {
  if (size == 8) {
    pci_.modern_write(offset, low_dword(value), 4);
    pci_.modern_write(offset + 4, high_dword(value), 4);
    return;
  }
  pci_.modern_write(offset, value, size);
}

// ---- BAR0: the legacy header ---------------------------------------------------------------------

uint32_t VirtioPci::legacy_config_offset() const {
  return msix_enabled() ? vpci::kLegacyConfigMsix : vpci::kLegacyConfigNoMsix;
}

uint64_t VirtioPci::legacy_read(uint64_t offset, unsigned size) {
  const uint32_t config = legacy_config_offset();
  if (offset >= config) return device_config_read(offset - config, size);
  const bool valid_queue = queue_sel_ < queues_.size();
  uint64_t v = 0xffffffff;
  switch (offset) {
    case vpci::kLegacyHostFeatures: v = low_dword(host_features_); break;
    case vpci::kLegacyGuestFeatures: v = low_dword(driver_features_); break;
    case vpci::kLegacyQueuePfn:
      v = valid_queue ? queues_[queue_sel_].layout.desc >> vpci::kLegacyQueueAddrShift : 0;
      break;
    case vpci::kLegacyQueueNum: v = valid_queue ? queues_[queue_sel_].layout.size : 0; break;
    case vpci::kLegacyQueueSel: v = queue_sel_; break;
    case vpci::kLegacyStatus: v = status_; break;
    case vpci::kLegacyIsr: v = isr_read(); break;
    case vpci::kLegacyMsiConfigVector: v = config_vector_; break;
    case vpci::kLegacyMsiQueueVector:
      v = valid_queue ? queue_vectors_[queue_sel_] : vpci::kNoVector;
      break;
    default: break;
  }
  return v & access_mask(size);
}

void VirtioPci::legacy_write(uint64_t offset, uint64_t value, unsigned size) {
  const uint32_t config = legacy_config_offset();
  if (offset >= config) return device_config_write(offset - config, value, size);
  const bool valid_queue = queue_sel_ < queues_.size();
  const uint32_t v = static_cast<uint32_t>(value);
  switch (offset) {
    case vpci::kLegacyGuestFeatures: {
      uint64_t features = v;
      // A driver that sets the "bad feature" bit did not negotiate: assume nothing.
      if (features & vpci::feature_bit(vpci::kFeatureBadFeature)) features = 0;
      set_driver_features(features);
      Status st = device_->features_negotiated(driver_features_);
      if (!st.ok())
        log(LogLevel::kInfo, "{}: legacy features {:#x}: {}", type_name(), driver_features_,
            st.to_string());
      break;
    }
    case vpci::kLegacyQueuePfn: {
      const uint64_t pa = uint64_t{v} << vpci::kLegacyQueueAddrShift;
      if (pa == 0) {
        virtio_reset();
      } else if (valid_queue) {
        QueueLayout& layout = queues_[queue_sel_].layout;
        layout.desc = pa;
        layout.driver = pa + uint64_t{layout.size} * 16;
        layout.device = legacy_ring_align(layout.driver + 4 + 2 * uint64_t{layout.size},
                                 vpci::kLegacyVringAlign);
        layout.enabled = true;
        device_->queue_enabled(queue_sel_, layout, driver_features_);
      }
      break;
    }
    case vpci::kLegacyQueueSel:
      if (v < vpci::kQueueMax) queue_sel_ = static_cast<uint16_t>(v);
      break;
    case vpci::kLegacyQueueNotify:
      if ((v & 0xffff) < vpci::kQueueMax) queue_notify(static_cast<uint16_t>(v));
      break;
    case vpci::kLegacyStatus:
      set_status(static_cast<uint8_t>(v));
      // Old Linux drivers never enable bus mastering; QEMU enables it for them.
      if ((v & 0xff) == (vpci::kStatusAcknowledge | vpci::kStatusDriver) && !bus_master_enabled())
        config_write(pci::kCommand, command() | pci::kCommandBusMaster, 2);
      break;
    case vpci::kLegacyMsiConfigVector: config_vector_ = accept_vector(v & 0xffff); break;
    case vpci::kLegacyMsiQueueVector:
      if (valid_queue) queue_vectors_[queue_sel_] = accept_vector(v & 0xffff);
      break;
    default: break;
  }
}

uint64_t VirtioPci::LegacyBar::read(uint64_t offset, unsigned size) {
  return pci_.legacy_read(offset, std::min(size, 4u));
}

void VirtioPci::LegacyBar::write(uint64_t offset, uint64_t value, unsigned size) {
  pci_.legacy_write(offset, value, std::min(size, 4u));
}

// ---- PCI configuration side effects ----------------------------------------------------------------

void VirtioPci::on_config_write(uint32_t offset, uint32_t value, unsigned size) {
  (void)value;
  auto overlaps = [&](uint32_t start, uint32_t length) {
    return offset < start + length && start < offset + size;
  };
  // Bus mastering switched off: the driver can no longer be running the device.
  if (overlaps(pci::kCommand, 1) && !bus_master_enabled() && (status_ & vpci::kStatusDriverOk)) {
    status_ &= static_cast<uint8_t>(~vpci::kStatusDriverOk);
    device_->status_changed(status_);
  }
  // The PCI_CFG window: a write of the data forwards to BAR4 at the capability's offset.
  if (overlaps(kPciCfgCap + vpci::kPciCfgCapData, 4)) {
    const uint32_t length = config_u32(kPciCfgCap + vpci::kCapLength);
    if (length != 1 && length != 2 && length != 4) return;
    const uint64_t at = config_u32(kPciCfgCap + vpci::kCapOffset) & ~uint64_t{length - 1};
    if (at + length > kModernBarSize || (at % kRegionSize) + length > kRegionSize) return;
    const uint32_t data = config_u32(kPciCfgCap + vpci::kPciCfgCapData);
    modern_write(at, data & access_mask(length), length);
  }
}

}  // namespace ferry::virtio
