#include "support/vm_waits.h"

#include <string>
#include <thread>

namespace ferry::testing {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

Json wait_migration_end(FerryVm& vm, std::chrono::seconds deadline) {
  Json r;
  for (auto until = Clock::now() + deadline; Clock::now() < until;) {
    r = vm.ok("query-migrate");
    std::string status = r.value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "migration did not end: " << r.dump();
  return r;
}

int64_t guest_ops(FerryVm& vm) {
  return vm.ok("query-guest")["status"].value("ops", int64_t{0});
}

void wait_ops_beyond(FerryVm& vm, int64_t n, std::chrono::seconds deadline) {
  for (auto until = Clock::now() + deadline; Clock::now() < until && guest_ops(vm) <= n;)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(guest_ops(vm), n) << "the workload does not progress";
}

Json finish_and_verify(FerryVm& vm, std::chrono::seconds deadline) {
  vm.ok("x-guest-finish");
  Json g;
  for (auto until = Clock::now() + deadline; Clock::now() < until;) {
    g = vm.ok("query-guest");
    std::string state = g.value("state", "");
    if (state == "finished" || state == "failed") return g;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the final pass did not end: " << g.dump();
  return g;
}

}  // namespace ferry::testing
