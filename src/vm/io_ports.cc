#include "vm/io_ports.h"

namespace ferry::vm {

Status IoPorts::add(std::string name, uint32_t base, uint32_t size,
                    memory::MmioHandler& handler) {
  if (size == 0 || base + size > 0x10000)
    return Error(ErrorCode::kInvalidArgument, "I/O range {} at {:#x}+{:#x} is outside the port space",
                 name, base, size);
  for (const auto& [b, r] : ranges_)
    if (base < r.base + r.size && r.base < base + size)
      return Error(ErrorCode::kInvalidArgument, "I/O range {} at {:#x}+{:#x} overlaps {}", name,
                   base, size, r.name);
  ranges_[base] = Range{base, size, std::move(name), &handler};
  return {};
}

void IoPorts::remove(std::string_view name) {
  for (auto it = ranges_.begin(); it != ranges_.end(); ++it) {
    if (it->second.name == name) {
      ranges_.erase(it);
      return;
    }
  }
}

const IoPorts::Range* IoPorts::find(uint32_t port) const {
  auto it = ranges_.upper_bound(port);
  if (it == ranges_.begin()) return nullptr;
  --it;
  return port < it->second.base + it->second.size ? &it->second : nullptr;
}

uint32_t IoPorts::read(uint16_t port, unsigned size) {
  const Range* r = find(port);
  uint32_t all_ones = size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
  if (!r || port + size > r->base + r->size) return all_ones;
  return static_cast<uint32_t>(r->handler->read(port - r->base, size)) & all_ones;
}

void IoPorts::write(uint16_t port, unsigned size, uint32_t value) {
  const Range* r = find(port);
  if (!r || port + size > r->base + r->size) return;
  r->handler->write(port - r->base, value, size);
}

}  // namespace ferry::vm
