// The contract between a virtio device model (net, ...) and the transport that presents it
// to the guest (virtio_pci.h). The device says what it is and offers (ids, features,
// queues, configuration space) and reacts to what the driver does (features accepted,
// queues enabled and kicked, reset); the transport owns every register and hands the
// device a VirtioTransport to raise interrupts, bump the configuration generation, ask for
// a reset and reach guest memory.
//
// Threading: none inside; every call runs under the machine lock.
#pragma once

#include <cstdint>
#include <span>

#include "base/status.h"
#include "hw/dma/dma_view.h"
#include "hw/virtio/queue_layout.h"

namespace ferry::virtio {

// What the transport gives the device back.
class VirtioTransport {
 public:
  virtual ~VirtioTransport() = default;
  // Used-buffer notification for queue `index`: ISR bit 0, then the queue's MSI-X vector
  // (none configured: nothing) or, without MSI-X, the INTx line.
  virtual void notify_queue(uint16_t index) = 0;
  // Configuration change: ISR bit 1, a new config_generation, the config vector or INTx.
  // Ignored before DRIVER_OK, as QEMU does.
  virtual void notify_config() = 0;
  // A new config_generation without an interrupt, for a device changing configuration
  // fields the driver may be reading.
  virtual void bump_config_generation() = 0;
  // The device hit an error it cannot recover from: NEEDS_RESET (VERSION_1 drivers) plus
  // a configuration interrupt; the device is broken until the driver resets it.
  virtual void set_needs_reset() = 0;
  // Guest memory as the function reaches it (shut while Bus Master Enable is clear).
  virtual dma::DmaView& dma() = 0;
  // The features the driver has negotiated (0 until it writes any).
  virtual uint64_t driver_features() const = 0;
};

// The PCI identity a device presents through a transitional virtio-pci function.
struct VirtioPciIdentity {
  uint16_t pci_device_id = 0;  // transitional id, e.g. 0x1000 for net
  uint32_t class_code = 0;     // e.g. 0x020000 for an Ethernet controller
  uint16_t subsystem_id = 0;   // the virtio device id for transitional devices
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  // ---- what the device is ----
  virtual uint16_t device_id() const = 0;  // virtio device type (net: 1)
  virtual VirtioPciIdentity pci_identity() const = 0;
  // Every feature offered, legacy-only ones included; the transport adds VERSION_1.
  virtual uint64_t host_features() const = 0;
  // Features a legacy driver sees but a modern one must not (QEMU's legacy_features).
  virtual uint64_t legacy_only_features() const { return 0; }
  virtual uint16_t num_queues() const = 0;
  virtual uint16_t queue_max_size(uint16_t index) const = 0;
  // Bytes of device configuration (QEMU's config_len).
  virtual uint32_t config_size() const = 0;

  // ---- configuration space: the whole buffer, as QEMU's get_config/set_config ----
  virtual void get_config(std::span<uint8_t> out) = 0;
  virtual void set_config(std::span<const uint8_t> in) { (void)in; }

  // ---- the driver's actions ----
  // The transport's view is given once at plug-in; it outlives the device's use of it.
  virtual void attach(VirtioTransport& transport) = 0;
  // The driver sets FEATURES_OK (modern) or writes its features (legacy). An error refuses
  // them: FEATURES_OK stays clear.
  virtual Status features_negotiated(uint64_t features) = 0;
  // The driver enabled queue `index` (modern queue_enable, legacy queue PFN).
  virtual void queue_enabled(uint16_t index, const QueueLayout& layout, uint64_t features) = 0;
  // The driver kicked queue `index` (index < num_queues()).
  virtual void queue_notify(uint16_t index) = 0;
  // The driver reset one queue (RING_RESET negotiated); it is disabled until enabled again.
  virtual void queue_reset(uint16_t index) { (void)index; }
  // The device status changed (DRIVER_OK set or cleared, ...), after the transport took it.
  virtual void status_changed(uint8_t status) { (void)status; }
  // Device reset (status written 0, system reset): back to the state at plug-in.
  virtual void reset() = 0;
  // The VM stopped (false) or runs again (true): a stopped device touches no queue, as
  // QEMU's devices check vm_running.
  virtual void set_running(bool running) { (void)running; }
};

}  // namespace ferry::virtio
