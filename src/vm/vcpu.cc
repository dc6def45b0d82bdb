#include "vm/vcpu.h"

namespace ferry::vm {

namespace {
// How long an idle vCPU waits before it polls its device again: short enough for I/O
// latency at low queue depths, long enough not to burn a core while a device is busy.
constexpr auto kIdleWait = std::chrono::microseconds(20);
constexpr auto kPublishEvery = std::chrono::milliseconds(50);
}  // namespace

std::string_view Vcpu::state_name(State state) {
  switch (state) {
    case State::kParked: return "parked";
    case State::kRunning: return "running";
    case State::kFinished: return "finished";
    case State::kFailed: return "failed";
  }
  return "unknown";
}

Vcpu::Vcpu(MachineLock& lock, std::unique_ptr<guest::GuestBus> bus,
           std::unique_ptr<guest::GuestProgram> program, EndHandler on_end)
    : machine_lock_(lock),
      bus_(std::move(bus)),
      program_(std::move(program)),
      on_end_(std::move(on_end)) {
  publish(State::kParked);
}

Vcpu::~Vcpu() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Vcpu::start() { thread_ = std::thread([this] { run(); }); }

void Vcpu::park() {
  {
    std::lock_guard lock(mutex_);
    runnable_ = false;
    park_requested_ = true;
  }
  changed_.notify_all();
  // The step in progress may be waiting for the machine lock: let it finish.
  machine_lock_.unlock();
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return parked_ || ended_ || !thread_.joinable(); });
    park_requested_ = false;
  }
  machine_lock_.lock();
}

void Vcpu::unpark() {
  {
    std::lock_guard lock(mutex_);
    runnable_ = true;
  }
  changed_.notify_all();
}

void Vcpu::state_loaded() {
  // Under mutex_: a vCPU thread that has not run stays away from the program until unpark.
  std::lock_guard lock(mutex_);
  if (has_run_) return;
  loaded_ = true;
  // A finish asked for while the state was loading goes into that state now, so that a
  // migration onwards before the first step carries it.
  if (finish_requested_.exchange(false, std::memory_order_acq_rel)) program_->request_finish();
  publish(State::kParked);
}

void Vcpu::request_finish() {
  std::lock_guard lock(mutex_);
  // Parked between steps, or loaded and not run yet (the thread sets has_run_ under mutex_
  // before it touches the program): the program's state is the main loop's to touch, as
  // migration's, and the request must be in it before the state is saved again.
  if (!ended_ && ((parked_ && has_run_) || (loaded_ && !has_run_))) {
    program_->request_finish();
    return;
  }
  finish_requested_.store(true, std::memory_order_release);
}

void Vcpu::reset_program() {
  std::lock_guard lock(mutex_);
  if (ended_) return;
  // Parked between steps (or never run): the program's state is the main loop's to touch.
  program_->note_reset();
  if (parked_ || !thread_.joinable()) publish(State::kParked);
}

nlohmann::ordered_json Vcpu::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

void Vcpu::publish(State state) {
  auto now = std::chrono::steady_clock::now();
  nlohmann::ordered_json s = {
      {"program", std::string(program_->name())},
      {"state", std::string(state_name(state))},
      {"published-ns",
       std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count()},
      {"status", program_->status()}};
  if (!error_.empty()) s["error"] = error_;
  last_publish_ = now;
  std::lock_guard lock(status_mutex_);
  status_ = std::move(s);
}

void Vcpu::run() {
  std::unique_lock lock(mutex_);
  bool ran_before = false;
  for (;;) {
    if (!runnable_ || park_requested_ || ended_) {
      if (ran_before) {
        // Not before the first run: on a destination the incoming thread may be loading
        // the program's state right now (the constructor published the initial status).
        lock.unlock();
        if (!ended_) program_->note_parked();
        publish(ended_ ? (error_.empty() ? State::kFinished : State::kFailed) : State::kParked);
        lock.lock();
      }
      parked_ = true;
      changed_.notify_all();
      changed_.wait(lock, [this] { return quit_ || (runnable_ && !park_requested_ && !ended_); });
      if (quit_) return;
      parked_ = false;
      has_run_ = true;
      lock.unlock();
      // Also on a destination's first run: the program's state says when it parked.
      program_->note_resumed();
      // A fresh status before the first step: query-guest after RESUME must not answer with
      // the one from before the stop (on a destination: from before its state was loaded).
      publish(State::kRunning);
      lock.lock();
    }
    if (quit_) return;
    ran_before = true;
    lock.unlock();
    if (finish_requested_.exchange(false, std::memory_order_acq_rel)) program_->request_finish();
    Result<guest::StepResult> step = program_->step(*bus_);
    bool end = !step.ok() || *step == guest::StepResult::kFinished;
    if (!step.ok()) error_ = step.status().to_string();
    if (end) {
      publish(error_.empty() ? State::kFinished : State::kFailed);
      on_end_(step.ok() ? Status::Ok() : step.status());
    } else if (std::chrono::steady_clock::now() - last_publish_ >= kPublishEvery) {
      publish(State::kRunning);
    }
    lock.lock();
    if (end) {
      ended_ = true;
      continue;
    }
    if (step.ok() && *step == guest::StepResult::kWaiting)
      changed_.wait_for(lock, kIdleWait, [this] { return quit_ || park_requested_ || !runnable_; });
  }
}

}  // namespace ferry::vm
