// VirtioPci: a virtio device (virtio_device.h) presented as a transitional virtio-pci
// function, laid out as QEMU 7.2 lays out virtio-*-pci on the q35 root bus (conventional
// PCI, 256-byte config space):
//   BAR0  I/O, legacy header + device config (size: next power of two of 24 + config)
//   BAR1  32-bit memory, 4 KiB+: MSI-X table at 0, PBA at 0x800 (vectors: queues + 1)
//   BAR4  64-bit prefetchable memory, 16 KiB:
//         0x0000 common cfg, 0x1000 ISR, 0x2000 device cfg, 0x3000 notify (queue * 4)
//   capabilities from 0x34: MSI-X 0x98 -> PCI_CFG 0x84 -> notify 0x70 -> device 0x60 ->
//         ISR 0x50 -> common 0x40
// The transport owns every register (features, status, queue setup, vectors, ISR) and
// tells the device what the driver did; the device reaches back through VirtioTransport.
//
// Choices (QEMU 7.2 behaviour unless said):
// - queue_size writes outside 1..max, or not a power of two without RING_PACKED, are
//   ignored (QEMU stores any value and lets the ring check it);
// - queue_reset (virtio 1.2) works once RING_RESET is negotiated and reads back 0: the
//   reset is complete when the write returns;
// - a device reset also clears the feature selects and driver_feature words (QEMU keeps
//   the proxy's copies);
// - the PCI_CFG capability forwards writes of its data window; reads of the window return
//   the bytes last written (PciDevice has no read hook yet);
// - NEEDS_RESET raises the configuration interrupt the spec asks for (QEMU marks the device
//   broken first, which swallows that interrupt);
// - modern drivers' features reach the device once, at FEATURES_OK (QEMU calls set_features
//   on every driver_feature write).
//
// Migration: the pieces QEMU's virtio_pci_save_config / save_queue and vmstate_virtio's
// transport subsections write, as fields for the device's description (see
// kVirtioPciTransportState for them in QEMU's order).
//
// Threading: none inside; every call runs under the machine lock.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "hw/pci/pci_device.h"
#include "hw/virtio/queue_layout.h"
#include "hw/virtio/virtio_device.h"
#include "spec/virtio_pci.h"
#include "vmstate/vmstate.h"

namespace ferry::virtio {

namespace vpci = ::ferry::spec::virtio_pci;

struct VirtioPciOptions {
  std::string type_name = "virtio-pci";
  // MSI-X vectors (QEMU's `vectors`): -1 picks the device's queues + 1; 0 means no MSI-X
  // (INTx only, no BAR1).
  int vectors = -1;
};

// QEMU's VirtIOPCIQueue: what the driver wrote through the common configuration, as the
// migration carries it ("virtio_pci/modern_queue_state").
struct ModernQueueState {
  uint16_t num = 0;  // queue_size as written; 0 until the driver writes it
  bool enabled = false;
  std::array<uint32_t, 2> desc{};
  std::array<uint32_t, 2> avail{};
  std::array<uint32_t, 2> used{};
};

// QEMU's modern proxy state ("virtio_pci"): the selects, the driver_feature words and one
// entry for each of the 1024 queues QEMU allows.
struct ModernState {
  uint32_t dfselect = 0;
  uint32_t gfselect = 0;
  std::array<uint32_t, 2> guest_features{};
  std::array<ModernQueueState, vpci::kQueueMax> vqs{};
  // Local, never sent: how many queues the device has (entries past it must stay zero) and
  // their maximum sizes.
  std::vector<uint16_t> queue_max;
};

namespace detail {

Status modern_state_post_load(ModernState& state, int version);

inline constexpr auto kModernQueueStateDesc = vmstate::describe<ModernQueueState>(
    "virtio_pci/modern_queue_state", {.version = 1},
    vmstate::field("num", &ModernQueueState::num),
    vmstate::unused(1),  // QEMU once stored `enabled` as a be16
    vmstate::field("enabled", &ModernQueueState::enabled),
    vmstate::field("desc", &ModernQueueState::desc),
    vmstate::field("avail", &ModernQueueState::avail),
    vmstate::field("used", &ModernQueueState::used));

inline constexpr auto kModernStateDesc = vmstate::describe<ModernState>(
    "virtio_pci/modern_state", {.version = 1, .post_load = modern_state_post_load},
    vmstate::field("dfselect", &ModernState::dfselect),
    vmstate::field("gfselect", &ModernState::gfselect),
    vmstate::field("guest_features", &ModernState::guest_features),
    vmstate::field("vqs", &ModernState::vqs, kModernQueueStateDesc));

// virtio_pci's extra state: no fields of its own, the modern state as a subsection (a
// transitional device is always modern).
inline constexpr auto kVirtioPciDesc = vmstate::describe<ModernState>(
    "virtio_pci", {.version = 1}, vmstate::subsection(kModernStateDesc));

}  // namespace detail

class VirtioPci : public pci::PciDevice {
 public:
  static constexpr int kLegacyBar = 0;
  static constexpr int kMsixBar = 1;
  static constexpr int kModernBar = 4;
  static constexpr uint64_t kModernBarSize = 0x4000;
  static constexpr uint32_t kRegionSize = 0x1000;
  static constexpr uint32_t kCommonOffset = 0x0000;
  static constexpr uint32_t kIsrOffset = 0x1000;
  static constexpr uint32_t kDeviceCfgOffset = 0x2000;
  static constexpr uint32_t kNotifyOffset = 0x3000;
  static constexpr uint32_t kNotifyMultiplier = 4;
  // Where QEMU 7.2 places the capabilities (see the file comment).
  static constexpr uint8_t kCommonCap = 0x40;
  static constexpr uint8_t kIsrCap = 0x50;
  static constexpr uint8_t kDeviceCap = 0x60;
  static constexpr uint8_t kNotifyCap = 0x70;
  static constexpr uint8_t kPciCfgCap = 0x84;
  static constexpr uint8_t kMsixCap = 0x98;
  // Offered by every virtio-pci device on top of the device's own features; the last three
  // only to legacy drivers.
  static constexpr uint64_t kTransportFeatures =
      vpci::feature_bit(vpci::kFeatureVersion1) | vpci::feature_bit(vpci::kFeatureNotifyOnEmpty) |
      vpci::feature_bit(vpci::kFeatureAnyLayout) | vpci::feature_bit(vpci::kFeatureBadFeature);
  static constexpr uint64_t kLegacyOnlyFeatures = vpci::feature_bit(vpci::kFeatureNotifyOnEmpty) |
                                                  vpci::feature_bit(vpci::kFeatureAnyLayout) |
                                                  vpci::feature_bit(vpci::kFeatureBadFeature);

  static Result<std::unique_ptr<VirtioPci>> create(std::unique_ptr<VirtioDevice> device,
                                                   const VirtioPciOptions& options = {});
  ~VirtioPci() override;

  VirtioDevice& device() { return *device_; }

  // ---- the transport's state as the guest last left it ----
  uint8_t status() const { return status_; }
  uint8_t isr() const { return isr_; }
  uint8_t config_generation() const { return generation_; }
  uint16_t queue_select() const { return queue_sel_; }
  uint64_t host_features() const { return host_features_; }
  uint64_t driver_features() const { return driver_features_; }
  uint16_t config_vector() const { return config_vector_; }
  uint16_t num_queues() const { return static_cast<uint16_t>(queues_.size()); }
  // The queue as the device sees it (size defaults to the maximum) and its vector.
  const QueueLayout& queue_layout(uint16_t index) const { return queues_.at(index).layout; }
  uint16_t queue_vector(uint16_t index) const { return queue_vectors_.at(index); }
  const ModernState& modern_state() const { return modern_; }
  // QEMU's vdev->config: the device configuration as the guest last read it.
  std::span<const uint8_t> config_buffer() const { return config_; }
  bool broken() const { return broken_; }
  unsigned vectors() const { return vectors_; }

  // The legacy part of the virtio save (vring.num, desc, vector per queue) is the virtio
  // core's; it restores the device-side layout and the vector through these after a load.
  // A vector must be one of the function's MSI-X vectors or kNoVector (QEMU's -EINVAL).
  Status restore_queue_layout(uint16_t index, const QueueLayout& layout);
  Status restore_queue_vector(uint16_t index, uint16_t vector);
  Status restore_config_vector(uint16_t vector);

  // ---- migration ----
  // Checks the transport fields a load delivered against this device (vectors against the
  // MSI-X table, features against the offer, queue sizes) and re-derives the queues'
  // layouts from the modern state. Runs as the post_load of kVirtioPciTransportState.
  Status check_loaded_state();

  // Run state: the device stops processing its queues while the VM is stopped.
  void quiesce() override { device_->set_running(false); }
  void resume() override { device_->set_running(true); }

 protected:
  void on_reset() override;
  void on_config_write(uint32_t offset, uint32_t value, unsigned size) override;

 private:
  friend struct VirtioPciMigration;

  VirtioPci(std::unique_ptr<VirtioDevice> device, const VirtioPciOptions& options);
  Status realize(const VirtioPciOptions& options);

  struct Queue {
    QueueLayout layout;
  };

  // ---- registers ----
  uint64_t common_read(uint64_t offset, unsigned size);
  void common_write(uint64_t offset, uint32_t value, unsigned size);
  uint8_t isr_read();
  uint64_t device_config_read(uint64_t offset, unsigned size);
  void device_config_write(uint64_t offset, uint64_t value, unsigned size);
  void notify_write(uint64_t offset);
  uint64_t legacy_read(uint64_t offset, unsigned size);
  void legacy_write(uint64_t offset, uint64_t value, unsigned size);
  uint64_t modern_read(uint64_t offset, unsigned size);
  void modern_write(uint64_t offset, uint64_t value, unsigned size);
  uint32_t legacy_config_offset() const;

  // ---- behaviour ----
  void set_status(uint8_t value);
  void virtio_reset();
  void queue_notify(uint16_t index);
  void enable_queue(uint16_t index);
  void reset_queue(uint16_t index);
  bool queue_size_acceptable(uint16_t index, uint32_t size) const;
  uint16_t accept_vector(uint32_t value) const;
  void notify_vector(uint16_t vector);
  void raise_config_interrupt();
  void set_driver_features(uint64_t features);
  uint64_t modern_features() const { return host_features_ & ~legacy_features_; }

  class Transport final : public VirtioTransport {
   public:
    explicit Transport(VirtioPci& pci) : pci_(pci) {}
    void notify_queue(uint16_t index) override;
    void notify_config() override;
    void bump_config_generation() override { ++pci_.generation_; }
    void set_needs_reset() override;
    dma::DmaView& dma() override { return pci_.dma(); }
    uint64_t driver_features() const override { return pci_.driver_features_; }

   private:
    VirtioPci& pci_;
  };
  class ModernBar final : public pci::MmioHandler {
   public:
    explicit ModernBar(VirtioPci& pci) : pci_(pci) {}
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;

   private:
    VirtioPci& pci_;
  };
  class LegacyBar final : public pci::MmioHandler {
   public:
    explicit LegacyBar(VirtioPci& pci) : pci_(pci) {}
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;

   private:
    VirtioPci& pci_;
  };

  std::unique_ptr<VirtioDevice> device_;
  Transport transport_{*this};
  ModernBar modern_bar_{*this};
  LegacyBar legacy_bar_{*this};
  unsigned vectors_ = 0;
  uint64_t host_features_ = 0;
  uint64_t legacy_features_ = 0;

  // QEMU's VirtIODevice side.
  uint8_t status_ = 0;
  uint8_t isr_ = 0;
  uint8_t generation_ = 0;
  uint16_t queue_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint16_t config_vector_ = vpci::kNoVector;
  bool broken_ = false;
  std::vector<Queue> queues_;
  std::vector<uint16_t> queue_vectors_;  // one per queue, kNoVector when none
  std::vector<uint8_t> config_;
  // QEMU's proxy side (the common configuration as written).
  ModernState modern_;

 public:
  // QEMU's VirtIOPCIProxy fields and vmstate_virtio's transport subsections, for the
  // device's description (each one line, like PciDevice::vmstate_pci_device()).
  static constexpr auto vmstate_modern() {
    return vmstate::field("extra_state", &VirtioPci::modern_, detail::kVirtioPciDesc);
  }
};

}  // namespace ferry::virtio
