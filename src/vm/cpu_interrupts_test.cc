#include "vm/cpu_interrupts.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace ferry::vm {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(CpuInterrupts, MessagesCountPerDataUntilTaken) {
  CpuInterrupts cpu;
  EXPECT_EQ(cpu.take_msi(0x41), 0u);
  cpu.deliver_msi(0x41);
  cpu.deliver_msi(0x41);
  cpu.deliver_msi(0x42);
  EXPECT_EQ(cpu.take_msi(0x41), 2u) << "coalesced, as in an IRR, but counted";
  EXPECT_EQ(cpu.take_msi(0x41), 0u);
  EXPECT_EQ(cpu.msi_delivered(), 3u);
  cpu.reset();
  EXPECT_EQ(cpu.take_msi(0x42), 0u) << "reset forgets what was not taken";
  EXPECT_EQ(cpu.msi_delivered(), 3u);
}

TEST(CpuInterrupts, LinesAreLevels) {
  CpuInterrupts cpu;
  EXPECT_FALSE(cpu.line(10));
  cpu.set_line(10, true);
  EXPECT_TRUE(cpu.line(10));
  EXPECT_FALSE(cpu.line(11));
  cpu.reset();
  EXPECT_TRUE(cpu.line(10)) << "levels follow the devices, not reset";
  cpu.set_line(10, false);
  EXPECT_FALSE(cpu.line(10));
}

TEST(CpuInterrupts, WaitsTimeOutWithNothing) {
  CpuInterrupts cpu;
  auto start = Clock::now();
  EXPECT_EQ(cpu.wait_msi(0x41, start + 20ms), 0u);
  EXPECT_FALSE(cpu.wait_line(3, true, start + 20ms));
  EXPECT_GE(Clock::now() - start, 20ms);
  EXPECT_FALSE(cpu.wait_line(3, false, Clock::now() + 10s)) << "already at the level";
}

// A vCPU thread waiting while the "main loop" thread delivers: the wait ends with the
// delivery, not the deadline. (Also run under TSan.)
TEST(CpuInterrupts, WaitersOnAnotherThreadWakeOnDelivery) {
  CpuInterrupts cpu;
  std::atomic<uint64_t> got{0};
  std::atomic<bool> line_seen{false};
  auto start = Clock::now();
  std::thread vcpu([&] {
    got = cpu.wait_msi(0x50, Clock::now() + 10s);
    line_seen = cpu.wait_line(7, true, Clock::now() + 10s);
  });
  std::this_thread::sleep_for(5ms);
  cpu.deliver_msi(0x51);  // another vector: the waiter keeps waiting
  cpu.deliver_msi(0x50);
  cpu.set_line(7, true);
  vcpu.join();
  EXPECT_EQ(got.load(), 1u);
  EXPECT_TRUE(line_seen.load());
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_EQ(cpu.take_msi(0x51), 1u);
}

}  // namespace
}  // namespace ferry::vm
