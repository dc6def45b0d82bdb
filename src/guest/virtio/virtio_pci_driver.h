// VirtioPciDriver: the guest's driver for a modern (virtio 1.x) virtio-pci function, as an
// OS's virtio_pci_modern does it, through GuestBus and guest/pci.h only. It finds the
// function by PCI ids, places its BARs, walks the vendor capabilities (common, notify and
// its multiplier, ISR, device configuration) through configuration reads, and then runs the
// spec's initialisation (3.1.1): reset, ACKNOWLEDGE, DRIVER, features over the 32-bit select
// windows, FEATURES_OK read back, queues (size, rings in DMA memory, addresses, MSI-X vector
// or none for polling, enable), DRIVER_OK. Device configuration reads retry until
// config_generation holds still; NEEDS_RESET is read from the status.
//
// Device-specific drivers (net_driver.h) sit on top and choose the features and queues.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "guest/dma_memory.h"
#include "guest/guest_bus.h"
#include "guest/pci.h"
#include "guest/virtio/virtqueue_driver.h"

namespace ferry::guest::virtio {

// One vendor capability as found: which BAR, where in it, and the guest address.
struct VirtioRegion {
  uint8_t cap_offset = 0;  // in configuration space
  uint8_t bar = 0;
  uint32_t offset = 0;
  uint32_t length = 0;
  uint64_t address = 0;  // BAR address + offset
};

// What the feature negotiation ended with.
struct NegotiatedFeatures {
  uint64_t offered = 0;   // device_feature, both words
  uint64_t accepted = 0;  // what the driver wrote and the device kept (FEATURES_OK stuck)
};

class VirtioPciDriver {
 public:
  struct Match {
    uint16_t vendor_id = 0x1af4;
    uint16_t device_id = 0;  // e.g. 0x1000 (transitional net) or 0x1041 (modern net)
    unsigned index = 0;      // the index-th matching function, in slot order
  };

  // Finds the function, places its memory BARs in `window`, turns on memory decoding and
  // bus mastering, and reads the capabilities. No register of the device is written yet.
  // `dma` holds the rings and must outlive the driver.
  static Result<std::unique_ptr<VirtioPciDriver>> probe(GuestBus& bus, DmaMemory& dma,
                                                        MmioWindow& window, const Match& match);

  const PciFunction& function() const { return fn_; }
  const std::vector<PciBar>& bars() const { return bars_; }
  const VirtioRegion& common() const { return common_; }
  const VirtioRegion& notify_region() const { return notify_; }
  const VirtioRegion& isr_region() const { return isr_; }
  const VirtioRegion& device_region() const { return device_; }
  uint32_t notify_multiplier() const { return notify_multiplier_; }
  GuestBus& bus() { return *bus_; }

  // ---- status --------------------------------------------------------------------------
  // Writes 0 and waits until the device reads back 0, then drops every queue (their ring
  // memory is free once the device no longer uses it).
  Status reset();
  Result<uint8_t> status();
  Status set_status_bits(uint8_t bits);  // ORs bits into what the device reports
  // ACKNOWLEDGE and DRIVER after a reset, then the features: those both `wanted` and
  // offered are written; `required` bits the device does not offer fail before anything is
  // written. FEATURES_OK is set and read back: a device that clears it refused the set (the
  // error names the features), and the driver sets FAILED as the spec asks.
  Result<NegotiatedFeatures> negotiate(uint64_t wanted, uint64_t required = 0);
  uint64_t features() const { return features_; }
  bool has_feature(unsigned bit) const { return (features_ >> bit) & 1; }
  // DRIVER_OK: the device is live.
  Status driver_ok();
  // NEEDS_RESET set by the device (it hit an error and waits for a reset).
  Result<bool> needs_reset();

  // ---- interrupts ------------------------------------------------------------------------
  // Programs every MSI-X vector v to send `data_base + v` into the MSI window and enables
  // MSI-X (INTx off). Without it, queues and config run without vectors (polling).
  Status use_msix(uint32_t data_base);
  bool msix_enabled() const { return msix_.has_value(); }
  unsigned msix_vectors() const { return msix_ ? msix_->info().table_size : 0; }
  uint32_t msi_data(uint16_t vector) const { return msi_data_base_ + vector; }
  // config_msix_vector, read back: the device answers NO_VECTOR when it refuses one.
  Status set_config_vector(uint16_t vector);
  // Waits up to `timeout` for the vector's message: how many came (0 on time-out).
  Result<uint32_t> wait_vector(uint16_t vector, std::chrono::microseconds timeout);
  // Reads (and so clears) the ISR status: bit 0 queue, bit 1 configuration change.
  Result<uint8_t> read_isr();

  // ---- queues ----------------------------------------------------------------------------
  Result<uint16_t> num_queues();
  // The device's maximum size for queue `index` (0: the queue does not exist).
  Result<uint16_t> queue_max_size(uint16_t index);
  // Sets queue `index` up after negotiate() and before driver_ok(): `size` entries (0: the
  // device's maximum), the ring format and EVENT_IDX from the negotiated features, `vector`
  // (kNoVector: polled), then queue_enable. The queue lives until reset().
  Result<VirtqueueDriver*> setup_queue(uint16_t index, uint16_t size, uint16_t vector);
  VirtqueueDriver* queue(uint16_t index);
  // The queue's available-buffer notification (what VirtqueueDriver::kick calls).
  Status notify(uint16_t index);

  // ---- device configuration --------------------------------------------------------------
  // Reads `out.size()` bytes at `offset` in naturally aligned accesses of up to 4 bytes,
  // again while config_generation changed under the read (at most a bounded number of
  // times: a device that never settles is an error).
  Status read_config(uint32_t offset, std::span<uint8_t> out);
  Result<uint64_t> read_config_le(uint32_t offset, unsigned size);
  Status write_config(uint32_t offset, uint64_t value, unsigned size);
  // Rounds read_config took on its last call (1 when nothing changed under it).
  unsigned last_config_rounds() const { return last_config_rounds_; }

  // The common configuration, for tests and drivers that need a register directly.
  Result<uint64_t> read_common(uint32_t reg, unsigned size);
  Status write_common(uint32_t reg, uint64_t value, unsigned size);

 private:
  VirtioPciDriver(GuestBus& bus, DmaMemory& dma, const PciFunction& fn)
      : bus_(&bus), dma_(&dma), fn_(fn) {}
  Status read_capabilities();
  std::string name() const;

  GuestBus* bus_;
  DmaMemory* dma_;
  PciFunction fn_;
  std::vector<PciBar> bars_;
  VirtioRegion common_, notify_, isr_, device_;
  uint32_t notify_multiplier_ = 0;
  uint64_t features_ = 0;
  std::optional<Msix> msix_;
  uint32_t msi_data_base_ = 0;
  unsigned last_config_rounds_ = 0;
  std::vector<std::unique_ptr<VirtqueueDriver>> queues_;  // by index, null when not set up
  std::vector<uint16_t> notify_offsets_;                  // queue_notify_off by index
};

}  // namespace ferry::guest::virtio
