#include "vm/inprocess_bus.h"

#include <bit>
#include <mutex>
#include <thread>

#include "memory/guest_memory.h"

namespace ferry::vm {

template <typename F>
auto InProcessBus::device_access(F&& access) {
  if (discipline_ == Discipline::kLoopThread) return access();
  std::lock_guard lock(machine_.lock());
  return access();
}

std::optional<uint64_t> InProcessBus::ram(uint64_t addr, uint64_t len) const {
  // The machine's memory map is fixed once built: no lock needed, unlike the address space.
  return machine_.memory_map().ram_offset(addr, len);
}

Result<uint64_t> InProcessBus::mmio_read(uint64_t addr, unsigned size) {
  return device_access([&] { return machine_.memory().load(addr, size); });
}

Status InProcessBus::mmio_write(uint64_t addr, uint64_t value, unsigned size) {
  return device_access([&] { return machine_.memory().store(addr, value, size); });
}

Result<uint32_t> InProcessBus::port_in(uint16_t port, unsigned size) {
  return device_access([&] { return Result<uint32_t>(machine_.port_in(port, size)); });
}

Status InProcessBus::port_out(uint16_t port, uint32_t value, unsigned size) {
  return device_access([&] {
    machine_.port_out(port, size, value);
    return Status::Ok();
  });
}

Status InProcessBus::memory_read(uint64_t addr, std::span<uint8_t> out) {
  if (discipline_ == Discipline::kVcpuThread) {
    if (auto offset = ram(addr, out.size())) {
      memory::guest_read(out.data(), machine_.main_ram().host() + *offset, out.size());
      return {};
    }
  }
  return device_access([&] { return machine_.memory().read(addr, out); });
}

Status InProcessBus::memory_write(uint64_t addr, std::span<const uint8_t> data) {
  if (discipline_ == Discipline::kVcpuThread) {
    if (auto offset = ram(addr, data.size())) {
      memory::RamBlock& block = machine_.main_ram();
      memory::guest_write(block.host() + *offset, data.data(), data.size());
      if (!data.empty()) block.dirty().mark(*offset, data.size());  // after the data
      return {};
    }
  }
  return device_access([&] { return machine_.memory().write(addr, data); });
}

Result<uint16_t> InProcessBus::memory_load16(uint64_t addr) {
  auto offset = addr % 2 == 0 ? ram(addr, 2) : std::nullopt;
  if (!offset) return GuestBus::memory_load16(addr);  // misaligned or not RAM: refused or MMIO
  uint16_t v = __atomic_load_n(
      reinterpret_cast<const uint16_t*>(machine_.main_ram().host() + *offset), __ATOMIC_RELAXED);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap16(v);
  return v;
}

Status InProcessBus::memory_store16(uint64_t addr, uint16_t value) {
  auto offset = addr % 2 == 0 ? ram(addr, 2) : std::nullopt;
  if (!offset) return GuestBus::memory_store16(addr, value);
  if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap16(value);
  memory::RamBlock& block = machine_.main_ram();
  __atomic_store_n(reinterpret_cast<uint16_t*>(block.host() + *offset), value, __ATOMIC_RELAXED);
  block.dirty().mark(*offset, 2);  // after the data
  return {};
}

Status InProcessBus::idle(std::chrono::microseconds max_wait) {
  if (discipline_ == Discipline::kVcpuThread) {
    std::this_thread::sleep_for(std::min(max_wait, std::chrono::microseconds(50)));
    return {};
  }
  // Round down: a sub-millisecond wait polls once, which is what a spinning driver wants.
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(max_wait);
  return machine_.loop().run_once(ms).take_status();
}

Status InProcessBus::enable_interrupts(guest::InterruptSource) {
  return {};  // the machine records every interrupt for its CPU anyway
}

template <typename F>
Status InProcessBus::run_loop_until(F&& ready, std::chrono::microseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    // Round up: a wait shorter than the loop's millisecond resolution still sleeps.
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left + std::chrono::microseconds(999));
    FERRY_RETURN_IF_ERROR(machine_.loop().run_once(ms).take_status());
  }
  return {};
}

Result<uint32_t> InProcessBus::wait_msi(uint32_t data, std::chrono::microseconds timeout) {
  CpuInterrupts& cpu = machine_.cpu_interrupts();
  uint64_t taken = 0;
  if (discipline_ == Discipline::kVcpuThread) {
    taken = cpu.wait_msi(data, std::chrono::steady_clock::now() + timeout);
  } else {
    FERRY_RETURN_IF_ERROR(run_loop_until([&] { return (taken = cpu.take_msi(data)) != 0; }, timeout));
  }
  return static_cast<uint32_t>(std::min<uint64_t>(taken, UINT32_MAX));
}

Result<bool> InProcessBus::wait_intx(unsigned irq, bool level, std::chrono::microseconds timeout) {
  CpuInterrupts& cpu = machine_.cpu_interrupts();
  if (discipline_ == Discipline::kVcpuThread)
    return cpu.wait_line(irq, level, std::chrono::steady_clock::now() + timeout);
  FERRY_RETURN_IF_ERROR(run_loop_until([&] { return cpu.line(irq) == level; }, timeout));
  return cpu.line(irq);
}

}  // namespace ferry::vm
