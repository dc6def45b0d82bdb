// The main loop of one thread: fd readiness callbacks (epoll), timers on a chosen clock,
// bottom halves and eventfd notifiers.
//
// Threading: an EventLoop belongs to the thread that runs it. Only `schedule`, `notify`
// and `quit` (and EventNotifier::notify) may be called from other threads; every other
// member, and every callback, runs on the loop thread. Callbacks may add and remove
// watches, timers and bottom halves, including their own, while they run.
//
// Clocks: a timer fires when its clock reaches its deadline. The real MonotonicClock
// moves by itself, so the loop sleeps no longer than its nearest deadline. A VirtualClock
// moves only when told (`advance_clock`, as qtest's clock_step/clock_set do with
// `-accel qtest`); its timers never shorten a sleep.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace ferry {

// A time source in nanoseconds.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t now_ns() const = 0;
  // True when the clock moves by itself (so waiting for a deadline makes sense).
  virtual bool moves_by_itself() const = 0;
};

// CLOCK_MONOTONIC.
class MonotonicClock final : public Clock {
 public:
  int64_t now_ns() const override;
  bool moves_by_itself() const override { return true; }
};

// A clock that stands still until told to move; it never goes backwards. Reading it is
// safe from any thread; moving it belongs to the loop thread (EventLoop::advance_clock,
// which also fires the timers passed on the way).
class VirtualClock final : public Clock {
 public:
  explicit VirtualClock(int64_t start_ns = 0) : ns_(start_ns) {}
  int64_t now_ns() const override { return ns_.load(std::memory_order_acquire); }
  bool moves_by_itself() const override { return false; }
  // Moves to `ns` if that is later than now; returns the clock value afterwards.
  int64_t advance_to(int64_t ns);

 private:
  std::atomic<int64_t> ns_;
};

// An eventfd: `notify` from any thread makes its fd readable until `clear`.
class EventNotifier {
 public:
  static Result<std::unique_ptr<EventNotifier>> create();
  ~EventNotifier();
  EventNotifier(const EventNotifier&) = delete;
  EventNotifier& operator=(const EventNotifier&) = delete;

  int fd() const { return fd_; }
  void notify();  // thread-safe
  // Consumes pending notifications; returns true if there were any.
  bool clear();

 private:
  explicit EventNotifier(int fd) : fd_(fd) {}
  int fd_;
};

class EventLoop {
 public:
  // Readiness bits for fd watches. kHangup and kError are always reported when they
  // happen, whether asked for or not.
  static constexpr uint32_t kReadable = 1;
  static constexpr uint32_t kWritable = 2;
  static constexpr uint32_t kHangup = 4;
  static constexpr uint32_t kError = 8;

  using FdCallback = std::function<void(uint32_t events)>;
  using Callback = std::function<void()>;
  using TimerId = uint64_t;

  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // --- fd watches (loop thread) ---
  // Calls `callback` with the ready bits whenever `fd` is ready for `events`. One watch
  // per fd; the loop never closes the fd.
  Status watch_fd(int fd, uint32_t events, FdCallback callback);
  Status modify_fd(int fd, uint32_t events);
  // Stops watching; safe to call from the fd's own callback or for an unwatched fd.
  void unwatch_fd(int fd);

  // --- timers (loop thread) ---
  // Fires `callback` once, when `clock` reaches `deadline_ns`. The clock must outlive the
  // timer. Ids are never reused.
  TimerId add_timer(const Clock& clock, int64_t deadline_ns, Callback callback);
  // Returns false if the timer already fired or was cancelled.
  bool cancel_timer(TimerId id);
  // The earliest pending deadline on `clock`, if any.
  std::optional<int64_t> next_deadline(const Clock& clock) const;
  // Moves a virtual clock to `target_ns`, stopping at each pending deadline on the way
  // to fire its timers in order (so a timer sees the clock at its own deadline).
  // Returns the clock value afterwards.
  int64_t advance_clock(VirtualClock& clock, int64_t target_ns);

  // --- notifiers (loop thread) ---
  // Calls `callback` on the loop thread after `notifier.notify()` (from any thread).
  // Several notifications before the loop runs coalesce into one call.
  Status watch_notifier(EventNotifier& notifier, Callback callback);

  // --- any thread ---
  // Runs `callback` soon on the loop thread (a bottom half), in scheduling order. From
  // the loop thread itself this costs no system call (the loop checks its bottom halves
  // before it sleeps); from another thread it wakes the loop.
  void schedule(Callback callback);
  // True on the thread that last ran this loop.
  bool in_loop_thread() const {
    return loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  // Wakes the loop if it is waiting.
  void notify();
  // Makes `run` and `run_until` return after the current iteration.
  void quit();

  // Called just before the loop sleeps in epoll_wait and just after it wakes: a machine
  // drops its lock while the loop sleeps (vm/machine_lock.h). Either may be empty.
  void set_wait_hooks(Callback before_sleep, Callback after_wake);

  // --- running (loop thread) ---
  // Waits at most `timeout` (negative: no limit; zero: poll) for something to do, then
  // does it: ready fds, expired timers, bottom halves. Returns how many callbacks ran.
  Result<int> run_once(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));
  // Runs until `done()` holds (checked after every iteration) or `quit()`.
  Status run_until(const std::function<bool()>& done);
  // Same, but gives up with an error after `limit` of real time; for tests and
  // bounded waits.
  Status run_until(const std::function<bool()>& done, std::chrono::milliseconds limit);
  // Runs until quit().
  Status run();

 private:
  struct Watch {
    uint32_t generation;
    FdCallback callback;
  };
  struct Timer {
    const Clock* clock;
    int64_t deadline_ns;
    Callback callback;
  };

  EventLoop(int epoll_fd, std::unique_ptr<EventNotifier> wakeup);
  int fire_expired_timers();
  int run_bottom_halves();
  int wait_timeout_ms(std::chrono::milliseconds requested) const;

  int epoll_fd_;
  std::unique_ptr<EventNotifier> wakeup_;
  std::unordered_map<int, Watch> watches_;
  uint32_t next_generation_ = 1;
  std::map<TimerId, Timer> timers_;
  TimerId next_timer_id_ = 1;
  MonotonicClock real_clock_;

  mutable std::mutex bh_mutex_;
  std::vector<Callback> bottom_halves_;  // guarded by bh_mutex_
  std::atomic<bool> quit_requested_{false};
  std::atomic<std::thread::id> loop_thread_{};
  Callback before_sleep_;
  Callback after_wake_;
};

}  // namespace ferry
