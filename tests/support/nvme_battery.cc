#include "support/nvme_battery.h"

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <thread>

#include "guest/dma_memory.h"
#include "guest/nvme/controller.h"
#include "guest/pci.h"
#include "spec/nvme.h"

namespace ferry::testing {

namespace {

namespace sn = spec::nvme;
using guest::DmaMemory;
using guest::nvme::Completion;
using guest::nvme::Controller;
using guest::nvme::DataSegment;
using guest::nvme::Sqe;
using guest::nvme::Transfer;
namespace commands = guest::nvme::commands;
using Millis = std::chrono::milliseconds;

constexpr Millis kErrorCaseTimeout{2000};
constexpr uint64_t kDmaBase = 16 << 20;
constexpr uint32_t kIoEntries = 64;
constexpr uint16_t kIoQueue = 1;

uint64_t le(const std::vector<uint8_t>& data, size_t at, unsigned size) {
  uint64_t v = 0;
  for (unsigned i = 0; i < size && at + i < data.size(); ++i) v |= uint64_t{data[at + i]} << (8 * i);
  return v;
}

std::string hex(uint64_t v) { return fmt::format("0x{:x}", v); }

std::string status_value(const Completion& c) {
  return fmt::format("0x{:04x} {}", c.status, guest::nvme::describe_status(c.status));
}

class Battery {
 public:
  Battery(guest::GuestBus& bus, const BatteryOptions& options, DmaMemory& memory)
      : bus_(bus), options_(options), memory_(memory) {}

  std::vector<Observation> run();

 private:
  void add(std::string name, std::string value) {
    observations_.push_back({std::move(name), std::move(value)});
  }
  void add_error(std::string name, const Status& status) { add(std::move(name), "error: " + status.to_string()); }
  // Runs one command on `qid` and records its status (or why there is none).
  std::optional<Completion> record(const std::string& name, uint16_t qid, const Sqe& sqe,
                                   const Transfer& data = {}) {
    auto done = ctrl_->execute(qid, sqe, data, kErrorCaseTimeout);
    if (!done.ok()) {
      bool timeout = done.status().message().find("no completion") != std::string_view::npos;
      add(name, timeout ? "no completion" : "error: " + done.status().to_string());
      return std::nullopt;
    }
    add(name, status_value(*done));
    return *done;
  }
  Result<uint64_t> buffer(uint64_t bytes) { return memory_.allocate(bytes); }

  bool bring_up();
  void identify_controller();
  void identify_namespace();
  void features_and_logs();
  void queue_errors();
  void delete_sq_with_io();
  void io_errors();
  void data_round_trip();
  void async_events();
  void teardown();

  guest::GuestBus& bus_;
  const BatteryOptions& options_;
  DmaMemory& memory_;
  std::unique_ptr<Controller> ctrl_;
  std::vector<Observation> observations_;
  std::vector<uint8_t> id_ctrl_;
  uint64_t nsze_ = 0;
  unsigned lba_bytes_ = 512;
  unsigned mdts_ = 0;
  unsigned aerl_ = 0;
  bool io_queue_ = false;
};

bool Battery::bring_up() {
  guest::MmioWindow window = guest::MmioWindow::standard();
  auto ctrl = Controller::probe(bus_, memory_, window);
  if (!ctrl.ok()) {
    add_error("probe", ctrl.status());
    return false;
  }
  ctrl_ = std::move(*ctrl);
  const guest::PciFunction& fn = ctrl_->pci();
  add("pci.id", fmt::format("{:04x}:{:04x}", fn.vendor_id, fn.device_id));
  add("pci.class", fmt::format("0x{:06x}", fn.class_code));
  add("pci.revision", hex(fn.revision));
  for (const guest::PciBar& bar : ctrl_->bars()) {
    if (bar.size == 0) continue;
    add(fmt::format("pci.bar{}", bar.index),
        fmt::format("size 0x{:x}{}{}{}", bar.size, bar.io ? " io" : " mem",
                    bar.is_64bit ? " 64-bit" : "", bar.prefetchable ? " prefetchable" : ""));
  }
  auto subsystem = bus_.config_read(fn.slot, fn.function, guest::pci_config::kSubsystemVendorId, 4);
  add("pci.subsystem", subsystem.ok() ? hex(*subsystem) : "error");
  auto pin = bus_.config_read(fn.slot, fn.function, guest::pci_config::kInterruptPin, 1);
  add("pci.interrupt_pin", pin.ok() ? hex(*pin) : "error");
  auto express = guest::find_capability(bus_, fn, guest::pci_config::kCapExpress);
  add("pci.cap.express", express.ok() && express->has_value() ? "present" : "absent");
  auto pm = guest::find_capability(bus_, fn, guest::pci_config::kCapPowerManagement);
  add("pci.cap.power_management", pm.ok() && pm->has_value() ? "present" : "absent");

  auto cap_before = ctrl_->read64(sn::kRegCap);
  auto vs = ctrl_->read32(sn::kRegVs);
  auto csts_reset = ctrl_->read32(sn::kRegCsts);
  add("reg.csts.at_reset", csts_reset.ok() ? hex(*csts_reset) : "error");
  Status enabled = ctrl_->enable();
  if (!enabled.ok()) {
    add_error("enable", enabled);
    return false;
  }
  add("enable", "ok");
  uint64_t cap = ctrl_->cap();
  add("reg.cap", cap_before.ok() ? hex(*cap_before) : "error");
  add("reg.cap.mqes", hex(cap & 0xffff));
  add("reg.cap.cqr", hex((cap >> sn::kCapCqrShift) & 1));
  add("reg.cap.ams", hex((cap >> sn::kCapAmsShift) & 3));
  add("reg.cap.to", hex((cap >> sn::kCapToShift) & 0xff));
  add("reg.cap.dstrd", hex((cap >> sn::kCapDstrdShift) & 0xf));
  add("reg.cap.nssrs", hex((cap >> sn::kCapNssrsShift) & 1));
  add("reg.cap.css", hex((cap >> sn::kCapCssShift) & 0xff));
  add("reg.cap.mpsmin", hex((cap >> sn::kCapMpsminShift) & 0xf));
  add("reg.cap.mpsmax", hex((cap >> sn::kCapMpsmaxShift) & 0xf));
  add("reg.vs", vs.ok() ? hex(*vs) : "error");
  auto cc = ctrl_->read32(sn::kRegCc);
  add("reg.cc.enabled", cc.ok() ? hex(*cc) : "error");
  auto csts = ctrl_->read32(sn::kRegCsts);
  add("reg.csts.enabled", csts.ok() ? hex(*csts) : "error");
  auto aqa = ctrl_->read32(sn::kRegAqa);
  add("reg.aqa", aqa.ok() ? hex(*aqa) : "error");

  Status msix = ctrl_->enable_msix();
  if (!msix.ok()) {
    add_error("msix", msix);
  } else {
    const guest::MsixInfo& info = ctrl_->msix()->info();
    add("msix.table", fmt::format("{} vectors, BAR{} +0x{:x}", info.table_size, info.table_bar,
                                  info.table_offset));
    add("msix.pba", fmt::format("BAR{} +0x{:x}", info.pba_bar, info.pba_offset));
  }
  return true;
}

void Battery::identify_controller() {
  auto id = ctrl_->identify(sn::kCnsController);
  if (!id.ok()) {
    add_error("id_ctrl", id.status());
    return;
  }
  id_ctrl_ = *id;
  const auto& d = id_ctrl_;
  auto field = [&](const char* name, unsigned at, unsigned size) {
    add(fmt::format("id_ctrl.{}", name), hex(le(d, at, size)));
  };
  field("vid", sn::kIdCtrlVid, 2);
  field("ssvid", sn::kIdCtrlSsvid, 2);
  std::string serial(d.begin() + sn::kIdCtrlSn, d.begin() + sn::kIdCtrlSn + 20);
  add("id_ctrl.sn", "'" + serial + "'");
  field("rab", sn::kIdCtrlRab, 1);
  field("ieee", sn::kIdCtrlIeee, 3);
  field("cmic", sn::kIdCtrlCmic, 1);
  field("mdts", sn::kIdCtrlMdts, 1);
  field("cntlid", sn::kIdCtrlCntlid, 2);
  field("ver", sn::kIdCtrlVer, 4);
  field("oaes", sn::kIdCtrlOaes, 4);
  field("ctratt", sn::kIdCtrlCtratt, 4);
  field("cntrltype", sn::kIdCtrlCntrltype, 1);
  field("oacs", sn::kIdCtrlOacs, 2);
  field("acl", sn::kIdCtrlAcl, 1);
  field("aerl", sn::kIdCtrlAerl, 1);
  field("frmw", sn::kIdCtrlFrmw, 1);
  field("lpa", sn::kIdCtrlLpa, 1);
  field("elpe", sn::kIdCtrlElpe, 1);
  field("npss", sn::kIdCtrlNpss, 1);
  field("wctemp", sn::kIdCtrlWctemp, 2);
  field("cctemp", sn::kIdCtrlCctemp, 2);
  field("sqes", sn::kIdCtrlSqes, 1);
  field("cqes", sn::kIdCtrlCqes, 1);
  field("maxcmd", sn::kIdCtrlMaxcmd, 2);
  field("nn", sn::kIdCtrlNn, 4);
  field("oncs", sn::kIdCtrlOncs, 2);
  field("fuses", sn::kIdCtrlFuses, 2);
  field("fna", sn::kIdCtrlFna, 1);
  field("vwc", sn::kIdCtrlVwc, 1);
  field("sgls", sn::kIdCtrlSgls, 4);
  std::string subnqn;
  for (size_t i = sn::kIdCtrlSubnqn; i < sn::kIdCtrlSubnqn + 256 && d[i] != 0; ++i) {
    subnqn += static_cast<char>(d[i]);
  }
  add("id_ctrl.subnqn", "'" + subnqn + "'");
  field("psd0.mp", sn::kIdCtrlPsd0, 2);
  mdts_ = d[sn::kIdCtrlMdts];
  aerl_ = d[sn::kIdCtrlAerl];
}

void Battery::identify_namespace() {
  auto id = ctrl_->identify(sn::kCnsNamespace, 1);
  if (!id.ok()) {
    add_error("id_ns", id.status());
  } else {
    const auto& d = *id;
    auto field = [&](const char* name, unsigned at, unsigned size) {
      add(fmt::format("id_ns.{}", name), hex(le(d, at, size)));
    };
    field("nsze", sn::kIdNsNsze, 8);
    field("ncap", sn::kIdNsNcap, 8);
    field("nuse", sn::kIdNsNuse, 8);
    field("nsfeat", sn::kIdNsNsfeat, 1);
    field("nlbaf", sn::kIdNsNlbaf, 1);
    field("flbas", sn::kIdNsFlbas, 1);
    field("mc", sn::kIdNsMc, 1);
    field("dpc", sn::kIdNsDpc, 1);
    field("dps", sn::kIdNsDps, 1);
    field("nmic", sn::kIdNsNmic, 1);
    field("dlfeat", sn::kIdNsDlfeat, 1);
    field("lbaf0", sn::kIdNsLbaf0, 4);
    unsigned format = d[sn::kIdNsFlbas] & 0xf;
    uint32_t lbaf = static_cast<uint32_t>(le(d, sn::kIdNsLbaf0 + 4 * format, 4));
    lba_bytes_ = 1u << ((lbaf >> sn::kLbafLbadsShift) & 0xff);
    add("id_ns.lba_bytes", std::to_string(lba_bytes_));
    nsze_ = le(d, sn::kIdNsNsze, 8);
  }
  auto active = ctrl_->identify(sn::kCnsActiveNamespaces, 0);
  if (active.ok()) {
    add("id.active_ns", fmt::format("{} {}", le(*active, 0, 4), le(*active, 4, 4)));
  } else {
    add_error("id.active_ns", active.status());
  }
  auto descriptors = ctrl_->identify(sn::kCnsNamespaceDescriptors, 1);
  if (descriptors.ok()) {
    std::string types;
    for (size_t at = 0; at + 4 <= descriptors->size() && (*descriptors)[at] != 0;) {
      types += fmt::format("{}type {} len {}", types.empty() ? "" : ", ", (*descriptors)[at],
                           (*descriptors)[at + 1]);
      at += 4 + (*descriptors)[at + 1];
    }
    add("id.ns_descriptors", types.empty() ? "none" : types);
  } else {
    add_error("id.ns_descriptors", descriptors.status());
  }
  auto page = buffer(4096);
  if (!page.ok()) return;
  Transfer data = Transfer::prp(*page, 4096);
  record("identify.cns_unsupported_0x1f", 0, commands::identify(0x1f), data);
  record("identify.ns.nsid_0", 0, commands::identify(sn::kCnsNamespace, 0), data);
  record("identify.ns.nsid_inactive_2", 0, commands::identify(sn::kCnsNamespace, 2), data);
  record("identify.ns.nsid_above_nn", 0, commands::identify(sn::kCnsNamespace, 0x10000), data);
  record("identify.ns.nsid_broadcast", 0, commands::identify(sn::kCnsNamespace, 0xffffffff), data);
  Sqe sgl_identify = commands::identify(sn::kCnsController);
  record("identify.admin_with_sgl", 0, sgl_identify, Transfer::sgl_block(*page, 4096));
  // PRP1 with a non-zero offset: the identify data crosses into the page PRP2 names.
  auto two = buffer(8192);
  if (two.ok()) {
    Sqe offset_identify = commands::identify(sn::kCnsController);
    offset_identify.set_prp1(*two + 0x800).set_prp2(*two + 0x1000);
    auto c = record("identify.prp1_offset", 0, offset_identify);
    if (c && c->ok()) {
      std::vector<uint8_t> copy(4096);
      if (bus_.memory_read(*two + 0x800, copy).ok()) {
        add("identify.prp1_offset.data", copy == id_ctrl_ ? "matches" : "differs");
      }
    }
    (void)memory_.free(*two);
  }
  (void)memory_.free(*page);
}

void Battery::features_and_logs() {
  auto get = [&](const std::string& name, uint8_t fid, uint8_t select = 0) {
    auto c = record("get_features." + name, 0, commands::get_features(fid, select));
    if (c && c->ok()) add("get_features." + name + ".dw0", hex(c->dw0));
  };
  get("arbitration", sn::kFeatArbitration);
  get("power_management", sn::kFeatPowerManagement);
  get("temperature_threshold", sn::kFeatTemperatureThreshold);
  get("error_recovery", sn::kFeatErrorRecovery);
  get("volatile_write_cache", sn::kFeatVolatileWriteCache);
  get("number_of_queues", sn::kFeatNumberOfQueues);
  get("interrupt_coalescing", sn::kFeatInterruptCoalescing);
  get("interrupt_vector_config", sn::kFeatInterruptVectorConfig);
  get("write_atomicity", sn::kFeatWriteAtomicity);
  get("async_event_config", sn::kFeatAsyncEventConfig);
  get("number_of_queues.default", sn::kFeatNumberOfQueues, 1);
  get("arbitration.capabilities", sn::kFeatArbitration, 3);
  get("invalid_fid_0x00", 0x00);
  get("invalid_fid_0x7e", 0x7e);
  get("lba_range_type", sn::kFeatLbaRangeType);
  record("set_features.invalid_fid_0x7e", 0, commands::set_features(0x7e, 0));
  record("set_features.arbitration_save", 0, commands::set_features(sn::kFeatArbitration, 0, true));
  // Features the specification makes changeable and QEMU 7.2 refuses (Feature Not
  // Changeable); each is put back afterwards so the rest of the battery is unaffected.
  get("power_management.capabilities", sn::kFeatPowerManagement, 3);
  get("interrupt_coalescing.capabilities", sn::kFeatInterruptCoalescing, 3);
  get("interrupt_vector_config.capabilities", sn::kFeatInterruptVectorConfig, 3);
  record("set_features.arbitration", 0, commands::set_features(sn::kFeatArbitration, 0x03020103));
  get("arbitration.after_set", sn::kFeatArbitration);
  record("set_features.arbitration.restore", 0, commands::set_features(sn::kFeatArbitration, 0x7));
  record("set_features.power_management.ps_0", 0,
         commands::set_features(sn::kFeatPowerManagement, 0));
  record("set_features.power_management.ps_1_beyond_npss", 0,
         commands::set_features(sn::kFeatPowerManagement, 1));
  record("set_features.interrupt_coalescing", 0,
         commands::set_features(sn::kFeatInterruptCoalescing, 0x0a01));
  get("interrupt_coalescing.after_set", sn::kFeatInterruptCoalescing);
  record("set_features.interrupt_coalescing.restore", 0,
         commands::set_features(sn::kFeatInterruptCoalescing, 0));
  record("set_features.interrupt_vector_config", 0,
         commands::set_features(sn::kFeatInterruptVectorConfig, 1u << 16 | 1u));
  {
    auto c = record("get_features.interrupt_vector_config.iv1.after_set", 0,
                    commands::get_features(sn::kFeatInterruptVectorConfig).set_cdw(11, 1));
    if (c && c->ok()) add("get_features.interrupt_vector_config.iv1.after_set.dw0", hex(c->dw0));
  }
  record("set_features.interrupt_vector_config.restore", 0,
         commands::set_features(sn::kFeatInterruptVectorConfig, 1u));
  // Deallocated or Unwritten Logical Block Error (Error Recovery bit 16) on namespace 1.
  record("set_features.error_recovery.dulbe", 0,
         commands::set_features(sn::kFeatErrorRecovery, 1u << 16, false, 1));
  record("set_features.error_recovery.restore", 0,
         commands::set_features(sn::kFeatErrorRecovery, 0, false, 1));
  auto nq = record("set_features.number_of_queues", 0, commands::set_number_of_queues(4, 4));
  if (nq && nq->ok()) add("set_features.number_of_queues.dw0", hex(nq->dw0));
  record("set_features.number_of_queues.0xffff", 0,
         commands::set_features(sn::kFeatNumberOfQueues, 0xffffffff));

  auto page = buffer(4096);
  if (!page.ok()) return;
  auto log = [&](const std::string& name, uint8_t lid, uint32_t bytes, uint32_t nsid = 0xffffffff,
                 uint64_t offset = 0) {
    record("get_log_page." + name, 0, commands::get_log_page(lid, bytes, nsid, offset),
           Transfer::prp(*page, bytes));
  };
  log("error_information", sn::kLogErrorInformation, 64);
  log("smart", sn::kLogSmartHealth, 512);
  log("smart.nsid_1", sn::kLogSmartHealth, 512, 1);
  log("firmware_slot", sn::kLogFirmwareSlot, 512);
  log("changed_namespaces", sn::kLogChangedNamespaces, 4096);
  log("commands_supported", sn::kLogCommandsSupported, 4096);
  log("invalid_lid_0x7f", 0x7f, 512);
  log("smart.offset_beyond", sn::kLogSmartHealth, 512, 0xffffffff, 4096);
  auto smart = ctrl_->get_log_page(sn::kLogSmartHealth, 512);
  if (smart.ok()) {
    add("smart.critical_warning", hex((*smart)[sn::kSmartCriticalWarning]));
    add("smart.available_spare", hex((*smart)[sn::kSmartAvailableSpare]));
    add("smart.spare_threshold", hex((*smart)[sn::kSmartSpareThreshold]));
  }
  Sqe bad_admin;
  bad_admin.set_opcode(0x7f);
  record("admin.invalid_opcode_0x7f", 0, bad_admin);
  Sqe vendor;
  vendor.set_opcode(0xc0);
  record("admin.vendor_opcode_0xc0", 0, vendor);
  auto abort = record("admin.abort_unknown_cid", 0, commands::abort(0, 0x7777));
  if (abort && abort->ok()) add("admin.abort_unknown_cid.dw0", hex(abort->dw0));
  (void)memory_.free(*page);
}

void Battery::queue_errors() {
  uint32_t mqes = ctrl_->max_queue_entries();
  auto mem = buffer(uint64_t{65536} * sn::kSqeSize);  // big enough for any queue we try
  if (!mem.ok()) {
    add_error("queues.memory", mem.status());
    return;
  }
  uint64_t q = *mem;
  auto cq = [&](const std::string& name, uint16_t qid, uint32_t entries, bool ien, uint16_t iv,
                bool contiguous = true, uint64_t address = 0) {
    auto c = record("create_cq." + name, 0,
                    commands::create_io_cq(qid, entries, address ? address : q, ien, iv,
                                           contiguous));
    if (c && c->ok()) (void)ctrl_->execute(0, commands::delete_io_cq(qid), {}, kErrorCaseTimeout);
  };
  cq("qid_0", 0, 16, false, 0);
  cq("qid_above_granted_0x8000", 0x8000, 16, false, 0);
  cq("qid_0xffff", 0xffff, 16, false, 0);
  {
    Sqe one_entry = commands::create_io_cq(2, 1, q, false, 0);
    one_entry.set_cdw(10, 2);  // QSIZE 0: a queue of one entry
    auto c = record("create_cq.size_0", 0, one_entry);
    if (c && c->ok()) (void)ctrl_->execute(0, commands::delete_io_cq(2), {}, kErrorCaseTimeout);
  }
  if (mqes < 65536) cq("size_above_mqes", 2, mqes + 1, false, 0);
  cq("bad_vector_0x7ff", 2, 16, true, 0x7ff);
  cq("vector_without_ien", 2, 16, false, 0x7ff);
  cq("not_contiguous", 2, 16, false, 0, false);
  cq("address_0", 2, 16, false, 0, true, 0);
  cq("address_unaligned", 2, 16, false, 0, true, q + 0x200);

  auto sq = [&](const std::string& name, uint16_t qid, uint32_t entries, uint16_t cqid,
                bool contiguous = true) {
    auto c = record("create_sq." + name, 0, commands::create_io_sq(qid, entries, q, cqid, 0, contiguous));
    if (c && c->ok()) (void)ctrl_->execute(0, commands::delete_io_sq(qid), {}, kErrorCaseTimeout);
  };
  sq("missing_cq", 2, 16, 5);
  sq("cqid_0", 2, 16, 0);
  record("delete_sq.missing", 0, commands::delete_io_sq(9));
  record("delete_cq.missing", 0, commands::delete_io_cq(9));
  record("delete_sq.qid_0", 0, commands::delete_io_sq(0));
  record("delete_cq.qid_0", 0, commands::delete_io_cq(0));
  (void)memory_.free(q);

  // The real I/O queue pair, through the driver, interrupts on vector 1.
  Status created = ctrl_->create_io_queue_pair(kIoQueue, kIoEntries, {true, 1});
  add("create_io_queue_pair", created.ok() ? "ok" : "error: " + created.to_string());
  io_queue_ = created.ok();
  if (!io_queue_) return;
  const auto& layout = ctrl_->queue(kIoQueue)->layout();
  record("create_cq.existing", 0,
         commands::create_io_cq(kIoQueue, 16, layout.cq_address, false, 0));
  record("create_sq.existing", 0,
         commands::create_io_sq(kIoQueue, 16, layout.sq_address, kIoQueue));
  record("delete_cq.with_sq_attached", 0, commands::delete_io_cq(kIoQueue));
  record("create_sq.qid_0", 0, commands::create_io_sq(0, 16, layout.sq_address, kIoQueue));
  {
    auto extra = buffer(4096);
    if (extra.ok()) {
      if (mqes < 65536) {
        auto c = record("create_sq.size_above_mqes", 0,
                        commands::create_io_sq(2, mqes + 1, *extra, kIoQueue));
        if (c && c->ok()) (void)ctrl_->execute(0, commands::delete_io_sq(2));
      }
      // A second SQ sharing CQ 1.
      auto c = record("create_sq.sharing_cq", 0, commands::create_io_sq(2, 16, *extra, kIoQueue));
      if (c && c->ok()) record("delete_sq.sharing_cq", 0, commands::delete_io_sq(2));
      (void)memory_.free(*extra);
    }
  }
  record("set_features.number_of_queues.after_create", 0, commands::set_number_of_queues(8, 8));
  delete_sq_with_io();
}

void Battery::delete_sq_with_io() {
  // Delete I/O SQ while one of its reads may still be with the block layer: the delete
  // succeeds; whether the read's completion is posted first is timing (QEMU cancels the
  // request and drops completions not yet posted; Ferry waits for it and posts it).
  constexpr uint16_t kQid = 2;
  Status created = ctrl_->create_io_queue_pair(kQid, 16);
  if (!created.ok()) {
    add_error("delete_sq.with_io", created);
    return;
  }
  auto buf = buffer(4096);
  if (!buf.ok()) return;
  auto cid = ctrl_->submit(kQid, commands::read(1, 0, 4096 / lba_bytes_), Transfer::prp(*buf, 4096));
  if (!cid.ok()) {
    add_error("delete_sq.with_io", cid.status());
    return;
  }
  record("delete_sq.with_io", 0, commands::delete_io_sq(kQid));
  auto read = ctrl_->wait(kQid, *cid, Millis(300));
  add("delete_sq.with_io.read", read.ok() ? status_value(*read) : "no completion");
  record("delete_sq.with_io.again", 0, commands::delete_io_sq(kQid));
  record("delete_cq.after_its_sq", 0, commands::delete_io_cq(kQid));
  (void)memory_.free(*buf);
}

void Battery::io_errors() {
  if (!io_queue_) return;
  auto buf = buffer(2 << 20);
  if (!buf.ok()) return;
  uint64_t b = *buf;
  Transfer block = Transfer::prp(b, lba_bytes_);
  Sqe bad;
  bad.set_opcode(0x7f).set_nsid(1);
  record("io.invalid_opcode_0x7f", kIoQueue, bad);
  Sqe vendor;
  vendor.set_opcode(0x80).set_nsid(1);
  record("io.vendor_opcode_0x80", kIoQueue, vendor);
  record("io.read.nsid_0", kIoQueue, commands::read(0, 0, 1), block);
  record("io.read.nsid_inactive_2", kIoQueue, commands::read(2, 0, 1), block);
  record("io.read.nsid_broadcast", kIoQueue, commands::read(0xffffffff, 0, 1), block);
  record("io.read.nsid_above_nn", kIoQueue, commands::read(0x10000, 0, 1), block);
  record("io.flush.nsid_broadcast", kIoQueue, commands::flush(0xffffffff));
  record("io.read.lba_at_end", kIoQueue, commands::read(1, nsze_, 1), block);
  record("io.read.lba_crossing_end", kIoQueue, commands::read(1, nsze_ - 1, 2),
         Transfer::prp(b, 2 * lba_bytes_));
  record("io.write.lba_beyond_64bit", kIoQueue, commands::write(1, ~uint64_t{0}, 1), block);
  record("io.read.last_lba", kIoQueue, commands::read(1, nsze_ - 1, 1), block);
  record("io.write_zeroes.lba_at_end", kIoQueue, commands::write_zeroes(1, nsze_, 1));
  if (mdts_ != 0) {
    uint64_t limit = uint64_t{4096} << mdts_;
    uint32_t blocks = static_cast<uint32_t>(limit / lba_bytes_ + 1);
    if (uint64_t{blocks} * lba_bytes_ <= (2u << 20) && blocks <= 65536) {
      record("io.read.mdts_exceeded", kIoQueue, commands::read(1, 0, blocks),
             Transfer::prp(b, uint64_t{blocks} * lba_bytes_));
      record("io.read.mdts_exact", kIoQueue, commands::read(1, 0, blocks - 1),
             Transfer::prp(b, uint64_t{blocks - 1} * lba_bytes_));
    }
  }
  // A PRP list entry with an offset (only PRP1 may have one).
  {
    auto list = buffer(4096);
    if (list.ok()) {
      uint64_t entries[2] = {b + 0x1000 + 0x200, b + 0x2000};
      std::vector<uint8_t> raw(16);
      for (int i = 0; i < 16; ++i) raw[i] = static_cast<uint8_t>(entries[i / 8] >> (8 * (i % 8)));
      (void)bus_.memory_write(*list, raw);
      Sqe read = commands::read(1, 0, 3 * 4096 / lba_bytes_);
      read.set_prp1(b).set_prp2(*list);
      record("io.read.prp_list_entry_offset", kIoQueue, read);
      (void)memory_.free(*list);
    }
  }
  {
    Sqe read = commands::read(1, 0, 1);
    read.set_prp1(b + 2);  // not dword aligned
    record("io.read.prp1_not_dword_aligned", kIoQueue, read);
    Sqe two_pages = commands::read(1, 0, 8192 / lba_bytes_);
    two_pages.set_prp1(b).set_prp2(b + 0x1100);  // PRP2 with an offset
    record("io.read.prp2_offset", kIoQueue, two_pages);
  }
  // SGL cases.
  {
    Sqe read = commands::read(1, 0, 1);
    read.set_psdt(sn::kPsdtSglMptrContiguous);
    read.set_sgl1(guest::nvme::sgl_descriptor(b, lba_bytes_, 0xe));
    record("io.read.sgl_descriptor_type_invalid", kIoQueue, read);
    Sqe subtype = commands::read(1, 0, 1);
    subtype.set_psdt(sn::kPsdtSglMptrContiguous);
    subtype.set_sgl1(guest::nvme::sgl_descriptor(b, lba_bytes_, sn::kSglDataBlock, 0x1));
    record("io.read.sgl_subtype_offset", kIoQueue, subtype);
    Sqe psdt3 = commands::read(1, 0, 1);
    psdt3.set_psdt(3);
    record("io.read.psdt_reserved", kIoQueue, psdt3, Transfer{});
  }
  Transfer short_sgl = Transfer::sgl_block(b, lba_bytes_ / 2);
  record("io.read.sgl_data_too_short", kIoQueue, commands::read(1, 0, 1), short_sgl);
  Transfer long_sgl = Transfer::sgl_block(b, 2 * lba_bytes_);
  record("io.read.sgl_data_too_long", kIoQueue, commands::read(1, 0, 1), long_sgl);
  Transfer bucket_write{Transfer::Kind::kSgl,
                        {{b, lba_bytes_ / 2}, {0, lba_bytes_ / 2, true}},
                        {}};
  record("io.write.sgl_bit_bucket", kIoQueue, commands::write(1, 0, 1), bucket_write);
  record("io.read.sgl_bit_bucket", kIoQueue, commands::read(1, 0, 1), bucket_write);
  {
    Transfer single_list = Transfer::sgl_block(b, lba_bytes_);
    single_list.sgl.always_use_segment_list = true;
    record("io.read.sgl_last_segment_one_block", kIoQueue, commands::read(1, 0, 1), single_list);
    Transfer two{Transfer::Kind::kSgl, {{b, lba_bytes_ / 2}, {b + 0x10000, lba_bytes_ / 2}}, {}};
    record("io.read.sgl_last_segment_two_blocks", kIoQueue, commands::read(1, 0, 1), two);
  }
  {
    Transfer chained{Transfer::Kind::kSgl, {}, {}};
    chained.sgl.max_descriptors_per_segment = 2;
    for (unsigned i = 0; i < 4; ++i) chained.segments.push_back({b + 0x10000 * i, lba_bytes_});
    // SQE -> Segment -> Segment -> Last Segment: QEMU 7.2 re-reads the descriptor that led to
    // a segment after overwriting its buffer with that segment, and refuses this chain.
    record("io.read.sgl_three_segments", kIoQueue, commands::read(1, 0, 4), chained);
    chained.segments.pop_back();
    record("io.read.sgl_two_segments", kIoQueue, commands::read(1, 0, 3), chained);
    // A Segment descriptor whose length is not a multiple of 16.
    auto seg = buffer(4096);
    if (seg.ok()) {
      auto d = guest::nvme::sgl_descriptor(b, lba_bytes_, sn::kSglDataBlock);
      (void)bus_.memory_write(*seg, d);
      Sqe read = commands::read(1, 0, 1);
      read.set_psdt(sn::kPsdtSglMptrContiguous);
      read.set_sgl1(guest::nvme::sgl_descriptor(*seg, 15, sn::kSglLastSegment));
      record("io.read.sgl_segment_length_not_16", kIoQueue, read);
      (void)memory_.free(*seg);
    }
  }
  // DMA to guest-physical addresses with nothing behind them.
  record("io.read.dma_unbacked", kIoQueue, commands::read(1, 0, 1),
         Transfer::prp(options_.unbacked_address, lba_bytes_));
  record("io.write.dma_unbacked", kIoQueue, commands::write(1, 0, 1),
         Transfer::prp(options_.unbacked_address, lba_bytes_));
  Sqe list_unbacked = commands::read(1, 0, 3 * 4096 / lba_bytes_);
  list_unbacked.set_prp1(b).set_prp2(options_.unbacked_address);
  record("io.read.prp_list_unbacked", kIoQueue, list_unbacked);
  record("io.flush", kIoQueue, commands::flush(1));
  record("io.write_zeroes", kIoQueue, commands::write_zeroes(1, 8, 8));
  record("io.dsm_deallocate_none", kIoQueue, [] {
    Sqe s;
    s.set_opcode(sn::kNvmDatasetManagement).set_nsid(1).set_cdw(10, 0).set_cdw(11, 0);
    return s;
  }(), Transfer::prp(b, 16));
  // The Error Information log after the data transfer errors above: the newest entry.
  auto log = ctrl_->get_log_page(sn::kLogErrorInformation, 64);
  if (log.ok()) {
    add("error_log.newest", fmt::format("count {} sqid 0x{:x} cid-set {} status 0x{:x} nsid 0x{:x}",
                                        le(*log, 0, 8), le(*log, 8, 2), le(*log, 10, 2) != 0,
                                        le(*log, 12, 2) >> 1, le(*log, 24, 4)));
  } else {
    add_error("error_log.newest", log.status());
  }
  (void)memory_.free(b);
}

void Battery::data_round_trip() {
  if (!io_queue_) return;
  constexpr uint64_t kBytes = 64 << 10;
  constexpr uint64_t kLba = 100;
  auto out = buffer(kBytes);
  auto in = buffer(kBytes + 4096);
  if (!out.ok() || !in.ok()) return;
  std::vector<uint8_t> pattern(kBytes);
  uint32_t x = 0x12345678;
  for (auto& byte : pattern) {
    x = x * 1103515245 + 12345;
    byte = static_cast<uint8_t>(x >> 24);
  }
  uint32_t blocks = static_cast<uint32_t>(kBytes / lba_bytes_);
  (void)bus_.memory_write(*out, pattern);
  // Write through a PRP list (64 KiB = 16 pages), read back through a chained SGL into
  // an offset buffer.
  auto w = record("data.write_prp_list", kIoQueue, commands::write(1, kLba, blocks),
                  Transfer::prp(*out, kBytes));
  record("data.flush", kIoQueue, commands::flush(1));
  Transfer sgl{Transfer::Kind::kSgl, {}, {}};
  sgl.sgl.max_descriptors_per_segment = 5;  // SQE -> Segment -> Last Segment
  for (uint64_t at = 0; at < kBytes; at += 8192) sgl.segments.push_back({*in + 0x40 + at, 8192});
  auto r = record("data.read_sgl", kIoQueue, commands::read(1, kLba, blocks), sgl);
  if (w && w->ok() && r && r->ok()) {
    std::vector<uint8_t> back(kBytes);
    (void)bus_.memory_read(*in + 0x40, back);
    add("data.read_matches_written", back == pattern ? "yes" : "no");
    std::ifstream image(options_.image_path, std::ios::binary);
    std::vector<uint8_t> on_disk(kBytes);
    image.seekg(static_cast<std::streamoff>(kLba * lba_bytes_));
    image.read(reinterpret_cast<char*>(on_disk.data()), static_cast<std::streamsize>(kBytes));
    add("data.image_matches_written", image && on_disk == pattern ? "yes" : "no");
  }
  // Compare: equal data succeeds, different data fails.
  if (le(id_ctrl_, sn::kIdCtrlOncs, 2) & sn::kOncsCompare) {
    record("data.compare_equal", kIoQueue, guest::nvme::commands::io(sn::kNvmCompare, 1, kLba, 1),
           Transfer::prp(*out, lba_bytes_));
    record("data.compare_different", kIoQueue,
           guest::nvme::commands::io(sn::kNvmCompare, 1, kLba + 1, 1),
           Transfer::prp(*out, lba_bytes_));
  }
  // Interrupts: vector 1 fired for the I/O queue's completions.
  auto word = ctrl_->interrupt_word(1);
  add("msix.vector1_fired", word.ok() ? (*word != 0 ? "yes" : "no") : "error");
  (void)memory_.free(*out);
  (void)memory_.free(*in);
}

void Battery::async_events() {
  // AERL is 0's based: AERL + 1 requests may be outstanding; one more is refused.
  std::vector<uint16_t> cids;
  for (unsigned i = 0; i <= aerl_ + 1; ++i) {
    auto cid = ctrl_->submit(0, commands::async_event_request());
    if (!cid.ok()) {
      add_error("aer.submit", cid.status());
      return;
    }
    cids.push_back(*cid);
  }
  auto over = ctrl_->wait(0, cids.back(), kErrorCaseTimeout);
  add("aer.over_limit", over.ok() ? status_value(*over) : "no completion");
  auto early = ctrl_->wait(0, cids.front(), Millis(200));
  add("aer.first_outstanding", early.ok() ? "completed " + status_value(*early) : "outstanding");
  if (!io_queue_) return;
  // Events complete whichever AER command the controller picks (QEMU and Ferry take the
  // newest): wait for any of those still outstanding.
  std::vector<uint16_t> waiting(cids.begin(), cids.end() - 1);
  auto next_event = [&]() -> std::string {
    // Generous: only a step where no event comes (QEMU's CQ head case) waits it out, and a
    // loaded machine must not turn a late event into a difference.
    auto deadline = std::chrono::steady_clock::now() + Millis(5000);
    do {
      for (size_t i = 0; i < waiting.size(); ++i) {
        auto done = ctrl_->wait(0, waiting[i], Millis(0));
        if (!done.ok()) continue;
        waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(i));
        return fmt::format("{} dw0 {}", status_value(*done), hex(done->dw0));
      }
      std::this_thread::sleep_for(Millis(5));
    } while (std::chrono::steady_clock::now() < deadline);
    return "no event";
  };
  auto read_error_log = [&](const std::string& name) {
    auto page = buffer(4096);
    if (!page.ok()) return;
    record(name, 0, commands::get_log_page(sn::kLogErrorInformation, 64, 0xffffffff),
           Transfer::prp(*page, 64));
    (void)memory_.free(*page);
  };
  // An SQ tail beyond the queue size: an error asynchronous event (invalid doorbell value).
  Status rung = ctrl_->write_sq_doorbell(kIoQueue, kIoEntries + 5);
  if (!rung.ok()) return;
  add("aer.invalid_sq_doorbell", next_event());
  auto csts = ctrl_->read32(sn::kRegCsts);
  add("aer.invalid_sq_doorbell.csts", csts.ok() ? hex(*csts) : "error");
  read_error_log("aer.error_log_read");  // unmasks error events
  // A CQ head doorbell that moves past the tail (consumes entries never posted): an invalid
  // doorbell value for Ferry, accepted by QEMU 7.2 (which checks the queue size only).
  guest::nvme::QueuePair* q = ctrl_->queue(kIoQueue);
  if (!q) return;
  Status past = ctrl_->write_cq_doorbell(kIoQueue, (q->cq_head() + 3) % kIoEntries);
  if (!past.ok()) return;
  add("aer.cq_head_past_tail", next_event());
  // Put the head back where the host really is.
  (void)ctrl_->write_cq_doorbell(kIoQueue, q->cq_head());
  read_error_log("aer.error_log_read.after_cq_head");
}

void Battery::teardown() {
  auto csts = ctrl_->read32(sn::kRegCsts);
  add("teardown.csts", csts.ok() ? hex(*csts) : "error");
  Status shut = ctrl_->shutdown();
  add("shutdown", shut.ok() ? "ok" : "error: " + shut.to_string());
  auto after = ctrl_->read32(sn::kRegCsts);
  add("shutdown.csts", after.ok() ? hex(*after) : "error");
  Status disabled = ctrl_->disable();
  add("disable", disabled.ok() ? "ok" : "error: " + disabled.to_string());
}

std::vector<Observation> Battery::run() {
  if (bring_up()) {
    identify_controller();
    identify_namespace();
    features_and_logs();
    queue_errors();
    io_errors();
    data_round_trip();
    async_events();
    teardown();
  }
  return std::move(observations_);
}

}  // namespace

std::vector<Observation> run_battery(guest::GuestBus& bus, const BatteryOptions& options) {
  auto memory = DmaMemory::create(kDmaBase, options.ram_bytes);
  if (!memory.ok()) return {{"dma_memory", "error: " + memory.status().to_string()}};
  Battery battery(bus, options, *memory);
  return battery.run();
}

}  // namespace ferry::testing
