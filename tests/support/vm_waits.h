// Waits the black-box tests share: each polls a ferry-vm over QMP until the state it waits
// for arrives. The deadlines are long on purpose: a busy machine is slow, not stuck, and a
// test must create the state it checks rather than race the scheduler for it.
#pragma once

#include <chrono>
#include <cstdint>

#include "support/ferry_vm.h"

namespace ferry::testing {

// query-migrate once the status is completed, failed or cancelled.
Json wait_migration_end(FerryVm& vm, std::chrono::seconds deadline = std::chrono::seconds(120));

// The guest program's completed I/O operations (query-guest's status.ops).
int64_t guest_ops(FerryVm& vm);

// Until the guest program has completed more than `n` operations.
void wait_ops_beyond(FerryVm& vm, int64_t n, std::chrono::seconds deadline = std::chrono::seconds(60));

// Ends the guest program's run phase (x-guest-finish) and returns query-guest once its final
// verification pass has finished or failed.
Json finish_and_verify(FerryVm& vm, std::chrono::seconds deadline = std::chrono::seconds(120));

}  // namespace ferry::testing
