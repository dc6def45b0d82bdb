// A ferry-vm with an emulated NVMe controller and the guest NVMe driver bound to it over
// qtest, for black-box tests of the controller (tests/nvme_test.cc): sparse raw images in
// /tmp that disappear with the test, the VM, its DMA memory and the probed controller, and
// small helpers for reading raw queue memory. Header-only: nothing here needs a library.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "client/qtest_bus.h"
#include "support/temp_image.h"
#include "guest/dma_memory.h"
#include "guest/nvme/controller.h"
#include "guest/pci.h"
#include "spec/nvme.h"
#include "support/ferry_vm.h"

namespace ferry::testing {

inline constexpr uint64_t kRigRamBytes = 256ull << 20;
inline constexpr uint64_t kRigDmaBase = 16ull << 20;  // DMA memory: [16 MiB, RAM size)

// "-drive if=none,id=ID,file=PATH,format=raw".
inline std::vector<std::string> drive_args(const std::string& id, const TempImage& image) {
  return {"-drive", "if=none,id=" + id + ",file=" + image.path() + ",format=raw"};
}

// The VM, the qtest bus, the guest's DMA memory and the driver's controller. Members are
// declared so that they are destroyed in the right order (driver first, VM last).
struct NvmeRig {
  std::unique_ptr<FerryVm> vm;
  std::unique_ptr<client::QtestBus> bus;
  std::unique_ptr<guest::DmaMemory> memory;
  guest::MmioWindow window = guest::MmioWindow::standard();
  std::unique_ptr<guest::nvme::Controller> ctrl;

  guest::nvme::Controller& c() { return *ctrl; }
  // Guest memory for buffers; failures are test failures (0 is never a valid block).
  uint64_t alloc(uint64_t bytes) {
    auto block = memory->allocate(bytes);
    EXPECT_TRUE(block.ok()) << block.status().to_string();
    return block.ok() ? *block : 0;
  }
  void put(uint64_t addr, std::span<const uint8_t> data) {
    Status s = bus->memory_write(addr, data);
    EXPECT_TRUE(s.ok()) << s.to_string();
  }
  std::vector<uint8_t> get(uint64_t addr, uint64_t length) {
    std::vector<uint8_t> out(length);
    Status s = bus->memory_read(addr, out);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return out;
  }
  void fill(uint64_t addr, uint64_t length, uint8_t value) {
    put(addr, std::vector<uint8_t>(length, value));
  }
  uint32_t csts() {
    auto v = ctrl->read32(spec::nvme::kRegCsts);
    EXPECT_TRUE(v.ok()) << v.status().to_string();
    return v.ok() ? *v : 0xffffffffu;
  }
  // True when the VM still answers QMP with a run state.
  bool vm_answers() {
    auto reply = vm->qmp().execute("query-status");
    return reply.ok() && reply->contains("return") && (*reply)["return"].contains("status");
  }
};

// Starts the ferry-vm `binary` with 256 MiB of RAM and `args`, probes the first NVMe
// function and, when `enable`, enables it. Null (with a test failure recorded) when any
// step fails.
inline std::unique_ptr<NvmeRig> start_rig(const std::string& binary,
                                          const std::vector<std::string>& args,
                                          bool enable = true) {
  auto rig = std::make_unique<NvmeRig>();
  std::vector<std::string> argv = {"-m", "256M"};
  argv.insert(argv.end(), args.begin(), args.end());
  rig->vm = FerryVm::start(binary, argv);
  if (!rig->vm) return nullptr;
  rig->bus = std::make_unique<client::QtestBus>(rig->vm->qtest());
  auto memory = guest::DmaMemory::create(kRigDmaBase, kRigRamBytes);
  EXPECT_TRUE(memory.ok()) << memory.status().to_string();
  if (!memory.ok()) return nullptr;
  rig->memory = std::make_unique<guest::DmaMemory>(std::move(*memory));
  auto ctrl = guest::nvme::Controller::probe(*rig->bus, *rig->memory, rig->window);
  EXPECT_TRUE(ctrl.ok()) << ctrl.status().to_string() << "\n" << rig->vm->process().stderr_text();
  if (!ctrl.ok()) return nullptr;
  rig->ctrl = std::move(*ctrl);
  if (enable) {
    Status enabled = rig->ctrl->enable();
    EXPECT_TRUE(enabled.ok()) << enabled.to_string();
    if (!enabled.ok()) return nullptr;
  }
  return rig;
}

// Little-endian field of a byte vector.
inline uint64_t le_field(std::span<const uint8_t> data, size_t at, unsigned size) {
  uint64_t v = 0;
  for (unsigned i = 0; i < size && at + i < data.size(); ++i)
    v |= uint64_t{data[at + i]} << (8 * i);
  return v;
}

// Reads the 16-byte CQ entry `slot` of a CQ at `cq_address` straight from guest memory.
inline guest::nvme::Completion read_cqe(NvmeRig& rig, uint64_t cq_address, uint32_t slot) {
  auto bytes = rig.get(cq_address + uint64_t{slot} * spec::nvme::kCqeSize, spec::nvme::kCqeSize);
  return guest::nvme::Completion::parse(
      std::span<const uint8_t, spec::nvme::kCqeSize>(bytes.data(), spec::nvme::kCqeSize));
}

// Polls CQ entry `slot` until its phase tag is `phase`; false after `timeout`.
inline bool wait_for_phase(NvmeRig& rig, uint64_t cq_address, uint32_t slot, bool phase,
                           std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (read_cqe(rig, cq_address, slot).phase == phase) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace ferry::testing
