// Queues: doorbells (BAR and shadow), fetching SQEs in a bottom half, the request table,
// posting completions without overwriting unconsumed entries, and interrupts (MSI-X per
// CQ vector with coalescing, INTx level with INTMS).
#include <atomic>
#include <cstring>

#include "base/byte_order.h"
#include "hw/nvme/controller.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {
constexpr unsigned kBurstPerQueue = 32;  // SQEs fetched from one SQ before the next one's turn

}  // namespace

// ---- guest memory -----------------------------------------------------------------------------

bool Controller::dma_read(uint64_t addr, std::span<uint8_t> out) const {
  return dma().read(addr, out).ok();  // refused while bus mastering is off
}

bool Controller::dma_write(uint64_t addr, std::span<const uint8_t> data) {
  return dma().write(addr, data).ok();
}

bool Controller::dma_write_u32(uint64_t addr, uint32_t value) {
  std::array<uint8_t, 4> bytes;
  store_le(bytes.data(), value);
  return dma_write(addr, bytes);
}

bool Controller::dma_read_u32(uint64_t addr, uint32_t& value) const {
  std::array<uint8_t, 4> bytes;
  if (!dma_read(addr, bytes)) return false;
  value = load_le<uint32_t>(bytes.data());
  return true;
}

// ---- doorbells --------------------------------------------------------------------------------

// Whether moving `sq`'s tail to `tail` would queue more entries than the SQ can hold
// (size - 1), counting the entries the controller has not fetched yet: the host wrote
// commands over ones the controller still has to read. A host that keeps to the SQ Head
// Pointer of its completions never gets here (the controller's fetch position is never
// behind it). A tail that laps the whole queue cannot be told from a small move; see
// docs/nvme-qemu-differences.md.
bool Controller::sq_tail_overruns(const SubmissionQueue& sq, uint32_t tail) const {
  uint32_t unfetched = (sq.tail + sq.size - sq.head) % sq.size;
  uint32_t added = (tail + sq.size - sq.tail) % sq.size;
  return unfetched + added > sq.size - 1;
}

void Controller::write_doorbell(uint64_t offset, uint32_t value) {
  if (offset & 3) return;  // QEMU ignores misaligned doorbell writes
  uint64_t index = (offset - sn::kDoorbellBase) / 4;
  uint64_t qid = index / 2;
  bool is_cq = index & 1;
  auto invalid = [&](uint8_t info) { invalid_doorbell_write(info); };
  uint32_t value16 = value & 0xffff;
  if (is_cq) {
    CompletionQueue* cq = qid < state_.cqs.size() ? state_.cqs[qid].get() : nullptr;
    if (!cq) return invalid(sn::kAerInfoErrorInvalidDoorbell);
    uint32_t unconsumed = (cq->tail + cq->size - cq->head) % cq->size;
    uint32_t advance = (value16 + cq->size - cq->head) % cq->size;
    if (value16 >= cq->size || advance > unconsumed)
      return invalid(sn::kAerInfoErrorInvalidDoorbellValue);
    cq->head = value16;
    if (qid == 0 && state_.shadow.enabled)
      (void)dma_write_u32(state_.shadow.doorbells + 4, cq->head);
    if (!cq->pending.empty()) post_completions(*cq);
    update_intx();
  } else {
    SubmissionQueue* sq = qid < state_.sqs.size() ? state_.sqs[qid].get() : nullptr;
    if (!sq) return invalid(sn::kAerInfoErrorInvalidDoorbell);
    if (value16 >= sq->size) return invalid(sn::kAerInfoErrorInvalidDoorbellValue);
    if (state_.shadow.enabled && qid != 0) {
      // A shadowed I/O SQ takes its tail from the shadow buffer (QEMU re-reads it before
      // fetching too): the register write says "look" and may carry an older value.
      refresh_shadow_sq_tail(*sq);
      schedule_processing();
      return;
    }
    if (sq_tail_overruns(*sq, value16)) return invalid(sn::kAerInfoErrorInvalidDoorbellValue);
    sq->tail = value16;
    // Drivers do not keep the admin queue's shadow doorbell current: do it for them.
    if (qid == 0 && state_.shadow.enabled) (void)dma_write_u32(state_.shadow.doorbells, sq->tail);
    schedule_processing();
  }
}

void Controller::refresh_shadow_sq_tail(SubmissionQueue& sq) {
  uint32_t tail = 0;
  if (!dma_read_u32(state_.shadow.doorbells + 8ull * sq.id, tail) || tail == sq.tail) return;
  if (tail >= sq.size || sq_tail_overruns(sq, tail)) {
    // Refused like the same value written to the doorbell register; reported once per
    // value (the shadow is read again and again while it stays wrong).
    if (rejected_shadow_tail_[sq.id] != tail) {
      rejected_shadow_tail_[sq.id] = tail;
      invalid_doorbell_write(sn::kAerInfoErrorInvalidDoorbellValue);
    }
    return;
  }
  rejected_shadow_tail_[sq.id] = UINT32_MAX;
  sq.tail = tail;
}

void Controller::refresh_shadow_cq_head(CompletionQueue& cq) {
  uint32_t head = 0;
  if (!dma_read_u32(state_.shadow.doorbells + 8ull * cq.id + 4, head) || head >= cq.size) return;
  uint32_t unconsumed = (cq.tail + cq.size - cq.head) % cq.size;
  uint32_t advance = (head + cq.size - cq.head) % cq.size;
  if (advance <= unconsumed) cq.head = head;
}

// ---- submission processing --------------------------------------------------------------------

void Controller::schedule_processing() {
  if (processing_scheduled_ || !running()) return;
  processing_scheduled_ = true;
  std::weak_ptr<Controller*> weak = alive_;
  loop_.schedule([weak] {
    if (auto self = weak.lock()) {
      (*self)->processing_scheduled_ = false;
      (*self)->process_queues();
    }
  });
}

bool Controller::sq_has_work(const SubmissionQueue& sq) const {
  return sq.head != sq.tail && sq.in_flight < sq.size;
}

void Controller::process_queues() {
  if (!running()) return;
  size_t count = state_.sqs.size();
  size_t start = state_.next_sq_to_serve % count;
  bool more = false;
  for (size_t i = 0; i < count && running(); ++i) {
    size_t qid = (start + i) % count;
    SubmissionQueue* sq = state_.sqs[qid].get();
    if (!sq) continue;
    process_sq(*sq, kBurstPerQueue);
    sq = state_.sqs[qid].get();
    if (sq && sq_has_work(*sq)) more = true;
  }
  // The burst's block requests go to the kernel now, in one submission per backend (QEMU
  // unplugs its block queue the same way), not one loop iteration later.
  for (const auto& ns : namespaces_)
    if (ns) ns->backend().submit_queued_now();
  if (!running()) return;
  state_.next_sq_to_serve = static_cast<uint32_t>((start + 1) % count);
  if (more) schedule_processing();
}

unsigned Controller::process_sq(SubmissionQueue& sq, unsigned budget) {
  const bool shadowed = state_.shadow.enabled && sq.id != 0;
  if (shadowed) refresh_shadow_sq_tail(sq);
  unsigned done = 0;
  while (done < budget && sq_has_work(sq)) {
    std::array<uint8_t, sn::kSqeSize> sqe;
    if (!dma_read(sq.base + uint64_t{sq.head} * sn::kSqeSize, sqe)) {
      set_fatal();
      return done;
    }
    sq.head = (sq.head + 1) % sq.size;
    Request& request = allocate_request(sq, sqe);
    uint16_t status = sq.id == 0 ? execute_admin(request) : execute_io(request);
    if (status != kNoCompletion) complete_request(request, status);
    ++done;
    if (!running()) return done;
    if (shadowed && state_.shadow.enabled) {
      // Event index = the tail seen; then look again, so a tail the host wrote meanwhile
      // (without ringing, since the event index was behind) is not missed.
      (void)dma_write_u32(state_.shadow.event_indexes + 8ull * sq.id, sq.tail);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      refresh_shadow_sq_tail(sq);
    }
  }
  return done;
}

Request& Controller::allocate_request(SubmissionQueue& sq, std::span<const uint8_t, 64> sqe) {
  uint32_t tag;
  if (!free_tags_.empty()) {
    tag = free_tags_.back();
    free_tags_.pop_back();
  } else {
    tag = static_cast<uint32_t>(state_.requests.size());
    state_.requests.emplace_back();
  }
  // A request object released earlier is reused, its vectors emptied but keeping their
  // storage: the I/O path allocates nothing per command.
  std::unique_ptr<Request> request;
  if (!spare_requests_.empty()) {
    request = std::move(spare_requests_.back());
    spare_requests_.pop_back();
    DataMap data = std::move(request->data);
    std::vector<uint8_t> buffer = std::move(request->buffer);
    *request = Request{};
    data.segments.clear();
    data.length = 0;
    buffer.clear();
    request->data = std::move(data);
    request->buffer = std::move(buffer);
  } else {
    request = std::make_unique<Request>();
  }
  request->tag = tag;
  request->sq_id = sq.id;
  std::copy(sqe.begin(), sqe.end(), request->sqe.begin());
  request->cid = load_le<uint16_t>(&sqe[sn::kSqeCid]);
  request->nsid = load_le<uint32_t>(&sqe[sn::kSqeNsid]);
  ++sq.in_flight;
  state_.requests[tag] = std::move(request);
  return *state_.requests[tag];
}

void Controller::release_request(Request& request, bool still_outstanding) {
  uint32_t tag = request.tag;
  uint16_t sq_id = request.sq_id;
  bool counted = !request.orphaned && !still_outstanding;
  // `request` dies here (moved out of the table); nothing below may touch it.
  if (spare_requests_.size() < kMaxSpareRequests)
    spare_requests_.push_back(std::move(state_.requests[tag]));
  else
    state_.requests[tag].reset();
  free_tags_.push_back(tag);
  SubmissionQueue* sq = sq_id < state_.sqs.size() ? state_.sqs[sq_id].get() : nullptr;
  if (sq && counted) {
    bool was_blocked = sq->in_flight >= sq->size;
    if (sq->in_flight) --sq->in_flight;
    if (was_blocked && sq->head != sq->tail) schedule_processing();
  }
}

void Controller::complete_request(Request& request, uint16_t status) {
  if (!request.orphaned) {
    if (status != sn::kSuccess) status = log_command_error(request, status);
    SubmissionQueue* sq = state_.sqs[request.sq_id].get();
    if (sq)
      enqueue_completion(sq->cq_id, PendingCompletion{.dw0 = request.dw0, .sq_id = request.sq_id,
                                                      .cid = request.cid, .status = status});
  }
  release_request(request);
}

// ---- completion posting -----------------------------------------------------------------------

bool Controller::cq_full(const CompletionQueue& cq) const {
  return (cq.tail + 1) % cq.size == cq.head;
}

void Controller::enqueue_completion(uint16_t cq_id, const PendingCompletion& completion) {
  CompletionQueue* cq = cq_id < state_.cqs.size() ? state_.cqs[cq_id].get() : nullptr;
  if (!cq) return;
  cq->pending.push_back(completion);
  post_completions(*cq);
}

void Controller::post_completions(CompletionQueue& cq) {
  // Posted while running, and while quiesce() drains (interrupts then owed to resume());
  // held while stopped, disabled or fatal.
  const bool draining = quiescing_ && enabled() && !(state_.regs.csts & sn::kCstsCfs);
  if (!running() && !draining) return;
  const bool shadowed = state_.shadow.enabled && cq.id != 0;
  unsigned posted = 0;
  while (!cq.pending.empty()) {
    if (shadowed) refresh_shadow_cq_head(cq);
    if (cq_full(cq)) {
      // Ask the host to ring the head doorbell once it consumes an entry.
      if (shadowed) (void)dma_write_u32(state_.shadow.event_indexes + 8ull * cq.id + 4, cq.head);
      break;
    }
    const PendingCompletion& c = cq.pending.front();
    const SubmissionQueue* sq = c.sq_id < state_.sqs.size() ? state_.sqs[c.sq_id].get() : nullptr;
    std::array<uint8_t, sn::kCqeSize> cqe{};
    store_le(&cqe[sn::kCqeDw0], c.dw0);
    store_le(&cqe[sn::kCqeSqHead], static_cast<uint16_t>(sq ? sq->head : 0));
    store_le(&cqe[sn::kCqeSqId], c.sq_id);
    store_le(&cqe[sn::kCqeCid], c.cid);
    store_le(&cqe[sn::kCqeStatus], static_cast<uint16_t>(c.status << 1 | cq.phase));
    uint64_t addr = cq.base + uint64_t{cq.tail} * sn::kCqeSize;
    // The dword holding the phase tag goes last, so a polling host never sees a new phase
    // with an old entry.
    bool ok = dma_write(addr, std::span<const uint8_t>(cqe.data(), 12));
    std::atomic_thread_fence(std::memory_order_release);
    ok = ok && dma_write(addr + 12, std::span<const uint8_t>(cqe.data() + 12, 4));
    if (!ok) {
      set_fatal();
      return;
    }
    cq.pending.pop_front();
    if (++cq.tail == cq.size) {
      cq.tail = 0;
      cq.phase ^= 1;
    }
    ++posted;
  }
  if (posted) {
    if (draining) owe_interrupt(cq, posted);
    else signal_cq(cq, posted);
  }
}

void Controller::post_all_completions() {
  for (auto& cq : state_.cqs)
    if (cq && !cq->pending.empty()) post_completions(*cq);
}

// ---- interrupts -------------------------------------------------------------------------------

void Controller::signal_cq(CompletionQueue& cq, unsigned posted) {
  if (!cq.irq_enabled) return;
  if (!msix_enabled()) {
    update_intx();
    return;
  }
  if (cq.vector >= state_.vectors.size()) return;
  VectorState& v = state_.vectors[cq.vector];
  uint32_t coalescing = state_.features.interrupt_coalescing;
  uint32_t threshold = (coalescing & 0xff) + 1;
  int64_t time_ns = int64_t{(coalescing >> 8) & 0xff} * 100'000;
  // The admin CQ is never coalesced; neither is a vector with Coalescing Disable, nor
  // anything when the aggregation time is 0 (no delay).
  if (cq.id == 0 || v.coalescing_disabled || time_ns == 0) {
    notify_vector(cq.vector);
    return;
  }
  v.aggregated += posted;
  if (v.aggregated >= threshold) {
    notify_vector(cq.vector);
    return;
  }
  if (v.deadline_ns == 0) {
    v.deadline_ns = clock_.now_ns() + time_ns;
    std::weak_ptr<Controller*> weak = alive_;
    uint16_t vector = cq.vector;
    coalescing_timers_[vector] = loop_.add_timer(clock_, v.deadline_ns, [weak, vector] {
      if (auto self = weak.lock()) (*self)->on_coalescing_timer(vector);
    });
  }
}

void Controller::notify_vector(uint16_t vector) {
  if (vector < state_.vectors.size()) {
    VectorState& v = state_.vectors[vector];
    v.aggregated = 0;
    if (v.deadline_ns) {
      if (coalescing_timers_[vector]) loop_.cancel_timer(coalescing_timers_[vector]);
      coalescing_timers_[vector] = 0;
      v.deadline_ns = 0;
    }
  }
  msix_notify(vector);
}

void Controller::on_coalescing_timer(uint16_t vector) {
  coalescing_timers_[vector] = 0;
  VectorState& v = state_.vectors[vector];
  v.deadline_ns = 0;
  // While quiesced the count stays: resume() raises the interrupt.
  if (quiesced_ || !running() || v.aggregated == 0) return;
  notify_vector(vector);
}

void Controller::update_intx() {
  if (quiesced_) return;
  bool level = false;
  if (!msix_enabled()) {
    for (const auto& cq : state_.cqs) {
      if (!cq || !cq->irq_enabled || cq->tail == cq->head) continue;
      if (cq->vector < 32 && (state_.regs.intms >> cq->vector) & 1) continue;
      level = true;
      break;
    }
  }
  if (level != irq_level()) set_irq(level);
}

// ---- queue deletion ---------------------------------------------------------------------------

void Controller::delete_sq(uint16_t qid) {
  SubmissionQueue* sq = state_.sqs[qid].get();
  if (!sq) return;
  // Wait for the queue's block requests: their completions are posted (room permitting)
  // like QEMU's cancelled requests; what cannot be posted is dropped below.
  if (sq->in_flight) {
    for (auto& ns : namespaces_)
      if (ns) (void)ns->backend().drain();
  }
  sq = state_.sqs[qid].get();
  if (!sq) return;
  for (auto& request : state_.requests)
    if (request && request->sq_id == qid) request->orphaned = true;
  if (CompletionQueue* cq = state_.cqs[sq->cq_id].get()) {
    std::erase_if(cq->pending, [qid](const PendingCompletion& c) { return c.sq_id == qid; });
  }
  // Commands held for a retry die with their queue, like the ones still in it.
  std::erase_if(state_.held, [qid](const HeldRequest& h) { return h.sq_id == qid; });
  state_.sqs[qid].reset();
}

void Controller::delete_cq(uint16_t qid) {
  state_.cqs[qid].reset();
  update_intx();
}

}  // namespace ferry::nvme
