// Everything the verify program remembers between two steps, as plain data (integers,
// std::array, std::vector; no pointers, maps or callbacks): the driver state (where the
// controller is, its queue rings and what it expects next), the outstanding-command table,
// the workload (PRNG, model of every block's generation, cursors) and the statistics. This
// is exactly what the "guest-verify" section migrates (verify_state.cc describes it).
//
// Times are nanoseconds of std::chrono::steady_clock, which on Linux is CLOCK_MONOTONIC and
// shared by every process on the machine, so a source's timestamps stay meaningful in a
// destination on the same host. "Running time" is that clock minus every pause the VM
// reported (note_pause): deadlines, latencies and runtime= are measured in running time, so
// a stopped or migrating VM neither times commands out nor counts against runtime=.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "guest/programs/latency_histogram.h"
#include "vmstate/binding.h"

namespace ferry::guest::verify {

enum class Mode : uint8_t { kWrite, kRandWrite, kRead, kRandRead, kRandRw };

enum class Phase : uint8_t {
  kProbe,               // find the function, place BAR0, enable decoding and bus mastering
  kWaitDisabled,        // CC.EN cleared; waiting for CSTS.RDY = 0
  kWaitReady,           // admin queue set, CC.EN set; waiting for CSTS.RDY = 1
  kIdentifyController,  // MDTS
  kIdentifyNamespace,   // size and LBA format
  kSetQueues,           // Set Features: Number of Queues
  kCreateCq,
  kCreateSq,
  kPrefill,  // read/randread: write the whole region once, so every block is known
  kRun,      // the workload
  kFinal,    // sequential read-verify of every block this run wrote
  kFinished,
  kFailed,
};
inline constexpr uint8_t kPhaseCount = static_cast<uint8_t>(Phase::kFailed) + 1;

enum class IoOp : uint8_t { kRead, kWrite };

// Which I/O phase a statistics record is for.
enum StatsIndex : uint8_t { kStatsPrefill, kStatsRun, kStatsFinal, kStatsCount };

inline constexpr uint32_t kAdminQueueEntries = 32;
inline constexpr uint32_t kMaxIodepth = 1023;
inline constexpr uint32_t kMaxBlocks = 1u << 22;  // model entries (16 MiB of state at most)
inline constexpr uint32_t kMaxStalls = 1024;

// The options that shape the state; the destination refuses a source whose echo differs.
struct ConfigEcho {
  uint8_t rw = 0;
  uint8_t pci_slot = 0;
  uint8_t pci_function = 0;
  uint32_t nsid = 0;
  uint32_t block_size = 0;
  uint32_t iodepth = 0;
  uint64_t size = 0;
  uint64_t runtime_ms = 0;
  uint64_t loops = 0;
  uint64_t seed = 0;
  uint64_t bar_base = 0;
  uint64_t dma_base = 0;
  uint64_t dma_size = 0;
  bool operator==(const ConfigEcho&) const = default;
};

// What the program learned from the controller.
struct ControllerFacts {
  uint8_t slot = 0;
  uint8_t function = 0;
  uint64_t bar0 = 0;
  uint64_t cap = 0;
  uint32_t doorbell_stride = 4;  // bytes
  uint32_t max_transfer = 0;     // bytes, 0: no limit (MDTS = 0)
  uint64_t namespace_blocks = 0; // NSZE
  uint32_t lba_size = 0;
};

// One submission/completion queue pair, as the host keeps it.
struct Ring {
  uint16_t qid = 0;
  uint32_t entries = 0;
  uint64_t sq_address = 0;
  uint64_t cq_address = 0;
  uint32_t sq_tail = 0;
  uint32_t sq_head = 0;
  uint32_t cq_head = 0;
  bool phase = true;  // the phase bit the next new completion carries
};

// The one admin command in flight, if any.
struct AdminCommand {
  bool outstanding = false;
  uint16_t cid = 0;
  uint16_t next_cid = 0;
  int64_t deadline_ns = 0;  // running time
};

// One I/O slot: a buffer in guest RAM and at most one command using it (CID = slot index).
struct Slot {
  bool in_use = false;
  IoOp op = IoOp::kRead;
  uint64_t block = 0;        // index of the I/O unit in the region
  uint32_t generation = 0;   // write: the one being written; read: the one expected
  int64_t submit_ns = 0;     // running time
};

struct PhaseStats {
  uint64_t ops = 0;
  uint64_t bytes = 0;
  uint64_t reads = 0;
  uint64_t writes = 0;
  int64_t start_ns = 0;  // running time; 0 = phase not started
  int64_t end_ns = 0;    // running time; 0 = not ended
  uint64_t max_gap_ns = 0;  // longest wall-clock time between two completions (pauses included)
  LatencyHistogram latency{};  // submission to completion, running time (latency_histogram.h)
};

// One reported pause (a stop, or a migration) and the I/O stall around it.
struct Stall {
  uint8_t phase = 0;
  uint64_t pause_ns = 0;    // as reported by the VM
  uint64_t io_gap_ns = 0;   // wall time from the last completion before to the first after
  uint64_t ops_before = 0;  // completions before the pause, all phases
};

struct VerifyState {
  ConfigEcho config;  // saved; on load, the source's (checked against `local`)
  Phase phase = Phase::kProbe;
  int64_t paused_ns = 0;      // sum of reported pauses
  int64_t parked_at_wall_ns = 0;  // when the vCPU last parked (0: running, or never parked)
  bool finish_requested = false;  // x-guest-finish: end the run phase
  int64_t deadline_ns = 0;    // running time limit of the current register wait
  ControllerFacts controller;
  Ring admin;
  Ring io;
  AdminCommand admin_command;
  uint64_t rng = 0;  // splitmix64 state
  uint32_t block_count = 0;
  std::vector<uint32_t> generations;  // per block: last generation written by this run; 0 never
  uint32_t slot_count = 0;
  std::vector<Slot> slots;
  uint32_t in_flight = 0;
  uint64_t cursor = 0;           // sequential position (prefill, final, write/read modes)
  uint64_t submitted = 0;        // commands submitted in the current I/O phase
  uint64_t target_ops = 0;       // commands the current I/O phase submits (0: until run_end_ns)
  int64_t run_end_ns = 0;        // running time when runtime= ends the run phase (0: none)
  bool stop_submitting = false;  // the current I/O phase only drains
  uint64_t unverified_reads = 0; // randrw reads of blocks this run never wrote
  uint64_t skipped_blocks = 0;   // blocks the final pass skipped (never written)
  int64_t last_completion_wall_ns = 0;
  std::array<PhaseStats, kStatsCount> stats{};
  bool stall_open = false;  // the last stall waits for its first completion
  uint32_t stall_count = 0;
  std::vector<Stall> stalls;
  uint64_t stalls_dropped = 0;
  uint32_t resets = 0;  // machine resets (system_reset) the program restarted after
  // After a reset: the I/O phase the restarted bring-up returns to (kProbe: none, start the
  // first I/O phase as usual).
  Phase resume_phase = Phase::kProbe;
  // Per block: a write was in flight when the machine was reset, so whether it reached the
  // disk is unknown; the block holds `generations` or the generation after it, until a
  // read tells which or a write makes it certain again.
  std::vector<uint8_t> uncertain;

  // ---- not migrated: set locally, or derived from the fields above ----
  ConfigEcho local;            // this VM's own options
  std::vector<uint8_t> busy;   // per block: a command uses it (rebuilt from slots on load)
};

// The "guest-verify" description (version 3: restarts after system_reset, with the blocks
// a reset left uncertain; version 2 lacks them and version 1's power-of-two histograms are
// not accepted) bound to `state`. Its post_load refuses a
// source configured differently and any inconsistent state, and rebuilds `busy`.
std::unique_ptr<vmstate::StateBinding> bind_state(VerifyState& state);

// Checks the invariants the program relies on (indices in range, counts agreeing).
Status check_consistency(const VerifyState& state);

}  // namespace ferry::guest::verify
