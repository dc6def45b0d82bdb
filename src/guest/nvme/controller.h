// The guest's NVMe driver: brings a controller up through its registers, runs admin and
// I/O commands over queue pairs it creates in guest memory, and hands tests every byte
// (raw SQEs, raw doorbell values) when they want to misbehave on purpose. It speaks only
// the specification over a GuestBus, so the same driver runs against QEMU and Ferry.
//
// Completion model: completions are found by phase bit. Completions that arrive for other
// commands while waiting for one are kept per queue and returned by later poll()/wait()
// calls. What wait() does between looks at a CQ is the completion signal:
//   polling  — lets the machine run (GuestBus::idle) and looks again (the default);
//   MSI-X    — vectors point into the MSI window and wait() sleeps in the bus's interrupt
//              wait for the CQ's vector (use_msix_interrupts);
//   INTx     — MSI-X off, the INTx pin enabled, and wait() sleeps until the routed line is
//              up (use_intx_interrupts).
// An interrupt wait is bounded by kInterruptSlice, after which the CQ is looked at again,
// so a lost, coalesced or shared interrupt costs at most a slice. enable_msix() instead
// points every vector into a guest RAM page: an interrupt is then a memory write the driver
// can observe (interrupt_word()) while it polls.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "guest/dma_memory.h"
#include "guest/guest_bus.h"
#include "guest/nvme/command.h"
#include "guest/nvme/data_pointer.h"
#include "guest/nvme/queue_pair.h"
#include "guest/pci.h"

namespace ferry::guest::nvme {

using Millis = std::chrono::milliseconds;

struct ControllerConfig {
  uint32_t admin_queue_entries = 32;
  Millis command_timeout{5000};
  // Time allowed for CSTS.RDY to follow CC.EN; by default CAP.TO (500 ms units).
  std::optional<Millis> ready_timeout;
  uint32_t command_set = spec::nvme::kCcCssNvm;  // CC.CSS
};

// How a command's data is described: PRP or SGL over a scatter list.
struct Transfer {
  enum class Kind { kPrp, kSgl };
  Kind kind = Kind::kPrp;
  std::vector<DataSegment> segments;
  SglOptions sgl;

  static Transfer none() { return {}; }
  static Transfer prp(uint64_t address, uint64_t length) {
    return {Kind::kPrp, {{address, length}}, {}};
  }
  static Transfer sgl_block(uint64_t address, uint64_t length) {
    return {Kind::kSgl, {{address, length}}, {}};
  }
};

struct QueueInterrupts {
  bool enabled = false;  // CQ IEN
  uint16_t vector = 0;   // CQ IV
};

enum class CompletionSignal { kPolling, kMsix, kIntx };

// Longest single interrupt wait before wait() looks at the CQ again.
inline constexpr std::chrono::milliseconds kInterruptSlice{20};
// MSI data of vector 0 when MSI-X goes to the MSI window: x86 vectors below 0x20 are
// exceptions, so vector v uses 0x40 + v, as an OS would allocate them.
inline constexpr uint32_t kDefaultMsiDataBase = 0x40;

class Controller {
 public:
  // Finds the `index`-th NVMe function on bus 0 (class 01:08:02), places its BARs in `window`
  // and enables memory decoding and bus mastering. The controller is not reset yet.
  static Result<std::unique_ptr<Controller>> probe(GuestBus& bus, DmaMemory& memory,
                                                   MmioWindow& window, unsigned index = 0);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  const PciFunction& pci() const { return pci_; }
  const std::vector<PciBar>& bars() const { return bars_; }
  uint64_t bar0() const { return bar0_; }
  GuestBus& bus() { return *bus_; }
  // Talks to the same controller through another bus from now on: after a live migration,
  // the destination VM's (queues, CIDs and guest memory layout are kept as they are).
  void rebind(GuestBus& bus);
  DmaMemory& memory() { return memory_; }

  // ---- registers --------------------------------------------------------------------------
  Result<uint32_t> read32(uint32_t offset);
  Result<uint64_t> read64(uint32_t offset);
  Status write32(uint32_t offset, uint32_t value);
  Status write64(uint32_t offset, uint64_t value);

  // ---- bring-up ---------------------------------------------------------------------------
  // Disables the controller (waits for RDY=0), sets up the admin queue, enables it with
  // MPS=0, IOSQES=6, IOCQES=4 and the configured CSS, and waits for RDY=1. All I/O queues
  // the driver knew are forgotten. CSTS.CFS is reported as an error.
  Status enable(const ControllerConfig& config = {});
  // CC.EN = 0 and wait for RDY = 0.
  Status disable();
  // Normal shutdown notification (CC.SHN = 1) and wait for SHST = complete.
  Status shutdown();
  uint64_t cap() const { return cap_; }  // read at enable()
  uint32_t max_queue_entries() const;    // CAP.MQES + 1

  // ---- commands ---------------------------------------------------------------------------
  // Assigns a command identifier, builds the data pointer, pushes the SQE and rings the
  // doorbell (unless `ring` is false: then ring_sq() sends a batch). Returns the CID.
  Result<uint16_t> submit(uint16_t qid, Sqe sqe, const Transfer& data = {}, bool ring = true);
  // The SQE exactly as given (CID included) at the tail; the driver only tracks the CID
  // so that wait() can find its completion.
  Result<uint16_t> submit_raw(uint16_t qid, const Sqe& sqe, bool ring = true);
  Status ring_sq(uint16_t qid);
  // Next completion of this queue, if one arrived (list pages of its command are freed).
  Result<std::optional<Completion>> poll(uint16_t qid);
  // Up to `max` completions without waiting.
  Result<std::vector<Completion>> reap(uint16_t qid, size_t max);
  // The same, appended to `out` (a caller's reused vector): the count appended.
  Result<size_t> reap(uint16_t qid, size_t max, std::vector<Completion>& out);
  // The completion of `cid`, waiting up to the timeout (default: the configured one).
  Result<Completion> wait(uint16_t qid, uint16_t cid, std::optional<Millis> timeout = {});
  // submit() + wait(): the completion, whatever its status.
  Result<Completion> execute(uint16_t qid, const Sqe& sqe, const Transfer& data = {},
                             std::optional<Millis> timeout = {});
  // An error naming `what` and the status when the completion is not a success.
  static Status check(const Completion& completion, std::string_view what);
  // Commands submitted and not yet completed on this queue.
  size_t in_flight(uint16_t qid) const;

  // ---- raw doorbells (tests) --------------------------------------------------------------
  Status write_sq_doorbell(uint16_t qid, uint32_t value);
  Status write_cq_doorbell(uint16_t qid, uint32_t value);
  QueuePair* queue(uint16_t qid);

  // ---- admin helpers (errors carry the NVMe status) --------------------------------------
  Result<std::vector<uint8_t>> identify(uint8_t cns, uint32_t nsid = 0, uint16_t cntid = 0);
  // Requests queue counts; returns the completion's dw0 (granted counts, 0's based).
  Result<uint32_t> set_number_of_queues(uint16_t submission_queues, uint16_t completion_queues);
  Result<std::vector<uint8_t>> get_log_page(uint8_t lid, uint32_t bytes, uint32_t nsid = 0xffffffff);
  // Creates CQ `qid` then SQ `qid` bound to it, with `entries` each (the CQ `cq_entries`
  // when given: a CQ smaller than its SQ is how tests fill one).
  Status create_io_queue_pair(uint16_t qid, uint32_t entries, QueueInterrupts interrupts = {},
                              std::optional<uint32_t> cq_entries = {});
  // Deletes SQ then CQ and frees their memory.
  Status delete_io_queue_pair(uint16_t qid);
  // Frees I/O queue `qid`'s memory without telling the controller: for a test that deleted
  // the queues with raw commands and wants the id back.
  Status forget_io_queue(uint16_t qid);

  // ---- MSI-X ------------------------------------------------------------------------------
  // Enables MSI-X with every vector writing a counter-free marker into a guest RAM page.
  Status enable_msix();
  // 0 when the vector's message word is untouched since the last clear, else its data.
  Result<uint32_t> interrupt_word(uint16_t vector);
  Status clear_interrupt(uint16_t vector);
  std::optional<Msix>& msix() { return msix_; }

  // ---- completion signal (see the top of this file) ---------------------------------------
  // MSI-X into the MSI window: vector v sends data `data_base + v`; INTx is disabled in the
  // command register. The bus starts reporting MSI messages.
  Status use_msix_interrupts(uint32_t data_base = kDefaultMsiDataBase);
  // INTx: MSI-X disabled, INTx enabled in the command register; the line waited for is the
  // Interrupt Line register's unless `irq` is given. The bus starts reporting INTx lines.
  Status use_intx_interrupts(std::optional<unsigned> irq = {});
  // Back to polling (interrupt programming is left as it is).
  void use_polling() { signal_ = CompletionSignal::kPolling; }
  CompletionSignal completion_signal() const { return signal_; }
  // The MSI data vector `vector` sends under use_msix_interrupts.
  uint32_t msi_data(uint16_t vector) const { return msi_data_base_ + vector; }
  unsigned intx_irq() const { return intx_irq_; }
  // Interrupts wait() received: MSI messages taken, or INTx waits that found the line up.
  uint64_t interrupts_taken() const { return interrupts_taken_; }

 private:
  // The commands in flight on a queue, by CID: a bit per CID (8 KiB for all 65536), so
  // that submitting and completing a command costs no allocation, and the data pointers
  // of the commands that own PRP-list or SGL-segment pages (freed at their completion).
  class InFlight {
   public:
    bool contains(uint16_t cid) const { return bits_[cid / 64] >> (cid % 64) & 1; }
    size_t size() const { return count_; }
    void add(uint16_t cid, DataPointer pointer);
    // False when `cid` was not in flight; else `lists` gets the pointer owning list pages,
    // if the command had one.
    bool remove(uint16_t cid, std::optional<DataPointer>& lists);
    // Every command forgotten; the pointers owning list pages are handed back.
    std::vector<DataPointer> clear();

   private:
    std::vector<uint64_t> bits_ = std::vector<uint64_t>(65536 / 64);
    size_t count_ = 0;
    std::map<uint16_t, DataPointer> with_lists_;
  };
  struct Queue {
    QueuePair ring;
    uint64_t sq_memory = 0;  // DmaMemory blocks holding the rings
    uint64_t cq_memory = 0;
    uint16_t next_cid = 0;
    InFlight in_flight;
    std::deque<Completion> arrived;  // reaped, not yet handed out
    std::vector<Completion> fresh;   // collect()'s scratch, kept to reuse its storage
    QueueInterrupts interrupts{true, 0};  // the admin CQ always interrupts on vector 0
  };

  Controller(GuestBus& bus, DmaMemory& memory, const PciFunction& fn, std::vector<PciBar> bars);
  Result<Queue*> find_queue(uint16_t qid);
  Result<Queue*> new_queue(uint16_t qid, uint32_t entries, uint32_t cq_entries);
  void free_queue_memory(Queue& queue);
  Status forget_all_queues();
  Result<size_t> collect(Queue& queue, size_t max);
  Status finish(Queue& queue, const Completion& completion);
  Status wait_ready(bool ready, Millis timeout);
  // Between two looks at `queue` in wait(): idle, or wait for its interrupt. True when an
  // interrupt arrived (or the INTx line was up).
  Result<bool> wait_for_signal(const Queue& queue,
                               std::chrono::steady_clock::time_point deadline);
  Millis ready_timeout() const;
  uint64_t doorbell(uint16_t qid, bool completion) const;

  GuestBus* bus_;  // not owned; rebind() switches it
  DmaMemory& memory_;
  PciFunction pci_;
  std::vector<PciBar> bars_;
  uint64_t bar0_ = 0;
  uint64_t cap_ = 0;
  ControllerConfig config_;
  std::map<uint16_t, std::unique_ptr<Queue>> queues_;
  std::optional<Msix> msix_;
  uint64_t msix_page_ = 0;
  CompletionSignal signal_ = CompletionSignal::kPolling;
  uint32_t msi_data_base_ = kDefaultMsiDataBase;
  unsigned intx_irq_ = 0;
  uint64_t interrupts_taken_ = 0;
};

}  // namespace ferry::guest::nvme
