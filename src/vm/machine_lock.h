// The machine lock (design.md §3; QEMU's "big lock"): device state, the guest-physical
// map and every MMIO/PIO/config access are serialised by it. The main loop thread holds
// it whenever it is not sleeping in epoll_wait (the loop's wait hooks drop and retake
// it), so device callbacks, timers, bottom halves and QMP/qtest handlers all run under it.
// The vCPU thread takes it for each device access and never while it merely reads or
// writes guest RAM (RAM needs no lock: guest_memory.h).
#pragma once

#include <atomic>
#include <mutex>
#include <thread>

namespace ferry::vm {

class MachineLock {
 public:
  void lock() {
    mutex_.lock();
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  void unlock() {
    owner_.store(std::thread::id(), std::memory_order_relaxed);
    mutex_.unlock();
  }
  bool held_by_this_thread() const {
    return owner_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }

 private:
  std::mutex mutex_;
  std::atomic<std::thread::id> owner_{};
};

}  // namespace ferry::vm
