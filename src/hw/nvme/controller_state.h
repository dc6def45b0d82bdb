// Everything the emulated NVMe controller remembers, as plain data: registers, queues,
// requests in progress, asynchronous events, features, SMART counters, the timestamp and
// the shadow doorbell buffers. No pointers into other objects, no callbacks: a request's
// progress is a stage number, a block completion finds its request by a numeric tag. That
// is what lets the vmstate description in controller_migration.h save and load the
// controller (all of it except the request table, which is empty whenever the controller
// is quiesced: see there).
//
// What is NOT here (runtime only, rebuilt or re-derived): the namespaces (configuration),
// event-loop timer ids, iovecs pointing into guest RAM, the quiesced flag (the machine's
// run state decides it), the free-tag list (derived from the request table).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "hw/nvme/dma.h"

namespace ferry::nvme {

// BAR0 registers (offsets in spec/nvme.h). INTMC reads the same mask as INTMS.
struct Registers {
  uint64_t cap = 0;
  uint32_t vs = 0;
  uint32_t intms = 0;
  uint32_t cc = 0;
  uint32_t csts = 0;
  uint32_t aqa = 0;
  uint64_t asq = 0;
  uint64_t acq = 0;
};

// A completion waiting for room in its CQ (or for the VM to run). The SQ head field of
// the CQE is filled in when it is written, from the SQ as it is then.
struct PendingCompletion {
  uint32_t dw0 = 0;
  uint16_t sq_id = 0;
  uint16_t cid = 0;
  uint16_t status = 0;  // status field without the phase bit
};

struct CompletionQueue {
  uint16_t id = 0;
  uint64_t base = 0;        // guest-physical, page-aligned
  uint32_t size = 0;        // entries (1-based)
  uint32_t head = 0;        // last head the host reported
  uint32_t tail = 0;        // next slot the controller writes
  uint8_t phase = 1;        // phase tag written with the next entry
  uint16_t vector = 0;      // MSI-X vector (INTx: INTMS bit)
  bool irq_enabled = false;
  // Completions that did not fit (CQ full) or were produced while quiesced, in order.
  std::deque<PendingCompletion> pending;
};

struct SubmissionQueue {
  uint16_t id = 0;
  uint16_t cq_id = 0;
  uint64_t base = 0;
  uint32_t size = 0;
  uint32_t head = 0;        // next entry the controller fetches
  uint32_t tail = 0;        // last tail the host reported
  uint8_t priority = 0;     // QPRIO (kept for Get/identify only; arbitration is round robin)
  uint32_t in_flight = 0;   // requests fetched from this SQ and not yet completed
};

// Where a request stands. Block I/O completions route back by tag and advance the stage.
enum class RequestStage : uint8_t {
  kExecuting = 0,     // waiting for `ops_pending` block operations
  kCompareRead = 1,   // Compare: reading the LBAs into `buffer`, then compare with guest data
  kWriteThenFlush = 2,  // write done with the volatile write cache off: flush before completing
};

struct Request {
  uint32_t tag = 0;
  uint16_t sq_id = 0;
  uint16_t cid = 0;
  uint32_t nsid = 0;
  std::array<uint8_t, 64> sqe{};
  RequestStage stage = RequestStage::kExecuting;
  uint32_t ops_pending = 0;   // block operations submitted and not completed
  uint16_t status = 0;        // first error seen (status field, no phase)
  uint32_t dw0 = 0;
  bool orphaned = false;      // its SQ was deleted: drop the completion
  bool hold = false;          // a block operation failed under a stop policy: hold, retry
  uint64_t offset = 0;        // byte offset of the transfer in the namespace
  uint64_t length = 0;        // bytes
  DataMap data;               // guest pieces of the transfer
  std::vector<uint8_t> buffer;  // Compare bounce buffer
};

// A command whose block I/O failed under a stop policy (-drive werror=/rerror= stop, or
// enospc with ENOSPC): it waits here, in the order the failures were seen, and runs again
// from its SQE when the VM continues (Controller::retry_held_requests), before any new
// command is fetched. Its SQ keeps counting it in flight; the host sees no completion
// for it until the retry completes.
struct HeldRequest {
  uint16_t sq_id = 0;
  std::array<uint8_t, 64> sqe{};
};

// One entry of the Error Information log page (NVMe 1.4 §5.14.1.1): a command that
// completed with an error worth keeping (a data transfer, media or internal error), or an
// error of no command (an invalid doorbell write: queue and command ids FFFFh).
inline constexpr size_t kErrorLogEntries = 64;  // Identify Controller ELPE + 1

struct ErrorLogEntry {
  uint64_t error_count = 0;      // unique, incrementing from 1 (0 marks an empty slot)
  uint16_t sq_id = 0xffff;
  uint16_t cid = 0xffff;
  uint16_t status = 0;           // status field without the phase tag
  uint16_t parameter_error_location = 0xffff;
  uint64_t lba = 0;
  uint32_t nsid = 0xffffffff;
};

struct AsyncEvent {
  uint8_t type = 0;
  uint8_t info = 0;
  uint8_t log_page = 0;
};

struct AsyncEventState {
  // CIDs of outstanding Asynchronous Event Request commands (admin SQ), oldest first;
  // the newest is completed first, as QEMU does.
  std::vector<uint16_t> outstanding;
  std::deque<AsyncEvent> queued;  // at most aer_max_queued
  uint8_t masked_types = 0;       // bit per event type: reported, log page not read yet
};

// Per interrupt vector: Interrupt Vector Configuration and coalescing progress.
struct VectorState {
  bool coalescing_disabled = false;  // CD bit
  uint32_t aggregated = 0;           // completions posted since the last interrupt
  int64_t deadline_ns = 0;           // coalescing timer deadline on the clock; 0: none
};

struct Features {
  uint32_t arbitration = 0x7;            // AB = 7: no burst limit
  uint32_t power_management = 0;
  uint16_t temperature_over = 0x157;     // Kelvin (QEMU: ~70 C)
  uint16_t temperature_under = 0;
  bool volatile_write_cache = true;
  uint32_t interrupt_coalescing = 0;     // THR 7:0 (0's based), TIME 15:8 (100 us)
  uint32_t async_event_config = 0;
  bool number_of_queues_locked = false;  // an I/O queue was created (QEMU's qs_created)
};

struct Timestamp {
  uint64_t host_value_ms = 0;  // what the host set (48 bits), or 0 since reset
  int64_t set_at_ns = 0;       // clock reading when it was set (or reset)
};

struct SmartCounters {
  uint64_t sectors_read = 0;     // 512-byte units
  uint64_t sectors_written = 0;
  uint64_t host_read_commands = 0;
  uint64_t host_write_commands = 0;
  uint64_t media_errors = 0;
};

// Per namespace id (index = nsid, 0 unused).
struct NamespaceState {
  uint32_t error_recovery = 0;  // TLER 15:0
  SmartCounters smart;
};

struct ShadowDoorbells {
  bool enabled = false;
  uint64_t doorbells = 0;     // shadow doorbell buffer (same layout as the BAR doorbells)
  uint64_t event_indexes = 0;
};

struct ControllerState {
  Registers regs;
  std::vector<std::unique_ptr<SubmissionQueue>> sqs;  // index = qid; null when absent
  std::vector<std::unique_ptr<CompletionQueue>> cqs;
  std::vector<std::unique_ptr<Request>> requests;     // index = tag; null when free
  AsyncEventState aer;
  std::vector<VectorState> vectors;                   // msix_qsize entries
  Features features;
  Timestamp timestamp;
  uint16_t temperature = 0x143;                       // Kelvin, as QEMU reports
  int64_t power_on_ns = 0;                            // clock reading at power on
  std::vector<NamespaceState> namespaces;             // kMaxNamespaces + 1 entries
  ShadowDoorbells shadow;
  uint32_t next_sq_to_serve = 0;                      // round-robin position
  std::deque<HeldRequest> held;                       // failed under a stop policy, in order
  // The Error Information log, newest first, at most kErrorLogEntries; error counts are
  // consecutive (only the oldest entries fall off). Kept across controller resets.
  std::deque<ErrorLogEntry> error_log;
};

}  // namespace ferry::nvme
