// The host of the NVMe controller's unit tests and of the fuzzer's seed generator: the
// guest's own driver (guest/nvme) over a GuestBus that reaches a controller on a fake PCI
// machine (hw/pci/test_fakes.h), its guest RAM and its event loop directly. Every test
// drives the device through that one driver; the few things a driver never does (take a
// completion without telling the controller, overrun an SQ, look at a CQ slot) are the raw
// helpers here, so no test keeps a private copy of queue handling.
//
// Test-only glue: hw/nvme's test targets link ferry_guest for it. The guest layer itself
// still sees no device header, and the device none of the guest's.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "base/event_loop.h"
#include "base/status.h"
#include "guest/dma_memory.h"
#include "guest/guest_bus.h"
#include "guest/nvme/command.h"
#include "guest/nvme/controller.h"
#include "guest/pci.h"
#include "hw/pci/test_fakes.h"
#include "hw/pci/test_machine_bus.h"
#include "memory/address_space.h"
#include "spec/nvme.h"

namespace ferry::nvme::test {

// The driver's allocations (queues, PRP lists, identify buffers) come from guest RAM at
// and above this address; tests keep their own fixed buffers below it.
inline constexpr uint64_t kDriverMemoryBegin = 8 << 20;
// MSI data of vector v (the driver's default base, 0x40 + v).
inline constexpr uint32_t kMsiDataBase = guest::nvme::kDefaultMsiDataBase;

using MachineBus = pci::test::MachineBus;

// The driver on a MachineBus, with the raw helpers. Failures come back as values; the
// tests assert on them. RAM must be larger than kDriverMemoryBegin (probe() says so).
class Host {
 public:
  Host(pci::test::Machine& machine, memory::AddressSpace& memory, EventLoop& loop,
       uint64_t ram_size)
      : loop_(loop), bus_(std::make_unique<MachineBus>(machine, memory, &loop)) {
    auto dma = guest::DmaMemory::create(kDriverMemoryBegin, ram_size);
    if (dma.ok()) dma_.emplace(std::move(*dma));
    else dma_error_ = dma.take_status().prepend_message("test host: driver memory: ");
  }

  // Finds the controller again, as after a reset: BARs placed, memory decoding and bus
  // mastering on. The previous driver (and every queue it knew) is dropped.
  Status probe() {
    driver_.reset();
    if (!dma_) return dma_error_;
    auto driver = guest::nvme::Controller::probe(*bus_, *dma_, window_);
    if (!driver.ok()) return driver.take_status();
    driver_ = std::move(*driver);
    return {};
  }
  guest::nvme::Controller& driver() { return *driver_; }
  MachineBus& bus() { return *bus_; }
  // Talks to another machine's controller from now on, with the same driver state: the
  // destination of a migration, whose RAM and BARs are the source's.
  void move_to(pci::test::Machine& machine, memory::AddressSpace& memory) {
    auto bus = std::make_unique<MachineBus>(machine, memory, &loop_);
    driver_->rebind(*bus);
    bus_ = std::move(bus);
  }

  // ---- registers, at any width ----
  Result<uint64_t> reg(uint32_t offset, unsigned size = 4) {
    return bus_->mmio_read(driver_->bar0() + offset, size);
  }
  Status set_reg(uint32_t offset, uint64_t value, unsigned size = 4) {
    return bus_->mmio_write(driver_->bar0() + offset, value, size);
  }

  // MSI-X on, vector v sending data kMsiDataBase + v into the MSI window (where the fake
  // sink records it); the driver keeps polling.
  Status use_msix() {
    FERRY_RETURN_IF_ERROR(driver_->use_msix_interrupts(kMsiDataBase));
    driver_->use_polling();
    return {};
  }

  // ---- completions in CQ order, whatever their command ----
  // The next completion of `qid`, waiting up to `timeout`. With `acknowledge` false the CQ
  // head doorbell is not written (a host using shadow doorbells, or one that has not got
  // round to it).
  Result<guest::nvme::Completion> next(
      uint16_t qid, bool acknowledge = true,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (acknowledge) {
        auto c = driver_->poll(qid);
        if (!c.ok()) return c.take_status();
        if (*c) return **c;
      } else {
        guest::nvme::QueuePair* q = driver_->queue(qid);
        if (!q) return Error(ErrorCode::kInvalidArgument, "test host: no queue {}", qid);
        std::vector<guest::nvme::Completion> out;
        auto taken = q->reap(*bus_, 1, out);
        if (!taken.ok()) return taken.take_status();
        if (*taken) return out.front();
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Error(ErrorCode::kFailedPrecondition,
                     "test host: no completion on CQ {} within {} ms", qid, timeout.count());
      }
      FERRY_RETURN_IF_ERROR(bus_->idle(std::chrono::milliseconds(1)));
    }
  }
  // The CQE in `slot` of `qid`'s CQ as it is in memory (phase bit included).
  Result<guest::nvme::Completion> cqe_at(uint16_t qid, uint32_t slot) {
    guest::nvme::QueuePair* q = driver_->queue(qid);
    if (!q) return Error(ErrorCode::kInvalidArgument, "test host: no queue {}", qid);
    std::array<uint8_t, spec::nvme::kCqeSize> bytes;
    FERRY_RETURN_IF_ERROR(
        bus_->memory_read(q->layout().cq_address + uint64_t{slot} * bytes.size(), bytes));
    return guest::nvme::Completion::parse(bytes);
  }
  // Whether the CQE at the driver's CQ head is new (its phase the one expected).
  bool completion_ready(uint16_t qid) {
    guest::nvme::QueuePair* q = driver_->queue(qid);
    if (!q) return false;
    auto c = cqe_at(qid, q->cq_head());
    return c.ok() && c->phase == q->expected_phase();
  }

  // ---- misbehaving on purpose ----
  // Writes `sqe` into `slot` of `qid`'s SQ, whether the slot is free or not; nothing is rung.
  Status write_sqe(uint16_t qid, uint32_t slot, const guest::nvme::Sqe& sqe) {
    guest::nvme::QueuePair* q = driver_->queue(qid);
    if (!q) return Error(ErrorCode::kInvalidArgument, "test host: no queue {}", qid);
    return bus_->memory_write(q->layout().sq_address + uint64_t{slot} * sqe.bytes.size(),
                             sqe.bytes);
  }

 private:
  EventLoop& loop_;
  std::unique_ptr<MachineBus> bus_;
  std::optional<guest::DmaMemory> dma_;  // [kDriverMemoryBegin, RAM size)
  Status dma_error_;                      // why there is none
  guest::MmioWindow window_ = guest::MmioWindow::standard();
  std::unique_ptr<guest::nvme::Controller> driver_;
};

// An SQE with its opcode and namespace; the rest is set by the caller's chain.
inline guest::nvme::Sqe command(uint8_t opcode, uint32_t nsid = 0) {
  guest::nvme::Sqe sqe;
  sqe.set_opcode(opcode).set_nsid(nsid);
  return sqe;
}

}  // namespace ferry::nvme::test
