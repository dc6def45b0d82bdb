#include "guest/guest_bus.h"

#include <gtest/gtest.h>

#include "guest/test_fakes.h"

namespace ferry::guest {
namespace {

using testing::FakeBus;

TEST(GuestBus, ConfigCyclesUseMechanismOne) {
  FakeBus bus(4096);
  auto& fn = bus.add_function(3, 1, 0x1234, 0x5678, 0x010802);
  FakeBus::put(fn.config, 0x0e, 0x80, 1);
  auto id = bus.config_read(3, 1, 0, 4);
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  EXPECT_EQ(*id, 0x56781234u);
  EXPECT_EQ(bus.config_address, 0x80000000u | 3u << 11 | 1u << 8);
  auto device = bus.config_read(3, 1, 2, 2);
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(*device, 0x5678u);
  auto header = bus.config_read(3, 1, 0x0e, 1);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(*header, 0x80u);
  ASSERT_TRUE(bus.config_write(3, 1, 0x3c, 0xab, 1).ok());
  EXPECT_EQ(fn.config[0x3c], 0xab);
}

TEST(GuestBus, ConfigRejectsBadArguments) {
  FakeBus bus(4096);
  EXPECT_FALSE(bus.config_read(32, 0, 0, 4).ok());
  EXPECT_FALSE(bus.config_read(0, 8, 0, 4).ok());
  EXPECT_FALSE(bus.config_read(0, 0, 0x100, 4).ok());
  auto misaligned = bus.config_read(0, 0, 2, 4);
  ASSERT_FALSE(misaligned.ok());
  EXPECT_NE(misaligned.status().message().find("not naturally aligned"), std::string::npos);
}

TEST(GuestBus, MemoryScalarsAreLittleEndian) {
  FakeBus bus(4096);
  ASSERT_TRUE(bus.memory_store(0x10, 0x1122334455667788ull, 8).ok());
  EXPECT_EQ(bus.ram[0x10], 0x88);
  EXPECT_EQ(bus.ram[0x17], 0x11);
  auto half = bus.memory_load(0x10, 2);
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(*half, 0x7788u);
  EXPECT_FALSE(bus.memory_load(0x10, 3).ok());
  EXPECT_FALSE(bus.memory_store(0x10, 0, 16).ok());
  EXPECT_FALSE(bus.memory_load(4094, 4).ok());  // the fake refuses out-of-range RAM
}

// A transport without interrupt delivery says so; drivers fall back to polling.
TEST(GuestBus, InterruptWaitsAreRefusedByTransportsWithoutThem) {
  FakeBus bus(4096);
  Status enabled = bus.enable_interrupts(InterruptSource::kMsi);
  ASSERT_FALSE(enabled.ok());
  EXPECT_EQ(enabled.code(), ErrorCode::kFailedPrecondition);
  auto msi = bus.wait_msi(0x41, std::chrono::microseconds(0));
  ASSERT_FALSE(msi.ok());
  EXPECT_NE(msi.status().message().find("0x41"), std::string::npos) << msi.status().message();
  auto intx = bus.wait_intx(11, true, std::chrono::microseconds(0));
  ASSERT_FALSE(intx.ok());
  EXPECT_NE(intx.status().message().find("INTx line 11"), std::string::npos);
}

// The defaults of the 16-bit ring-field accessors: little-endian, 2-aligned only.
TEST(GuestBus, SixteenBitFieldDefaultsGoThroughMemory) {
  testing::FakeBus bus(64);
  ASSERT_TRUE(bus.memory_store16(0x10, 0xbeef).ok());
  EXPECT_EQ(bus.ram[0x10], 0xef);
  EXPECT_EQ(bus.ram[0x11], 0xbe);
  auto v = bus.memory_load16(0x10);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0xbeef);
  Status odd = bus.memory_store16(0x11, 1);
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.to_string().find("0x11 is not 2-aligned"), std::string::npos) << odd.to_string();
  EXPECT_FALSE(bus.memory_load16(0x21).ok());
  EXPECT_FALSE(bus.memory_load16(64).ok()) << "past the fake RAM";
}

}  // namespace
}  // namespace ferry::guest
