// The NVMe controller's migration hooks, load-time validation and allowlist (see
// controller_migration.h for what travels and why).
#include "hw/nvme/controller_migration.h"

#include <array>
#include <set>

#include <fmt/format.h>

#include "hw/nvme/command_fields.h"
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
  // INTx is never delivered while MSI-X is on; a level left from before MSI-X was enabled
  // while the VM was stopped is dropped so the stream is consistent (validate()).
  if (ctrl.msix_enabled() && ctrl.irq_level()) ctrl.set_irq(false);
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

  // Interrupts: INTx is never asserted while MSI-X is on (pre_save makes it so).
  if (ctrl.msix_enabled() && ctrl.irq_level())
    return field_error("parent_obj/irq_state",
                       "INTx is asserted while MSI-X is enabled");

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
    // capabilities
    {K::kCapability, "pci-express", true, "config space (parent_obj)"},
    {K::kCapability, "power-management", true, "config space (parent_obj)"},
    {K::kCapability, "msix", true, "table and PBA (msix)"},
    {K::kCapability, "intx", true, "irq_state (parent_obj) and INTMS"},
    {K::kCapability, "sgl", true, "per command: no state beyond the request"},
    {K::kCapability, "controller-memory-buffer", false,
     "a controller memory buffer is not migrated (QEMU cmb_size_mb)"},
    {K::kCapability, "persistent-memory-region", false,
     "a persistent memory region is not migrated (QEMU pmrdev)"},
    {K::kCapability, "sr-iov", false, "SR-IOV virtual functions are not migrated"},
    {K::kCapability, "zoned-namespaces", false, "zone state is not migrated"},
    // optional features and commands
    {K::kFeature, "shadow-doorbells", true, "buffer addresses (state/shadow); values in RAM"},
    {K::kFeature, "interrupt-coalescing", true, "state/features and per-vector counts"},
    {K::kFeature, "interrupt-vector-configuration", true, "state/vectors"},
    {K::kFeature, "asynchronous-events", true, "state/aer: commands, queue, mask"},
    {K::kFeature, "timestamp", true, "clock: elapsed since set, rebased at resume"},
    {K::kFeature, "smart-health", true, "namespaces: counters per namespace"},
    {K::kFeature, "temperature-threshold", true, "state/features"},
    {K::kFeature, "volatile-write-cache", true, "state/features"},
    {K::kFeature, "error-recovery", true, "namespaces: per namespace"},
    {K::kFeature, "arbitration", true, "state/features (round robin position in state)"},
    {K::kFeature, "power-management", true, "state/features"},
    {K::kFeature, "number-of-queues", true, "state/features"},
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

const MigrationItem* find_migration_item(MigrationItemKind kind, std::string_view name) {
  for (const MigrationItem& item : kAllowlist)
    if (item.kind == kind && item.name == name) return &item;
  return nullptr;
}

std::vector<std::string> migration_blockers(MigrationItemKind kind, const Opts& opts,
                                            std::string_view where) {
  std::vector<std::string> reasons;
  std::set<std::string, std::less<>> seen;
  for (const Opts::Entry& entry : opts.entries()) {
    if (!seen.insert(entry.key).second) continue;
    const MigrationItem* item = find_migration_item(kind, entry.key);
    if (!item) {
      reasons.push_back(fmt::format("{}: {} '{}' is not classified as migratable", where,
                                    migration_item_kind_name(kind), entry.key));
      continue;
    }
    if (!item->migratable) {
      reasons.push_back(fmt::format("{}: {} '{}' blocks migration ({})", where,
                                    migration_item_kind_name(kind), entry.key, item->note));
      continue;
    }
    if (item->migratable_up_to != UINT64_MAX) {
      std::optional<uint64_t> value = opts.number(entry.key);
      if (value && *value > item->migratable_up_to)
        reasons.push_back(fmt::format("{}: {} '{}={}' blocks migration ({})", where,
                                      migration_item_kind_name(kind), entry.key, *value,
                                      item->note));
    }
  }
  return reasons;
}

}  // namespace ferry::nvme
