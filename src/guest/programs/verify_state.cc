#include "guest/programs/verify_state.h"

#include <bit>
#include <string>

#include <fmt/format.h>

#include "vmstate/vmstate.h"

namespace ferry::guest::verify {

namespace {

using vmstate::describe;
using vmstate::field;
using vmstate::varray;

constexpr auto kConfigDesc = describe<ConfigEcho>(
    "guest-verify-config", {.version = 1},
    field("rw", &ConfigEcho::rw),
    field("pci_slot", &ConfigEcho::pci_slot),
    field("pci_function", &ConfigEcho::pci_function),
    field("nsid", &ConfigEcho::nsid),
    field("bs", &ConfigEcho::block_size),
    field("iodepth", &ConfigEcho::iodepth),
    field("size", &ConfigEcho::size),
    field("runtime_ms", &ConfigEcho::runtime_ms),
    field("loops", &ConfigEcho::loops),
    field("seed", &ConfigEcho::seed),
    field("bar_base", &ConfigEcho::bar_base),
    field("dma_base", &ConfigEcho::dma_base),
    field("dma_size", &ConfigEcho::dma_size));

constexpr auto kControllerDesc = describe<ControllerFacts>(
    "guest-verify-controller", {.version = 1},
    field("slot", &ControllerFacts::slot),
    field("function", &ControllerFacts::function),
    field("bar0", &ControllerFacts::bar0),
    field("cap", &ControllerFacts::cap),
    field("doorbell_stride", &ControllerFacts::doorbell_stride),
    field("max_transfer", &ControllerFacts::max_transfer),
    field("namespace_blocks", &ControllerFacts::namespace_blocks),
    field("lba_size", &ControllerFacts::lba_size));

constexpr auto kRingDesc = describe<Ring>(
    "guest-verify-ring", {.version = 1},
    field("qid", &Ring::qid),
    field("entries", &Ring::entries),
    field("sq_address", &Ring::sq_address),
    field("cq_address", &Ring::cq_address),
    field("sq_tail", &Ring::sq_tail),
    field("sq_head", &Ring::sq_head),
    field("cq_head", &Ring::cq_head),
    field("phase", &Ring::phase));

constexpr auto kAdminCommandDesc = describe<AdminCommand>(
    "guest-verify-admin-command", {.version = 1},
    field("outstanding", &AdminCommand::outstanding),
    field("cid", &AdminCommand::cid),
    field("next_cid", &AdminCommand::next_cid),
    field("deadline_ns", &AdminCommand::deadline_ns));

constexpr auto kSlotDesc = describe<Slot>(
    "guest-verify-slot", {.version = 1},
    field("in_use", &Slot::in_use),
    field("op", &Slot::op).validate([](IoOp op) { return op == IoOp::kRead || op == IoOp::kWrite; },
                                    "unknown I/O operation"),
    field("block", &Slot::block),
    field("generation", &Slot::generation),
    field("submit_ns", &Slot::submit_ns));

constexpr auto kPhaseStatsDesc = describe<PhaseStats>(
    "guest-verify-stats", {.version = 1},
    field("ops", &PhaseStats::ops),
    field("bytes", &PhaseStats::bytes),
    field("reads", &PhaseStats::reads),
    field("writes", &PhaseStats::writes),
    field("start_ns", &PhaseStats::start_ns),
    field("end_ns", &PhaseStats::end_ns),
    field("max_gap_ns", &PhaseStats::max_gap_ns),
    field("latency", &PhaseStats::latency));

constexpr auto kStallDesc = describe<Stall>(
    "guest-verify-stall", {.version = 1},
    field("phase", &Stall::phase),
    field("pause_ns", &Stall::pause_ns),
    field("io_gap_ns", &Stall::io_gap_ns),
    field("ops_before", &Stall::ops_before));

// The options a destination must share with its source, named as on the command line.
std::string config_differences(const ConfigEcho& source, const ConfigEcho& local) {
  std::string out;
  auto add = [&out](std::string_view name, uint64_t from, uint64_t here) {
    if (from == here) return;
    if (!out.empty()) out += ", ";
    out += fmt::format("{}={} on the source but {} here", name, from, here);
  };
  add("rw (mode index)", source.rw, local.rw);
  add("device slot", source.pci_slot, local.pci_slot);
  add("device function", source.pci_function, local.pci_function);
  add("nsid", source.nsid, local.nsid);
  add("bs", source.block_size, local.block_size);
  add("iodepth", source.iodepth, local.iodepth);
  add("size", source.size, local.size);
  add("runtime (ms)", source.runtime_ms, local.runtime_ms);
  add("loops", source.loops, local.loops);
  add("seed", source.seed, local.seed);
  add("BAR base", source.bar_base, local.bar_base);
  add("DMA base", source.dma_base, local.dma_base);
  add("DMA size", source.dma_size, local.dma_size);
  return out;
}

Status post_load(VerifyState& s, int) {
  if (!(s.config == s.local)) {
    return Error(ErrorCode::kFailedPrecondition,
                 "-guest verify options differ from the source's: {}",
                 config_differences(s.config, s.local));
  }
  FERRY_RETURN_IF_ERROR(check_consistency(s));
  s.busy.assign(s.block_count, 0);
  for (const Slot& slot : s.slots) {
    if (slot.in_use) s.busy[slot.block] = 1;
  }
  return {};
}

constexpr auto kStateDesc = describe<VerifyState>(
    "guest-verify", {.version = 3, .minimum_version = 3, .post_load = &post_load},
    field("config", &VerifyState::config, kConfigDesc),
    field("phase", &VerifyState::phase)
        .validate([](Phase p) { return static_cast<uint8_t>(p) < kPhaseCount; }, "unknown phase"),
    field("paused_ns", &VerifyState::paused_ns),
    field("parked_at_wall_ns", &VerifyState::parked_at_wall_ns),
    field("finish_requested", &VerifyState::finish_requested),
    field("deadline_ns", &VerifyState::deadline_ns),
    field("controller", &VerifyState::controller, kControllerDesc),
    field("admin", &VerifyState::admin, kRingDesc),
    field("io", &VerifyState::io, kRingDesc),
    field("admin_command", &VerifyState::admin_command, kAdminCommandDesc),
    field("rng", &VerifyState::rng),
    field("block_count", &VerifyState::block_count),
    varray("generations", &VerifyState::generations, &VerifyState::block_count, kMaxBlocks),
    field("slot_count", &VerifyState::slot_count),
    varray("slots", &VerifyState::slots, &VerifyState::slot_count, kMaxIodepth, kSlotDesc),
    field("in_flight", &VerifyState::in_flight),
    field("cursor", &VerifyState::cursor),
    field("submitted", &VerifyState::submitted),
    field("target_ops", &VerifyState::target_ops),
    field("run_end_ns", &VerifyState::run_end_ns),
    field("stop_submitting", &VerifyState::stop_submitting),
    field("unverified_reads", &VerifyState::unverified_reads),
    field("skipped_blocks", &VerifyState::skipped_blocks),
    field("last_completion_wall_ns", &VerifyState::last_completion_wall_ns),
    field("stats", &VerifyState::stats, kPhaseStatsDesc),
    field("stall_open", &VerifyState::stall_open),
    field("stall_count", &VerifyState::stall_count),
    varray("stalls", &VerifyState::stalls, &VerifyState::stall_count, kMaxStalls, kStallDesc),
    field("stalls_dropped", &VerifyState::stalls_dropped),
    field("resets", &VerifyState::resets),
    field("resume_phase", &VerifyState::resume_phase)
        .validate([](Phase p) { return static_cast<uint8_t>(p) < kPhaseCount; }, "unknown phase"),
    varray("uncertain", &VerifyState::uncertain, &VerifyState::block_count, kMaxBlocks));

Status check_ring(const Ring& ring, std::string_view name, uint32_t expected_entries) {
  if (ring.entries != expected_entries) {
    return Error(ErrorCode::kCorrupt, "{} ring has {} entries, expected {}", name, ring.entries,
                 expected_entries);
  }
  if (ring.sq_tail >= ring.entries || ring.sq_head >= ring.entries ||
      ring.cq_head >= ring.entries) {
    return Error(ErrorCode::kCorrupt,
                 "{} ring index outside its {} entries (SQ tail {}, SQ head {}, CQ head {})", name,
                 ring.entries, ring.sq_tail, ring.sq_head, ring.cq_head);
  }
  return {};
}

}  // namespace

std::unique_ptr<vmstate::StateBinding> bind_state(VerifyState& state) {
  return vmstate::bind(kStateDesc, state);
}

Status check_consistency(const VerifyState& s) {
  if (s.generations.size() != s.block_count || s.uncertain.size() != s.block_count ||
      s.slots.size() != s.slot_count || s.stalls.size() != s.stall_count) {
    return Error(ErrorCode::kInternal, "verify state: a count disagrees with its vector");
  }
  if (s.slot_count != s.local.iodepth) {
    return Error(ErrorCode::kCorrupt, "{} I/O slots for iodepth={}", s.slot_count,
                 s.local.iodepth);
  }
  auto between = [&s](Phase first, Phase last) { return s.phase >= first && s.phase <= last; };
  // What each phase relies on: the admin ring from Identify on, the namespace facts from
  // Set Queues on, the I/O ring from Create SQ on.
  if (between(Phase::kIdentifyController, Phase::kFinished))
    FERRY_RETURN_IF_ERROR(check_ring(s.admin, "admin", kAdminQueueEntries));
  if (between(Phase::kSetQueues, Phase::kFinished)) {
    uint32_t lba = s.controller.lba_size;
    if (lba < 512 || !std::has_single_bit(lba) || s.local.block_size % lba != 0) {
      return Error(ErrorCode::kCorrupt, "LBA size {} does not suit bs={}", lba,
                   s.local.block_size);
    }
    if (s.block_count == 0) return Error(ErrorCode::kCorrupt, "a namespace region of no blocks");
  }
  if (between(Phase::kCreateSq, Phase::kFinished))
    FERRY_RETURN_IF_ERROR(check_ring(s.io, "I/O", s.local.iodepth + 1));
  if ((s.phase == Phase::kPrefill || s.phase == Phase::kFinal) && s.cursor > s.block_count) {
    return Error(ErrorCode::kCorrupt, "sequential position {} is past the {} blocks", s.cursor,
                 s.block_count);
  }
  // A reset sends the program back to its bring-up, which returns to an I/O phase.
  if (s.resume_phase != Phase::kProbe &&
      (!(s.resume_phase >= Phase::kPrefill && s.resume_phase <= Phase::kFinal) ||
       !between(Phase::kProbe, Phase::kCreateSq) || s.block_count == 0)) {
    return Error(ErrorCode::kCorrupt, "resume phase {} in phase {}",
                 static_cast<int>(s.resume_phase), static_cast<int>(s.phase));
  }
  bool io_phase = between(Phase::kPrefill, Phase::kFinal);
  std::vector<uint8_t> seen(s.block_count, 0);
  uint32_t in_use = 0;
  for (size_t i = 0; i < s.slots.size(); ++i) {
    const Slot& slot = s.slots[i];
    if (!slot.in_use) continue;
    ++in_use;
    if (!io_phase || slot.block >= s.block_count) {
      return Error(ErrorCode::kCorrupt, "slot {} uses block {} of {} in phase {}", i, slot.block,
                   s.block_count, static_cast<int>(s.phase));
    }
    if (seen[slot.block]++) {
      return Error(ErrorCode::kCorrupt, "two commands in flight on block {}", slot.block);
    }
  }
  if (in_use != s.in_flight) {
    return Error(ErrorCode::kCorrupt, "{} slots in use but {} commands in flight", in_use,
                 s.in_flight);
  }
  return {};
}

}  // namespace ferry::guest::verify
