// Loading a PCI function's state: the incoming configuration space may change only what
// the guest could have changed (QEMU's rule in get_pci_config_device), then mappings and
// interrupt levels are derived again so the loaded device behaves like the saved one.
#include <algorithm>

#include "hw/pci/pci_bus.h"
#include "hw/pci/pci_device.h"

namespace ferry::pci {

namespace detail {

Status pci_state_pre_load(PciState& state) {
  state.owner->irq_state_before_load_ = state.irq_state;
  return {};
}

Status pci_state_post_load(PciState& state, int) {
  PciDevice& dev = *state.owner;
  Status st;
  for (size_t pin = 0; pin < state.irq_state.size() && st.ok(); ++pin) {
    if (state.irq_state[pin] != 0 && state.irq_state[pin] != 1)
      st = Error(ErrorCode::kCorrupt, "irq_state[{}]: expected 0 or 1, found {}", pin,
                 state.irq_state[pin]);
  }
  if (st.ok()) st = dev.validate_incoming_config();
  if (!st.ok()) {
    state.irq_state = dev.irq_state_before_load_;
    return st;
  }
  std::copy_n(state.incoming_config->begin(), state.config_size, state.config.begin());
  dev.update_mappings();
  dev.update_intx();
  return {};
}

Status msix_state_post_load(MsixState& state, int) {
  PciDevice& dev = *state.owner;
  // Bits past the last vector do not exist; a stream setting them is not ours.
  for (unsigned bit = state.vectors; bit < (state.vectors + 7) / 8 * 8; ++bit) {
    if (state.pba[bit / 8] & (1u << (bit % 8)))
      return Error(ErrorCode::kCorrupt,
                   "pba: pending bit {} set, but the device has only {} vectors", bit,
                   state.vectors);
  }
  dev.update_intx();
  dev.msix_deliver_pending();
  return {};
}

}  // namespace detail

// Only bits the guest can write (or clear), and read-only bits the device itself drives,
// may differ between the incoming and the local configuration space.
Status PciDevice::validate_incoming_config() const {
  const auto& incoming = *pci_.incoming_config;
  const auto& local = pci_.config;
  for (uint32_t i = 0; i < config_size(); ++i) {
    const uint8_t fixed = static_cast<uint8_t>(~wmask_[i] & ~w1cmask_[i] & ~volatile_mask_[i]);
    if ((incoming[i] ^ local[i]) & fixed)
      return Error(ErrorCode::kCorrupt,
                   "config byte {:#05x} changes read-only bits (mask {:#04x}): expected {:#04x}, "
                   "found {:#04x}",
                   i, fixed, local[i], incoming[i]);
  }
  return {};
}

}  // namespace ferry::pci
