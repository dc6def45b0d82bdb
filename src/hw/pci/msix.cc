// MSI-X: the capability, the table and PBA inside BARs, masking and pending delivery.
#include <algorithm>
#include <bit>
#include <tuple>

#include <fmt/format.h>

#include "base/byte_order.h"
#include "hw/pci/pci_bus.h"
#include "hw/pci/pci_device.h"

namespace ferry::pci {

namespace {

uint32_t pba_bytes(unsigned vectors) { return (vectors + 63) / 64 * 8; }

bool range_inside(uint64_t offset, unsigned size, uint64_t start, uint64_t length) {
  return offset >= start && offset - start < length && size <= length - (offset - start);
}

}  // namespace

Result<uint8_t> PciDevice::init_msix(const MsixLayout& layout) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::kInvalidArgument, "{}: MSI-X with {} vectors: {}", type_name_,
                 layout.vectors, why);
  };
  if (msix_cap_ != 0) return bad("MSI-X is already set up");
  if (layout.vectors == 0 || layout.vectors > kMsixMaxVectors)
    return bad("vectors outside 1..2048");
  for (auto [bar, offset, length, what] :
       {std::tuple{layout.table_bar, layout.table_offset, layout.vectors * kMsixEntrySize, "table"},
        std::tuple{layout.pba_bar, layout.pba_offset, pba_bytes(layout.vectors), "PBA"}}) {
    if (!bar_registered(bar) || bar_type(bar) == BarType::kIo)
      return bad(fmt::format("the {} BAR {} is not a registered memory BAR", what, bar));
    if (offset % 8 != 0)
      return bad(fmt::format("the {} offset {:#x} is not qword-aligned", what, offset));
    if (!range_inside(offset, length, 0, bar_size(bar)))
      return bad(fmt::format("the {} ({} bytes at {:#x}) does not fit BAR {} ({} bytes)", what,
                             length, offset, bar, bar_size(bar)));
  }
  const uint64_t table_end = layout.table_offset + uint64_t{layout.vectors} * kMsixEntrySize;
  const uint64_t pba_end = layout.pba_offset + pba_bytes(layout.vectors);
  if (layout.table_bar == layout.pba_bar && layout.table_offset < pba_end &&
      layout.pba_offset < table_end)
    return bad("the table and the PBA overlap");

  auto cap = add_capability(kCapMsix, kMsixCapSize);
  if (!cap.ok()) return cap;
  msix_cap_ = *cap;
  msix_layout_ = layout;
  set_config_u16(msix_cap_ + kMsixControl, static_cast<uint16_t>(layout.vectors - 1));
  set_config_u32(msix_cap_ + kMsixTable,
                 layout.table_offset | static_cast<uint32_t>(layout.table_bar));
  set_config_u32(msix_cap_ + kMsixPba, layout.pba_offset | static_cast<uint32_t>(layout.pba_bar));
  set_writable_mask(msix_cap_ + kMsixControl, 2, kMsixEnable | kMsixFunctionMask);

  msix_.vectors = layout.vectors;
  msix_.table.assign(size_t{layout.vectors} * kMsixEntrySize, 0);
  msix_.pba.assign(pba_bytes(layout.vectors), 0);
  // Every vector starts masked.
  for (unsigned v = 0; v < layout.vectors; ++v)
    msix_.table[v * kMsixEntrySize + kMsixEntryControl] = kMsixEntryMasked;
  return cap;
}

Result<uint8_t> PciDevice::init_msix_exclusive_bar(int bar, unsigned vectors) {
  if (vectors == 0 || vectors > kMsixMaxVectors)
    return Error(ErrorCode::kInvalidArgument, "{}: MSI-X with {} vectors: vectors outside 1..2048",
                 type_name_, vectors);
  const uint32_t table = vectors * kMsixEntrySize;
  const uint32_t pba_offset = (table + 0x7ff) & ~0x7ffu;
  const uint64_t used = uint64_t{pba_offset} + pba_bytes(vectors);
  const uint64_t size = std::max<uint64_t>(4096, std::bit_ceil(used));
  FERRY_RETURN_IF_ERROR(register_bar(bar, size, BarType::kMem32, false, nullptr));
  return init_msix({.vectors = vectors, .table_bar = bar, .table_offset = 0, .pba_bar = bar,
                    .pba_offset = pba_offset});
}

uint16_t PciDevice::msix_control() const { return config_u16(msix_cap_ + kMsixControl); }

bool PciDevice::msix_enabled() const { return msix_cap_ && (msix_control() & kMsixEnable); }

bool PciDevice::msix_function_masked() const {
  return msix_cap_ && (msix_control() & kMsixFunctionMask);
}

bool PciDevice::msix_vector_masked(unsigned vector) const {
  if (vector >= msix_.vectors) return true;
  return msix_.table[vector * kMsixEntrySize + kMsixEntryControl] & kMsixEntryMasked;
}

bool PciDevice::msix_masked(unsigned vector) const {
  return !msix_enabled() || msix_function_masked() || msix_vector_masked(vector);
}

bool PciDevice::msix_pending(unsigned vector) const {
  if (vector >= msix_.vectors) return false;
  return msix_.pba[vector / 8] & (1u << (vector % 8));
}

void PciDevice::set_msix_pending(unsigned vector, bool pending) {
  uint8_t& byte = msix_.pba[vector / 8];
  const uint8_t bit = static_cast<uint8_t>(1u << (vector % 8));
  byte = pending ? (byte | bit) : (byte & ~bit);
}

MsiMessage PciDevice::msix_message(unsigned vector) const {
  if (vector >= msix_.vectors) return {};
  auto dword = [&](uint32_t at) {
    return load_le<uint32_t>(&msix_.table[vector * kMsixEntrySize + at]);
  };
  return {uint64_t{dword(kMsixEntryAddrLo)} | uint64_t{dword(kMsixEntryAddrHi)} << 32,
          dword(kMsixEntryData)};
}

// While bus mastering is off the device may not write to memory, so the message waits as a
// pending bit like a masked one.
void PciDevice::msix_notify(unsigned vector) {
  if (vector >= msix_.vectors) return;
  if (msix_masked(vector) || !bus_master_enabled()) {
    set_msix_pending(vector, true);
    return;
  }
  msix_send(vector);
}

void PciDevice::msix_send(unsigned vector) {
  if (bus_ == nullptr) return;
  const MsiMessage m = msix_message(vector);
  bus_->msi_write(m.address, m.data);
}

void PciDevice::msix_deliver_pending() {
  if (!msix_enabled() || msix_function_masked() || !bus_master_enabled()) return;
  for (unsigned v = 0; v < msix_.vectors; ++v) {
    if (!msix_pending(v) || msix_vector_masked(v)) continue;
    set_msix_pending(v, false);
    msix_send(v);
  }
}

bool PciDevice::in_msix_table(int bar, uint64_t offset, unsigned size) const {
  return msix_cap_ && bar == msix_layout_.table_bar &&
         range_inside(offset, size, msix_layout_.table_offset, msix_.table.size());
}

bool PciDevice::in_msix_pba(int bar, uint64_t offset, unsigned size) const {
  return msix_cap_ && bar == msix_layout_.pba_bar &&
         range_inside(offset, size, msix_layout_.pba_offset, msix_.pba.size());
}

uint64_t PciDevice::msix_table_read(uint64_t offset, unsigned size) const {
  return load_le(msix_.table, offset, std::min(size, 8u));
}

void PciDevice::msix_table_write(uint64_t offset, uint64_t value, unsigned size) {
  bool control_touched = false;
  for (unsigned i = 0; i < size && i < 8; ++i) {
    const uint64_t at = offset + i;
    msix_.table[at] = static_cast<uint8_t>(value >> (8 * i));
    if (at % kMsixEntrySize >= kMsixEntryControl) control_touched = true;
  }
  // An unmasked vector with its pending bit set fires now.
  if (control_touched) msix_deliver_pending();
}

uint64_t PciDevice::msix_pba_read(uint64_t offset, unsigned size) const {
  return load_le(msix_.pba, offset, std::min(size, 8u));
}

}  // namespace ferry::pci
