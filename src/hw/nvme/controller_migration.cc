// The NVMe controller's migration hooks, load-time validation and allowlist (see
// controller_migration.h for what travels and why).
#include "hw/nvme/controller_migration.h"

#include <array>
#include <set>

#include <fmt/format.h>

#include "hw/nvme/command_fields.h"
#include "hw/pci/capability_walk.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {

// An error about field `path` (relative to the description, e.g. "state/sqs[3]/size").
Status field_error(std::string_view path, std::string message) {
  Status st(ErrorCode::kCorrupt, std::move(message));
  return st.prepend_path(path);
}

std::string queue_path(std::string_view kind, size_t qid, std::string_view field) {
  return fmt::format("state/{}[{}]/{}", kind, qid, field);
}

}  // namespace

// ---- save ------------------------------------------------------------------------------------

Status ControllerMigration::pre_save(Controller& ctrl) {
  size_t in_flight = ctrl.requests_in_flight();
  if (in_flight != 0)
    return Error(ErrorCode::kFailedPrecondition,
                 "{} requests still in flight at the backend: the controller must be quiesced "
                 "(VM stopped) before its state is saved",
                 in_flight);
  // The INTx level is derived state (update_intx), not recomputed while the VM is stopped:
  // MSI-X enabled, or an INTMS or CQ head doorbell write, meanwhile can leave it asserted
  // with nothing calling for it. Such a level is dropped, so the stream is consistent
  // (validate()). A level the queues call for that is still low (completions posted while
  // quiescing) stays low: resume() raises it, no interrupt while the VM is stopped.
  if (ctrl.irq_level() && !intx_source(ctrl)) ctrl.set_irq(false);
  return {};
}

Status ControllerMigration::fill_namespaces(const Controller& ctrl, NamespaceTable& table) {
  table.entries.clear();
  for (uint32_t nsid = 0; nsid <= kMaxNamespaces; ++nsid) {
    const Namespace* ns = ctrl.find_namespace(nsid);
    if (nsid != 0 && !ns) continue;
    const NamespaceState& st = ctrl.state_.namespaces[nsid];
    table.entries.push_back(MigratedNamespace{.nsid = nsid,
                                              .lba_size = ns ? ns->lba_size() : 0,
                                              .lba_count = ns ? ns->lba_count() : 0,
                                              .error_recovery = st.error_recovery,
                                              .smart = st.smart});
  }
  table.count = static_cast<uint32_t>(table.entries.size());
  return {};
}

Status ControllerMigration::fill_clock(const Controller& ctrl, MigratedClock& clock) {
  int64_t now = ctrl.clock_.now_ns();
  clock.timestamp_host_value_ms = ctrl.state_.timestamp.host_value_ms;
  clock.timestamp_elapsed_ns = std::max<int64_t>(0, now - ctrl.state_.timestamp.set_at_ns);
  clock.powered_on_ns = std::max<int64_t>(0, now - ctrl.state_.power_on_ns);
  return {};
}

// ---- load ------------------------------------------------------------------------------------

Status ControllerMigration::pre_load(Controller& ctrl) {
  // Pointer slots and lists must be empty before a load fills them; whatever this
  // controller held is replaced by the stream (a destination has not run yet).
  ControllerState& s = ctrl.state_;
  if (ctrl.requests_in_flight() != 0)
    return Error(ErrorCode::kFailedPrecondition,
                 "the destination controller has {} requests in flight",
                 ctrl.requests_in_flight());
  for (auto& sq : s.sqs) sq.reset();
  for (auto& cq : s.cqs) cq.reset();
  s.requests.clear();
  ctrl.free_tags_.clear();
  s.held.clear();
  s.error_log.clear();  // an absent subsection means an empty log
  s.aer = AsyncEventState{};
  ctrl.clock_rebase_.reset();
  return {};
}

Status ControllerMigration::apply_namespaces(Controller& ctrl, const NamespaceTable& table) {
  // The namespace set and every geometry must be the destination's own configuration.
  std::set<uint32_t> seen;
  for (size_t i = 0; i < table.entries.size(); ++i) {
    const MigratedNamespace& e = table.entries[i];
    std::string path = fmt::format("namespaces/entries[{}]", i);
    if (e.nsid > kMaxNamespaces)
      return field_error(path + "/nsid",
                         fmt::format("nsid {} is above {}", e.nsid, kMaxNamespaces));
    if (!seen.insert(e.nsid).second)
      return field_error(path + "/nsid", fmt::format("namespace {} appears twice", e.nsid));
    if (e.nsid == 0) {
      if (e.lba_size != 0 || e.lba_count != 0)
        return field_error(path, fmt::format("the controller-wide entry (nsid 0) has a geometry "
                                             "({} x {} bytes)",
                                             e.lba_count, e.lba_size));
      continue;
    }
    const Namespace* ns = ctrl.find_namespace(e.nsid);
    if (!ns)
      return field_error(path + "/nsid",
                         fmt::format("namespace {} is attached on the source but not here",
                                     e.nsid));
    if (ns->lba_size() != e.lba_size)
      return field_error(path + "/lba_size",
                         fmt::format("namespace {} has {}-byte LBAs on the source, {} here",
                                     e.nsid, e.lba_size, ns->lba_size()));
    if (ns->lba_count() != e.lba_count)
      return field_error(path + "/lba_count",
                         fmt::format("namespace {} has {} LBAs on the source, {} here", e.nsid,
                                     e.lba_count, ns->lba_count()));
  }
  if (!seen.contains(0))
    return field_error("namespaces", "the controller-wide entry (nsid 0) is missing");
  for (uint32_t nsid = 1; nsid <= kMaxNamespaces; ++nsid)
    if (ctrl.find_namespace(nsid) && !seen.contains(nsid))
      return field_error("namespaces",
                         fmt::format("namespace {} is attached here but not on the source", nsid));
  for (const MigratedNamespace& e : table.entries) {
    NamespaceState& st = ctrl.state_.namespaces[e.nsid];
    st.error_recovery = e.error_recovery;
    st.smart = e.smart;
  }
  return {};
}

Status ControllerMigration::apply_clock(Controller& ctrl, const MigratedClock& clock) {
  // Clocks are read on the main loop only: the rebase happens in resume().
  ctrl.state_.timestamp.host_value_ms = clock.timestamp_host_value_ms & 0xffffffffffffull;
  ctrl.clock_rebase_ = Controller::ClockRebase{.timestamp_elapsed_ns = clock.timestamp_elapsed_ns,
                                               .powered_on_ns = clock.powered_on_ns};
  return {};
}

Status ControllerMigration::post_load(Controller& ctrl, int) {
  FERRY_RETURN_IF_ERROR(validate(ctrl));
  ControllerState& s = ctrl.state_;
  // Runtime state derived from what was loaded. No request travels (see the header), so
  // nothing is in flight and every tag is free.
  s.requests.clear();
  ctrl.free_tags_.clear();
  // Only the held commands are outstanding: each counts on its SQ until it is retried.
  for (auto& sq : s.sqs)
    if (sq) sq->in_flight = 0;
  for (const HeldRequest& h : s.held) ++s.sqs[h.sq_id]->in_flight;
  // A coalescing timer that was running cannot be carried (its deadline is the source's
  // clock): resume() raises the aggregated interrupt at once instead, which is early, never
  // lost.
  for (VectorState& v : s.vectors) v.deadline_ns = 0;
  return {};
}

std::optional<size_t> ControllerMigration::intx_source(const Controller& ctrl) {
  if (ctrl.msix_enabled()) return std::nullopt;
  const ControllerState& s = ctrl.state_;
  for (size_t qid = 0; qid < s.cqs.size(); ++qid) {
    const CompletionQueue* cq = s.cqs[qid].get();
    if (!cq || !cq->irq_enabled || cq->tail == cq->head) continue;
    if (cq->vector < 32 && (s.regs.intms >> cq->vector) & 1) continue;
    return qid;
  }
  return std::nullopt;
}

Status ControllerMigration::validate(const Controller& ctrl) {
  const ControllerState& s = ctrl.state_;
  const ControllerConfig& config = ctrl.config_;
  const Registers& r = s.regs;
  const size_t slots = s.sqs.size();

  // Registers the state below depends on.
  uint32_t mps = (r.cc >> sn::kCcMpsShift) & 0xf;
  uint32_t mpsmax = (r.cap >> sn::kCapMpsmaxShift) & 0xf;
  bool cc_enabled = r.cc & sn::kCcEn;
  bool ready = r.csts & sn::kCstsRdy;
  if (cc_enabled && mps > mpsmax)
    return field_error("state/regs/cc",
                       fmt::format("CC.MPS {} is above CAP.MPSMAX {}", mps, mpsmax));
  if (ready && !cc_enabled)
    return field_error("state/regs/csts", fmt::format("CSTS.RDY is set with CC.EN clear "
                                                      "(CC {:#x}, CSTS {:#x})",
                                                      r.cc, r.csts));
  const uint64_t page = uint64_t{1} << (12 + mps);
  const uint64_t mqes = r.cap & 0xffff;

  auto in_ram = [&](uint64_t addr, uint64_t len) {
    if (len == 0 || addr + len < addr) return false;
    std::array<memory::GuestRange, 1> range{memory::GuestRange{addr, len}};
    return ctrl.memory_.translate(range, SIZE_MAX).ok();
  };
  auto check_ring = [&](std::string_view kind, size_t qid, uint64_t base, uint32_t size,
                        uint32_t entry_bytes) -> Status {
    if (base & (page - 1))
      return field_error(queue_path(kind, qid, "base"),
                         fmt::format("address {:#x} is not aligned to the {}-byte page size "
                                     "(CC.MPS)",
                                     base, page));
    if (!in_ram(base, uint64_t{size} * entry_bytes))
      return field_error(queue_path(kind, qid, "base"),
                         fmt::format("queue memory [{:#x}, +{}) is not inside guest RAM", base,
                                     uint64_t{size} * entry_bytes));
    return {};
  };

  // Admin queues exist exactly while the controller is enabled (CSTS.CFS may follow).
  if (bool(s.sqs[0]) != bool(s.cqs[0]))
    return field_error("state/sqs[0]", fmt::format("admin SQ {} but admin CQ {}",
                                                   s.sqs[0] ? "present" : "absent",
                                                   s.cqs[0] ? "present" : "absent"));
  if (s.sqs[0] && !cc_enabled)
    return field_error("state/regs/cc",
                       fmt::format("admin queues exist but CC.EN is clear (CC {:#x})", r.cc));
  if (ready && !s.sqs[0])
    return field_error("state/sqs[0]", "the controller is ready (CSTS.RDY) without admin queues");

  // CQs.
  for (size_t qid = 0; qid < slots; ++qid) {
    const CompletionQueue* cq = s.cqs[qid].get();
    if (!cq) continue;
    if (cq->id != qid)
      return field_error(queue_path("cqs", qid, "id"),
                         fmt::format("queue id {} does not match its slot {}", cq->id, qid));
    uint64_t max_size = qid == 0 ? 4096 : mqes + 1;
    if (cq->size < 2 || cq->size > max_size)
      return field_error(queue_path("cqs", qid, "size"),
                         fmt::format("size {} is outside [2, {}]", cq->size, max_size));
    if (cq->head >= cq->size)
      return field_error(queue_path("cqs", qid, "head"),
                         fmt::format("head {} is not below size {}", cq->head, cq->size));
    if (cq->tail >= cq->size)
      return field_error(queue_path("cqs", qid, "tail"),
                         fmt::format("tail {} is not below size {}", cq->tail, cq->size));
    FERRY_RETURN_IF_ERROR(check_ring("cqs", qid, cq->base, cq->size, sn::kCqeSize));
    if (cq->vector >= config.msix_qsize)
      return field_error(queue_path("cqs", qid, "vector"),
                         fmt::format("MSI-X vector {} is not below the table size {}",
                                     cq->vector, config.msix_qsize));
    if (qid == 0) {
      if (!cq->irq_enabled || cq->vector != 0)
        return field_error(queue_path("cqs", qid, "irq_enabled"),
                           fmt::format("the admin CQ always interrupts on vector 0 (found "
                                       "irq_enabled {}, vector {})",
                                       cq->irq_enabled, cq->vector));
      if (cq->base != r.acq || cq->size != ((r.aqa >> sn::kAqaAcqsShift) & 0xfff) + 1)
        return field_error(queue_path("cqs", qid, "base"),
                           fmt::format("admin CQ ({:#x}, {} entries) differs from ACQ {:#x} / "
                                       "AQA {:#x}",
                                       cq->base, cq->size, r.acq, r.aqa));
    }
  }
  // SQs.
  for (size_t qid = 0; qid < slots; ++qid) {
    const SubmissionQueue* sq = s.sqs[qid].get();
    if (!sq) continue;
    if (sq->id != qid)
      return field_error(queue_path("sqs", qid, "id"),
                         fmt::format("queue id {} does not match its slot {}", sq->id, qid));
    if (sq->cq_id >= slots || !s.cqs[sq->cq_id])
      return field_error(queue_path("sqs", qid, "cq_id"),
                         fmt::format("completion queue {} does not exist", sq->cq_id));
    if ((qid == 0) != (sq->cq_id == 0))
      return field_error(queue_path("sqs", qid, "cq_id"),
                         fmt::format("SQ {} posts to CQ {}: only the admin SQ uses the admin CQ",
                                     qid, sq->cq_id));
    uint64_t max_size = qid == 0 ? 4096 : mqes + 1;
    if (sq->size < 2 || sq->size > max_size)
      return field_error(queue_path("sqs", qid, "size"),
                         fmt::format("size {} is outside [2, {}]", sq->size, max_size));
    if (sq->head >= sq->size)
      return field_error(queue_path("sqs", qid, "head"),
                         fmt::format("head {} is not below size {}", sq->head, sq->size));
    if (sq->tail >= sq->size)
      return field_error(queue_path("sqs", qid, "tail"),
                         fmt::format("tail {} is not below size {}", sq->tail, sq->size));
    FERRY_RETURN_IF_ERROR(check_ring("sqs", qid, sq->base, sq->size, sn::kSqeSize));
    if (qid == 0 && (sq->base != r.asq || sq->size != (r.aqa & sn::kAqaAsqsMask) + 1))
      return field_error(queue_path("sqs", qid, "base"),
                         fmt::format("admin SQ ({:#x}, {} entries) differs from ASQ {:#x} / "
                                     "AQA {:#x}",
                                     sq->base, sq->size, r.asq, r.aqa));
  }
  // Completions waiting for room: each from an SQ that posts to this CQ.
  for (size_t qid = 0; qid < slots; ++qid) {
    const CompletionQueue* cq = s.cqs[qid].get();
    if (!cq) continue;
    for (size_t i = 0; i < cq->pending.size(); ++i) {
      const PendingCompletion& c = cq->pending[i];
      std::string path = fmt::format("state/cqs[{}]/pending[{}]", qid, i);
      const SubmissionQueue* sq = c.sq_id < slots ? s.sqs[c.sq_id].get() : nullptr;
      if (!sq || sq->cq_id != qid)
        return field_error(path + "/sq_id",
                           fmt::format("completion for SQ {}, which does not post to CQ {}",
                                       c.sq_id, qid));
      if (c.status & 0x8000)
        return field_error(path + "/status",
                           fmt::format("status {:#x} has more than 15 bits", c.status));
    }
  }

  // Asynchronous events.
  const AsyncEventState& aer = s.aer;
  if (aer.outstanding.size() > size_t{config.aerl} + 1)
    return field_error("state/aer/outstanding",
                       fmt::format("{} AER commands outstanding, above AERL + 1 = {}",
                                   aer.outstanding.size(), size_t{config.aerl} + 1));
  if (!aer.outstanding.empty() && !s.sqs[0])
    return field_error("state/aer/outstanding",
                       fmt::format("{} AER commands outstanding without admin queues",
                                   aer.outstanding.size()));
  std::set<uint16_t> cids(aer.outstanding.begin(), aer.outstanding.end());
  if (cids.size() != aer.outstanding.size())
    return field_error("state/aer/outstanding",
                       "the same command identifier is outstanding twice");
  if (aer.queued.size() > config.aer_max_queued)
    return field_error("state/aer/queued",
                       fmt::format("{} events queued, above aer_max_queued {}",
                                   aer.queued.size(), config.aer_max_queued));

  // Interrupts, against the interrupt mode. MSI-X on: INTx is never asserted, and every
  // CQ's vector is an entry of the table (checked above). MSI-X off: INTx may be asserted
  // only while a CQ with interrupts enabled holds entries the host has not consumed on a
  // vector INTMS leaves unmasked (pre_save drops any other level). The reverse, such a CQ
  // with INTx low, is an interrupt still owed (completions posted while quiescing) and
  // resume() raises it. Not refused, because a guest reaches them: a CQ keeps a vector
  // above 0 after the host turns MSI-X off (Create I/O CQ refuses one only while MSI-X is
  // off, as QEMU; INTMS then masks by that vector, and a vector above 31 is unmaskable);
  // interrupts owed on a vector (state/vectors aggregated) in either mode; MSI-X pending
  // bits of unmasked vectors, which the PCI layer delivers on load (QEMU's msix_load).
  if (ctrl.irq_level()) {
    if (ctrl.msix_enabled())
      return field_error("parent_obj/irq_state", "INTx is asserted while MSI-X is enabled");
    if (!intx_source(ctrl))
      return field_error("parent_obj/irq_state",
                         fmt::format("INTx is asserted, but no completion queue with interrupts "
                                     "enabled holds unconsumed entries on a vector that INTMS "
                                     "{:#x} leaves unmasked",
                                     r.intms));
  }

  // Shadow doorbells: page-aligned buffers inside RAM covering every queue slot.
  if (s.shadow.enabled) {
    uint64_t bytes = 8ull * slots;
    using Buffer = std::pair<std::string_view, uint64_t>;
    for (auto [name, addr] : {Buffer{"doorbells", s.shadow.doorbells},
                              Buffer{"event_indexes", s.shadow.event_indexes}}) {
      std::string path = fmt::format("state/shadow/{}", name);
      if (addr & (page - 1))
        return field_error(path, fmt::format("address {:#x} is not aligned to the {}-byte page "
                                             "size",
                                             addr, page));
      if (!in_ram(addr, bytes))
        return field_error(path, fmt::format("buffer [{:#x}, +{}) is not inside guest RAM",
                                             addr, bytes));
    }
  }
  // Commands held on a block error: I/O commands of an existing I/O SQ, for a namespace
  // this controller has, no more per SQ than it can have outstanding.
  std::vector<uint32_t> held_per_sq(slots, 0);
  for (size_t i = 0; i < s.held.size(); ++i) {
    const HeldRequest& h = s.held[i];
    std::string path = fmt::format("state/held-requests/held[{}]", i);
    if (h.sq_id == 0 || h.sq_id >= slots || !s.sqs[h.sq_id])
      return field_error(path + "/sq_id",
                         fmt::format("held command for SQ {}, which is not an existing I/O "
                                     "submission queue",
                                     h.sq_id));
    uint8_t opcode = h.sqe[sn::kSqeOpcode];
    if (opcode != sn::kNvmRead && opcode != sn::kNvmWrite && opcode != sn::kNvmFlush &&
        opcode != sn::kNvmWriteZeroes && opcode != sn::kNvmCompare &&
        opcode != sn::kNvmDatasetManagement)
      return field_error(path + "/sqe",
                         fmt::format("opcode {:#04x} is not a command a block error can hold "
                                     "(read, write, flush, write zeroes, compare, dataset "
                                     "management)",
                                     opcode));
    uint32_t nsid = uint32_t{h.sqe[4]} | uint32_t{h.sqe[5]} << 8 | uint32_t{h.sqe[6]} << 16 |
                    uint32_t{h.sqe[7]} << 24;
    bool broadcast_flush = opcode == sn::kNvmFlush && nsid == kBroadcastNsid;
    if (!broadcast_flush && !ctrl.find_namespace(nsid))
      return field_error(path + "/sqe",
                         fmt::format("held command for namespace {}, which is not attached here",
                                     nsid));
    uint32_t count = ++held_per_sq[h.sq_id];
    if (count >= s.sqs[h.sq_id]->size)
      return field_error(path + "/sq_id",
                         fmt::format("{} commands held for SQ {}, which has only {} entries",
                                     count, h.sq_id, s.sqs[h.sq_id]->size));
  }
  if (s.next_sq_to_serve >= slots)
    return field_error("state/next_sq_to_serve",
                       fmt::format("{} is not below the {} queue slots", s.next_sq_to_serve,
                                   slots));
  return {};
}

// ---- allowlist -------------------------------------------------------------------------------

namespace {

using K = MigrationItemKind;

// Every property, capability and optional feature, classified. A property the schema
// gains without a line here blocks migration when used (and fails the allowlist test).
constexpr MigrationItem kAllowlist[] = {
    // -device nvme
    {K::kControllerProperty, "driver", true, "device model name"},
    {K::kControllerProperty, "id", true, "device name (local)"},
    {K::kControllerProperty, "bus", true, "ignored"},
    {K::kControllerProperty, "addr", true, "PCI address: part of the section idstr"},
    {K::kControllerProperty, "serial", true, "identify data; the destination is configured alike"},
    {K::kControllerProperty, "drive", true, "namespace 1: geometry checked on load"},
    {K::kControllerProperty, "max_ioqpairs", true, "queue slots: checked equal on load"},
    {K::kControllerProperty, "msix_qsize", true, "MSI-X table size: checked equal on load"},
    {K::kControllerProperty, "mdts", true, "checked equal on load"},
    {K::kControllerProperty, "aerl", true, "outstanding AER limit: checked equal on load"},
    {K::kControllerProperty, "aer_max_queued", true,
     "the stream carries at most 256 queued asynchronous events", kMaxMigratedEvents},
    {K::kControllerProperty, "mqes", true, "CAP.MQES: checked equal on load"},
    {K::kControllerProperty, "vsl", true, "checked equal on load"},
    {K::kControllerProperty, "logical_block_size", true, "namespace 1 LBA format: checked on load"},
    // -device nvme-ns
    {K::kNamespaceProperty, "driver", true, "device model name"},
    {K::kNamespaceProperty, "id", true, "device name (local)"},
    {K::kNamespaceProperty, "bus", true, "ignored"},
    {K::kNamespaceProperty, "drive", true, "geometry checked on load"},
    {K::kNamespaceProperty, "nsid", true, "namespace set checked on load"},
    {K::kNamespaceProperty, "logical_block_size", true, "LBA format checked on load"},
    // capabilities: PCI, the CAP register, identify data
    {K::kCapability, "pci-express", true, "config space (parent_obj)"},
    {K::kCapability, "power-management", true, "config space (parent_obj)"},
    {K::kCapability, "msix", true, "table and PBA (msix)"},
    {K::kCapability, "intx", true, "irq_state (parent_obj) and INTMS"},
    {K::kCapability, "contiguous-queues", true, "CAP.CQR: a rule for the host; queues migrate"},
    {K::kCapability, "nvm-command-set", true,
     "CC.CSS in state/regs; NVM commands are drained at stop, held ones migrate"},
    {K::kCapability, "io-command-sets", true,
     "CAP.CSS: only the NVM command set is offered; CC.CSS in state/regs"},
    {K::kCapability, "admin-only", true, "CAP.CSS: CC.CSS in state/regs"},
    {K::kCapability, "sgl", true, "per command: no state beyond the request"},
    {K::kCapability, "sgl-bit-bucket", true, "per command: no state beyond the request"},
    {K::kCapability, "flush-broadcast", true, "per command: no state beyond the request"},
    {K::kCapability, "extended-lba-formats", true, "LBA formats: checked equal on load"},
    {K::kCapability, "firmware-slots", true, "one read-only slot, no firmware update: no state"},
    {K::kCapability, "controller-memory-buffer", false,
     "a controller memory buffer is not migrated (QEMU cmb_size_mb)"},
    {K::kCapability, "persistent-memory-region", false,
     "a persistent memory region is not migrated (QEMU pmrdev)"},
    {K::kCapability, "sr-iov", false, "SR-IOV virtual functions are not migrated"},
    {K::kCapability, "zoned-namespaces", false, "zone state is not migrated"},
    {K::kCapability, "nvm-subsystem-reset", false, "not migrated (Ferry does not offer it)"},
    {K::kCapability, "weighted-round-robin", false, "not migrated (Ferry does not offer it)"},
    // optional features, log pages and commands
    {K::kFeature, "shadow-doorbells", true, "buffer addresses (state/shadow); values in RAM"},
    {K::kFeature, "interrupt-coalescing", true, "state/features and per-vector counts"},
    {K::kFeature, "interrupt-vector-configuration", true, "state/vectors"},
    {K::kFeature, "asynchronous-events", true, "state/aer: commands, queue, mask"},
    {K::kFeature, "namespace-attribute-notices", true,
     "events in state/aer; namespaces never change at run time"},
    {K::kFeature, "timestamp", true, "clock: elapsed since set, rebased at resume"},
    {K::kFeature, "smart-health", true, "namespaces: counters per namespace"},
    {K::kFeature, "error-information-log", true,
     "subsection nvme-state/error-log: entries, newest first, checked on load"},
    {K::kFeature, "commands-supported-effects-log", true, "derived from the configuration"},
    {K::kFeature, "extended-log-data", true, "per command: no state beyond the request"},
    {K::kFeature, "temperature-threshold", true, "state/features"},
    {K::kFeature, "volatile-write-cache", true, "state/features"},
    {K::kFeature, "error-recovery", true, "namespaces: per namespace"},
    {K::kFeature, "arbitration", true, "state/features (round robin position in state)"},
    {K::kFeature, "power-management", true, "state/features"},
    {K::kFeature, "number-of-queues", true, "state/features"},
    {K::kFeature, "write-atomicity", true, "always 0: no state"},
    {K::kFeature, "save-select", true, "nothing is saved across power cycles: no state"},
    {K::kFeature, "admin-command-set", true,
     "queues, features, identify and log data: state above or the configuration"},
    {K::kFeature, "dataset-management", true, "no state beyond the request"},
    {K::kFeature, "write-zeroes", true, "no state beyond the request"},
    {K::kFeature, "compare", true, "no state beyond the request"},
    {K::kFeature, "abort", true, "no state beyond the request"},
    {K::kFeature, "namespace-management", false, "not migrated (Ferry does not offer it)"},
    {K::kFeature, "format-nvm", false, "not migrated (Ferry does not offer it)"},
};

}  // namespace

std::string_view migration_item_kind_name(MigrationItemKind kind) {
  switch (kind) {
    case K::kControllerProperty: return "nvme property";
    case K::kNamespaceProperty: return "nvme-ns property";
    case K::kCapability: return "capability";
    case K::kFeature: return "feature";
  }
  return "item";
}

std::span<const MigrationItem> migration_allowlist() { return kAllowlist; }

namespace {

using P = ProbeKind;

// How each capability and feature row shows on a device (several ways for some). An
// advertised item found in none of these lines is unclassified: it blocks migration and
// fails the allowlist test.
using Probe = allowlist::Probe<ProbeKind>;
constexpr Probe kProbes[] = {
    {P::kPciCapability, 0x01, "power-management"},
    {P::kPciCapability, 0x10, "pci-express"},
    {P::kPciCapability, 0x11, "msix"},
    {P::kPciExtendedCapability, 0x0010, "sr-iov"},
    {P::kPciInterruptPin, 0, "intx"},
    // CAP: CQR, AMS (weighted round robin), NSSRS, CSS (NVM, I/O sets, admin only), PMRS, CMBS.
    {P::kCapRegisterBit, 16, "contiguous-queues"},
    {P::kCapRegisterBit, 17, "weighted-round-robin"},
    {P::kCapRegisterBit, 36, "nvm-subsystem-reset"},
    {P::kCapRegisterBit, 37, "nvm-command-set"},
    {P::kCapRegisterBit, 43, "io-command-sets"},
    {P::kCapRegisterBit, 44, "admin-only"},
    {P::kCapRegisterBit, 56, "persistent-memory-region"},
    {P::kCapRegisterBit, 57, "controller-memory-buffer"},
    // Identify Controller.
    {P::kIdentifyBit, identify_bit(92, 8), "namespace-attribute-notices"},  // OAES
    {P::kIdentifyBit, identify_bit(96, 15), "extended-lba-formats"},        // CTRATT
    {P::kIdentifyBit, identify_bit(256, 1), "format-nvm"},                  // OACS
    {P::kIdentifyBit, identify_bit(256, 3), "namespace-management"},
    {P::kIdentifyBit, identify_bit(256, 7), "sr-iov"},
    {P::kIdentifyBit, identify_bit(256, 8), "shadow-doorbells"},
    {P::kIdentifyBit, identify_bit(260, 0), "firmware-slots"},              // FRMW
    {P::kIdentifyBit, identify_bit(260, 1), "firmware-slots"},
    {P::kIdentifyBit, identify_bit(261, 0), "smart-health"},                // LPA
    {P::kIdentifyBit, identify_bit(261, 1), "commands-supported-effects-log"},
    {P::kIdentifyBit, identify_bit(261, 2), "extended-log-data"},
    {P::kIdentifyBit, identify_bit(520, 0), "compare"},                     // ONCS
    {P::kIdentifyBit, identify_bit(520, 2), "dataset-management"},
    {P::kIdentifyBit, identify_bit(520, 3), "write-zeroes"},
    {P::kIdentifyBit, identify_bit(520, 4), "save-select"},
    {P::kIdentifyBit, identify_bit(520, 6), "timestamp"},
    {P::kIdentifyBit, identify_bit(525, 0), "volatile-write-cache"},        // VWC
    {P::kIdentifyBit, identify_bit(525, 1), "flush-broadcast"},
    {P::kIdentifyBit, identify_bit(525, 2), "flush-broadcast"},
    {P::kIdentifyBit, identify_bit(536, 0), "sgl"},                         // SGLS
    {P::kIdentifyBit, identify_bit(536, 1), "sgl"},
    {P::kIdentifyBit, identify_bit(536, 16), "sgl-bit-bucket"},
    // Get Features.
    {P::kFeature, 0x01, "arbitration"},
    {P::kFeature, 0x02, "power-management"},
    {P::kFeature, 0x04, "temperature-threshold"},
    {P::kFeature, 0x05, "error-recovery"},
    {P::kFeature, 0x06, "volatile-write-cache"},
    {P::kFeature, 0x07, "number-of-queues"},
    {P::kFeature, 0x08, "interrupt-coalescing"},
    {P::kFeature, 0x09, "interrupt-vector-configuration"},
    {P::kFeature, 0x0a, "write-atomicity"},
    {P::kFeature, 0x0b, "asynchronous-events"},
    {P::kFeature, 0x0e, "timestamp"},
    // Get Log Page.
    {P::kLogPage, 0x01, "error-information-log"},
    {P::kLogPage, 0x02, "smart-health"},
    {P::kLogPage, 0x03, "firmware-slots"},
    {P::kLogPage, 0x04, "namespace-attribute-notices"},  // Changed Namespace List
    {P::kLogPage, 0x05, "commands-supported-effects-log"},
    // Commands Supported and Effects.
    {P::kAdminCommand, 0x00, "admin-command-set"},  // Delete I/O SQ
    {P::kAdminCommand, 0x01, "admin-command-set"},  // Create I/O SQ
    {P::kAdminCommand, 0x02, "admin-command-set"},  // Get Log Page
    {P::kAdminCommand, 0x04, "admin-command-set"},  // Delete I/O CQ
    {P::kAdminCommand, 0x05, "admin-command-set"},  // Create I/O CQ
    {P::kAdminCommand, 0x06, "admin-command-set"},  // Identify
    {P::kAdminCommand, 0x08, "abort"},
    {P::kAdminCommand, 0x09, "admin-command-set"},  // Set Features
    {P::kAdminCommand, 0x0a, "admin-command-set"},  // Get Features
    {P::kAdminCommand, 0x0c, "asynchronous-events"},
    {P::kAdminCommand, 0x0d, "namespace-management"},
    {P::kAdminCommand, 0x15, "namespace-management"},  // Namespace Attachment
    {P::kAdminCommand, 0x7c, "shadow-doorbells"},
    {P::kAdminCommand, 0x80, "format-nvm"},
    {P::kIoCommand, 0x00, "nvm-command-set"},  // Flush
    {P::kIoCommand, 0x01, "nvm-command-set"},  // Write
    {P::kIoCommand, 0x02, "nvm-command-set"},  // Read
    {P::kIoCommand, 0x05, "compare"},
    {P::kIoCommand, 0x08, "write-zeroes"},
    {P::kIoCommand, 0x09, "dataset-management"},
};

// Identify Controller fields (NVMe 1.4 figure 251, OCFS from 2.0) that announce optional
// capabilities and features.
constexpr IdentifyFeatureField kIdentifyFields[] = {
    {"CMIC", 76, 1, false},     {"OAES", 92, 4, false},     {"CTRATT", 96, 4, false},
    {"OACS", 256, 2, false},    {"FRMW", 260, 1, false},    {"LPA", 261, 1, false},
    {"AVSCC", 264, 1, false},   {"APSTA", 265, 1, false},   {"HMPRE", 272, 4, true},
    {"RPMBS", 312, 4, true},    {"DSTO", 318, 1, false},    {"KAS", 320, 2, true},
    {"HCTMA", 322, 2, false},   {"SANICAP", 328, 4, false}, {"ANACAP", 343, 1, false},
    {"ONCS", 520, 2, false},    {"FUSES", 522, 2, false},   {"FNA", 524, 1, false},
    {"VWC", 525, 1, false},     {"NVSCC", 530, 1, false},   {"OCFS", 534, 2, false},
    {"SGLS", 536, 4, false},
};

// CAP bits that announce options (the rest are sizes and timeouts): CQR, AMS, NSSRS, CSS,
// BPS, CPS, PMRS, CMBS, NSSS, CRMS.
constexpr bool optional_cap_bit(unsigned bit) {
  return (bit >= 16 && bit <= 18) || (bit >= 36 && bit <= 47) || (bit >= 56 && bit <= 60);
}

// Probes name capability and feature rows, never properties.
constexpr bool discoverable(MigrationItemKind kind) {
  return kind == K::kCapability || kind == K::kFeature;
}

constexpr allowlist::Table<MigrationItemKind, ProbeKind> kTable{
    kAllowlist, kProbes, &migration_item_kind_name, &discoverable};
static_assert(kTable.every_probe_names_a_row(), "a probe names no capability or feature row");

}  // namespace

std::span<const IdentifyFeatureField> identify_feature_fields() { return kIdentifyFields; }

std::vector<Advertised> identify_advertised(std::span<const uint8_t> identify) {
  std::vector<Advertised> out;
  for (const IdentifyFeatureField& f : kIdentifyFields) {
    if (f.offset + f.bytes > identify.size()) continue;
    auto value = static_cast<uint32_t>(load_le(identify, f.offset, f.bytes));
    if (f.nonzero_only) {
      if (value) out.push_back({P::kIdentifyBit, identify_bit(f.offset, 0)});
      continue;
    }
    for (unsigned bit = 0; bit < 8u * f.bytes; ++bit)
      if (value >> bit & 1) out.push_back({P::kIdentifyBit, identify_bit(f.offset, bit)});
  }
  return out;
}

const MigrationItem* find_migration_item(MigrationItemKind kind, std::string_view name) {
  return kTable.find(kind, name);
}

const MigrationItem* classify_advertised(ProbeKind kind, uint32_t id) {
  return kTable.classify(kind, id);
}

std::string describe_advertised(ProbeKind kind, uint32_t id) {
  switch (kind) {
    case P::kPciCapability: return fmt::format("PCI capability {:#04x}", id);
    case P::kPciExtendedCapability: return fmt::format("PCI Express extended capability {:#06x}", id);
    case P::kPciInterruptPin: return "PCI interrupt pin (INTx)";
    case P::kCapRegisterBit: return fmt::format("CAP register bit {}", id);
    case P::kIdentifyBit:
      for (const IdentifyFeatureField& f : kIdentifyFields)
        if (f.offset == id >> 8)
          return f.nonzero_only ? fmt::format("Identify Controller {} (nonzero)", f.name)
                                : fmt::format("Identify Controller {} bit {}", f.name, id & 0xff);
      return fmt::format("Identify Controller byte {} bit {}", id >> 8, id & 0xff);
    case P::kFeature: return fmt::format("feature {:#04x}", id);
    case P::kLogPage: return fmt::format("log page {:#04x}", id);
    case P::kAdminCommand: return fmt::format("admin command {:#04x}", id);
    case P::kIoCommand: return fmt::format("I/O command {:#04x}", id);
  }
  return "item";
}

std::vector<Advertised> ControllerMigration::advertised(const Controller& ctrl) {
  std::vector<Advertised> out;
  for (const pci::CapabilityEntry& cap : pci::walk_capabilities(ctrl))
    out.push_back({cap.extended ? P::kPciExtendedCapability : P::kPciCapability, cap.id});
  if (ctrl.interrupt_pin() != 0) out.push_back({P::kPciInterruptPin, 0});
  for (unsigned bit = 0; bit < 64; ++bit)
    if (optional_cap_bit(bit) && (ctrl.state_.regs.cap >> bit & 1))
      out.push_back({P::kCapRegisterBit, bit});
  std::array<uint8_t, sn::kIdentifySize> identify{};
  ctrl.identify_controller(identify);
  std::vector<Advertised> bits = identify_advertised(identify);
  out.insert(out.end(), bits.begin(), bits.end());
  return out;
}

std::vector<Advertised> advertised_capabilities(const Controller& ctrl) {
  return ControllerMigration::advertised(ctrl);
}

std::vector<std::string> migration_blockers(const Controller& ctrl, std::string_view where) {
  std::vector<Advertised> advertised = advertised_capabilities(ctrl);
  return kTable.advertised_blockers(std::span<const Advertised>(advertised),
                                    describe_advertised, where);
}

std::vector<std::string> migration_blockers(MigrationItemKind kind, const Opts& opts,
                                            std::string_view where) {
  return kTable.property_blockers(kind, opts, where);
}

}  // namespace ferry::nvme
