#include "guest/guest_bus.h"

#include <array>

#include "base/byte_order.h"
#include "spec/pci.h"

namespace ferry::guest {

namespace {
using spec::pci::kConfigAddressPort;
using spec::pci::kConfigDataPort;

bool valid_size(unsigned size) { return size == 1 || size == 2 || size == 4 || size == 8; }

// Mechanism #1 address: enable bit, bus 0, slot, function, dword-aligned register.
Result<uint32_t> checked_config_address(uint8_t slot, uint8_t function, uint16_t offset,
                                        unsigned size) {
  if (slot >= 32 || function >= 8) {
    return Error(ErrorCode::kInvalidArgument, "pci config: slot {} function {} out of range",
                 slot, function);
  }
  if (offset >= 256) {
    return Error(ErrorCode::kInvalidArgument,
                 "pci config: offset 0x{:x} is beyond the 256 bytes mechanism #1 reaches", offset);
  }
  if ((size != 1 && size != 2 && size != 4) || (offset & (size - 1)) != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "pci config: access of {} bytes at offset 0x{:x} is not naturally aligned", size,
                 offset);
  }
  return spec::pci::config_address(slot, function, offset);
}
}  // namespace

Result<uint32_t> GuestBus::config_read(uint8_t slot, uint8_t function, uint16_t offset,
                                       unsigned size) {
  auto address = checked_config_address(slot, function, offset, size);
  if (!address.ok()) return address.take_status();
  FERRY_RETURN_IF_ERROR(port_out(kConfigAddressPort, *address, 4));
  return port_in(static_cast<uint16_t>(kConfigDataPort + (offset & 3)), size);
}

Status GuestBus::config_write(uint8_t slot, uint8_t function, uint16_t offset, uint32_t value,
                              unsigned size) {
  auto address = checked_config_address(slot, function, offset, size);
  if (!address.ok()) return address.take_status();
  FERRY_RETURN_IF_ERROR(port_out(kConfigAddressPort, *address, 4));
  return port_out(static_cast<uint16_t>(kConfigDataPort + (offset & 3)), value, size);
}

Status GuestBus::enable_interrupts(InterruptSource) {
  return Error(ErrorCode::kFailedPrecondition, "this guest bus does not deliver interrupts");
}

Result<uint32_t> GuestBus::wait_msi(uint32_t data, std::chrono::microseconds) {
  return Error(ErrorCode::kFailedPrecondition,
               "this guest bus does not deliver interrupts (MSI data 0x{:x})", data);
}

Result<bool> GuestBus::wait_intx(unsigned irq, bool, std::chrono::microseconds) {
  return Error(ErrorCode::kFailedPrecondition,
               "this guest bus does not deliver interrupts (INTx line {})", irq);
}

Result<uint64_t> GuestBus::memory_load(uint64_t addr, unsigned size) {
  if (!valid_size(size)) {
    return Error(ErrorCode::kInvalidArgument, "memory_load: size {} is not 1, 2, 4 or 8", size);
  }
  std::array<uint8_t, 8> bytes{};
  FERRY_RETURN_IF_ERROR(memory_read(addr, std::span(bytes.data(), size)));
  return load_le(bytes, 0, size);
}

Status GuestBus::memory_store(uint64_t addr, uint64_t value, unsigned size) {
  if (!valid_size(size)) {
    return Error(ErrorCode::kInvalidArgument, "memory_store: size {} is not 1, 2, 4 or 8", size);
  }
  std::array<uint8_t, 8> bytes{};
  store_le(bytes, 0, value, size);
  return memory_write(addr, std::span<const uint8_t>(bytes.data(), size));
}

Result<uint16_t> GuestBus::memory_load16(uint64_t addr) {
  if (addr & 1) {
    return Error(ErrorCode::kInvalidArgument, "memory_load16: address 0x{:x} is not 2-aligned",
                 addr);
  }
  auto v = memory_load(addr, 2);
  if (!v.ok()) return v.take_status();
  return static_cast<uint16_t>(*v);
}

Status GuestBus::memory_store16(uint64_t addr, uint16_t value) {
  if (addr & 1) {
    return Error(ErrorCode::kInvalidArgument, "memory_store16: address 0x{:x} is not 2-aligned",
                 addr);
  }
  return memory_store(addr, value, 2);
}

}  // namespace ferry::guest
