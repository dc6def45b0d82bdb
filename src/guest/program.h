// GuestProgram: what runs on the VM's vCPU thread (design.md §3). Ferry has no CPU
// emulator; a guest program is native code that drives devices only through the GuestBus,
// as a kernel driver would.
//
// A program advances in steps. A step is short and never waits for a device to make
// progress: when it has nothing to do until the device answers, it returns kWaiting and
// the vCPU idles briefly before the next step. The vCPU parks only between steps, so the
// program's state between two steps is the whole truth about it: that state is what
// migrates (its `migration_state()`, saved at stop-and-copy as the "guest" section, loaded
// on the destination before the first step there).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "guest/guest_bus.h"
#include "vmstate/binding.h"

namespace ferry::guest {

enum class StepResult {
  kProgress,  // did something; step again
  kWaiting,   // nothing to do until a device answers: idle briefly, then step again
  kFinished,  // done; the program ends successfully
};

class GuestProgram {
 public:
  virtual ~GuestProgram() = default;

  virtual std::string_view name() const = 0;
  // One bounded step. An error ends the program with that error (reported through QMP and
  // the process exit status).
  virtual Result<StepResult> step(GuestBus& bus) = 0;
  // Progress and statistics, for QMP query-guest.
  virtual nlohmann::ordered_json status() const = 0;
  // The program's state as a VMState binding (the "guest" section).
  virtual std::unique_ptr<vmstate::StateBinding> migration_state() = 0;
  // The vCPU parks (the VM stops, perhaps to migrate) and later runs again — maybe in
  // another process, after the program's state travelled. A program that measures stalls
  // keeps the time it parked (CLOCK_MONOTONIC, one clock for every process on the host)
  // in its migrated state, so the destination can tell how long the pause really was.
  virtual void note_parked() {}
  virtual void note_resumed() {}
  // The machine was reset (QMP system_reset): every device is back at its plug-in state and
  // anything in flight in them is gone; RAM and disks keep their contents. As a real CPU
  // restarts with its board, the program starts again from its bring-up, keeping what
  // stays true (a model of the disk), or makes its next step fail with a clear reason.
  // Called while the vCPU is parked, between two steps.
  virtual void note_reset() = 0;
  // Asks the program to end its open-ended work soon; whatever checks it makes at its end
  // still run (QMP x-guest-finish). Called on the vCPU thread between steps.
  virtual void request_finish() {}
};

}  // namespace ferry::guest
