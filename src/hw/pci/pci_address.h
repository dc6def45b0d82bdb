// A function's place on bus 0 and QEMU's `addr=SLOT[.FN]` property syntax.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ferry::pci {

struct PciAddress {
  uint8_t slot = 0;      // 0..31
  uint8_t function = 0;  // 0..7

  uint8_t devfn() const { return static_cast<uint8_t>(slot << 3 | function); }
  // "02.0", the form `addr=` takes.
  std::string to_string() const;
  // "0000:00:02.0", the form migration section names and `lspci` use.
  std::string to_bdf() const;

  bool operator==(const PciAddress&) const = default;
};

// Parses QEMU's `SLOT[.FN]`: hexadecimal slot 0..1f, optional hexadecimal function 0..7
// ("2", "02.0", "1f.7"). Errors name the property and the value found.
Result<PciAddress> parse_pci_address(std::string_view text);

}  // namespace ferry::pci
