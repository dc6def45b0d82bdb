// A small guest-physical map for the DMA tests: RAM at [0, 4 MiB), a hole, an MMIO window.
#pragma once

#include <gtest/gtest.h>

#include "hw/dma/dma_view.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"

namespace ferry::dma::testing {

inline constexpr uint64_t kRamSize = 4 << 20;
inline constexpr uint64_t kUnmapped = 0x600000;
inline constexpr uint64_t kMmioBase = 0x800000;
inline constexpr uint64_t kMmioSize = 0x10000;

struct NullMmio : memory::MmioHandler {
  uint64_t read(uint64_t, unsigned) override { return 0x5a5a5a5a5a5a5a5a; }
  void write(uint64_t, uint64_t, unsigned) override {}
};

// A gate the test opens and shuts, as a guest toggles Bus Master Enable.
struct SwitchGate : DmaGate {
  bool open = true;
  bool dma_allowed() const override { return open; }
};

class DmaMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ram = memory::RamBlock::anonymous("pc.ram", kRamSize);
    ASSERT_TRUE(ram.ok());
    auto added = as.add_ram(0, std::move(*ram));
    ASSERT_TRUE(added.ok());
    block = *added;
    ASSERT_TRUE(as.add_mmio("bar", kMmioBase, kMmioSize, mmio).ok());
  }

  memory::AddressSpace as;
  memory::RamBlock* block = nullptr;
  NullMmio mmio;
  SwitchGate gate;
  DmaView view{as, gate, "testdev"};
};

}  // namespace ferry::dma::testing
