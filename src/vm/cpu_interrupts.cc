#include "vm/cpu_interrupts.h"

namespace ferry::vm {

void CpuInterrupts::deliver_msi(uint32_t data) {
  {
    std::lock_guard lock(mutex_);
    ++pending_[data];
    ++delivered_;
  }
  changed_.notify_all();
}

void CpuInterrupts::set_line(unsigned irq, bool level) {
  {
    std::lock_guard lock(mutex_);
    lines_[irq] = level;
  }
  changed_.notify_all();
}

void CpuInterrupts::reset() {
  std::lock_guard lock(mutex_);
  pending_.clear();
}

uint64_t CpuInterrupts::take_locked(uint32_t data) {
  auto it = pending_.find(data);
  if (it == pending_.end()) return 0;
  uint64_t n = it->second;
  pending_.erase(it);
  return n;
}

bool CpuInterrupts::line_locked(unsigned irq) const {
  auto it = lines_.find(irq);
  return it != lines_.end() && it->second;
}

uint64_t CpuInterrupts::take_msi(uint32_t data) {
  std::lock_guard lock(mutex_);
  return take_locked(data);
}

bool CpuInterrupts::line(unsigned irq) const {
  std::lock_guard lock(mutex_);
  return line_locked(irq);
}

uint64_t CpuInterrupts::msi_delivered() const {
  std::lock_guard lock(mutex_);
  return delivered_;
}

uint64_t CpuInterrupts::wait_msi(uint32_t data, Deadline deadline) {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return pending_.contains(data); });
  return take_locked(data);
}

bool CpuInterrupts::wait_line(unsigned irq, bool level, Deadline deadline) {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return line_locked(irq) == level; });
  return line_locked(irq);
}

}  // namespace ferry::vm
