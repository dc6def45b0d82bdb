// Test double for the guest layer's unit tests: a GuestBus over a byte array of "RAM" from
// address 0, a log of MMIO accesses, and PCI configuration space for a few functions behind
// ports 0xcf8/0xcfc (BARs answer sizing writes like hardware).
#pragma once

#include <array>
#include <cstring>
#include <map>
#include <vector>

#include "guest/guest_bus.h"

namespace ferry::guest::testing {

class FakeBus : public GuestBus {
 public:
  explicit FakeBus(size_t ram_bytes) : ram(ram_bytes, 0) {}

  struct MmioAccess {
    uint64_t addr;
    uint64_t value;
    unsigned size;
  };
  struct Function {
    std::array<uint8_t, 256> config{};
    std::array<uint64_t, 6> bar_size{};  // memory BAR sizes; a 64-bit BAR sets bit 2 in config
  };

  std::vector<uint8_t> ram;
  std::vector<MmioAccess> mmio_writes;
  std::map<uint64_t, uint64_t> mmio_values;  // what mmio_read returns per address (default 0)
  std::map<unsigned, Function> functions;    // key: slot << 3 | function
  uint32_t config_address = 0;
  int idle_calls = 0;

  Function& add_function(uint8_t slot, uint8_t function, uint16_t vendor, uint16_t device,
                         uint32_t class_code) {
    Function& f = functions[unsigned{slot} << 3 | function];
    put(f.config, 0, vendor, 2);
    put(f.config, 2, device, 2);
    put(f.config, 8, class_code << 8, 4);
    return f;
  }
  static void put(std::array<uint8_t, 256>& c, unsigned at, uint32_t v, unsigned size) {
    for (unsigned i = 0; i < size; ++i) c[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  static uint32_t get(const std::array<uint8_t, 256>& c, unsigned at, unsigned size) {
    uint32_t v = 0;
    for (unsigned i = 0; i < size; ++i) v |= uint32_t{c[at + i]} << (8 * i);
    return v;
  }

  Result<uint64_t> mmio_read(uint64_t addr, unsigned) override {
    auto it = mmio_values.find(addr);
    return it == mmio_values.end() ? 0 : it->second;
  }
  Status mmio_write(uint64_t addr, uint64_t value, unsigned size) override {
    mmio_writes.push_back({addr, value, size});
    return {};
  }
  Result<uint32_t> port_in(uint16_t port, unsigned size) override {
    if (port < 0xcfc || port > 0xcff) return 0xffffffffu;
    Function* f = selected();
    if (!f) return size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
    return get(f->config, (config_address & 0xfc) + (port - 0xcfc), size);
  }
  Status port_out(uint16_t port, uint32_t value, unsigned size) override {
    if (port == 0xcf8 && size == 4) {
      config_address = value;
      return {};
    }
    Function* f = selected();
    if (port < 0xcfc || port > 0xcff || !f) return {};
    unsigned at = (config_address & 0xfc) + (port - 0xcfc);
    if (at >= 0x10 && at < 0x28 && size == 4) return write_bar(*f, (at - 0x10) / 4, value);
    put(f->config, at, value, size);
    return {};
  }
  Status memory_read(uint64_t addr, std::span<uint8_t> out) override {
    if (addr > ram.size() || ram.size() - addr < out.size()) {
      return Error(ErrorCode::kOutOfRange, "fake ram: read of {} at 0x{:x}", out.size(), addr);
    }
    std::memcpy(out.data(), ram.data() + addr, out.size());
    return {};
  }
  Status memory_write(uint64_t addr, std::span<const uint8_t> data) override {
    if (addr > ram.size() || ram.size() - addr < data.size()) {
      return Error(ErrorCode::kOutOfRange, "fake ram: write of {} at 0x{:x}", data.size(), addr);
    }
    std::memcpy(ram.data() + addr, data.data(), data.size());
    return {};
  }
  Status idle(std::chrono::microseconds) override {
    ++idle_calls;
    return {};
  }

  uint64_t ram_u64(uint64_t addr) const {
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; ++i) v |= uint64_t{ram.at(addr + i)} << (8 * i);
    return v;
  }

 private:
  Function* selected() {
    if ((config_address & 0x80000000u) == 0 || ((config_address >> 16) & 0xff) != 0) {
      return nullptr;
    }
    auto it = functions.find((config_address >> 8) & 0xff);
    return it == functions.end() ? nullptr : &it->second;
  }
  // BARs keep their flag bits and only the address bits above their size.
  Status write_bar(Function& f, unsigned index, uint32_t value) {
    unsigned at = 0x10 + 4 * index;
    bool upper_half = index > 0 && f.bar_size[index] == 0 &&
                      (get(f.config, at - 4, 4) & 0x6) == 0x4 && f.bar_size[index - 1] != 0;
    if (upper_half) {
      uint64_t size = f.bar_size[index - 1];
      put(f.config, at, value & static_cast<uint32_t>(~(size - 1) >> 32), 4);
      return {};
    }
    uint64_t size = f.bar_size[index];
    if (size == 0) return {};
    uint32_t flags = get(f.config, at, 4) & 0xf;
    put(f.config, at, (value & static_cast<uint32_t>(~(size - 1)) & ~0xfu) | flags, 4);
    return {};
  }
};

}  // namespace ferry::guest::testing
