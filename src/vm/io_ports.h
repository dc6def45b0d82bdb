// The x86 I/O port space: 64 Ki ports, regions served by handlers (the PCI config ports,
// I/O BARs). Unclaimed ports read as all-ones and ignore writes, as on a PC.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"
#include "memory/mmio_handler.h"

namespace ferry::vm {

class IoPorts {
 public:
  // `handler` is not owned and must outlive its mapping.
  Status add(std::string name, uint32_t base, uint32_t size, memory::MmioHandler& handler);
  void remove(std::string_view name);

  uint32_t read(uint16_t port, unsigned size);
  void write(uint16_t port, unsigned size, uint32_t value);

 private:
  struct Range {
    uint32_t base, size;
    std::string name;
    memory::MmioHandler* handler;
  };
  const Range* find(uint32_t port) const;
  std::map<uint32_t, Range> ranges_;  // by base
};

}  // namespace ferry::vm
