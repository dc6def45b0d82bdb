#include "vm/inprocess_bus.h"

namespace ferry::vm {

Result<uint64_t> InProcessBus::mmio_read(uint64_t addr, unsigned size) {
  return machine_.memory().load(addr, size);
}

Status InProcessBus::mmio_write(uint64_t addr, uint64_t value, unsigned size) {
  return machine_.memory().store(addr, value, size);
}

Result<uint32_t> InProcessBus::port_in(uint16_t port, unsigned size) {
  return machine_.port_in(port, size);
}

Status InProcessBus::port_out(uint16_t port, uint32_t value, unsigned size) {
  machine_.port_out(port, size, value);
  return {};
}

Status InProcessBus::memory_read(uint64_t addr, std::span<uint8_t> out) {
  return machine_.memory().read(addr, out);
}

Status InProcessBus::memory_write(uint64_t addr, std::span<const uint8_t> data) {
  return machine_.memory().write(addr, data);
}

Status InProcessBus::idle(std::chrono::microseconds max_wait) {
  // Round up: a sub-millisecond wait polls once, which is what a spinning driver wants.
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(max_wait);
  auto ran = machine_.loop().run_once(ms);
  return ran.take_status();
}

}  // namespace ferry::vm
