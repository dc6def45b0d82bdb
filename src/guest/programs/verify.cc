#include "guest/programs/verify.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include <fmt/format.h>

#include "guest/pci.h"
#include "guest/programs/verify_block.h"
#include "guest/programs/verify_random.h"
#include "spec/nvme.h"

namespace ferry::guest {

namespace sn = spec::nvme;
using verify::IoOp;
using verify::Mode;
using verify::Phase;

namespace {

constexpr uint64_t kDefaultSizeCap = 1ull << 30;
constexpr uint64_t kMmioWindowEnd = 0xfec00000;
constexpr size_t kMaxReapPerStep = 64;
constexpr uint32_t kMaxSubmitPerStep = 64;
constexpr unsigned kRandomTries = 16;
constexpr int64_t kNsPerMs = 1'000'000;

constexpr std::array<std::string_view, verify::kPhaseCount> kPhaseNames = {
    "probe",  "wait-disabled", "wait-ready", "identify-controller", "identify-namespace",
    "set-queues", "create-cq", "create-sq", "prefill", "run", "final", "finished", "failed"};
constexpr std::array<std::string_view, verify::kStatsCount> kStatsNames = {"prefill", "run",
                                                                          "final"};

int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string_view op_name(IoOp op) { return op == IoOp::kWrite ? "write" : "read"; }

bool sequential(Mode mode) { return mode == Mode::kWrite || mode == Mode::kRead; }

uint64_t saturating_multiply(uint64_t a, uint64_t b) {
  if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
  return a * b;
}

}  // namespace

Result<std::unique_ptr<VerifyProgram>> VerifyProgram::create(const VerifyConfig& config) {
  FERRY_RETURN_IF_ERROR(verify_check_config(config));
  uint64_t needed = verify_dma_bytes(config);
  if (config.dma_base % kVerifyPage != 0 || config.dma_size < needed ||
      config.dma_base + config.dma_size < config.dma_base) {
    return Error(ErrorCode::kInvalidArgument,
                 "{}: the guest RAM range [0x{:x}, +0x{:x}) must be page-aligned and hold at least "
                 "0x{:x} bytes for bs={} iodepth={}",
                 kVerifyOption, config.dma_base, config.dma_size, needed, config.block_size,
                 config.iodepth);
  }
  return std::unique_ptr<VerifyProgram>(new VerifyProgram(config));
}

VerifyProgram::VerifyProgram(const VerifyConfig& config)
    : config_(config), layout_(verify_layout(config)) {
  verify::ConfigEcho echo;
  echo.rw = static_cast<uint8_t>(config.rw);
  echo.pci_slot = config.pci_slot;
  echo.pci_function = config.pci_function;
  echo.nsid = config.nsid;
  echo.block_size = config.block_size;
  echo.iodepth = config.iodepth;
  echo.size = config.size;
  echo.runtime_ms = config.runtime_ms;
  echo.loops = config.loops;
  echo.seed = config.seed;
  echo.bar_base = config.bar_base;
  echo.dma_base = config.dma_base;
  echo.dma_size = config.dma_size;
  state_.config = echo;
  state_.local = echo;
  state_.rng = config.seed;
  state_.slot_count = config.iodepth;
  state_.slots.resize(config.iodepth);
  scratch_.resize(config.block_size);
}

std::unique_ptr<vmstate::StateBinding> VerifyProgram::migration_state() {
  return verify::bind_state(state_);
}

int64_t VerifyProgram::running_ns() const { return wall_ns() - state_.paused_ns; }

void VerifyProgram::note_parked() { state_.parked_at_wall_ns = wall_ns(); }

void VerifyProgram::note_resumed() {
  if (state_.parked_at_wall_ns == 0) return;  // never parked: the first start
  note_pause(wall_ns() - state_.parked_at_wall_ns);
  state_.parked_at_wall_ns = 0;
}

void VerifyProgram::note_pause(int64_t ns) {
  if (ns <= 0 || state_.phase == Phase::kFinished || state_.phase == Phase::kFailed) return;
  state_.paused_ns += ns;
  // Nothing completed yet: the I/O gap across this pause starts when the pause did.
  if (state_.last_completion_wall_ns == 0) state_.last_completion_wall_ns = wall_ns() - ns;
  if (state_.stall_count >= verify::kMaxStalls) {
    ++state_.stalls_dropped;
    return;
  }
  uint64_t ops = 0;
  for (const verify::PhaseStats& s : state_.stats) ops += s.ops;
  state_.stalls.push_back({static_cast<uint8_t>(state_.phase), static_cast<uint64_t>(ns), 0, ops});
  ++state_.stall_count;
  state_.stall_open = true;
}

void VerifyProgram::note_reset() {
  verify::VerifyState& s = state_;
  if (s.phase == Phase::kFinished || s.phase == Phase::kFailed) return;
  ++s.resets;
  if (s.phase >= Phase::kPrefill && s.phase <= Phase::kFinal) {
    s.resume_phase = s.phase;
    uint64_t first_block = UINT64_MAX;
    uint32_t dropped = 0;
    for (verify::Slot& slot : s.slots) {
      if (!slot.in_use) continue;
      if (slot.op == IoOp::kWrite) s.uncertain[slot.block] = 1;
      s.busy[slot.block] = 0;
      first_block = std::min(first_block, slot.block);
      ++dropped;
      slot = verify::Slot{};
    }
    s.in_flight = 0;
    if (dropped != 0) {
      // Submit the dropped commands again: the sequential passes from the first block still
      // in flight (blocks after it that completed are simply done twice), the run phase as
      // many more commands.
      if (s.phase == Phase::kPrefill || s.phase == Phase::kFinal) {
        for (uint64_t b = first_block; b < s.cursor && s.phase == Phase::kFinal; ++b)
          if (s.generations[b] == 0 && !s.uncertain[b]) --s.skipped_blocks;  // counted again
        s.cursor = first_block;
      } else {
        s.submitted -= std::min<uint64_t>(s.submitted, dropped);
        if (sequential(config_.rw)) s.cursor -= std::min<uint64_t>(s.cursor, dropped);
      }
      s.stop_submitting = false;
    }
  }
  // A reset during bring-up keeps resume_phase from an earlier reset, if any.
  s.admin_command.outstanding = false;
  s.phase = Phase::kProbe;
}

Status VerifyProgram::fail(Status status) {
  state_.phase = Phase::kFailed;
  error_ = status;
  return status;
}

Result<StepResult> VerifyProgram::step(GuestBus& bus) {
  if (state_.phase == Phase::kFailed) {
    if (!error_.ok()) return error_;
    return Error(ErrorCode::kFailedPrecondition, "verify: the program had failed on the source");
  }
  if (state_.phase == Phase::kFinished) return StepResult::kFinished;
  auto result = advance(bus);
  if (!result.ok()) return fail(result.take_status());
  return result;
}

Result<StepResult> VerifyProgram::advance(GuestBus& bus) {
  switch (state_.phase) {
    case Phase::kProbe: return probe(bus);
    case Phase::kWaitDisabled: return wait_disabled(bus);
    case Phase::kWaitReady: return wait_ready(bus);
    case Phase::kIdentifyController: return identify_controller(bus);
    case Phase::kIdentifyNamespace: return identify_namespace(bus);
    case Phase::kSetQueues: return set_queues(bus);
    case Phase::kCreateCq: return create_cq(bus);
    case Phase::kCreateSq: return create_sq(bus);
    case Phase::kPrefill:
    case Phase::kRun:
    case Phase::kFinal: return io_step(bus);
    case Phase::kFinished: return StepResult::kFinished;
    case Phase::kFailed: break;
  }
  return Error(ErrorCode::kInternal, "verify: no step for phase {}",
               static_cast<int>(state_.phase));
}

// ---- registers and bring-up -----------------------------------------------------------------

Result<uint32_t> VerifyProgram::read_register(GuestBus& bus, uint32_t offset) {
  auto value = bus.mmio_read(state_.controller.bar0 + offset, 4);
  if (!value.ok()) return value.take_status();
  return static_cast<uint32_t>(*value);
}

Status VerifyProgram::write_register(GuestBus& bus, uint32_t offset, uint32_t value) {
  return bus.mmio_write(state_.controller.bar0 + offset, value, 4);
}

Status VerifyProgram::zero(GuestBus& bus, uint64_t address, uint64_t length) {
  std::vector<uint8_t> zeros(length, 0);
  return bus.memory_write(address, zeros);
}

Result<StepResult> VerifyProgram::probe(GuestBus& bus) {
  auto functions = enumerate_bus0(bus);
  if (!functions.ok()) return functions.take_status();
  std::optional<PciFunction> found;
  for (const PciFunction& fn : *functions) {
    bool wanted = config_.pci_slot == kAnyPciSlot
                      ? fn.class_code == sn::kPciClassNvmExpress
                      : fn.slot == config_.pci_slot && fn.function == config_.pci_function;
    if (wanted) {
      found = fn;
      break;
    }
  }
  if (!found) {
    if (config_.pci_slot == kAnyPciSlot)
      return Error(ErrorCode::kFailedPrecondition, "verify: no NVMe controller on PCI bus 0");
    return Error(ErrorCode::kFailedPrecondition, "verify: no PCI function at 00:{:02x}.{}",
                 config_.pci_slot, config_.pci_function);
  }
  if (found->class_code != sn::kPciClassNvmExpress) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: PCI 00:{:02x}.{} is not an NVMe controller (class 0x{:06x})",
                 found->slot, found->function, found->class_code);
  }
  MmioWindow window(config_.bar_base, kMmioWindowEnd);
  auto bars = assign_bars(bus, *found, window);
  if (!bars.ok()) return bars.take_status().prepend_message("verify: ");
  auto bar0 = std::find_if(bars->begin(), bars->end(), [](const PciBar& bar) {
    return bar.index == 0 && !bar.io && bar.size >= 0x1000;
  });
  if (bar0 == bars->end()) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: BAR0 of 00:{:02x}.{} is not a memory BAR of at least 4 KiB",
                 found->slot, found->function);
  }
  FERRY_RETURN_IF_ERROR(enable_memory_and_bus_master(bus, *found, /*disable_intx=*/true));
  verify::ControllerFacts& c = state_.controller;
  c.slot = found->slot;
  c.function = found->function;
  c.bar0 = bar0->address;

  auto cap_low = read_register(bus, sn::kRegCap);
  if (!cap_low.ok()) return cap_low.take_status();
  auto cap_high = read_register(bus, sn::kRegCap + 4);
  if (!cap_high.ok()) return cap_high.take_status();
  c.cap = uint64_t{*cap_low} | uint64_t{*cap_high} << 32;
  c.doorbell_stride = 4u << ((c.cap >> sn::kCapDstrdShift) & 0xf);
  if (((c.cap >> sn::kCapMpsminShift) & 0xf) != 0) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: CAP.MPSMIN={} but the program uses 4 KiB pages",
                 (c.cap >> sn::kCapMpsminShift) & 0xf);
  }
  if (((c.cap >> sn::kCapCssShift) & sn::kCapCssNvm) == 0) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: the controller does not offer the NVM command set (CAP=0x{:x})", c.cap);
  }
  uint64_t max_entries = ((c.cap >> sn::kCapMqesShift) & 0xffff) + 1;
  if (config_.iodepth + 1 > max_entries || verify::kAdminQueueEntries > max_entries) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: iodepth={} needs {} queue entries but the controller allows {} "
                 "(CAP.MQES)",
                 config_.iodepth, config_.iodepth + 1, max_entries);
  }
  auto cc = read_register(bus, sn::kRegCc);
  if (!cc.ok()) return cc.take_status();
  if (*cc & sn::kCcEn) FERRY_RETURN_IF_ERROR(write_register(bus, sn::kRegCc, *cc & ~sn::kCcEn));
  state_.deadline_ns = running_ns() + ready_timeout_ns();
  state_.phase = Phase::kWaitDisabled;
  return StepResult::kProgress;
}

int64_t VerifyProgram::ready_timeout_ns() const {
  uint64_t units = std::max<uint64_t>((state_.controller.cap >> sn::kCapToShift) & 0xff, 1);
  return static_cast<int64_t>(units) * 500 * kNsPerMs;
}

Result<StepResult> VerifyProgram::wait_disabled(GuestBus& bus) {
  auto csts = read_register(bus, sn::kRegCsts);
  if (!csts.ok()) return csts.take_status();
  if (*csts == 0xffffffffu) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: CSTS reads 0xffffffff (BAR0 at 0x{:x} not decoded?)",
                 state_.controller.bar0);
  }
  if (*csts & sn::kCstsRdy) {
    if (running_ns() > state_.deadline_ns) {
      return Error(ErrorCode::kFailedPrecondition,
                   "verify: the controller did not become disabled in time (CSTS=0x{:x})", *csts);
    }
    return StepResult::kWaiting;
  }
  // Disabled: the admin queue can be programmed and the controller enabled.
  FERRY_RETURN_IF_ERROR(zero(bus, layout_.admin_cq, kVerifyPage));
  verify::Ring& admin = state_.admin;
  admin = verify::Ring{};
  admin.qid = 0;
  admin.entries = verify::kAdminQueueEntries;
  admin.sq_address = layout_.admin_sq;
  admin.cq_address = layout_.admin_cq;
  state_.admin_command = verify::AdminCommand{};
  uint32_t aqa = (admin.entries - 1) << sn::kAqaAcqsShift | (admin.entries - 1);
  FERRY_RETURN_IF_ERROR(write_register(bus, sn::kRegAqa, aqa));
  FERRY_RETURN_IF_ERROR(write_register(bus, sn::kRegAsq, static_cast<uint32_t>(admin.sq_address)));
  FERRY_RETURN_IF_ERROR(write_register(bus, sn::kRegAsq + 4,
                                       static_cast<uint32_t>(admin.sq_address >> 32)));
  FERRY_RETURN_IF_ERROR(write_register(bus, sn::kRegAcq, static_cast<uint32_t>(admin.cq_address)));
  FERRY_RETURN_IF_ERROR(write_register(bus, sn::kRegAcq + 4,
                                       static_cast<uint32_t>(admin.cq_address >> 32)));
  uint32_t cc = sn::kCcEn | sn::kCcCssNvm << sn::kCcCssShift | 0u << sn::kCcMpsShift |
                6u << sn::kCcIosqesShift | 4u << sn::kCcIocqesShift;
  FERRY_RETURN_IF_ERROR(write_register(bus, sn::kRegCc, cc));
  state_.deadline_ns = running_ns() + ready_timeout_ns();
  state_.phase = Phase::kWaitReady;
  return StepResult::kProgress;
}

Result<StepResult> VerifyProgram::wait_ready(GuestBus& bus) {
  auto csts = read_register(bus, sn::kRegCsts);
  if (!csts.ok()) return csts.take_status();
  if (*csts == 0xffffffffu || (*csts & sn::kCstsCfs)) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: controller fatal status while enabling (CSTS=0x{:x})", *csts);
  }
  if (!(*csts & sn::kCstsRdy)) {
    if (running_ns() > state_.deadline_ns) {
      return Error(ErrorCode::kFailedPrecondition,
                   "verify: the controller did not become ready in time (CSTS=0x{:x})", *csts);
    }
    return StepResult::kWaiting;
  }
  state_.phase = Phase::kIdentifyController;
  return StepResult::kProgress;
}

Result<StepResult> VerifyProgram::identify_controller(GuestBus& bus) {
  if (!state_.admin_command.outstanding) {
    nvme::Sqe sqe = nvme::commands::identify(sn::kCnsController);
    sqe.set_prp1(layout_.identify);
    FERRY_RETURN_IF_ERROR(submit_admin(bus, sqe));
    return StepResult::kProgress;
  }
  auto done = poll_admin(bus, "identify controller");
  if (!done.ok()) return done.take_status();
  if (!*done) return StepResult::kWaiting;
  auto mdts = bus.memory_load(layout_.identify + sn::kIdCtrlMdts, 1);
  if (!mdts.ok()) return mdts.take_status();
  // MDTS is a power of two in units of the minimum page size (4 KiB); 0 means no limit.
  state_.controller.max_transfer =
      *mdts == 0 || *mdts > 18 ? 0 : static_cast<uint32_t>(kVerifyPage << *mdts);
  if (state_.controller.max_transfer != 0 && config_.block_size > state_.controller.max_transfer) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: bs={} exceeds the controller's maximum transfer of {} bytes (MDTS={})",
                 config_.block_size, state_.controller.max_transfer, *mdts);
  }
  state_.phase = Phase::kIdentifyNamespace;
  return StepResult::kProgress;
}

Result<StepResult> VerifyProgram::identify_namespace(GuestBus& bus) {
  if (!state_.admin_command.outstanding) {
    FERRY_RETURN_IF_ERROR(zero(bus, layout_.identify, kVerifyPage));
    nvme::Sqe sqe = nvme::commands::identify(sn::kCnsNamespace, config_.nsid);
    sqe.set_prp1(layout_.identify);
    FERRY_RETURN_IF_ERROR(submit_admin(bus, sqe));
    return StepResult::kProgress;
  }
  auto done = poll_admin(bus, fmt::format("identify namespace {}", config_.nsid));
  if (!done.ok()) return done.take_status();
  if (!*done) return StepResult::kWaiting;
  auto nsze = bus.memory_load(layout_.identify + sn::kIdNsNsze, 8);
  if (!nsze.ok()) return nsze.take_status();
  auto flbas = bus.memory_load(layout_.identify + sn::kIdNsFlbas, 1);
  if (!flbas.ok()) return flbas.take_status();
  auto lbaf = bus.memory_load(layout_.identify + sn::kIdNsLbaf0 + 4 * (*flbas & 0xf), 4);
  if (!lbaf.ok()) return lbaf.take_status();
  if (*nsze == 0) {
    return Error(ErrorCode::kFailedPrecondition, "verify: namespace {} is not active (NSZE 0)",
                 config_.nsid);
  }
  unsigned lbads = (*lbaf >> sn::kLbafLbadsShift) & 0xff;
  uint32_t metadata = *lbaf & 0xffff;
  if (lbads < 9 || lbads > 16 || ((*flbas & 0x10) && metadata != 0)) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: namespace {} has an unsupported LBA format (LBADS {}, metadata {} "
                 "bytes{})",
                 config_.nsid, lbads, metadata, (*flbas & 0x10) ? " inline" : "");
  }
  uint32_t lba_size = 1u << lbads;
  if (config_.block_size % lba_size != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "{}: bs={} is not a multiple of namespace {}'s LBA size {}", kVerifyOption,
                 config_.block_size, config_.nsid, lba_size);
  }
  uint64_t namespace_bytes = saturating_multiply(*nsze, lba_size);
  uint64_t blocks = 0;
  if (config_.size != 0) {
    if (config_.size > namespace_bytes) {
      return Error(ErrorCode::kInvalidArgument,
                   "{}: size={} exceeds namespace {} ({} bytes)", kVerifyOption, config_.size,
                   config_.nsid, namespace_bytes);
    }
    blocks = config_.size / config_.block_size;
    if (blocks > verify::kMaxBlocks) {
      return Error(ErrorCode::kInvalidArgument,
                   "{}: size={} makes {} blocks of bs={}; at most {} are supported", kVerifyOption,
                   config_.size, blocks, config_.block_size, verify::kMaxBlocks);
    }
  } else {
    blocks = std::min<uint64_t>(std::min(namespace_bytes, kDefaultSizeCap) / config_.block_size,
                                verify::kMaxBlocks);
  }
  if (blocks == 0) {
    return Error(ErrorCode::kInvalidArgument, "{}: namespace {} ({} bytes) is smaller than bs={}",
                 kVerifyOption, config_.nsid, namespace_bytes, config_.block_size);
  }
  if (state_.block_count != 0) {
    // Bring-up again after a reset: the disk kept its content, so the model stays, if the
    // namespace is still the one it describes.
    if (blocks != state_.block_count || lba_size != state_.controller.lba_size) {
      return Error(ErrorCode::kFailedPrecondition,
                   "verify: after a reset namespace {} has {} blocks of {} bytes (LBA size {}); "
                   "before it {} (LBA size {})",
                   config_.nsid, blocks, config_.block_size, lba_size, state_.block_count,
                   state_.controller.lba_size);
    }
    state_.controller.namespace_blocks = *nsze;
    state_.phase = Phase::kSetQueues;
    return StepResult::kProgress;
  }
  state_.controller.namespace_blocks = *nsze;
  state_.controller.lba_size = lba_size;
  state_.block_count = static_cast<uint32_t>(blocks);
  state_.generations.assign(blocks, 0);
  state_.uncertain.assign(blocks, 0);
  state_.busy.assign(blocks, 0);
  state_.phase = Phase::kSetQueues;
  return StepResult::kProgress;
}

Result<StepResult> VerifyProgram::set_queues(GuestBus& bus) {
  if (!state_.admin_command.outstanding) {
    FERRY_RETURN_IF_ERROR(submit_admin(bus, nvme::commands::set_number_of_queues(1, 1)));
    return StepResult::kProgress;
  }
  auto done = poll_admin(bus, "set features (number of queues)");
  if (!done.ok()) return done.take_status();
  if (!*done) return StepResult::kWaiting;
  state_.phase = Phase::kCreateCq;
  return StepResult::kProgress;
}

Result<StepResult> VerifyProgram::create_cq(GuestBus& bus) {
  if (!state_.admin_command.outstanding) {
    verify::Ring& io = state_.io;
    io = verify::Ring{};
    io.qid = 1;
    io.entries = config_.iodepth + 1;
    io.sq_address = layout_.io_sq;
    io.cq_address = layout_.io_cq;
    FERRY_RETURN_IF_ERROR(zero(bus, io.cq_address, uint64_t{io.entries} * sn::kCqeSize));
    FERRY_RETURN_IF_ERROR(submit_admin(
        bus, nvme::commands::create_io_cq(io.qid, io.entries, io.cq_address, false, 0)));
    return StepResult::kProgress;
  }
  auto done = poll_admin(bus, "create I/O completion queue 1");
  if (!done.ok()) return done.take_status();
  if (!*done) return StepResult::kWaiting;
  state_.phase = Phase::kCreateSq;
  return StepResult::kProgress;
}

Result<StepResult> VerifyProgram::create_sq(GuestBus& bus) {
  const verify::Ring& io = state_.io;
  if (!state_.admin_command.outstanding) {
    FERRY_RETURN_IF_ERROR(submit_admin(
        bus, nvme::commands::create_io_sq(io.qid, io.entries, io.sq_address, io.qid)));
    return StepResult::kProgress;
  }
  auto done = poll_admin(bus, "create I/O submission queue 1");
  if (!done.ok()) return done.take_status();
  if (!*done) return StepResult::kWaiting;
  // PRP lists never change: slot i's list names the pages of its buffer after the first.
  if (layout_.prp_lists != 0) {
    uint64_t pages = layout_.buffer_stride / kVerifyPage;
    std::vector<uint8_t> list((pages - 1) * 8);
    for (uint32_t slot = 0; slot < config_.iodepth; ++slot) {
      uint64_t buffer = layout_.buffers + slot * layout_.buffer_stride;
      for (uint64_t page = 1; page < pages; ++page) {
        uint64_t address = buffer + page * kVerifyPage;
        for (unsigned b = 0; b < 8; ++b)
          list[(page - 1) * 8 + b] = static_cast<uint8_t>(address >> (8 * b));
      }
      FERRY_RETURN_IF_ERROR(bus.memory_write(layout_.prp_lists + slot * kVerifyPage, list));
    }
  }
  if (state_.resume_phase != Phase::kProbe) {
    // Restarted after a reset: back to the phase it interrupted, where it was.
    state_.phase = state_.resume_phase;
    state_.resume_phase = Phase::kProbe;
    return StepResult::kProgress;
  }
  bool prefill = config_.rw == Mode::kRead || config_.rw == Mode::kRandRead;
  start_io_phase(prefill ? Phase::kPrefill : Phase::kRun);
  return StepResult::kProgress;
}

// ---- rings ----------------------------------------------------------------------------------

uint64_t VerifyProgram::doorbell(uint16_t qid, bool completion) const {
  return state_.controller.bar0 + sn::kDoorbellBase +
         (2 * uint64_t{qid} + (completion ? 1 : 0)) * state_.controller.doorbell_stride;
}

Status VerifyProgram::push(GuestBus& bus, verify::Ring& ring, const nvme::Sqe& sqe) {
  uint32_t used = (ring.sq_tail + ring.entries - ring.sq_head) % ring.entries;
  if (used + 1 >= ring.entries) {
    return Error(ErrorCode::kInternal, "verify: SQ {} is full (tail {}, head {}, {} entries)",
                 ring.qid, ring.sq_tail, ring.sq_head, ring.entries);
  }
  FERRY_RETURN_IF_ERROR(
      bus.memory_write(ring.sq_address + uint64_t{ring.sq_tail} * sn::kSqeSize, sqe.bytes));
  ring.sq_tail = (ring.sq_tail + 1) % ring.entries;
  return {};
}

Status VerifyProgram::ring_sq(GuestBus& bus, const verify::Ring& ring) {
  return bus.mmio_write(doorbell(ring.qid, false), ring.sq_tail, 4);
}

Status VerifyProgram::ring_cq(GuestBus& bus, const verify::Ring& ring) {
  return bus.mmio_write(doorbell(ring.qid, true), ring.cq_head, 4);
}

Status VerifyProgram::reap(GuestBus& bus, verify::Ring& ring, size_t max) {
  reaped_.clear();
  std::array<uint8_t, 64 * sn::kCqeSize> bytes;
  while (reaped_.size() < max) {
    // One read per run of entries up to the ring's end (a round trip over qtest).
    size_t run = std::min<size_t>({max - reaped_.size(), ring.entries - ring.cq_head, 64});
    auto window = std::span(bytes.data(), run * sn::kCqeSize);
    FERRY_RETURN_IF_ERROR(
        bus.memory_read(ring.cq_address + uint64_t{ring.cq_head} * sn::kCqeSize, window));
    size_t taken = 0;
    for (; taken < run; ++taken) {
      auto entry = std::span<const uint8_t, sn::kCqeSize>(bytes.data() + taken * sn::kCqeSize,
                                                          sn::kCqeSize);
      nvme::Completion c = nvme::Completion::parse(entry);
      if (c.phase != ring.phase) break;
      if (c.sq_id == ring.qid && c.sq_head < ring.entries) ring.sq_head = c.sq_head;
      reaped_.push_back(c);
      if (++ring.cq_head == ring.entries) {
        ring.cq_head = 0;
        ring.phase = !ring.phase;
      }
    }
    if (taken < run) break;
  }
  return {};
}

Status VerifyProgram::submit_admin(GuestBus& bus, nvme::Sqe sqe) {
  verify::AdminCommand& a = state_.admin_command;
  a.cid = a.next_cid++;
  sqe.set_cid(a.cid);
  FERRY_RETURN_IF_ERROR(push(bus, state_.admin, sqe));
  FERRY_RETURN_IF_ERROR(ring_sq(bus, state_.admin));
  a.outstanding = true;
  a.deadline_ns = running_ns() + static_cast<int64_t>(config_.command_timeout_ms) * kNsPerMs;
  return {};
}

Result<std::optional<nvme::Completion>> VerifyProgram::poll_admin(GuestBus& bus,
                                                                   std::string_view what) {
  FERRY_RETURN_IF_ERROR(reap(bus, state_.admin, 1));
  verify::AdminCommand& a = state_.admin_command;
  if (reaped_.empty()) {
    if (running_ns() > a.deadline_ns) {
      return Error(ErrorCode::kFailedPrecondition,
                   "verify: {} (CID {}) got no completion within {} ms", what, a.cid,
                   config_.command_timeout_ms);
    }
    return std::optional<nvme::Completion>();
  }
  FERRY_RETURN_IF_ERROR(ring_cq(bus, state_.admin));
  nvme::Completion c = reaped_.front();
  if (c.cid != a.cid) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: {}: expected the completion of CID {}, found CID {}", what, a.cid,
                 c.cid);
  }
  a.outstanding = false;
  if (!c.ok()) {
    return Error(ErrorCode::kFailedPrecondition, "verify: {} failed: status 0x{:04x}, {}", what,
                 c.status, nvme::describe_status(c.status));
  }
  return std::optional<nvme::Completion>(c);
}

// ---- I/O --------------------------------------------------------------------------------------

uint8_t VerifyProgram::stats_index() const {
  switch (state_.phase) {
    case Phase::kPrefill: return verify::kStatsPrefill;
    case Phase::kFinal: return verify::kStatsFinal;
    default: return verify::kStatsRun;
  }
}

void VerifyProgram::start_io_phase(Phase phase) {
  verify::VerifyState& s = state_;
  s.phase = phase;
  s.cursor = 0;
  s.submitted = 0;
  s.stop_submitting = false;
  s.run_end_ns = 0;
  int64_t now = running_ns();
  s.stats[stats_index()].start_ns = now;
  switch (phase) {
    case Phase::kRun: {
      bool by_time = config_.runtime_ms != 0;
      uint64_t loops = config_.loops != 0 ? config_.loops : (by_time ? 0 : 1);
      s.target_ops = saturating_multiply(loops, s.block_count);
      if (by_time) s.run_end_ns = now + static_cast<int64_t>(config_.runtime_ms) * kNsPerMs;
      break;
    }
    default: s.target_ops = s.block_count; break;  // prefill and final: one pass
  }
}

bool VerifyProgram::more_to_submit() {
  verify::VerifyState& s = state_;
  if (s.stop_submitting) return false;
  if (s.phase == Phase::kFinal) {
    // Blocks this run never wrote have no known content: skip them.
    while (s.cursor < s.block_count && s.generations[s.cursor] == 0 && !s.uncertain[s.cursor]) {
      ++s.cursor;
      ++s.skipped_blocks;
    }
    if (s.cursor >= s.block_count) s.stop_submitting = true;
  } else if (s.phase == Phase::kPrefill) {
    if (s.cursor >= s.block_count) s.stop_submitting = true;
  } else if (s.finish_requested) {
    s.stop_submitting = true;
  } else if (s.target_ops != 0 && s.submitted >= s.target_ops) {
    s.stop_submitting = true;
  } else if (s.run_end_ns != 0 && running_ns() >= s.run_end_ns) {
    s.stop_submitting = true;
  }
  return !s.stop_submitting;
}

std::optional<std::pair<uint64_t, IoOp>> VerifyProgram::choose() {
  verify::VerifyState& s = state_;
  if (s.phase == Phase::kPrefill) return std::pair{s.cursor, IoOp::kWrite};
  if (s.phase == Phase::kFinal) return std::pair{s.cursor, IoOp::kRead};
  uint64_t block = 0;
  if (sequential(config_.rw)) {
    block = s.cursor % s.block_count;
    if (s.busy[block]) return std::nullopt;  // still in flight from the previous pass
  } else {
    bool found = false;
    for (unsigned i = 0; i < kRandomTries && !found; ++i) {
      block = verify::random_below(s.rng, s.block_count);
      found = !s.busy[block];
    }
    if (!found) return std::nullopt;
  }
  IoOp op = IoOp::kRead;
  switch (config_.rw) {
    case Mode::kWrite:
    case Mode::kRandWrite: op = IoOp::kWrite; break;
    case Mode::kRead:
    case Mode::kRandRead: op = IoOp::kRead; break;
    case Mode::kRandRw:
      op = (verify::splitmix64_next(s.rng) & 1) ? IoOp::kWrite : IoOp::kRead;
      break;
  }
  return std::pair{block, op};
}

Status VerifyProgram::submit_io(GuestBus& bus, uint32_t slot, uint64_t block, IoOp op) {
  verify::VerifyState& s = state_;
  uint32_t lbas = config_.block_size / s.controller.lba_size;
  uint64_t lba = block * lbas;
  uint64_t buffer = layout_.buffers + slot * layout_.buffer_stride;
  uint32_t generation = s.generations[block];
  if (op == IoOp::kWrite) {
    generation = verify::next_generation(generation);
    verify::fill_block(scratch_, lba, generation, config_.seed);
  } else {
    // Poison the buffer, so that a read that transfers nothing cannot pass for the block
    // an earlier command of this slot left there.
    std::fill(scratch_.begin(), scratch_.end(), uint8_t{0xa5});
  }
  FERRY_RETURN_IF_ERROR(bus.memory_write(buffer, scratch_));
  nvme::Sqe sqe = op == IoOp::kWrite ? nvme::commands::write(config_.nsid, lba, lbas)
                                     : nvme::commands::read(config_.nsid, lba, lbas);
  sqe.set_cid(static_cast<uint16_t>(slot));
  sqe.set_prp1(buffer);
  if (config_.block_size > 2 * kVerifyPage) sqe.set_prp2(layout_.prp_lists + slot * kVerifyPage);
  else if (config_.block_size > kVerifyPage) sqe.set_prp2(buffer + kVerifyPage);
  FERRY_RETURN_IF_ERROR(push(bus, s.io, sqe));
  s.slots[slot] = verify::Slot{true, op, block, generation, running_ns()};
  s.busy[block] = 1;
  ++s.in_flight;
  return {};
}

Status VerifyProgram::complete_io(GuestBus& bus, const nvme::Completion& c) {
  verify::VerifyState& s = state_;
  if (c.cid >= s.slot_count || !s.slots[c.cid].in_use) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: a completion names CID {}, which no command in flight uses (status "
                 "0x{:04x})",
                 c.cid, c.status);
  }
  verify::Slot& slot = s.slots[c.cid];
  uint32_t lbas = config_.block_size / s.controller.lba_size;
  uint64_t lba = slot.block * lbas;
  if (!c.ok()) {
    return Error(ErrorCode::kFailedPrecondition,
                 "verify: {} of LBA {} ({} blocks, {} phase) failed: status 0x{:04x}, {}",
                 op_name(slot.op), lba, lbas, kPhaseNames[static_cast<size_t>(s.phase)], c.status,
                 nvme::describe_status(c.status));
  }
  if (slot.op == IoOp::kWrite) {
    s.generations[slot.block] = slot.generation;
    s.uncertain[slot.block] = 0;
  } else if (slot.generation == 0 && !s.uncertain[slot.block]) {
    ++s.unverified_reads;
  } else {
    uint64_t buffer = layout_.buffers + c.cid * layout_.buffer_stride;
    FERRY_RETURN_IF_ERROR(bus.memory_read(buffer, scratch_));
    std::optional<std::string> mismatch;
    if (slot.generation != 0)
      mismatch = verify::check_block(scratch_, lba, slot.generation, config_.seed);
    else
      mismatch = "the block was never written before the write a reset dropped";
    if (mismatch && s.uncertain[slot.block]) {
      // The write a reset dropped may have reached the disk: its generation is as good.
      uint32_t next = verify::next_generation(slot.generation);
      if (!verify::check_block(scratch_, lba, next, config_.seed)) {
        s.generations[slot.block] = next;
        mismatch.reset();
      } else if (slot.generation == 0) {
        ++s.unverified_reads;  // neither: the disk's content from before this run
        mismatch.reset();
      }
    }
    if (mismatch) {
      return Error(ErrorCode::kCorrupt, "verify: mismatch at LBA {} (block {}, {} phase): {}", lba,
                   slot.block, kPhaseNames[static_cast<size_t>(s.phase)], *mismatch);
    }
    s.uncertain[slot.block] = 0;
  }
  verify::PhaseStats& stats = s.stats[stats_index()];
  int64_t latency = std::max<int64_t>(running_ns() - slot.submit_ns, 0);
  ++stats.latency[verify::latency_bucket(static_cast<uint64_t>(latency))];
  ++stats.ops;
  stats.bytes += config_.block_size;
  ++(slot.op == IoOp::kWrite ? stats.writes : stats.reads);
  int64_t now = wall_ns();
  if (s.last_completion_wall_ns != 0) {
    auto gap = static_cast<uint64_t>(std::max<int64_t>(now - s.last_completion_wall_ns, 0));
    stats.max_gap_ns = std::max(stats.max_gap_ns, gap);
    if (s.stall_open && !s.stalls.empty()) s.stalls.back().io_gap_ns = gap;
  }
  s.stall_open = false;
  s.last_completion_wall_ns = now;
  s.busy[slot.block] = 0;
  slot.in_use = false;
  --s.in_flight;
  return {};
}

Status VerifyProgram::check_timeouts() const {
  int64_t now = running_ns();
  int64_t limit = static_cast<int64_t>(config_.command_timeout_ms) * kNsPerMs;
  uint32_t lbas = config_.block_size / state_.controller.lba_size;
  for (size_t i = 0; i < state_.slots.size(); ++i) {
    const verify::Slot& slot = state_.slots[i];
    if (slot.in_use && now - slot.submit_ns > limit) {
      return Error(ErrorCode::kFailedPrecondition,
                   "verify: {} of LBA {} (CID {}) has had no completion for {} ms (limit {} ms "
                   "of running time)",
                   op_name(slot.op), slot.block * lbas, i, (now - slot.submit_ns) / kNsPerMs,
                   config_.command_timeout_ms);
    }
  }
  return {};
}

Result<StepResult> VerifyProgram::io_step(GuestBus& bus) {
  verify::VerifyState& s = state_;
  bool progress = false;
  FERRY_RETURN_IF_ERROR(reap(bus, s.io, kMaxReapPerStep));
  if (!reaped_.empty()) {
    FERRY_RETURN_IF_ERROR(ring_cq(bus, s.io));
    for (const nvme::Completion& c : reaped_) FERRY_RETURN_IF_ERROR(complete_io(bus, c));
    progress = true;
  }
  uint32_t depth = std::min(config_.iodepth, s.block_count);
  uint32_t submitted = 0;
  while (s.in_flight < depth && submitted < kMaxSubmitPerStep && more_to_submit()) {
    auto choice = choose();
    if (!choice) break;
    uint32_t slot = next_free_hint_ % s.slot_count;
    while (s.slots[slot].in_use) slot = (slot + 1) % s.slot_count;
    next_free_hint_ = slot + 1;
    FERRY_RETURN_IF_ERROR(submit_io(bus, slot, choice->first, choice->second));
    ++s.cursor;
    ++s.submitted;
    ++submitted;
  }
  if (submitted > 0) {
    FERRY_RETURN_IF_ERROR(ring_sq(bus, s.io));
    progress = true;
  }
  if (s.in_flight == 0 && !more_to_submit()) {
    s.stats[stats_index()].end_ns = running_ns();
    switch (s.phase) {
      case Phase::kPrefill: start_io_phase(Phase::kRun); break;
      case Phase::kRun: start_io_phase(Phase::kFinal); break;
      default: s.phase = Phase::kFinished; return StepResult::kFinished;
    }
    return StepResult::kProgress;
  }
  // Every step, not only idle ones: one stuck command must not hide behind the others.
  FERRY_RETURN_IF_ERROR(check_timeouts());
  return progress ? StepResult::kProgress : StepResult::kWaiting;
}

// ---- status -----------------------------------------------------------------------------------

nlohmann::ordered_json VerifyProgram::status() const {
  const verify::VerifyState& s = state_;
  nlohmann::ordered_json j;
  j["program"] = "verify";
  j["phase"] = kPhaseNames[std::min<size_t>(static_cast<size_t>(s.phase), kPhaseNames.size() - 1)];
  j["device"] = config_.device;
  j["pci"] = fmt::format("00:{:02x}.{}", s.controller.slot, s.controller.function);
  j["nsid"] = config_.nsid;
  j["rw"] = verify_mode_name(config_.rw);
  j["bs"] = config_.block_size;
  j["iodepth"] = config_.iodepth;
  j["blocks"] = s.block_count;
  j["size"] = uint64_t{s.block_count} * config_.block_size;
  uint64_t ops = 0;
  for (const verify::PhaseStats& p : s.stats) ops += p.ops;
  j["ops"] = ops;
  j["in_flight"] = s.in_flight;
  j["admin_in_flight"] = s.admin_command.outstanding ? 1 : 0;  // bring-up's one admin command
  if (!error_.ok()) j["errors"] = error_.to_string();
  else if (s.phase == Phase::kFailed) j["errors"] = "the program had failed on the source";
  else j["errors"] = 0;
  j["unverified_reads"] = s.unverified_reads;
  j["skipped_blocks"] = s.skipped_blocks;
  j["resets"] = s.resets;
  j["uncertain_blocks"] = std::count(s.uncertain.begin(), s.uncertain.end(), uint8_t{1});
  nlohmann::ordered_json phases = nlohmann::ordered_json::object();
  int64_t now = running_ns();
  for (size_t i = 0; i < s.stats.size(); ++i) {
    const verify::PhaseStats& p = s.stats[i];
    if (p.start_ns == 0) continue;
    int64_t elapsed = std::max<int64_t>((p.end_ns != 0 ? p.end_ns : now) - p.start_ns, 0);
    double seconds = static_cast<double>(elapsed) / 1e9;
    nlohmann::ordered_json ph;
    ph["ops"] = p.ops;
    ph["reads"] = p.reads;
    ph["writes"] = p.writes;
    ph["bytes"] = p.bytes;
    ph["elapsed_ms"] = elapsed / kNsPerMs;
    ph["iops"] = seconds > 0 ? static_cast<uint64_t>(static_cast<double>(p.ops) / seconds) : 0;
    ph["latency_ns"] = {{"p50", verify::latency_percentile(p.latency, 0.50)},
                        {"p99", verify::latency_percentile(p.latency, 0.99)},
                        {"p99.9", verify::latency_percentile(p.latency, 0.999)}};
    ph["max_completion_gap_ns"] = p.max_gap_ns;
    ph["done"] = p.end_ns != 0;
    phases[std::string(kStatsNames[i])] = std::move(ph);
  }
  j["phases"] = std::move(phases);
  nlohmann::ordered_json stalls = nlohmann::ordered_json::array();
  for (const verify::Stall& st : s.stalls) {
    stalls.push_back({{"phase", kPhaseNames[std::min<size_t>(st.phase, kPhaseNames.size() - 1)]},
                      {"pause_ns", st.pause_ns},
                      {"io_gap_ns", st.io_gap_ns},
                      {"ops_before", st.ops_before}});
  }
  j["stalls"] = std::move(stalls);
  j["stalls_dropped"] = s.stalls_dropped;
  return j;
}

}  // namespace ferry::guest
