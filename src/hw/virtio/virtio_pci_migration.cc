// Load checks and hooks of the virtio-pci transport's migration description.
#include "hw/virtio/virtio_pci_migration.h"

#include <bit>

namespace ferry::virtio {

namespace detail {

// Queues past the device's count do not exist here: a stream setting them up is not for
// this device. Sizes must be ones the driver could have written.
Status modern_state_post_load(ModernState& state, int) {
  for (size_t i = 0; i < state.vqs.size(); ++i) {
    const ModernQueueState& q = state.vqs[i];
    if (i >= state.queue_max.size()) {
      const bool empty = q.num == 0 && !q.enabled && q.desc == std::array<uint32_t, 2>{} &&
                         q.avail == std::array<uint32_t, 2>{} && q.used == std::array<uint32_t, 2>{};
      if (!empty)
        return Error(ErrorCode::kCorrupt,
                     "vqs[{}]: the device has {} queues, but queue {} is set up (num {}, "
                     "enabled {})",
                     i, state.queue_max.size(), i, q.num, q.enabled);
      continue;
    }
    if (q.num > state.queue_max[i])
      return Error(ErrorCode::kCorrupt, "vqs[{}]/num: {} exceeds the queue's maximum size {}", i,
                   q.num, state.queue_max[i]);
  }
  return {};
}

}  // namespace detail

Status VirtioPciMigration::fill_header(const VirtioPci& pci, TransportHeader& h) {
  h.status = pci.status_;
  h.isr = pci.isr_;
  h.queue_sel = pci.queue_sel_;
  h.guest_features_low = static_cast<uint32_t>(pci.driver_features_);
  return {};
}

Status VirtioPciMigration::apply_header(VirtioPci& pci, const TransportHeader& h) {
  pci.status_ = h.status;
  pci.isr_ = h.isr;
  pci.queue_sel_ = h.queue_sel;
  // The high half arrives in virtio/64bit_features; a stream without it is a legacy one.
  pci.driver_features_ = h.guest_features_low;
  return {};
}

Status VirtioPciMigration::post_load(VirtioPci& pci, int) { return pci.check_loaded_state(); }

}  // namespace ferry::virtio

namespace ferry::virtio {

Status VirtioPci::check_loaded_state() {
  if (driver_features_ & ~host_features_)
    return Error(ErrorCode::kCorrupt, "Features {:#x} unsupported. Allowed features: {:#x}",
                 driver_features_, host_features_);
  // Derive the device-side layouts of queues the driver enabled through the common
  // configuration; legacy-set queues come back through restore_queue_layout.
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    const ModernQueueState& q = modern_.vqs[i];
    QueueLayout& layout = queues_[i].layout;
    layout = QueueLayout{.size = q.num ? q.num : modern_.queue_max[i]};
    if (q.enabled) {
      layout.enabled = true;
      layout.desc = uint64_t{q.desc[0]} | uint64_t{q.desc[1]} << 32;
      layout.driver = uint64_t{q.avail[0]} | uint64_t{q.avail[1]} << 32;
      layout.device = uint64_t{q.used[0]} | uint64_t{q.used[1]} << 32;
      const bool packed = driver_features_ & vpci::feature_bit(vpci::kFeatureRingPacked);
      if (!packed && !std::has_single_bit(layout.size))
        return Error(ErrorCode::kCorrupt,
                     "virtio_pci/modern_state/vqs[{}]/num: {} is not a power of two (split ring)",
                     i, layout.size);
    }
  }
  broken_ = false;
  return {};
}

}  // namespace ferry::virtio
