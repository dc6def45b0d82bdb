#include "base/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace ferry {
namespace {

uint32_t to_epoll(uint32_t events) {
  uint32_t out = 0;
  if (events & EventLoop::kReadable) out |= EPOLLIN;
  if (events & EventLoop::kWritable) out |= EPOLLOUT;
  return out;
}

uint32_t from_epoll(uint32_t events) {
  uint32_t out = 0;
  if (events & (EPOLLIN | EPOLLPRI)) out |= EventLoop::kReadable;
  if (events & EPOLLOUT) out |= EventLoop::kWritable;
  if (events & (EPOLLHUP | EPOLLRDHUP)) out |= EventLoop::kHangup;
  if (events & EPOLLERR) out |= EventLoop::kError;
  return out;
}

// epoll_event.data carries the fd and the watch generation, so an event for a watch that
// was removed (and maybe replaced on the same fd) during this iteration is recognised.
uint64_t pack(int fd, uint32_t generation) {
  return (uint64_t{generation} << 32) | static_cast<uint32_t>(fd);
}

}  // namespace

int64_t MonotonicClock::now_ns() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t VirtualClock::advance_to(int64_t ns) {
  int64_t current = ns_.load(std::memory_order_acquire);
  while (ns > current && !ns_.compare_exchange_weak(current, ns, std::memory_order_acq_rel)) {
  }
  return std::max(current, ns);
}

// --- EventNotifier ---

Result<std::unique_ptr<EventNotifier>> EventNotifier::create() {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return Error(ErrorCode::kIo, "eventfd failed: {}", std::strerror(errno));
  return std::unique_ptr<EventNotifier>(new EventNotifier(fd));
}

EventNotifier::~EventNotifier() { close(fd_); }

void EventNotifier::notify() {
  uint64_t one = 1;
  // EAGAIN means the counter is saturated: the fd is readable anyway.
  ssize_t n = write(fd_, &one, sizeof(one));
  (void)n;
}

bool EventNotifier::clear() {
  uint64_t count = 0;
  return read(fd_, &count, sizeof(count)) == static_cast<ssize_t>(sizeof(count)) && count > 0;
}

// --- EventLoop ---

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return Error(ErrorCode::kIo, "epoll_create1 failed: {}", std::strerror(errno));
  auto wakeup = EventNotifier::create();
  if (!wakeup.ok()) {
    close(epoll_fd);
    return wakeup.take_status();
  }
  std::unique_ptr<EventLoop> loop(new EventLoop(epoll_fd, std::move(wakeup).value()));
  // The wakeup notifier only interrupts epoll_wait (it is not a watch and its events are
  // not counted as callbacks); bottom halves and quit are checked on every iteration.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = pack(loop->wakeup_->fd(), 0);
  if (epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, loop->wakeup_->fd(), &ev) != 0) {
    return Error(ErrorCode::kIo, "cannot watch the wakeup eventfd: {}", std::strerror(errno));
  }
  return loop;
}

EventLoop::EventLoop(int epoll_fd, std::unique_ptr<EventNotifier> wakeup)
    : epoll_fd_(epoll_fd), wakeup_(std::move(wakeup)) {}

EventLoop::~EventLoop() { close(epoll_fd_); }

Status EventLoop::watch_fd(int fd, uint32_t events, FdCallback callback) {
  if (watches_.count(fd)) {
    return Error(ErrorCode::kFailedPrecondition, "fd {} is already watched", fd);
  }
  uint32_t generation = next_generation_++;
  epoll_event ev{};
  ev.events = to_epoll(events);
  ev.data.u64 = pack(fd, generation);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Error(ErrorCode::kIo, "cannot watch fd {}: {}", fd, std::strerror(errno));
  }
  watches_.emplace(fd, Watch{generation, std::move(callback)});
  return Status::Ok();
}

Status EventLoop::modify_fd(int fd, uint32_t events) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) {
    return Error(ErrorCode::kFailedPrecondition, "fd {} is not watched", fd);
  }
  epoll_event ev{};
  ev.events = to_epoll(events);
  ev.data.u64 = pack(fd, it->second.generation);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0) {
    return Error(ErrorCode::kIo, "cannot modify watch of fd {}: {}", fd, std::strerror(errno));
  }
  return Status::Ok();
}

void EventLoop::unwatch_fd(int fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  watches_.erase(it);
}

EventLoop::TimerId EventLoop::add_timer(const Clock& clock, int64_t deadline_ns,
                                        Callback callback) {
  TimerId id = next_timer_id_++;
  timers_.emplace(id, Timer{&clock, deadline_ns, std::move(callback)});
  return id;
}

bool EventLoop::cancel_timer(TimerId id) { return timers_.erase(id) > 0; }

std::optional<int64_t> EventLoop::next_deadline(const Clock& clock) const {
  std::optional<int64_t> best;
  for (const auto& [id, timer] : timers_) {
    if (timer.clock != &clock) continue;
    if (!best || timer.deadline_ns < *best) best = timer.deadline_ns;
  }
  return best;
}

int64_t EventLoop::advance_clock(VirtualClock& clock, int64_t target_ns) {
  // Step from deadline to deadline so every timer runs with the clock at its deadline;
  // a timer may add new ones, which are honoured if they fall before the target.
  while (true) {
    std::optional<int64_t> next = next_deadline(clock);
    if (!next || *next > target_ns) break;
    clock.advance_to(*next);
    fire_expired_timers();
  }
  return clock.advance_to(target_ns);
}

Status EventLoop::watch_notifier(EventNotifier& notifier, Callback callback) {
  EventNotifier* n = &notifier;
  return watch_fd(notifier.fd(), kReadable, [n, cb = std::move(callback)](uint32_t) {
    if (n->clear()) cb();
  });
}

void EventLoop::schedule(Callback callback) {
  {
    std::lock_guard<std::mutex> lock(bh_mutex_);
    bottom_halves_.push_back(std::move(callback));
  }
  if (!in_loop_thread()) wakeup_->notify();
}

void EventLoop::notify() { wakeup_->notify(); }

void EventLoop::set_wait_hooks(Callback before_sleep, Callback after_wake) {
  before_sleep_ = std::move(before_sleep);
  after_wake_ = std::move(after_wake);
}

void EventLoop::quit() {
  quit_requested_.store(true, std::memory_order_release);
  wakeup_->notify();
}

int EventLoop::fire_expired_timers() {
  struct Due {
    int64_t deadline_ns;
    TimerId id;
  };
  std::vector<Due> due;
  for (const auto& [id, timer] : timers_) {
    if (timer.clock->now_ns() >= timer.deadline_ns) due.push_back({timer.deadline_ns, id});
  }
  std::sort(due.begin(), due.end(), [](const Due& a, const Due& b) {
    return a.deadline_ns != b.deadline_ns ? a.deadline_ns < b.deadline_ns : a.id < b.id;
  });
  int fired = 0;
  for (const Due& d : due) {
    auto it = timers_.find(d.id);
    if (it == timers_.end()) continue;  // cancelled by an earlier callback
    Callback callback = std::move(it->second.callback);
    timers_.erase(it);
    callback();
    ++fired;
  }
  return fired;
}

int EventLoop::run_bottom_halves() {
  std::vector<Callback> batch;
  {
    std::lock_guard<std::mutex> lock(bh_mutex_);
    batch.swap(bottom_halves_);
  }
  // Bottom halves scheduled by these run in the next iteration, so a bottom half that
  // reschedules itself cannot starve fds and timers.
  for (Callback& callback : batch) callback();
  return static_cast<int>(batch.size());
}

int EventLoop::wait_timeout_ms(std::chrono::milliseconds requested) const {
  {
    std::lock_guard<std::mutex> lock(bh_mutex_);
    if (!bottom_halves_.empty()) return 0;
  }
  if (quit_requested_.load(std::memory_order_acquire)) return 0;
  int64_t timeout_ns = requested.count() < 0 ? -1 : requested.count() * 1'000'000;
  for (const auto& [id, timer] : timers_) {
    int64_t remaining = timer.deadline_ns - timer.clock->now_ns();
    if (remaining <= 0) return 0;  // already due (a virtual clock that was moved)
    if (!timer.clock->moves_by_itself()) continue;
    if (timeout_ns < 0 || remaining < timeout_ns) timeout_ns = remaining;
  }
  if (timeout_ns < 0) return -1;
  // Round up: waking early would spin until the deadline.
  int64_t ms = (timeout_ns + 999'999) / 1'000'000;
  return static_cast<int>(std::min<int64_t>(ms, 1'000'000'000));
}

Result<int> EventLoop::run_once(std::chrono::milliseconds timeout) {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  int wait_ms = wait_timeout_ms(timeout);
  if (before_sleep_) before_sleep_();
  int n = epoll_wait(epoll_fd_, events, kMaxEvents, wait_ms);
  int wait_errno = errno;
  if (after_wake_) after_wake_();
  if (n < 0) {
    if (wait_errno != EINTR)
      return Error(ErrorCode::kIo, "epoll_wait failed: {}", std::strerror(wait_errno));
    n = 0;
  }
  int ran = 0;
  for (int i = 0; i < n; ++i) {
    int fd = static_cast<int>(static_cast<uint32_t>(events[i].data.u64));
    uint32_t generation = static_cast<uint32_t>(events[i].data.u64 >> 32);
    if (generation == 0) {
      wakeup_->clear();
      continue;
    }
    auto it = watches_.find(fd);
    if (it == watches_.end() || it->second.generation != generation) continue;
    // A copy: the callback may unwatch (and so destroy) its own watch.
    FdCallback callback = it->second.callback;
    callback(from_epoll(events[i].events));
    ++ran;
  }
  ran += fire_expired_timers();
  ran += run_bottom_halves();
  return ran;
}

Status EventLoop::run_until(const std::function<bool()>& done) {
  while (!done()) {
    if (quit_requested_.exchange(false, std::memory_order_acq_rel)) return Status::Ok();
    auto ran = run_once();
    if (!ran.ok()) return ran.take_status();
  }
  return Status::Ok();
}

Status EventLoop::run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  int64_t give_up = real_clock_.now_ns() + limit.count() * 1'000'000;
  while (!done()) {
    if (quit_requested_.exchange(false, std::memory_order_acq_rel)) return Status::Ok();
    int64_t left_ns = give_up - real_clock_.now_ns();
    if (left_ns <= 0) {
      return Error(ErrorCode::kFailedPrecondition, "event loop: condition not met within {} ms",
                   limit.count());
    }
    auto ran = run_once(std::chrono::milliseconds((left_ns + 999'999) / 1'000'000));
    if (!ran.ok()) return ran.take_status();
  }
  return Status::Ok();
}

Status EventLoop::run() {
  return run_until([] { return false; });
}

}  // namespace ferry
