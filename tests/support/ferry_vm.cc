#include "support/ferry_vm.h"

#include <unistd.h>

#include <atomic>

namespace ferry::testing {

std::string unique_base(const char* what) {
  static std::atomic<int> counter{0};
  return fmt::format("/tmp/ferry-vm-test-{}-{}-{}", ::getpid(), what, counter++);
}

}  // namespace ferry::testing
