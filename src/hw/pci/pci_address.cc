#include "hw/pci/pci_address.h"

#include <algorithm>

#include <fmt/format.h>

#include "hw/pci/pci_regs.h"

namespace ferry::pci {

std::string PciAddress::to_string() const { return fmt::format("{:02x}.{:x}", slot, function); }

std::string PciAddress::to_bdf() const {
  return fmt::format("0000:00:{:02x}.{:x}", slot, function);
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads one hexadecimal number from the front of `text` (values saturate at 0x10000,
// already far out of range, so long inputs cannot overflow); -1 if there is none.
long take_hex(std::string_view& text) {
  long value = 0;
  size_t digits = 0;
  while (digits < text.size() && hex_digit(text[digits]) >= 0) {
    value = std::min(value * 16 + hex_digit(text[digits]), 0x10000L);
    ++digits;
  }
  if (digits == 0) return -1;
  text.remove_prefix(digits);
  return value;
}

}  // namespace

Result<PciAddress> parse_pci_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::kInvalidArgument,
                 "invalid PCI address addr='{}': {} (expected SLOT[.FN], hexadecimal, slot "
                 "0..1f, function 0..7)",
                 text, why);
  };
  std::string_view rest = text;
  long slot = take_hex(rest);
  if (slot < 0) return bad("no hexadecimal slot number");
  if (slot >= kSlotCount) return bad(fmt::format("slot {:#x} is above 0x1f", slot));
  long function = 0;
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    function = take_hex(rest);
    if (function < 0) return bad("no hexadecimal function number after '.'");
    if (function >= kFunctionCount) return bad(fmt::format("function {:#x} is above 7", function));
  }
  if (!rest.empty()) return bad(fmt::format("unexpected '{}' after the address", rest));
  return PciAddress{static_cast<uint8_t>(slot), static_cast<uint8_t>(function)};
}

}  // namespace ferry::pci
