// The controller as a PCI function: identity, BAR0, registers, the CC/CSTS state machine,
// reset, quiesce/resume, namespaces.
//
// Where Ferry deliberately differs from QEMU 7.2 (everything else follows it, checked
// against qemu-system-x86_64 7.2 over qtest): docs/nvme-qemu-differences.md, one entry
// per difference with what QEMU does, what Ferry does and why; tests/nvme_qemu_diff_test.cc
// runs both and fails on any difference that page does not justify.
#include "hw/nvme/controller.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>

#include "base/log.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {

constexpr uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// FNV-1a, 64 bits: a stable hash for deriving namespace identifiers.
uint64_t fnv1a(std::string_view text, uint64_t seed) {
  uint64_t hash = 0xcbf29ce484222325ull ^ seed;
  for (char c : text) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// A version-4-shaped UUID from the serial and nsid: equal configurations, equal UUIDs.
std::array<uint8_t, 16> namespace_uuid(const std::string& serial, uint32_t nsid) {
  std::string key = fmt::format("ferry-nvme/{}/{}", serial, nsid);
  uint64_t hi = fnv1a(key, 0), lo = fnv1a(key, 0x9e3779b97f4a7c15ull);
  std::array<uint8_t, 16> uuid{};
  for (int i = 0; i < 8; ++i) {
    uuid[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    uuid[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0f) | 0x40);
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3f) | 0x80);
  return uuid;
}

}  // namespace

Controller::Controller(const ControllerConfig& config, ControllerEnv env)
    : PciDevice("nvme", pci::PciKind::kExpress),
      config_(config),
      loop_(env.loop),
      memory_(env.memory),
      clock_(env.clock),
      alive_(std::make_shared<Controller*>(this)) {
  attach_dma(env.memory);
}

Controller::~Controller() {
  // Let no backend write into a request we are about to forget.
  resetting_ = true;
  for (auto& ns : namespaces_)
    if (ns) (void)ns->backend().drain();
  for (EventLoop::TimerId id : coalescing_timers_)
    if (id) loop_.cancel_timer(id);
  alive_.reset();
}

Result<std::unique_ptr<Controller>> Controller::create(const ControllerConfig& config,
                                                       block::BlockBackend* drive,
                                                       ControllerEnv env) {
  if (config.serial.empty())
    return Error(ErrorCode::kInvalidArgument, "serial property not set");
  if (config.max_ioqpairs < 1 || config.max_ioqpairs > 0xffff)
    return Error(ErrorCode::kInvalidArgument,
                 "max_ioqpairs must be between 1 and 65535 (found {})",
                 config.max_ioqpairs);
  if (config.msix_qsize < 1 || config.msix_qsize > 2048)
    return Error(ErrorCode::kInvalidArgument,
                 "msix_qsize must be between 1 and 2048 (found {})", config.msix_qsize);
  if (config.mqes < 1)
    return Error(ErrorCode::kInvalidArgument, "mqes must be at least 1 (found {})",
                 config.mqes);
  if (config.mdts < 1 || config.mdts > 9)
    return Error(ErrorCode::kInvalidArgument, "mdts must be between 1 and 9 (found {})",
                 config.mdts);
  std::unique_ptr<Controller> ctrl(new Controller(config, env));
  Status st = ctrl->realize(drive);
  if (!st.ok()) return st.prepend_message("nvme");
  return ctrl;
}

Status Controller::realize(block::BlockBackend* drive) {
  set_ids({.vendor = kVendorId, .device = kDeviceId, .class_code = sn::kPciClassNvmExpress,
           .revision = 2, .subsystem_vendor = 0x1af4, .subsystem = 0x1100});

  // BAR0 as QEMU sizes it: registers, a doorbell pair per queue, then the MSI-X table and
  // the PBA, each on a 4 KiB boundary; the whole rounded up to a power of two.
  uint64_t queues = uint64_t{config_.max_ioqpairs} + 1;
  uint64_t size = align_up(kRegisterBlockSize + 2 * queues * 4, 4096);
  msix_table_offset_ = static_cast<uint32_t>(size);
  size = align_up(size + 16ull * config_.msix_qsize, 4096);
  msix_pba_offset_ = static_cast<uint32_t>(size);
  size += align_up(config_.msix_qsize, 64) / 8;
  bar0_size_ = std::bit_ceil(size);

  FERRY_RETURN_IF_ERROR(register_bar(0, bar0_size_, pci::BarType::kMem64, false, &bar0_));
  FERRY_RETURN_IF_ERROR(set_interrupt_pin(1));
  FERRY_RETURN_IF_ERROR(init_msix({.vectors = config_.msix_qsize, .table_bar = 0,
                                   .table_offset = msix_table_offset_, .pba_bar = 0,
                                   .pba_offset = msix_pba_offset_})
                            .take_status());
  FERRY_RETURN_IF_ERROR(add_power_management_capability().take_status());
  FERRY_RETURN_IF_ERROR(add_express_capability().take_status());

  state_.sqs.resize(queues);
  state_.cqs.resize(queues);
  state_.vectors.resize(config_.msix_qsize);
  state_.namespaces.resize(kMaxNamespaces + 1);
  coalescing_timers_.assign(config_.msix_qsize, 0);
  rejected_shadow_tail_.assign(queues, UINT32_MAX);

  uint64_t cap = uint64_t{config_.mqes} << sn::kCapMqesShift;
  cap |= uint64_t{1} << sn::kCapCqrShift;
  cap |= uint64_t{0xf} << sn::kCapToShift;
  cap |= (sn::kCapCssNvm | sn::kCapCssIoSets | sn::kCapCssAdminOnly) << sn::kCapCssShift;
  cap |= uint64_t{4} << sn::kCapMpsmaxShift;
  state_.regs.cap = cap;
  state_.regs.vs = 0x00010400;
  state_.power_on_ns = clock_.now_ns();
  state_.timestamp.set_at_ns = clock_.now_ns();

  if (drive) FERRY_RETURN_IF_ERROR(attach_namespace(1, *drive, config_.logical_block_size));
  return {};
}

Status Controller::attach_namespace(uint32_t nsid, block::BlockBackend& backend,
                                    uint32_t logical_block_size) {
  if (nsid == 0) {
    for (uint32_t id = 1; id <= kMaxNamespaces && nsid == 0; ++id)
      if (!namespaces_[id]) nsid = id;
    if (nsid == 0)
      return Error(ErrorCode::kInvalidArgument, "all {} namespace ids are in use",
                   kMaxNamespaces);
  }
  if (nsid > kMaxNamespaces)
    return Error(ErrorCode::kInvalidArgument, "nsid must be between 1 and {} (found {})",
                 kMaxNamespaces, nsid);
  if (namespaces_[nsid])
    return Error(ErrorCode::kInvalidArgument, "nsid {} is already in use", nsid);
  for (const auto& ns : namespaces_)
    if (ns && &ns->backend() == &backend)
      return Error(ErrorCode::kInvalidArgument,
                   "drive '{}' already backs namespace {}", backend.config().id,
                   ns->nsid());
  NamespaceConfig ns_config{.nsid = nsid, .backend = &backend,
                            .logical_block_size = logical_block_size,
                            .uuid = namespace_uuid(config_.serial, nsid)};
  auto ns = Namespace::create(ns_config);
  if (!ns.ok()) return ns.take_status();
  namespaces_[nsid] = std::move(*ns);
  std::weak_ptr<Controller*> weak = alive_;
  backend.set_completion_handler([weak, nsid](uint64_t tag, int result) {
    if (auto self = weak.lock()) (*self)->on_block_completion(nsid, tag, result);
  });
  return {};
}

const Namespace* Controller::find_namespace(uint32_t nsid) const {
  return nsid >= 1 && nsid <= kMaxNamespaces ? namespaces_[nsid].get() : nullptr;
}

size_t Controller::requests_in_flight() const {
  return static_cast<size_t>(std::count_if(state_.requests.begin(), state_.requests.end(),
                                           [](const auto& r) { return r != nullptr; }));
}

// ---- BAR0 -----------------------------------------------------------------------------------

uint64_t Controller::Bar0::read(uint64_t offset, unsigned size) {
  // Registers read as stored, at any width; doorbells and reserved space read 0 (QEMU).
  if (offset >= kRegisterBlockSize) return 0;
  uint64_t value = 0;
  for (unsigned i = 0; i < size && i < 8; ++i)
    value |= uint64_t{ctrl_.register_byte(offset + i)} << (8 * i);
  return value;
}

void Controller::Bar0::write(uint64_t offset, uint64_t value, unsigned size) {
  if (offset < kRegisterBlockSize) {
    ctrl_.write_register(offset, value, size);
  } else if (offset < ctrl_.msix_table_offset_) {
    ctrl_.write_doorbell(offset, static_cast<uint32_t>(value));
  }
  // Between the MSI-X table and the PBA nothing is decoded (QEMU: unassigned).
}

uint8_t Controller::register_byte(uint64_t offset) const {
  const Registers& r = state_.regs;
  uint64_t dword_base = offset & ~uint64_t{3};
  uint64_t value = 0;
  switch (dword_base) {
    case sn::kRegCap: value = r.cap; break;
    case sn::kRegCap + 4: value = r.cap >> 32; break;
    case sn::kRegVs: value = r.vs; break;
    case sn::kRegIntms:
    case sn::kRegIntmc: value = r.intms; break;
    case sn::kRegCc: value = r.cc; break;
    case sn::kRegCsts: value = r.csts; break;
    case sn::kRegAqa: value = r.aqa; break;
    case sn::kRegAsq: value = r.asq; break;
    case sn::kRegAsq + 4: value = r.asq >> 32; break;
    case sn::kRegAcq: value = r.acq; break;
    case sn::kRegAcq + 4: value = r.acq >> 32; break;
    default: return 0;
  }
  return static_cast<uint8_t>(value >> (8 * (offset & 3)));
}

void Controller::write_register(uint64_t offset, uint64_t value, unsigned size) {
  // As QEMU: a register is matched by its exact offset whatever the width; narrow writes
  // store the bytes given (the rest of a 32-bit register becomes 0); others are ignored.
  uint64_t width_mask = size >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * size)) - 1;
  value &= width_mask;
  uint32_t value32 = static_cast<uint32_t>(value);
  Registers& r = state_.regs;
  switch (offset) {
    case sn::kRegIntms:
      // Undefined with MSI-X enabled; QEMU applies it anyway, and so do we.
      r.intms |= value32;
      update_intx();
      break;
    case sn::kRegIntmc:
      r.intms &= ~value32;
      update_intx();
      break;
    case sn::kRegCc: write_cc(value32); break;
    case sn::kRegAqa: r.aqa = value32; break;
    case sn::kRegAsq:
      r.asq = size >= 8 ? value : (r.asq & ~width_mask) | value;
      break;
    case sn::kRegAsq + 4: r.asq = (r.asq & 0xffffffffull) | uint64_t{value32} << 32; break;
    case sn::kRegAcq:
      r.acq = size >= 8 ? value : (r.acq & ~width_mask) | value;
      break;
    case sn::kRegAcq + 4: r.acq = (r.acq & 0xffffffffull) | uint64_t{value32} << 32; break;
    default: break;  // read-only or reserved (CAP, VS, CSTS, NSSR, CMB*): ignored
  }
}

bool Controller::enabled() const {
  return (state_.regs.cc & sn::kCcEn) && (state_.regs.csts & sn::kCstsRdy);
}

bool Controller::running() const {
  return enabled() && !(state_.regs.csts & sn::kCstsCfs) && !quiesced_;
}

uint32_t Controller::page_size() const {
  return 1u << (12 + ((state_.regs.cc >> sn::kCcMpsShift) & 0xf));
}

DmaLimits Controller::dma_limits() const {
  return DmaLimits{.page_size = page_size(),
                   .max_transfer = (uint64_t{1} << config_.mdts) * 4096,
                   .sgl_supported = true,
                   .bit_bucket_supported = true};
}

void Controller::write_cc(uint32_t value) {
  Registers& r = state_.regs;
  uint32_t old = r.cc;
  r.cc = value;
  uint32_t csts = r.csts;
  uint32_t shn = (value >> sn::kCcShnShift) & 3, old_shn = (old >> sn::kCcShnShift) & 3;
  constexpr uint32_t kShstMask = 3u << sn::kCstsShstShift;
  if (shn && !old_shn) {
    shutdown_namespaces();
    csts = (csts & ~kShstMask) | (sn::kShstComplete << sn::kCstsShstShift);
  } else if (!shn && old_shn) {
    csts &= ~kShstMask;
  }
  if ((value & sn::kCcEn) && !(old & sn::kCcEn)) {
    csts = start() ? sn::kCstsRdy : sn::kCstsCfs;
  } else if (!(value & sn::kCcEn) && (old & sn::kCcEn)) {
    reset_controller(false);  // clears CC and CSTS, as QEMU
    return;
  }
  r.csts = csts;
  if (running()) schedule_processing();
}

bool Controller::start() {
  const Registers& r = state_.regs;
  uint32_t mps = (r.cc >> sn::kCcMpsShift) & 0xf;
  uint32_t css = (r.cc >> sn::kCcCssShift) & 0x7;
  uint64_t page = uint64_t{1} << (12 + mps);
  uint32_t asqs = r.aqa & sn::kAqaAsqsMask, acqs = (r.aqa >> sn::kAqaAcqsShift) & 0xfff;
  uint64_t cap_css = (r.cap >> sn::kCapCssShift) & 0xff;
  uint32_t mpsmin = (r.cap >> sn::kCapMpsminShift) & 0xf;
  uint32_t mpsmax = (r.cap >> sn::kCapMpsmaxShift) & 0xf;
  const char* why = nullptr;
  if (state_.sqs[0] || state_.cqs[0]) why = "admin queues exist";
  else if (r.asq & (page - 1)) why = "ASQ not page aligned";
  else if (r.acq & (page - 1)) why = "ACQ not page aligned";
  else if (!(cap_css & (1u << css))) why = "CC.CSS not supported";
  else if (mps < mpsmin || mps > mpsmax) why = "CC.MPS outside CAP.MPSMIN..MPSMAX";
  else if (asqs == 0) why = "AQA.ASQS is 0";
  else if (acqs == 0) why = "AQA.ACQS is 0";
  else if ((r.cc >> sn::kCcAmsShift) & 0x7) why = "CC.AMS not supported";
  // Identify SQES/CQES allow exactly 64-byte SQEs and 16-byte CQEs (QEMU checks the same).
  else if (((r.cc >> sn::kCcIosqesShift) & 0xf) != 6) why = "CC.IOSQES is not 6 (64 bytes)";
  else if (((r.cc >> sn::kCcIocqesShift) & 0xf) != 4) why = "CC.IOCQES is not 4 (16 bytes)";
  if (why) {
    log(LogLevel::kInfo, "nvme: enable refused ({}): controller fatal status", why);
    return false;
  }
  auto cq = std::make_unique<CompletionQueue>();
  cq->id = 0;
  cq->base = r.acq;
  cq->size = acqs + 1;
  cq->irq_enabled = true;
  state_.cqs[0] = std::move(cq);
  auto sq = std::make_unique<SubmissionQueue>();
  sq->id = 0;
  sq->cq_id = 0;
  sq->base = r.asq;
  sq->size = asqs + 1;
  state_.sqs[0] = std::move(sq);
  state_.timestamp = Timestamp{.host_value_ms = 0, .set_at_ns = clock_.now_ns()};
  return true;
}

void Controller::shutdown_namespaces() {
  // Normal or abrupt shutdown: everything written so far reaches the image before SHST
  // says complete (QEMU drains and flushes synchronously too).
  for (auto& ns : namespaces_) {
    if (!ns) continue;
    (void)ns->backend().drain();
    ns->backend().submit(block::BlockRequest{.op = block::BlockOp::kFlush,
                                             .opaque = UINT64_MAX});
    (void)ns->backend().drain();
  }
}

void Controller::reset_controller(bool power_on) {
  // Let every block request finish first: nothing may write into a request we drop.
  resetting_ = true;
  for (auto& ns : namespaces_)
    if (ns) {
      auto drained = ns->backend().drain();
      if (!drained.ok())
        log(LogLevel::kWarn, "nvme: drain on reset failed: {}", drained.status().to_string());
    }
  resetting_ = false;

  for (size_t v = 0; v < coalescing_timers_.size(); ++v) {
    if (coalescing_timers_[v]) loop_.cancel_timer(coalescing_timers_[v]);
    coalescing_timers_[v] = 0;
    state_.vectors[v].aggregated = 0;
    state_.vectors[v].deadline_ns = 0;
  }
  for (auto& sq : state_.sqs) sq.reset();
  for (auto& cq : state_.cqs) cq.reset();
  state_.requests.clear();
  free_tags_.clear();
  state_.held.clear();
  state_.aer = AsyncEventState{};
  state_.shadow = ShadowDoorbells{};
  std::fill(rejected_shadow_tail_.begin(), rejected_shadow_tail_.end(), UINT32_MAX);
  state_.features.number_of_queues_locked = false;
  state_.next_sq_to_serve = 0;
  state_.regs.csts = 0;
  state_.regs.intms = 0;
  state_.regs.cc = 0;
  if (power_on) {
    state_.regs.aqa = 0;
    state_.regs.asq = 0;
    state_.regs.acq = 0;
    state_.features = Features{};
    for (auto& v : state_.vectors) v = VectorState{};
    for (auto& ns : state_.namespaces) ns.error_recovery = 0;
    state_.timestamp = Timestamp{.host_value_ms = 0, .set_at_ns = clock_.now_ns()};
  }
  update_intx();
}

void Controller::set_fatal() {
  log(LogLevel::kWarn, "nvme: controller fatal status (queue memory not accessible)");
  state_.regs.csts = sn::kCstsCfs;  // QEMU replaces CSTS: RDY drops too
}

void Controller::on_reset() { reset_controller(true); }

void Controller::on_config_write(uint32_t, uint32_t, unsigned) {
  // Bus mastering or MSI-X may just have been switched on: catch up.
  if (running()) {
    post_all_completions();
    schedule_processing();
  }
  update_intx();
}

void Controller::quiesce() {
  // First stop fetching: no SQE is fetched from here on. Then drain: requests already at a
  // backend complete (a write waiting for its flush submits it and the drain waits for that
  // too); their completions are posted where their CQ has room, in order, and wait in the
  // CQ's pending list where it has none. The CQE writes mark RAM dirty, so a migration's
  // final RAM pass carries them.
  // No interrupt is raised while the VM stops: the posts owe it (owe_interrupt) and
  // resume() raises it, here or on a destination. There is no fetched-but-not-submitted
  // stage, so afterwards no request is in flight, and nothing is posted until resume().
  // (QEMU keeps posting CQEs and raising interrupts from its main loop while stopped.)
  quiesced_ = true;
  quiescing_ = true;
  MonotonicClock wall;
  int64_t start = wall.now_ns();
  for (int round = 0; round < 8 && requests_in_flight() != 0; ++round) {
    for (auto& ns : namespaces_) {
      if (!ns || ns->backend().in_flight() == 0) continue;
      auto drained = ns->backend().drain();
      if (!drained.ok())
        log(LogLevel::kWarn, "nvme: drain at stop failed: {}", drained.status().to_string());
    }
  }
  last_drain_ns_ = wall.now_ns() - start;
  post_all_completions();  // whatever was already waiting and fits now
  quiescing_ = false;
}

void Controller::owe_interrupt(const CompletionQueue& cq, unsigned posted) {
  // MSI-X: counted on the CQ's vector as coalescing counts (state/vectors, so it migrates);
  // resume() raises every vector with a count. INTx: resume()'s update_intx() raises the
  // level the posted entries call for.
  if (!cq.irq_enabled || !msix_enabled() || cq.vector >= state_.vectors.size()) return;
  state_.vectors[cq.vector].aggregated += posted;
}

void Controller::resume() {
  quiesced_ = false;
  if (clock_rebase_) {
    // Continue the host's timestamp and the power-on time from where the source stopped.
    int64_t now = clock_.now_ns();
    state_.timestamp.set_at_ns = now - clock_rebase_->timestamp_elapsed_ns;
    state_.power_on_ns = now - clock_rebase_->powered_on_ns;
    clock_rebase_.reset();
  }
  if (!running()) return;
  // Commands held on a block error go first: nothing new is fetched before them.
  retry_held_requests();
  post_all_completions();
  if (msix_enabled()) {
    for (size_t v = 0; v < state_.vectors.size(); ++v)
      if (state_.vectors[v].aggregated && !state_.vectors[v].deadline_ns)
        notify_vector(static_cast<uint16_t>(v));
  }
  update_intx();
  process_events();
  schedule_processing();
}

}  // namespace ferry::nvme
