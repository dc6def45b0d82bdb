// NVM command set: Read, Write, Compare, Flush, Write Zeroes, Dataset Management. Data
// moves straight between guest RAM and the block backend (iovecs from dma.h); a request
// waits for its block operations by count and is found again by its tag. Checks, their
// order and the statuses of failed block I/O follow QEMU 7.2 (verified over qtest): a
// write to a read-only drive fails in the block layer and completes with Write Fault.
//
// Failed block I/O goes through the drive's error policy (-drive werror=/rerror=; QEMU
// applies it in virtio-blk and SCSI, not in its NVMe device): report completes with the
// status below, ignore completes as a success, stop holds the command (state_.held) and
// runs it again from its SQE when the VM continues: read, write, flush, write zeroes and
// Dataset Management (deallocate) may all be repeated. Deallocation is a write for the
// policy (werror), as discards are in QEMU's virtio-blk.
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "hw/nvme/command_fields.h"
#include "hw/nvme/controller.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {

constexpr uint32_t kDsmDeallocate = 1u << 2;  // cdw11 AD
constexpr size_t kDsmRangeSize = 16;

bool is_write_like(uint8_t opcode) {
  return opcode == sn::kNvmWrite || opcode == sn::kNvmWriteZeroes || opcode == sn::kNvmFlush;
}

}  // namespace

uint16_t Controller::execute_io(Request& request) {
  uint8_t opcode = request.sqe[sn::kSqeOpcode];
  uint32_t nsid = request.nsid;
  if (nsid == 0 || (nsid > kMaxNamespaces && nsid != kBroadcastNsid))
    return sn::kInvalidNamespaceOrFormat | kDnr;
  if (opcode == sn::kNvmFlush && nsid == kBroadcastNsid) return io_flush(request);
  const Namespace* ns = find_namespace(nsid);
  if (!ns) return sn::kInvalidField | kDnr;  // inactive (or broadcast) id
  switch (opcode) {
    case sn::kNvmFlush:
    case sn::kNvmWrite:
    case sn::kNvmRead:
    case sn::kNvmCompare:
    case sn::kNvmWriteZeroes:
    case sn::kNvmDatasetManagement: break;
    default: return sn::kInvalidOpcode | kDnr;
  }
  if (request.sqe[sn::kSqeFlags] & 0x3) return sn::kInvalidField;  // no fused operations
  switch (opcode) {
    case sn::kNvmFlush: return io_flush(request);
    case sn::kNvmWrite: return io_read_write(request, *ns, true);
    case sn::kNvmRead: return io_read_write(request, *ns, false);
    case sn::kNvmCompare: return io_compare(request, *ns);
    case sn::kNvmWriteZeroes: return io_write_zeroes(request, *ns);
    case sn::kNvmDatasetManagement: return io_dataset_management(request, *ns);
    default: return sn::kInvalidOpcode | kDnr;
  }
}

uint16_t Controller::io_read_write(Request& request, const Namespace& ns, bool write) {
  uint64_t slba = uint64_t{cdw(request, 11)} << 32 | cdw(request, 10);
  uint64_t nlb = uint64_t{cdw(request, 12) & 0xffff} + 1;
  uint64_t bytes = nlb << ns.lba_shift();
  DmaLimits limits = dma_limits();
  if (bytes > limits.max_transfer) return sn::kInvalidField | kDnr;
  if (uint16_t status = ns.check_range(slba, nlb)) return status;
  MapResult mapped =
      map_command_data(dma(), request.sqe, bytes, write, limits, std::move(request.data));
  if (mapped.status) return mapped.status;
  request.data = std::move(mapped.map);
  request.offset = slba << ns.lba_shift();
  request.length = bytes;
  // Bit buckets (reads only) take their share of the transfer into a scratch buffer of
  // the request's own, so that no two requests in flight write the same host memory.
  uint64_t bucket = 0;
  for (const DataSegment& seg : request.data.segments)
    if (seg.bit_bucket) bucket = std::max(bucket, seg.len);
  if (bucket) request.buffer.assign(std::min<uint64_t>(bucket, 4096), 0);
  if (uint16_t status =
          transfer_status(dma::to_iovecs(dma(), request.data, request.buffer, scratch_iov_)))
    return status;
  submit_block(request, ns, write ? block::BlockOp::kWrite : block::BlockOp::kRead,
               request.offset, bytes, scratch_iov_);
  return kNoCompletion;
}

uint16_t Controller::io_compare(Request& request, const Namespace& ns) {
  uint64_t slba = uint64_t{cdw(request, 11)} << 32 | cdw(request, 10);
  uint64_t nlb = uint64_t{cdw(request, 12) & 0xffff} + 1;
  uint64_t bytes = nlb << ns.lba_shift();
  DmaLimits limits = dma_limits();
  if (bytes > limits.max_transfer) return sn::kInvalidField | kDnr;
  if (uint16_t status = ns.check_range(slba, nlb)) return status;
  MapResult mapped = map_command_data(dma(), request.sqe, bytes, true, limits);
  if (mapped.status) return mapped.status;
  request.data = std::move(mapped.map);
  request.offset = slba << ns.lba_shift();
  request.length = bytes;
  request.buffer.assign(bytes, 0);
  request.stage = RequestStage::kCompareRead;
  iovec bounce{request.buffer.data(), request.buffer.size()};
  submit_block(request, ns, block::BlockOp::kRead, request.offset, bytes, std::span(&bounce, 1));
  return kNoCompletion;
}

uint16_t Controller::io_flush(Request& request) {
  bool submitted = false;
  for (const auto& ns : namespaces_) {
    if (!ns || (request.nsid != kBroadcastNsid && ns->nsid() != request.nsid)) continue;
    submit_block(request, *ns, block::BlockOp::kFlush, 0, 0);
    submitted = true;
  }
  return submitted ? kNoCompletion : sn::kSuccess;
}

uint16_t Controller::io_write_zeroes(Request& request, const Namespace& ns) {
  uint64_t slba = uint64_t{cdw(request, 11)} << 32 | cdw(request, 10);
  uint64_t nlb = uint64_t{cdw(request, 12) & 0xffff} + 1;
  if (uint16_t status = ns.check_range(slba, nlb)) return status;
  request.offset = slba << ns.lba_shift();
  request.length = nlb << ns.lba_shift();
  submit_block(request, ns, block::BlockOp::kWriteZeroes, request.offset, request.length);
  return kNoCompletion;
}

uint16_t Controller::io_dataset_management(Request& request, const Namespace& ns) {
  if (!(cdw(request, 11) & kDsmDeallocate)) return sn::kSuccess;  // hints only: nothing to do
  size_t ranges = (cdw(request, 10) & 0xff) + 1;
  std::vector<uint8_t> list(ranges * kDsmRangeSize);
  MapResult mapped = map_command_data(dma(), request.sqe, list.size(), true, dma_limits());
  if (mapped.status) return mapped.status;
  if (uint16_t status = transfer_status(dma::copy_from_guest(dma(), mapped.map, list)))
    return status;
  for (size_t i = 0; i < ranges; ++i) {
    const uint8_t* range = list.data() + i * kDsmRangeSize;
    uint64_t nlb = load_le<uint32_t>(range + 4), slba = load_le<uint64_t>(range + 8);
    // Empty or out-of-range ranges are skipped, as QEMU does: deallocation is advisory.
    if (nlb == 0 || ns.check_range(slba, nlb)) continue;
    submit_block(request, ns, block::BlockOp::kDiscard, slba << ns.lba_shift(),
                 nlb << ns.lba_shift());
  }
  return request.ops_pending ? kNoCompletion : sn::kSuccess;
}

void Controller::submit_block(Request& request, const Namespace& ns, block::BlockOp op,
                              uint64_t offset, uint64_t length, std::span<const iovec> iov) {
  ++request.ops_pending;
  ns.backend().submit(block::BlockRequest{.op = op, .offset = offset, .length = length,
                                          .iov = iov, .opaque = request.tag});
}

void Controller::on_block_completion(uint32_t nsid, uint64_t tag, int result) {
  (void)nsid;
  if (tag >= state_.requests.size() || !state_.requests[tag]) return;  // internal flush
  Request& request = *state_.requests[tag];
  if (request.ops_pending) --request.ops_pending;
  uint8_t opcode = request.sqe[sn::kSqeOpcode];
  if (result < 0) apply_error_policy(request, nsid, result);
  if (request.ops_pending) return;
  if (resetting_) {
    // The controller is resetting: no completion, but data a read stored in guest RAM
    // still dirties its pages (the final RAM pass of a migration must carry them).
    if (opcode == sn::kNvmRead) dma::mark_written(dma(), request.data);
    release_request(request);
    return;
  }
  if (request.hold) {
    hold_request(request);
    return;
  }
  finish_io(request);
}

namespace {

// The block operation of `request` that just failed: what its stage was waiting for.
block::BlockOp failed_op(const Request& request) {
  if (request.stage == RequestStage::kCompareRead) return block::BlockOp::kRead;
  if (request.stage == RequestStage::kWriteThenFlush) return block::BlockOp::kFlush;
  switch (request.sqe[sn::kSqeOpcode]) {
    case sn::kNvmRead: return block::BlockOp::kRead;
    case sn::kNvmWrite: return block::BlockOp::kWrite;
    case sn::kNvmWriteZeroes: return block::BlockOp::kWriteZeroes;
    case sn::kNvmDatasetManagement: return block::BlockOp::kDiscard;
    default: return block::BlockOp::kFlush;
  }
}

}  // namespace

void Controller::apply_error_policy(Request& request, uint32_t nsid, int result) {
  const Namespace* ns = find_namespace(nsid);
  block::BlockOp op = failed_op(request);
  // A cancelled request is not a storage failure: it is reported, never retried.
  block::ErrorAction action = ns && result != -ECANCELED ? ns->backend().error_action(op, -result)
                                                         : block::ErrorAction::kReport;
  if (ns) ns->backend().report_error(op, action, -result);
  switch (action) {
    case block::ErrorAction::kStop: request.hold = true; break;
    case block::ErrorAction::kIgnore: break;
    case block::ErrorAction::kReport:
      if (request.status == 0) request.status = block_error_status(request, result);
      break;
  }
}

void Controller::hold_request(Request& request) {
  // A read may have stored part of its data already: those pages are dirty either way.
  if (request.sqe[sn::kSqeOpcode] == sn::kNvmRead) dma::mark_written(dma(), request.data);
  if (request.orphaned) {  // its SQ is gone: nobody waits for it
    release_request(request);
    return;
  }
  state_.held.push_back(HeldRequest{.sq_id = request.sq_id, .sqe = request.sqe});
  release_request(request, /*still_outstanding=*/true);
}

void Controller::retry_held_requests() {
  if (state_.held.empty()) return;
  std::deque<HeldRequest> held;
  held.swap(state_.held);
  for (const HeldRequest& h : held) {
    SubmissionQueue* sq = h.sq_id < state_.sqs.size() ? state_.sqs[h.sq_id].get() : nullptr;
    if (!sq) continue;
    // allocate_request counts the command in flight again.
    if (sq->in_flight) --sq->in_flight;
    Request& request = allocate_request(*sq, h.sqe);
    uint16_t status = execute_io(request);
    if (status != kNoCompletion) complete_request(request, status);
  }
  for (const auto& ns : namespaces_)
    if (ns) ns->backend().submit_queued_now();
}

void Controller::finish_io(Request& request) {
  uint8_t opcode = request.sqe[sn::kSqeOpcode];
  if (opcode == sn::kNvmRead) dma::mark_written(dma(), request.data);
  if (request.status) {
    uint16_t code = request.status & 0x7ff;
    if (code == sn::kUnrecoveredReadError || code == sn::kWriteFault)
      ++state_.namespaces[request.nsid <= kMaxNamespaces ? request.nsid : 0].smart.media_errors;
    complete_request(request, request.status);
    return;
  }
  switch (request.stage) {
    case RequestStage::kCompareRead: {
      std::vector<uint8_t> host(request.length);
      if (uint16_t status = transfer_status(dma::copy_from_guest(dma(), request.data, host))) {
        complete_request(request, status);
        return;
      }
      bool equal = std::equal(host.begin(), host.end(), request.buffer.begin());
      account_io(request);
      complete_request(request, equal ? sn::kSuccess : sn::kCompareFailure);
      return;
    }
    case RequestStage::kExecuting:
      if (opcode == sn::kNvmWrite && !state_.features.volatile_write_cache) {
        // Write cache disabled: the data must be durable before the write completes.
        if (const Namespace* ns = find_namespace(request.nsid)) {
          request.stage = RequestStage::kWriteThenFlush;
          submit_block(request, *ns, block::BlockOp::kFlush, 0, 0);
          return;
        }
      }
      break;
    case RequestStage::kWriteThenFlush: break;
  }
  account_io(request);
  complete_request(request, sn::kSuccess);
}

uint16_t Controller::block_error_status(const Request& request, int result) const {
  uint8_t opcode = request.sqe[sn::kSqeOpcode];
  if (result == -ECANCELED) return sn::kAbortRequested;
  // QEMU 7.2 completes a failed deallocation with Internal Error, whatever the errno.
  if (opcode == sn::kNvmDatasetManagement) return sn::kInternalError;
  if (result == -ENOSPC && is_write_like(opcode)) return sn::kCapacityExceeded;
  if (opcode == sn::kNvmRead || opcode == sn::kNvmCompare) return sn::kUnrecoveredReadError;
  if (is_write_like(opcode)) return sn::kWriteFault;
  return sn::kInternalError;
}

void Controller::account_io(const Request& request) {
  if (request.nsid == 0 || request.nsid > kMaxNamespaces) return;
  SmartCounters& smart = state_.namespaces[request.nsid].smart;
  switch (request.sqe[sn::kSqeOpcode]) {
    case sn::kNvmRead:
    case sn::kNvmCompare:
      smart.sectors_read += request.length / 512;
      ++smart.host_read_commands;
      break;
    case sn::kNvmWrite:
      smart.sectors_written += request.length / 512;
      ++smart.host_write_commands;
      break;
    case sn::kNvmWriteZeroes: ++smart.host_write_commands; break;
    default: break;
  }
}

}  // namespace ferry::nvme
