// The vCPU (design.md §3): one thread that runs the VM's guest program, step by step.
//
// Parking: the VM stops only between two steps. park() (main loop thread, machine lock
// held) asks the vCPU to park, drops the machine lock — the step in progress may need it
// for its device accesses — waits until the vCPU is parked, and takes the lock back; only
// then does the machine quiesce devices. unpark() lets it run again. A program that
// finishes or fails stays parked for good and reports through `on_end`.
//
// Status: the vCPU publishes the program's status (GuestProgram::status) after steps, at
// most every 50 ms, at every park or end, when it resumes (before its first step) and, on a
// destination, once the incoming migration has loaded the program (state_loaded), under
// a small lock of its own that nothing else is held under; query-guest reads the last
// published copy, so it never waits for a step (and never takes locks in the vCPU's order).
// A copy says when it was taken ("published-ns", CLOCK_MONOTONIC) and in which state: one
// that still says "parked" after RESUME predates the resume (the vCPU wakes asynchronously,
// as QEMU's vCPUs do), so rates are measured between copies, not between queries.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "guest/guest_bus.h"
#include "guest/program.h"
#include "vm/machine_lock.h"

namespace ferry::vm {

class Vcpu {
 public:
  enum class State { kParked, kRunning, kFinished, kFailed };
  static std::string_view state_name(State state);

  // Called on the vCPU thread when the program ends (error: OK when it finished).
  using EndHandler = std::function<void(const Status& error)>;

  Vcpu(MachineLock& lock, std::unique_ptr<guest::GuestBus> bus,
       std::unique_ptr<guest::GuestProgram> program, EndHandler on_end);
  // Stops the thread. The caller must not hold the machine lock.
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  // Starts the thread, parked.
  void start();
  // Main loop thread, machine lock held (see above).
  void park();
  void unpark();
  // Main loop thread, once an incoming migration has loaded the program's state (the vCPU
  // has not run in this process yet): publishes that state, so that query-guest on a
  // destination that stays paused shows it, not the one from before the load.
  void state_loaded();
  // GuestProgram::request_finish (QMP x-guest-finish; main loop thread). A parked vCPU that
  // has run, or whose incoming state has loaded, gets it at once, so that the state a
  // migration saves from now on carries it; otherwise (running, or a destination's state
  // still loading) the vCPU thread passes it on before its next step, or state_loaded() does.
  void request_finish();

  // system_reset (main loop thread, after park(), devices already reset): tells the program
  // its machine was reset (GuestProgram::note_reset), as a real CPU is reset with its
  // board, and publishes the state it restarts from. A program that ended stays ended.
  void reset_program();

  // The program's state for migration; only touched while the vCPU is parked.
  guest::GuestProgram& program() { return *program_; }

  // The last published status: {"program", "state", "published-ns", "status": {...}[, "error"]}.
  nlohmann::ordered_json status() const;

 private:
  void run();
  void publish(State state);

  MachineLock& machine_lock_;
  std::unique_ptr<guest::GuestBus> bus_;
  std::unique_ptr<guest::GuestProgram> program_;
  EndHandler on_end_;
  std::thread thread_;

  std::mutex mutex_;  // guards the fields below
  std::condition_variable changed_;
  bool runnable_ = false;       // the machine runs
  bool park_requested_ = false;
  // The vCPU thread is between steps and waits. Only that thread sets it, when it really
  // waits: a thread that has not reached its first wait yet is not parked.
  bool parked_ = false;
  bool quit_ = false;
  bool ended_ = false;
  bool has_run_ = false;  // the vCPU has resumed at least once
  bool loaded_ = false;   // an incoming migration loaded the program's state (state_loaded)
  std::atomic<bool> finish_requested_{false};

  // Written by the vCPU thread only.
  std::chrono::steady_clock::time_point last_publish_{};
  std::string error_;

  mutable std::mutex status_mutex_;  // guards status_
  nlohmann::ordered_json status_;
};

}  // namespace ferry::vm
