// Admin commands: dispatch, queue creation and deletion, Identify, Abort, Asynchronous
// Event Request, Doorbell Buffer Config; and the data transfer helpers they share.
// Statuses and their order of checks follow QEMU 7.2 (verified over qtest).
#include <algorithm>
#include <cstring>

#include "hw/nvme/command_fields.h"
#include "hw/nvme/controller.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {

void put_padded(std::span<uint8_t> out, size_t at, std::string_view text, size_t width) {
  for (size_t i = 0; i < width; ++i) out[at + i] = i < text.size() ? text[i] : ' ';
}

bool admin_opcode_supported(uint8_t opcode) {
  switch (opcode) {
    case sn::kAdminDeleteSq:
    case sn::kAdminCreateSq:
    case sn::kAdminGetLogPage:
    case sn::kAdminDeleteCq:
    case sn::kAdminCreateCq:
    case sn::kAdminIdentify:
    case sn::kAdminAbort:
    case sn::kAdminSetFeatures:
    case sn::kAdminGetFeatures:
    case sn::kAdminAsyncEventRequest:
    case sn::kAdminDoorbellBufferConfig: return true;
    default: return false;
  }
}

// Firmware revision: the one QEMU 7.2 (Debian bookworm) reports, so identify data match.
constexpr std::string_view kFirmwareRevision = "7.2.22";

}  // namespace

uint16_t Controller::execute_admin(Request& request) {
  uint8_t opcode = request.sqe[sn::kSqeOpcode];
  uint8_t flags = request.sqe[sn::kSqeFlags];
  if (!admin_opcode_supported(opcode)) return sn::kInvalidOpcode | kDnr;
  // SGLs shall not be used for admin commands over PCIe.
  if ((flags >> sn::kPsdtShift) != sn::kPsdtPrp) return sn::kInvalidField | kDnr;
  if (flags & 0x3) return sn::kInvalidField;  // fused operations are not supported
  switch (opcode) {
    case sn::kAdminDeleteSq: return admin_delete_sq(request);
    case sn::kAdminCreateSq: return admin_create_sq(request);
    case sn::kAdminGetLogPage: return admin_get_log_page(request);
    case sn::kAdminDeleteCq: return admin_delete_cq(request);
    case sn::kAdminCreateCq: return admin_create_cq(request);
    case sn::kAdminIdentify: return admin_identify(request);
    case sn::kAdminAbort: return admin_abort(request);
    case sn::kAdminSetFeatures: return admin_set_features(request);
    case sn::kAdminGetFeatures: return admin_get_features(request);
    case sn::kAdminAsyncEventRequest: {
      uint16_t status = admin_async_event_request(request);
      if (status == kNoCompletion) release_request(request);  // the CID waits in aer state
      return status;
    }
    case sn::kAdminDoorbellBufferConfig: return admin_doorbell_buffer_config(request);
    default: return sn::kInvalidOpcode | kDnr;
  }
}

// ---- data transfer ----------------------------------------------------------------------------

uint16_t Controller::send_to_host(const Request& request, std::span<const uint8_t> data) {
  MapResult mapped = map_command_data(dma(), request.sqe, data.size(), false, dma_limits());
  if (mapped.status) return mapped.status;
  return transfer_status(dma::copy_to_guest(dma(), mapped.map, data));
}

uint16_t Controller::receive_from_host(const Request& request, std::span<uint8_t> data) {
  MapResult mapped = map_command_data(dma(), request.sqe, data.size(), true, dma_limits());
  if (mapped.status) return mapped.status;
  return transfer_status(dma::copy_from_guest(dma(), mapped.map, data));
}

// ---- queues -----------------------------------------------------------------------------------

uint16_t Controller::admin_create_cq(const Request& request) {
  uint32_t dw10 = cdw(request, 10), dw11 = cdw(request, 11);
  uint16_t qid = dw10 & 0xffff;
  uint32_t qsize = dw10 >> 16;  // 0's based
  uint16_t vector = static_cast<uint16_t>(dw11 >> sn::kCqIvShift);
  uint64_t base = sqe_u64(request, sn::kSqePrp1);
  uint64_t mqes = state_.regs.cap & 0xffff;
  if (qid == 0 || qid > config_.max_ioqpairs || state_.cqs[qid])
    return sn::kInvalidQueueIdentifier | kDnr;
  if (qsize == 0 || qsize > mqes) return sn::kInvalidQueueSize | kDnr;
  if (base & (page_size() - 1)) return sn::kPrpOffsetInvalid | kDnr;
  if (!msix_enabled() && vector != 0) return sn::kInvalidInterruptVector | kDnr;
  if (vector >= config_.msix_qsize) return sn::kInvalidInterruptVector | kDnr;
  if (!(dw11 & sn::kQueuePhysicallyContiguous)) return sn::kInvalidField | kDnr;
  auto cq = std::make_unique<CompletionQueue>();
  cq->id = qid;
  cq->base = base;
  cq->size = qsize + 1;
  cq->vector = vector;
  cq->irq_enabled = dw11 & sn::kCqInterruptsEnabled;
  state_.cqs[qid] = std::move(cq);
  state_.features.number_of_queues_locked = true;
  if (state_.shadow.enabled) {
    (void)dma_write_u32(state_.shadow.doorbells + 8ull * qid + 4, 0);
  }
  return sn::kSuccess;
}

uint16_t Controller::admin_create_sq(const Request& request) {
  uint32_t dw10 = cdw(request, 10), dw11 = cdw(request, 11);
  uint16_t qid = dw10 & 0xffff;
  uint32_t qsize = dw10 >> 16;
  uint16_t cq_id = static_cast<uint16_t>(dw11 >> sn::kSqCqidShift);
  uint64_t base = sqe_u64(request, sn::kSqePrp1);
  uint64_t mqes = state_.regs.cap & 0xffff;
  if (cq_id == 0 || cq_id > config_.max_ioqpairs || !state_.cqs[cq_id])
    return sn::kCompletionQueueInvalid | kDnr;
  if (qid == 0 || qid > config_.max_ioqpairs || state_.sqs[qid])
    return sn::kInvalidQueueIdentifier | kDnr;
  if (qsize == 0 || qsize > mqes) return sn::kInvalidQueueSize | kDnr;
  if (base & (page_size() - 1)) return sn::kPrpOffsetInvalid | kDnr;
  if (!(dw11 & sn::kQueuePhysicallyContiguous)) return sn::kInvalidField | kDnr;
  auto sq = std::make_unique<SubmissionQueue>();
  sq->id = qid;
  sq->cq_id = cq_id;
  sq->base = base;
  sq->size = qsize + 1;
  sq->priority = static_cast<uint8_t>((dw11 >> sn::kSqPriorityShift) & 3);
  state_.sqs[qid] = std::move(sq);
  state_.features.number_of_queues_locked = true;
  if (state_.shadow.enabled) (void)dma_write_u32(state_.shadow.doorbells + 8ull * qid, 0);
  return sn::kSuccess;
}

uint16_t Controller::admin_delete_sq(const Request& request) {
  uint16_t qid = cdw(request, 10) & 0xffff;
  if (qid == 0 || qid > config_.max_ioqpairs || !state_.sqs[qid])
    return sn::kInvalidQueueIdentifier | kDnr;
  delete_sq(qid);
  return sn::kSuccess;
}

uint16_t Controller::admin_delete_cq(const Request& request) {
  uint16_t qid = cdw(request, 10) & 0xffff;
  if (qid == 0 || qid > config_.max_ioqpairs || !state_.cqs[qid])
    return sn::kCompletionQueueInvalid | kDnr;
  for (const auto& sq : state_.sqs)
    if (sq && sq->cq_id == qid) return sn::kInvalidQueueDeletion;
  delete_cq(qid);
  return sn::kSuccess;
}

// ---- identify ---------------------------------------------------------------------------------

void Controller::identify_controller(std::span<uint8_t, 4096> out) const {
  std::fill(out.begin(), out.end(), 0);
  store_le(out, sn::kIdCtrlVid, kVendorId, 2);
  store_le(out, sn::kIdCtrlSsvid, 0x1af4, 2);
  put_padded(out, sn::kIdCtrlSn, config_.serial, 20);
  put_padded(out, sn::kIdCtrlMn, "QEMU NVMe Ctrl", 40);
  put_padded(out, sn::kIdCtrlFr, kFirmwareRevision, 8);
  out[sn::kIdCtrlRab] = 6;
  out[sn::kIdCtrlIeee] = 0x00;  // QEMU's OUI, 52:54:00 little-endian
  out[sn::kIdCtrlIeee + 1] = 0x54;
  out[sn::kIdCtrlIeee + 2] = 0x52;
  out[sn::kIdCtrlMdts] = config_.mdts;
  store_le(out, sn::kIdCtrlVer, 0x00010400, 4);
  store_le(out, sn::kIdCtrlOaes, 1u << 8, 4);     // namespace attribute notices
  store_le(out, sn::kIdCtrlCtratt, 1u << 15, 4);  // extended LBA formats
  out[sn::kIdCtrlCntrltype] = 1;             // I/O controller
  store_le(out, sn::kIdCtrlOacs, sn::kOacsDoorbellBufferConfig, 2);
  out[sn::kIdCtrlAcl] = 3;
  out[sn::kIdCtrlAerl] = config_.aerl;
  out[sn::kIdCtrlFrmw] = (1 << 1) | 1;  // one slot, slot 1 read-only
  out[sn::kIdCtrlLpa] = 0x07;           // per-namespace SMART, effects log, extended data
  out[sn::kIdCtrlElpe] = kErrorLogEntries - 1;  // 0's based
  store_le(out, sn::kIdCtrlWctemp, 0x157, 2);
  store_le(out, sn::kIdCtrlCctemp, 0x175, 2);
  out[sn::kIdCtrlSqes] = 0x66;
  out[sn::kIdCtrlCqes] = 0x44;
  store_le(out, sn::kIdCtrlNn, kMaxNamespaces, 4);
  store_le(out, sn::kIdCtrlOncs,
      sn::kOncsCompare | sn::kOncsDatasetManagement | sn::kOncsWriteZeroes |
          sn::kOncsSaveSelect | sn::kOncsTimestamp,
      2);
  out[sn::kIdCtrlVwc] = 0x07;  // present; flush with the broadcast NSID supported
  // SGLs without alignment requirements, and Bit Bucket descriptors (QEMU 7.2 withdrew
  // them: its bit buckets did not advance the on-disk offset; Ferry's do).
  store_le(out, sn::kIdCtrlSgls, sn::kSglsSupported | sn::kSglsBitBucket, 4);
  std::string nqn = "nqn.2019-08.org.qemu:" + config_.serial;
  std::copy_n(nqn.begin(), std::min<size_t>(nqn.size(), 255), out.begin() + sn::kIdCtrlSubnqn);
  store_le(out, sn::kIdCtrlPsd0, 0x9c4, 2);  // max power 25 W (centiwatts)
  store_le(out, sn::kIdCtrlPsd0 + 4, 0x10, 4);  // entry latency
  store_le(out, sn::kIdCtrlPsd0 + 8, 0x4, 4);   // exit latency
}

uint16_t Controller::admin_identify(Request& request) {
  uint32_t dw10 = cdw(request, 10), dw11 = cdw(request, 11);
  uint8_t cns = dw10 & 0xff;
  uint8_t csi = static_cast<uint8_t>(dw11 >> 24);
  uint32_t nsid = request.nsid;
  std::array<uint8_t, sn::kIdentifySize> data{};
  auto active_list = [&]() -> uint16_t {
    if (nsid >= kBroadcastNsid - 1) return sn::kInvalidNamespaceOrFormat | kDnr;
    size_t n = 0;
    for (uint32_t id = nsid + 1; id <= kMaxNamespaces && n < 1024; ++id)
      if (namespaces_[id]) store_le(data, 4 * n++, id, 4);
    return sn::kSuccess;
  };
  uint16_t status = sn::kSuccess;
  switch (cns) {
    case sn::kCnsNamespace:
    case sn::kCnsCsiNamespace:
      if (!nsid_valid(nsid, kMaxNamespaces) || nsid == kBroadcastNsid)
        return sn::kInvalidNamespaceOrFormat | kDnr;
      if (cns == sn::kCnsCsiNamespace && csi != sn::kCsiNvm) return sn::kInvalidField | kDnr;
      if (const Namespace* ns = find_namespace(nsid)) {
        if (cns == sn::kCnsNamespace) ns->identify(data);
        else ns->identify_nvm_specific(data);
      }  // an inactive id reads as zeroes
      break;
    case sn::kCnsController: identify_controller(data); break;
    case sn::kCnsCsiController:
      if (csi != sn::kCsiNvm) return sn::kInvalidField | kDnr;
      {
        // NVM command set controller data: VSL, and DMRSL as QEMU derives it from the
        // block layer's largest request (0x7ffffe00 bytes) over the smallest LBA size.
        uint32_t dmrsl = 0xffffffff;
        for (const auto& ns : namespaces_)
          if (ns) dmrsl = std::min<uint32_t>(dmrsl, 0x7ffffe00u / ns->lba_size());
        data[0] = config_.vsl;
        store_le(data, 4, dmrsl, 4);
      }
      break;
    case sn::kCnsActiveNamespaces: status = active_list(); break;
    case sn::kCnsCsiActiveNamespaces:
      if (csi != sn::kCsiNvm) return sn::kInvalidField | kDnr;
      status = active_list();
      break;
    case sn::kCnsNamespaceDescriptors: {
      if (!nsid_valid(nsid, kMaxNamespaces) || nsid == kBroadcastNsid)
        return sn::kInvalidNamespaceOrFormat | kDnr;
      const Namespace* ns = find_namespace(nsid);
      if (!ns) return sn::kInvalidField | kDnr;
      ns->identify_descriptors(data);
      break;
    }
    case 0x1c:  // I/O command set combinations: one, the NVM command set alone
      data[0] = 1u << sn::kCsiNvm;
      break;
    default: return sn::kInvalidField | kDnr;
  }
  if (status) return status;
  return send_to_host(request, data);
}

// ---- abort, AER, doorbell buffer --------------------------------------------------------------

uint16_t Controller::admin_abort(Request& request) {
  // Like QEMU: commands are never aborted (dw0 bit 0 = 1, "not aborted"); a command is
  // either still in the SQ, where it will run, or already with the block layer.
  request.dw0 = 1;
  uint16_t sqid = cdw(request, 10) & 0xffff;
  if (sqid > config_.max_ioqpairs || !state_.sqs[sqid]) return sn::kInvalidField | kDnr;
  return sn::kSuccess;
}

uint16_t Controller::admin_async_event_request(const Request& request) {
  // AERL is 0's based: aerl + 1 may be outstanding.
  if (state_.aer.outstanding.size() > config_.aerl) return sn::kAsyncEventRequestLimitExceeded;
  state_.aer.outstanding.push_back(request.cid);
  process_events();
  return kNoCompletion;
}

uint16_t Controller::admin_doorbell_buffer_config(const Request& request) {
  uint64_t doorbells = sqe_u64(request, sn::kSqePrp1);
  uint64_t event_indexes = sqe_u64(request, sn::kSqePrp2);
  uint64_t mask = page_size() - 1;
  if ((doorbells & mask) || (event_indexes & mask))
    return sn::kInvalidField | kDnr;
  state_.shadow = ShadowDoorbells{.enabled = true, .doorbells = doorbells,
                                  .event_indexes = event_indexes};
  std::fill(rejected_shadow_tail_.begin(), rejected_shadow_tail_.end(), UINT32_MAX);
  // Seed the shadow doorbells with the values the controller holds.
  for (size_t qid = 0; qid < state_.sqs.size(); ++qid) {
    if (const auto& sq = state_.sqs[qid]) (void)dma_write_u32(doorbells + 8 * qid, sq->tail);
    if (const auto& cq = state_.cqs[qid]) (void)dma_write_u32(doorbells + 8 * qid + 4, cq->head);
  }
  return sn::kSuccess;
}

}  // namespace ferry::nvme
