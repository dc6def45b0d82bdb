// How the virtio-pci transport's state travels, in QEMU 7.2's layout (research notes §1.2):
//   virtio_pci_save_config: PCIDevice, msix, config_vector (be16, only with MSI-X)
//   virtio_save's legacy header, the transport's share: status, isr, queue_sel, the low
//     32 feature bits
//   virtio_pci_save_queue: each queue's MSI-X vector (be16, only with MSI-X). QEMU writes
//     it at the end of the queue's legacy record (num, desc, last_avail_idx are the
//     rings'); here the vectors follow one another, the virtio core interleaves them
//   vmstate_virtio subsections: "virtio/64bit_features" (be64), then
//     "virtio/extra_state" → "virtio_pci" → "virtio_pci/modern_state"
// kVirtioPciTransportState strings these together under the name "virtio" (the name the
// subsections hang from) so the transport can be saved, loaded and tested alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>

#include "hw/virtio/virtio_pci.h"
#include "vmstate/vmstate.h"

namespace ferry::virtio {

// The transport's share of virtio_save's legacy header.
struct TransportHeader {
  uint8_t status = 0;
  uint8_t isr = 0;
  uint16_t queue_sel = 0;
  uint32_t guest_features_low = 0;
};

struct VirtioPciMigration {
  static Status fill_header(const VirtioPci& pci, TransportHeader& h);
  static Status apply_header(VirtioPci& pci, const TransportHeader& h);
  static Status post_load(VirtioPci& pci, int version);
  static bool has_msix(const VirtioPci& pci) { return pci.vectors_ != 0; }
  // QEMU's vdev->config as the stream carries it (the guest's last read): kept so that a
  // later save writes it back; the bytes beyond the device's configuration are dropped.
  static void restore_config_buffer(VirtioPci& pci, std::span<const uint8_t> bytes) {
    std::copy_n(bytes.begin(), std::min(bytes.size(), pci.config_.size()), pci.config_.begin());
  }

  // One be16 vector (config_vector), or one per queue, written only while the function has
  // MSI-X (QEMU's msix_present); a loaded vector must name one of this device's vectors.
  struct VectorsField {
    using Object = VirtioPci;
    std::string_view name;
    bool per_queue = false;
    int since_version = 0;

    template <typename D>
    Status save(VirtioPci& pci, ByteSink& w, D& d, std::string_view shown) const {
      if (!has_msix(pci)) return {};
      if (!per_queue) {
        d.field_begin(shown, "uint16", vmstate::ArrayPos::none(), false);
        w.put_be16(pci.config_vector_);
        d.field_end();
        return {};
      }
      d.field_begin(shown, "uint16", vmstate::ArrayPos::len(pci.queue_vectors_.size()), false);
      for (uint16_t v : pci.queue_vectors_) w.put_be16(v);
      d.field_end();
      return {};
    }
    bool load(VirtioPci& pci, ByteReader& r, Status& err) const {
      if (!has_msix(pci)) return true;
      const size_t count = per_queue ? pci.queue_vectors_.size() : 1;
      for (size_t i = 0; i < count; ++i) {
        uint16_t v;
        if (!r.get_be16(v)) [[unlikely]] return vmstate::fail(err, r.truncated(2));
        Status st = per_queue ? pci.restore_queue_vector(static_cast<uint16_t>(i), v)
                              : pci.restore_config_vector(v);
        if (!st.ok()) [[unlikely]] return vmstate::fail(err, std::move(st));
      }
      return true;
    }
    constexpr bool can_compress() const { return false; }
    template <typename Owner>
    Status check(const Owner&, size_t) const {
      return {};
    }
  };

  static constexpr auto vmstate_64bit_features() {
    return vmstate::describe<VirtioPci>("virtio/64bit_features", {.version = 1},
                                        vmstate::field("guest_features", &VirtioPci::driver_features_));
  }
  static constexpr auto vmstate_extra_state() {
    return vmstate::describe<VirtioPci>("virtio/extra_state", {.version = 1},
                                        VirtioPci::vmstate_modern());
  }
};

inline constexpr auto kTransportHeaderState = vmstate::describe<TransportHeader>(
    "virtio-transport-header", {.version = 1},
    vmstate::field("status", &TransportHeader::status)
        .validate([](uint8_t s) { return (s & 0x30) == 0; },
                  "status has bits outside ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, "
                  "NEEDS_RESET, FAILED"),
    vmstate::field("isr", &TransportHeader::isr)
        .validate([](uint8_t v) { return v <= 3; }, "isr has bits other than queue and config"),
    vmstate::field("queue_sel", &TransportHeader::queue_sel)
        .validate([](uint16_t v) { return v < vpci::kQueueMax; }, "queue_sel is not below 1024"),
    vmstate::field("guest_features", &TransportHeader::guest_features_low));

inline constexpr auto k64bitFeaturesState = VirtioPciMigration::vmstate_64bit_features();
inline constexpr auto kExtraStateState = VirtioPciMigration::vmstate_extra_state();

// Every transport field in QEMU's order (see the file comment).
inline constexpr auto kVirtioPciTransportState = vmstate::describe<VirtioPci>(
    "virtio",
    {.version = 1, .post_load = &VirtioPciMigration::post_load},
    pci::PciDevice::vmstate_pci_device(), pci::PciDevice::vmstate_msix(),
    VirtioPciMigration::VectorsField{"config_vector"},
    vmstate::with_tmp<VirtioPci>("header", kTransportHeaderState, &VirtioPciMigration::fill_header,
                                 &VirtioPciMigration::apply_header),
    VirtioPciMigration::VectorsField{"queue_vector", true},
    // QEMU writes both whenever the device offers a feature above bit 31 (VERSION_1 is) and
    // the transport is modern: always, for a transitional device.
    vmstate::subsection(k64bitFeaturesState), vmstate::subsection(kExtraStateState));

}  // namespace ferry::virtio
