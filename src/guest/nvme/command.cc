#include "guest/nvme/command.h"

#include <fmt/format.h>

#include "base/byte_order.h"

namespace ferry::guest::nvme {

namespace sn = spec::nvme;

uint32_t Sqe::u32(unsigned offset) const {
  uint32_t v = 0;
  for (unsigned i = 0; i < 4 && offset + i < bytes.size(); ++i) {
    v |= uint32_t{bytes[offset + i]} << (8 * i);
  }
  return v;
}

uint64_t Sqe::u64(unsigned offset) const {
  return uint64_t{u32(offset)} | uint64_t{u32(offset + 4)} << 32;
}

void Sqe::put32(unsigned offset, uint32_t value) {
  for (unsigned i = 0; i < 4 && offset + i < bytes.size(); ++i) {
    bytes[offset + i] = static_cast<uint8_t>(value >> (8 * i));
  }
}

void Sqe::put64(unsigned offset, uint64_t value) {
  put32(offset, static_cast<uint32_t>(value));
  put32(offset + 4, static_cast<uint32_t>(value >> 32));
}

Sqe& Sqe::set_cid(uint16_t cid) {
  bytes[sn::kSqeCid] = static_cast<uint8_t>(cid);
  bytes[sn::kSqeCid + 1] = static_cast<uint8_t>(cid >> 8);
  return *this;
}

Sqe& Sqe::set_fuse(uint8_t fuse) {
  bytes[sn::kSqeFlags] = static_cast<uint8_t>((bytes[sn::kSqeFlags] & ~0x3u) | (fuse & 0x3u));
  return *this;
}

Sqe& Sqe::set_psdt(uint8_t psdt) {
  bytes[sn::kSqeFlags] = static_cast<uint8_t>((bytes[sn::kSqeFlags] & 0x3fu) |
                                              ((psdt & 0x3u) << sn::kPsdtShift));
  return *this;
}

Sqe& Sqe::set_sgl1(std::span<const uint8_t, sn::kSglDescriptorSize> descriptor) {
  std::copy(descriptor.begin(), descriptor.end(), bytes.begin() + sn::kSqePrp1);
  return *this;
}

Completion Completion::parse(std::span<const uint8_t, sn::kCqeSize> b) {
  auto u16 = [&](unsigned at) { return static_cast<uint16_t>(b[at] | b[at + 1] << 8); };
  auto u32 = [&](unsigned at) { return uint32_t{u16(at)} | uint32_t{u16(at + 2)} << 16; };
  Completion c;
  c.dw0 = u32(sn::kCqeDw0);
  c.dw1 = u32(sn::kCqeDw1);
  c.sq_head = u16(sn::kCqeSqHead);
  c.sq_id = u16(sn::kCqeSqId);
  c.cid = u16(sn::kCqeCid);
  uint16_t raw = u16(sn::kCqeStatus);
  c.phase = (raw & 1) != 0;
  c.status = raw >> 1;
  return c;
}

namespace {
const char* status_name(uint16_t code) {
  switch (code) {
    case sn::kSuccess: return "Successful Completion";
    case sn::kInvalidOpcode: return "Invalid Command Opcode";
    case sn::kInvalidField: return "Invalid Field in Command";
    case sn::kCidConflict: return "Command ID Conflict";
    case sn::kDataTransferError: return "Data Transfer Error";
    case sn::kAbortedPowerLoss: return "Commands Aborted due to Power Loss Notification";
    case sn::kInternalError: return "Internal Error";
    case sn::kAbortRequested: return "Command Abort Requested";
    case sn::kAbortedSqDeletion: return "Command Aborted due to SQ Deletion";
    case sn::kInvalidNamespaceOrFormat: return "Invalid Namespace or Format";
    case sn::kCommandSequenceError: return "Command Sequence Error";
    case sn::kInvalidSglSegmentDescriptor: return "Invalid SGL Segment Descriptor";
    case sn::kInvalidSglDescriptorCount: return "Invalid Number of SGL Descriptors";
    case sn::kDataSglLengthInvalid: return "Data SGL Length Invalid";
    case sn::kMetadataSglLengthInvalid: return "Metadata SGL Length Invalid";
    case sn::kSglDescriptorTypeInvalid: return "SGL Descriptor Type Invalid";
    case sn::kInvalidUseOfCmb: return "Invalid Use of Controller Memory Buffer";
    case sn::kPrpOffsetInvalid: return "PRP Offset Invalid";
    case sn::kSglOffsetInvalid: return "SGL Offset Invalid";
    case sn::kLbaOutOfRange: return "LBA Out of Range";
    case sn::kCapacityExceeded: return "Capacity Exceeded";
    case sn::kNamespaceNotReady: return "Namespace Not Ready";
    case sn::kCompletionQueueInvalid: return "Completion Queue Invalid";
    case sn::kInvalidQueueIdentifier: return "Invalid Queue Identifier";
    case sn::kInvalidQueueSize: return "Invalid Queue Size";
    case sn::kAbortCommandLimitExceeded: return "Abort Command Limit Exceeded";
    case sn::kAsyncEventRequestLimitExceeded: return "Asynchronous Event Request Limit Exceeded";
    case sn::kInvalidFirmwareSlot: return "Invalid Firmware Slot";
    case sn::kInvalidInterruptVector: return "Invalid Interrupt Vector";
    case sn::kInvalidLogPage: return "Invalid Log Page";
    case sn::kInvalidFormat: return "Invalid Format";
    case sn::kInvalidQueueDeletion: return "Invalid Queue Deletion";
    case sn::kFeatureNotSaveable: return "Feature Identifier Not Saveable";
    case sn::kFeatureNotChangeable: return "Feature Not Changeable";
    case sn::kFeatureNotNamespaceSpecific: return "Feature Not Namespace Specific";
    case sn::kConflictingAttributes: return "Conflicting Attributes";
    case sn::kAttemptedWriteToReadOnlyRange: return "Attempted Write to Read Only Range";
    case sn::kWriteFault: return "Write Fault";
    case sn::kUnrecoveredReadError: return "Unrecovered Read Error";
    case sn::kCompareFailure: return "Compare Failure";
    case sn::kAccessDenied: return "Access Denied";
    default: return "unknown";
  }
}
}  // namespace

std::string describe_status(uint16_t status) {
  uint16_t code = status & 0x7ff;
  if (code == 0) return "success";
  std::string text = fmt::format("SCT {} SC 0x{:02x} ({})", sn::status_type(status),
                                 sn::status_code(status), status_name(code));
  if (status & sn::kStatusDnr) text += " DNR";
  if (status & sn::kStatusMore) text += " M";
  return text;
}

std::array<uint8_t, sn::kSglDescriptorSize> sgl_descriptor(uint64_t address, uint32_t length,
                                                           uint8_t type, uint8_t subtype) {
  std::array<uint8_t, sn::kSglDescriptorSize> d{};
  store_le(&d[0], address);
  store_le(&d[8], length);
  d[15] = static_cast<uint8_t>((type & 0xf) << 4 | (subtype & 0xf));
  return d;
}

namespace commands {

namespace {
uint32_t zeros_based(uint32_t count) { return count == 0 ? 0 : count - 1; }
}  // namespace

Sqe identify(uint8_t cns, uint32_t nsid, uint16_t cntid, uint8_t csi) {
  Sqe s;
  s.set_opcode(sn::kAdminIdentify).set_nsid(nsid);
  s.set_cdw(10, uint32_t{cns} | uint32_t{cntid} << 16);
  s.set_cdw(11, uint32_t{csi} << 24);
  return s;
}

Sqe create_io_cq(uint16_t qid, uint32_t entries, uint64_t address, bool interrupts,
                 uint16_t vector, bool contiguous) {
  Sqe s;
  s.set_opcode(sn::kAdminCreateCq).set_prp1(address);
  s.set_cdw(10, uint32_t{qid} | (zeros_based(entries) & 0xffff) << 16);
  s.set_cdw(11, (contiguous ? sn::kQueuePhysicallyContiguous : 0) |
                    (interrupts ? sn::kCqInterruptsEnabled : 0) |
                    uint32_t{vector} << sn::kCqIvShift);
  return s;
}

Sqe create_io_sq(uint16_t qid, uint32_t entries, uint64_t address, uint16_t cqid,
                 uint8_t priority, bool contiguous) {
  Sqe s;
  s.set_opcode(sn::kAdminCreateSq).set_prp1(address);
  s.set_cdw(10, uint32_t{qid} | (zeros_based(entries) & 0xffff) << 16);
  s.set_cdw(11, (contiguous ? sn::kQueuePhysicallyContiguous : 0) |
                    uint32_t{priority & 3u} << sn::kSqPriorityShift |
                    uint32_t{cqid} << sn::kSqCqidShift);
  return s;
}

Sqe delete_io_sq(uint16_t qid) {
  Sqe s;
  s.set_opcode(sn::kAdminDeleteSq).set_cdw(10, qid);
  return s;
}

Sqe delete_io_cq(uint16_t qid) {
  Sqe s;
  s.set_opcode(sn::kAdminDeleteCq).set_cdw(10, qid);
  return s;
}

Sqe set_features(uint8_t fid, uint32_t cdw11, bool save, uint32_t nsid) {
  Sqe s;
  s.set_opcode(sn::kAdminSetFeatures).set_nsid(nsid);
  s.set_cdw(10, fid | (save ? sn::kFeatSave : 0));
  s.set_cdw(11, cdw11);
  return s;
}

Sqe get_features(uint8_t fid, uint8_t select, uint32_t nsid) {
  Sqe s;
  s.set_opcode(sn::kAdminGetFeatures).set_nsid(nsid);
  s.set_cdw(10, fid | uint32_t{select & 7u} << sn::kFeatSelShift);
  return s;
}

Sqe set_number_of_queues(uint16_t submission_queues, uint16_t completion_queues) {
  return set_features(sn::kFeatNumberOfQueues,
                      zeros_based(submission_queues) | zeros_based(completion_queues) << 16);
}

Sqe get_log_page(uint8_t lid, uint32_t bytes, uint32_t nsid, uint64_t offset,
                 bool retain_async_event) {
  Sqe s;
  uint32_t numd = zeros_based(bytes / 4);
  s.set_opcode(sn::kAdminGetLogPage).set_nsid(nsid);
  s.set_cdw(10, lid | (retain_async_event ? sn::kLogRetainAsyncEvent : 0) | (numd & 0xffff) << 16);
  s.set_cdw(11, numd >> 16);
  s.set_cdw(12, static_cast<uint32_t>(offset));
  s.set_cdw(13, static_cast<uint32_t>(offset >> 32));
  return s;
}

Sqe async_event_request() {
  Sqe s;
  s.set_opcode(sn::kAdminAsyncEventRequest);
  return s;
}

Sqe abort(uint16_t sqid, uint16_t cid) {
  Sqe s;
  s.set_opcode(sn::kAdminAbort).set_cdw(10, uint32_t{sqid} | uint32_t{cid} << 16);
  return s;
}

Sqe io(uint8_t opcode, uint32_t nsid, uint64_t slba, uint32_t blocks) {
  Sqe s;
  s.set_opcode(opcode).set_nsid(nsid);
  s.set_cdw(10, static_cast<uint32_t>(slba));
  s.set_cdw(11, static_cast<uint32_t>(slba >> 32));
  s.set_cdw(12, zeros_based(blocks) & 0xffff);
  return s;
}

Sqe read(uint32_t nsid, uint64_t slba, uint32_t blocks) {
  return io(sn::kNvmRead, nsid, slba, blocks);
}
Sqe write(uint32_t nsid, uint64_t slba, uint32_t blocks) {
  return io(sn::kNvmWrite, nsid, slba, blocks);
}
Sqe write_zeroes(uint32_t nsid, uint64_t slba, uint32_t blocks) {
  return io(sn::kNvmWriteZeroes, nsid, slba, blocks);
}

Sqe flush(uint32_t nsid) {
  Sqe s;
  s.set_opcode(sn::kNvmFlush).set_nsid(nsid);
  return s;
}

}  // namespace commands

}  // namespace ferry::guest::nvme
