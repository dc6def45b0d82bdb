#include "guest/pci.h"

namespace ferry::guest {

using namespace pci_config;

MmioWindow MmioWindow::standard64(uint64_t ram_size) {
  constexpr uint64_t k4GiB = uint64_t{1} << 32, k1GiB = uint64_t{1} << 30;
  uint64_t below_4g = ram_size >= 0xb0000000 ? 2 * k1GiB : ram_size;
  uint64_t ram_end = k4GiB + (ram_size - below_4g);
  uint64_t begin = (ram_end + k1GiB - 1) / k1GiB * k1GiB;
  return MmioWindow(begin, begin + (uint64_t{32} << 30));
}

Result<uint64_t> MmioWindow::allocate(uint64_t size) {
  if (size == 0 || (size & (size - 1)) != 0) {
    return Error(ErrorCode::kInvalidArgument, "mmio window: BAR size 0x{:x} is not a power of two",
                 size);
  }
  uint64_t base = (next_ + size - 1) & ~(size - 1);
  if (base < next_ || base > end_ || end_ - base < size) {
    return Error(ErrorCode::kOutOfRange,
                 "mmio window: no room for a BAR of 0x{:x} bytes (next free 0x{:x}, end 0x{:x})",
                 size, next_, end_);
  }
  next_ = base + size;
  return base;
}

namespace {
Result<PciFunction> read_function(GuestBus& bus, uint8_t slot, uint8_t function) {
  auto id = bus.config_read(slot, function, kVendorId, 4);
  if (!id.ok()) return id.take_status();
  PciFunction fn;
  fn.slot = slot;
  fn.function = function;
  fn.vendor_id = static_cast<uint16_t>(*id);
  fn.device_id = static_cast<uint16_t>(*id >> 16);
  if (fn.vendor_id == 0xffff) return fn;
  auto rev_class = bus.config_read(slot, function, kRevisionId, 4);
  if (!rev_class.ok()) return rev_class.take_status();
  fn.revision = static_cast<uint8_t>(*rev_class);
  fn.class_code = *rev_class >> 8;
  auto header = bus.config_read(slot, function, kHeaderType, 1);
  if (!header.ok()) return header.take_status();
  fn.header_type = static_cast<uint8_t>(*header);
  return fn;
}
}  // namespace

Result<std::vector<PciFunction>> enumerate_bus0(GuestBus& bus) {
  std::vector<PciFunction> found;
  for (uint8_t slot = 0; slot < 32; ++slot) {
    auto fn0 = read_function(bus, slot, 0);
    if (!fn0.ok()) return fn0.take_status();
    if (fn0->vendor_id == 0xffff) continue;
    bool multi = (fn0->header_type & 0x80) != 0;
    fn0->header_type &= 0x7f;
    found.push_back(*fn0);
    for (uint8_t f = 1; multi && f < 8; ++f) {
      auto fn = read_function(bus, slot, f);
      if (!fn.ok()) return fn.take_status();
      if (fn->vendor_id == 0xffff) continue;
      fn->header_type &= 0x7f;
      found.push_back(*fn);
    }
  }
  return found;
}

Result<PciFunction> find_function_by_class(GuestBus& bus, uint32_t class_code, unsigned index) {
  auto all = enumerate_bus0(bus);
  if (!all.ok()) return all.take_status();
  unsigned seen = 0;
  for (const PciFunction& fn : *all) {
    if (fn.class_code == class_code && seen++ == index) return fn;
  }
  return Error(ErrorCode::kFailedPrecondition,
               "pci: no function #{} with class 0x{:06x} on bus 0 ({} functions, {} matching)",
               index, class_code, all->size(), seen);
}

Result<PciBar> probe_bar(GuestBus& bus, const PciFunction& fn, unsigned index) {
  if (index >= 6) return Error(ErrorCode::kInvalidArgument, "pci: BAR index {} is above 5", index);
  uint16_t reg = static_cast<uint16_t>(kBar0 + 4 * index);
  auto original = bus.config_read(fn.slot, fn.function, reg, 4);
  if (!original.ok()) return original.take_status();
  PciBar bar;
  bar.index = index;
  bar.io = (*original & 1) != 0;
  bar.is_64bit = !bar.io && ((*original >> 1) & 3) == 2;
  bar.prefetchable = !bar.io && (*original & 8) != 0;
  if (bar.is_64bit && index == 5) {
    return Error(ErrorCode::kCorrupt, "pci {:02x}.{}: BAR5 claims to be 64-bit", fn.slot,
                 fn.function);
  }
  FERRY_RETURN_IF_ERROR(bus.config_write(fn.slot, fn.function, reg, 0xffffffffu, 4));
  auto low = bus.config_read(fn.slot, fn.function, reg, 4);
  if (!low.ok()) return low.take_status();
  FERRY_RETURN_IF_ERROR(bus.config_write(fn.slot, fn.function, reg, *original, 4));
  uint64_t size = 0;
  if (bar.is_64bit) {
    uint16_t high_reg = static_cast<uint16_t>(reg + 4);
    auto original_high = bus.config_read(fn.slot, fn.function, high_reg, 4);
    if (!original_high.ok()) return original_high.take_status();
    FERRY_RETURN_IF_ERROR(bus.config_write(fn.slot, fn.function, high_reg, 0xffffffffu, 4));
    auto high = bus.config_read(fn.slot, fn.function, high_reg, 4);
    if (!high.ok()) return high.take_status();
    FERRY_RETURN_IF_ERROR(bus.config_write(fn.slot, fn.function, high_reg, *original_high, 4));
    uint64_t mask = uint64_t{*high} << 32 | (*low & ~uint32_t{0xf});
    if (mask != 0) size = ~mask + 1;
    bar.address = uint64_t{*original_high} << 32 | (*original & ~uint32_t{0xf});
  } else if (bar.io) {
    // I/O BARs may implement only the low 16 address bits.
    uint32_t mask = (*low & ~uint32_t{3}) | 0xffff0000u;
    if ((*low & ~uint32_t{3}) != 0) size = uint32_t{~mask + 1};
    bar.address = *original & ~uint32_t{3};
  } else {
    uint32_t mask = *low & ~uint32_t{0xf};
    if (mask != 0) size = uint32_t{~mask + 1};
    bar.address = *original & ~uint32_t{0xf};
  }
  bar.size = size;
  return bar;
}

Result<std::vector<PciBar>> assign_bars(GuestBus& bus, const PciFunction& fn, MmioWindow& window) {
  if (fn.header_type != 0) {
    return Error(ErrorCode::kInvalidArgument, "pci {:02x}.{}: header type {} has no BARs to assign",
                 fn.slot, fn.function, fn.header_type);
  }
  std::vector<PciBar> bars;
  for (unsigned index = 0; index < 6; ++index) {
    auto bar = probe_bar(bus, fn, index);
    if (!bar.ok()) return bar.take_status();
    if (bar->size != 0 && !bar->io) {
      auto base = window.allocate(bar->size);
      if (!base.ok()) return base.take_status().prepend_message(fmt::format("BAR{}: ", index));
      uint16_t reg = static_cast<uint16_t>(kBar0 + 4 * index);
      FERRY_RETURN_IF_ERROR(
          bus.config_write(fn.slot, fn.function, reg, static_cast<uint32_t>(*base), 4));
      if (bar->is_64bit) {
        FERRY_RETURN_IF_ERROR(bus.config_write(fn.slot, fn.function, static_cast<uint16_t>(reg + 4),
                                               static_cast<uint32_t>(*base >> 32), 4));
      }
      bar->address = *base;
    }
    bars.push_back(*bar);
    if (bar->is_64bit) ++index;  // the upper half is not a BAR of its own
  }
  return bars;
}

Status enable_memory_and_bus_master(GuestBus& bus, const PciFunction& fn, bool disable_intx) {
  auto command = bus.config_read(fn.slot, fn.function, kCommand, 2);
  if (!command.ok()) return command.take_status();
  uint32_t value = *command | kCommandMemory | kCommandBusMaster;
  if (disable_intx) value |= kCommandIntxDisable;
  return bus.config_write(fn.slot, fn.function, kCommand, value, 2);
}

Status set_intx_disable(GuestBus& bus, const PciFunction& fn, bool disabled) {
  auto command = bus.config_read(fn.slot, fn.function, kCommand, 2);
  if (!command.ok()) return command.take_status();
  uint32_t value = disabled ? (*command | kCommandIntxDisable) : (*command & ~uint32_t{kCommandIntxDisable});
  return bus.config_write(fn.slot, fn.function, kCommand, value, 2);
}

Result<uint8_t> interrupt_line(GuestBus& bus, const PciFunction& fn) {
  auto line = bus.config_read(fn.slot, fn.function, kInterruptLine, 1);
  if (!line.ok()) return line.take_status();
  return static_cast<uint8_t>(*line);
}

Result<std::optional<uint8_t>> find_capability(GuestBus& bus, const PciFunction& fn, uint8_t id) {
  auto status = bus.config_read(fn.slot, fn.function, kStatus, 2);
  if (!status.ok()) return status.take_status();
  if ((*status & kStatusCapabilityList) == 0) return std::optional<uint8_t>();
  auto next = bus.config_read(fn.slot, fn.function, kCapabilityPointer, 1);
  if (!next.ok()) return next.take_status();
  uint32_t at = *next & 0xfc;
  // At most 48 capabilities fit in the 192 bytes after the header.
  for (int hops = 0; at != 0; ++hops) {
    if (hops >= 48 || at < 0x40) {
      return Error(ErrorCode::kCorrupt,
                   "pci {:02x}.{}: capability list is malformed (pointer 0x{:x} after {} hops)",
                   fn.slot, fn.function, at, hops);
    }
    auto header = bus.config_read(fn.slot, fn.function, static_cast<uint16_t>(at), 2);
    if (!header.ok()) return header.take_status();
    if ((*header & 0xff) == id) return std::optional<uint8_t>(static_cast<uint8_t>(at));
    at = (*header >> 8) & 0xfc;
  }
  return std::optional<uint8_t>();
}

Result<Msix> Msix::probe(GuestBus& bus, const PciFunction& fn, const std::vector<PciBar>& bars) {
  auto cap = find_capability(bus, fn, kCapMsix);
  if (!cap.ok()) return cap.take_status();
  if (!cap->has_value()) {
    return Error(ErrorCode::kFailedPrecondition, "pci {:02x}.{}: no MSI-X capability", fn.slot,
                 fn.function);
  }
  MsixInfo info;
  info.cap_offset = **cap;
  auto control = bus.config_read(fn.slot, fn.function, info.cap_offset + kMsixControl, 2);
  if (!control.ok()) return control.take_status();
  auto table = bus.config_read(fn.slot, fn.function, info.cap_offset + kMsixTable, 4);
  if (!table.ok()) return table.take_status();
  auto pba = bus.config_read(fn.slot, fn.function, info.cap_offset + kMsixPba, 4);
  if (!pba.ok()) return pba.take_status();
  info.table_size = (*control & kMsixTableSizeMask) + 1;
  info.table_bar = *table & 7;
  info.table_offset = *table & ~7u;
  info.pba_bar = *pba & 7;
  info.pba_offset = *pba & ~7u;
  auto bar_address = [&](unsigned index) -> Result<uint64_t> {
    for (const PciBar& bar : bars) {
      if (bar.index == index && bar.size != 0 && !bar.io) return bar.address;
    }
    return Error(ErrorCode::kFailedPrecondition,
                 "pci {:02x}.{}: MSI-X structure in BAR{}, which is not an assigned memory BAR",
                 fn.slot, fn.function, index);
  };
  auto table_base = bar_address(info.table_bar);
  if (!table_base.ok()) return table_base.take_status();
  auto pba_base = bar_address(info.pba_bar);
  if (!pba_base.ok()) return pba_base.take_status();
  return Msix(fn, info, *table_base + info.table_offset, *pba_base + info.pba_offset);
}

Status Msix::enable(GuestBus& bus) {
  uint16_t reg = static_cast<uint16_t>(info_.cap_offset + kMsixControl);
  auto control = bus.config_read(fn_.slot, fn_.function, reg, 2);
  if (!control.ok()) return control.take_status();
  uint32_t value = (*control | kMsixEnable) & ~uint32_t{kMsixFunctionMask};
  return bus.config_write(fn_.slot, fn_.function, reg, value, 2);
}

Status Msix::disable(GuestBus& bus) {
  uint16_t reg = static_cast<uint16_t>(info_.cap_offset + kMsixControl);
  auto control = bus.config_read(fn_.slot, fn_.function, reg, 2);
  if (!control.ok()) return control.take_status();
  return bus.config_write(fn_.slot, fn_.function, reg, *control & ~uint32_t{kMsixEnable}, 2);
}

Status Msix::check_vector(unsigned vector) const {
  if (vector >= info_.table_size) {
    return Error(ErrorCode::kInvalidArgument, "msix: vector {} is beyond the table of {} entries",
                 vector, info_.table_size);
  }
  return {};
}

Status Msix::set_vector(GuestBus& bus, unsigned vector, uint64_t address, uint32_t data,
                        bool masked) {
  FERRY_RETURN_IF_ERROR(check_vector(vector));
  uint64_t entry = table_address_ + uint64_t{vector} * kMsixEntrySize;
  // Mask while the message changes, as the specification asks of software.
  FERRY_RETURN_IF_ERROR(bus.mmio_write(entry + 12, kMsixEntryMasked, 4));
  FERRY_RETURN_IF_ERROR(bus.mmio_write(entry + 0, static_cast<uint32_t>(address), 4));
  FERRY_RETURN_IF_ERROR(bus.mmio_write(entry + 4, static_cast<uint32_t>(address >> 32), 4));
  FERRY_RETURN_IF_ERROR(bus.mmio_write(entry + 8, data, 4));
  return bus.mmio_write(entry + 12, masked ? kMsixEntryMasked : 0, 4);
}

Status Msix::mask_vector(GuestBus& bus, unsigned vector, bool masked) {
  FERRY_RETURN_IF_ERROR(check_vector(vector));
  uint64_t entry = table_address_ + uint64_t{vector} * kMsixEntrySize;
  return bus.mmio_write(entry + 12, masked ? kMsixEntryMasked : 0, 4);
}

Result<bool> Msix::pending(GuestBus& bus, unsigned vector) {
  FERRY_RETURN_IF_ERROR(check_vector(vector));
  auto word = bus.mmio_read(pba_address_ + 8 * (vector / 64), 8);
  if (!word.ok()) return word.take_status();
  return ((*word >> (vector % 64)) & 1) != 0;
}

}  // namespace ferry::guest
