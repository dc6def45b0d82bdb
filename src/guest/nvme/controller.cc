#include "guest/nvme/controller.h"

#include <algorithm>

namespace ferry::guest::nvme {

namespace sn = spec::nvme;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto kIdlePoll = std::chrono::microseconds(200);

Status zero_fill(GuestBus& bus, uint64_t address, uint64_t length) {
  std::vector<uint8_t> zeros(std::min<uint64_t>(length, 1 << 20), 0);
  for (uint64_t done = 0; done < length;) {
    uint64_t chunk = std::min<uint64_t>(length - done, zeros.size());
    FERRY_RETURN_IF_ERROR(bus.memory_write(address + done, std::span(zeros.data(), chunk)));
    done += chunk;
  }
  return {};
}
}  // namespace

Controller::Controller(GuestBus& bus, DmaMemory& memory, const PciFunction& fn,
                       std::vector<PciBar> bars)
    : bus_(&bus), memory_(memory), pci_(fn), bars_(std::move(bars)) {
  for (const PciBar& bar : bars_) {
    if (bar.index == 0) bar0_ = bar.address;
  }
}

Controller::~Controller() {
  for (auto& [qid, queue] : queues_) free_queue_memory(*queue);
  if (msix_page_ != 0) (void)memory_.free(msix_page_);
}

Result<std::unique_ptr<Controller>> Controller::probe(GuestBus& bus, DmaMemory& memory,
                                                      MmioWindow& window, unsigned index) {
  auto fn = find_function_by_class(bus, sn::kPciClassNvmExpress, index);
  if (!fn.ok()) return fn.take_status().prepend_message("nvme: ");
  auto bars = assign_bars(bus, *fn, window);
  if (!bars.ok()) return bars.take_status().prepend_message("nvme: ");
  bool has_bar0 = std::any_of(bars->begin(), bars->end(), [](const PciBar& bar) {
    return bar.index == 0 && bar.size >= 0x1000 && !bar.io;
  });
  if (!has_bar0) {
    return Error(ErrorCode::kFailedPrecondition,
                 "nvme {:02x}.{}: BAR0 is not a memory BAR of at least 4 KiB", fn->slot,
                 fn->function);
  }
  FERRY_RETURN_IF_ERROR(enable_memory_and_bus_master(bus, *fn));
  return std::unique_ptr<Controller>(new Controller(bus, memory, *fn, std::move(*bars)));
}

// ---- registers ------------------------------------------------------------------------------

Result<uint32_t> Controller::read32(uint32_t offset) {
  auto v = bus_->mmio_read(bar0_ + offset, 4);
  if (!v.ok()) return v.take_status();
  return static_cast<uint32_t>(*v);
}

// 64-bit registers as two dword accesses, low half first (what every controller accepts).
Result<uint64_t> Controller::read64(uint32_t offset) {
  auto low = read32(offset);
  if (!low.ok()) return low.take_status();
  auto high = read32(offset + 4);
  if (!high.ok()) return high.take_status();
  return uint64_t{*low} | uint64_t{*high} << 32;
}

Status Controller::write32(uint32_t offset, uint32_t value) {
  return bus_->mmio_write(bar0_ + offset, value, 4);
}

Status Controller::write64(uint32_t offset, uint64_t value) {
  FERRY_RETURN_IF_ERROR(write32(offset, static_cast<uint32_t>(value)));
  return write32(offset + 4, static_cast<uint32_t>(value >> 32));
}

uint64_t Controller::doorbell(uint16_t qid, bool completion) const {
  uint64_t stride = uint64_t{4} << ((cap_ >> sn::kCapDstrdShift) & 0xf);
  return bar0_ + sn::kDoorbellBase + (2 * uint64_t{qid} + (completion ? 1 : 0)) * stride;
}

uint32_t Controller::max_queue_entries() const {
  return static_cast<uint32_t>((cap_ >> sn::kCapMqesShift) & 0xffff) + 1;
}

// ---- bring-up -------------------------------------------------------------------------------

Millis Controller::ready_timeout() const {
  if (config_.ready_timeout) return *config_.ready_timeout;
  uint64_t units = (cap_ >> sn::kCapToShift) & 0xff;
  return Millis(500 * std::max<uint64_t>(units, 1));
}

Status Controller::wait_ready(bool ready, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto csts = read32(sn::kRegCsts);
    if (!csts.ok()) return csts.take_status();
    if (*csts == 0xffffffffu) {
      return Error(ErrorCode::kFailedPrecondition,
                   "nvme: CSTS reads 0xffffffff (BAR0 at 0x{:x} not decoded?)", bar0_);
    }
    if (ready && (*csts & sn::kCstsCfs)) {
      return Error(ErrorCode::kFailedPrecondition,
                   "nvme: controller fatal status while enabling (CSTS=0x{:x})", *csts);
    }
    if (((*csts & sn::kCstsRdy) != 0) == ready) return {};
    if (Clock::now() > deadline) {
      return Error(ErrorCode::kFailedPrecondition,
                   "nvme: controller did not become {} within {} ms (CSTS=0x{:x})",
                   ready ? "ready" : "disabled", timeout.count(), *csts);
    }
    FERRY_RETURN_IF_ERROR(bus_->idle(std::chrono::microseconds(1000)));
  }
}

Status Controller::disable() {
  auto cap = read64(sn::kRegCap);
  if (!cap.ok()) return cap.take_status();
  cap_ = *cap;
  auto cc = read32(sn::kRegCc);
  if (!cc.ok()) return cc.take_status();
  if (*cc & sn::kCcEn) FERRY_RETURN_IF_ERROR(write32(sn::kRegCc, *cc & ~sn::kCcEn));
  FERRY_RETURN_IF_ERROR(wait_ready(false, ready_timeout()));
  return forget_all_queues();
}

Status Controller::shutdown() {
  auto cc = read32(sn::kRegCc);
  if (!cc.ok()) return cc.take_status();
  uint32_t value = (*cc & ~(3u << sn::kCcShnShift)) | (1u << sn::kCcShnShift);
  FERRY_RETURN_IF_ERROR(write32(sn::kRegCc, value));
  auto deadline = Clock::now() + ready_timeout();
  for (;;) {
    auto csts = read32(sn::kRegCsts);
    if (!csts.ok()) return csts.take_status();
    if (((*csts >> sn::kCstsShstShift) & 3) == sn::kShstComplete) return {};
    if (Clock::now() > deadline) {
      return Error(ErrorCode::kFailedPrecondition,
                   "nvme: shutdown did not complete within {} ms (CSTS=0x{:x})",
                   ready_timeout().count(), *csts);
    }
    FERRY_RETURN_IF_ERROR(bus_->idle(std::chrono::microseconds(1000)));
  }
}

Status Controller::enable(const ControllerConfig& config) {
  config_ = config;
  uint32_t entries = config.admin_queue_entries;
  if (entries < 2 || entries > 4096) {
    return Error(ErrorCode::kInvalidArgument,
                 "nvme: admin queue of {} entries is outside [2, 4096]", entries);
  }
  FERRY_RETURN_IF_ERROR(disable());
  uint64_t mpsmin = (cap_ >> sn::kCapMpsminShift) & 0xf;
  if (mpsmin != 0) {
    return Error(ErrorCode::kFailedPrecondition,
                 "nvme: CAP.MPSMIN={} (page size {}) but the driver uses 4 KiB pages", mpsmin,
                 4096u << mpsmin);
  }
  uint64_t css = (cap_ >> sn::kCapCssShift) & 0xff;
  if (config.command_set == sn::kCcCssNvm && (css & sn::kCapCssNvm) == 0) {
    return Error(ErrorCode::kFailedPrecondition,
                 "nvme: CAP.CSS=0x{:x} does not offer the NVM command set", css);
  }
  auto admin = new_queue(0, entries, entries);
  if (!admin.ok()) return admin.take_status();
  const QueueLayout& layout = (*admin)->ring.layout();
  uint32_t aqa = (entries - 1) << sn::kAqaAcqsShift | (entries - 1);
  FERRY_RETURN_IF_ERROR(write32(sn::kRegAqa, aqa));
  FERRY_RETURN_IF_ERROR(write64(sn::kRegAsq, layout.sq_address));
  FERRY_RETURN_IF_ERROR(write64(sn::kRegAcq, layout.cq_address));
  uint32_t cc = sn::kCcEn | (config.command_set & 7) << sn::kCcCssShift |
                0u << sn::kCcMpsShift | 6u << sn::kCcIosqesShift | 4u << sn::kCcIocqesShift;
  FERRY_RETURN_IF_ERROR(write32(sn::kRegCc, cc));
  return wait_ready(true, ready_timeout());
}

// ---- queues ---------------------------------------------------------------------------------

Result<Controller::Queue*> Controller::find_queue(uint16_t qid) {
  auto it = queues_.find(qid);
  if (it == queues_.end()) {
    return Error(ErrorCode::kInvalidArgument, "nvme: queue {} is not set up by the driver", qid);
  }
  return it->second.get();
}

QueuePair* Controller::queue(uint16_t qid) {
  auto it = queues_.find(qid);
  return it == queues_.end() ? nullptr : &it->second->ring;
}

Result<Controller::Queue*> Controller::new_queue(uint16_t qid, uint32_t entries,
                                                 uint32_t cq_entries) {
  if (queues_.count(qid)) {
    return Error(ErrorCode::kInvalidArgument, "nvme: queue {} exists already", qid);
  }
  for (uint32_t n : {entries, cq_entries}) {
    if (n < 2 || n > 65536) {
      return Error(ErrorCode::kInvalidArgument,
                   "nvme: queue {} of {} entries is outside [2, 65536]", qid, n);
    }
  }
  auto sq = memory_.allocate(uint64_t{entries} * sn::kSqeSize);
  if (!sq.ok()) return sq.take_status().prepend_message(fmt::format("nvme: SQ {}: ", qid));
  auto cq = memory_.allocate(uint64_t{cq_entries} * sn::kCqeSize);
  if (!cq.ok()) {
    (void)memory_.free(*sq);
    return cq.take_status().prepend_message(fmt::format("nvme: CQ {}: ", qid));
  }
  QueueLayout layout{qid, *sq, entries, *cq, cq_entries, doorbell(qid, false), doorbell(qid, true)};
  auto queue = std::unique_ptr<Queue>(new Queue{QueuePair(layout), *sq, *cq, 0, {}, {}});
  // The CQ must start with every phase bit clear; the SQ is cleared for reproducibility.
  Status zeroed = zero_fill(*bus_, *cq, uint64_t{cq_entries} * sn::kCqeSize);
  if (zeroed.ok()) zeroed = zero_fill(*bus_, *sq, uint64_t{entries} * sn::kSqeSize);
  if (!zeroed.ok()) {
    free_queue_memory(*queue);
    return zeroed;
  }
  Queue* raw = queue.get();
  queues_[qid] = std::move(queue);
  return raw;
}

void Controller::InFlight::add(uint16_t cid, DataPointer pointer) {
  if (!contains(cid)) ++count_;
  bits_[cid / 64] |= uint64_t{1} << (cid % 64);
  if (!pointer.list_pages.empty()) with_lists_[cid] = std::move(pointer);
}

bool Controller::InFlight::remove(uint16_t cid, std::optional<DataPointer>& lists) {
  if (!contains(cid)) return false;
  bits_[cid / 64] &= ~(uint64_t{1} << (cid % 64));
  --count_;
  if (with_lists_.empty()) return true;
  if (auto it = with_lists_.find(cid); it != with_lists_.end()) {
    lists = std::move(it->second);
    with_lists_.erase(it);
  }
  return true;
}

std::vector<DataPointer> Controller::InFlight::clear() {
  std::vector<DataPointer> lists;
  for (auto& [cid, pointer] : with_lists_) lists.push_back(std::move(pointer));
  with_lists_.clear();
  std::fill(bits_.begin(), bits_.end(), 0);
  count_ = 0;
  return lists;
}

void Controller::free_queue_memory(Queue& queue) {
  for (DataPointer& pointer : queue.in_flight.clear()) (void)release(memory_, pointer);
  if (queue.sq_memory) (void)memory_.free(queue.sq_memory);
  if (queue.cq_memory) (void)memory_.free(queue.cq_memory);
  queue.sq_memory = queue.cq_memory = 0;
}

Status Controller::forget_all_queues() {
  for (auto& [qid, queue] : queues_) free_queue_memory(*queue);
  queues_.clear();
  return {};
}

Status Controller::create_io_queue_pair(uint16_t qid, uint32_t entries,
                                        QueueInterrupts interrupts,
                                        std::optional<uint32_t> cq_entries) {
  if (qid == 0) return Error(ErrorCode::kInvalidArgument, "nvme: queue 0 is the admin queue");
  auto queue = new_queue(qid, entries, cq_entries.value_or(entries));
  if (!queue.ok()) return queue.take_status();
  const QueueLayout layout = (*queue)->ring.layout();
  (*queue)->interrupts = interrupts;
  auto undo = [&](Status error) {
    free_queue_memory(**queue);
    queues_.erase(qid);
    return error;
  };
  auto cq = execute(0, commands::create_io_cq(qid, layout.cq_entries, layout.cq_address,
                                              interrupts.enabled, interrupts.vector));
  if (!cq.ok()) return undo(cq.take_status());
  if (Status s = check(*cq, fmt::format("create I/O CQ {}", qid)); !s.ok()) return undo(s);
  auto sq = execute(0, commands::create_io_sq(qid, entries, layout.sq_address, qid));
  Status sq_status = sq.ok() ? check(*sq, fmt::format("create I/O SQ {}", qid)) : sq.take_status();
  if (!sq_status.ok()) {
    (void)execute(0, commands::delete_io_cq(qid));
    return undo(std::move(sq_status));
  }
  return {};
}

Status Controller::delete_io_queue_pair(uint16_t qid) {
  if (qid == 0) return Error(ErrorCode::kInvalidArgument, "nvme: queue 0 is the admin queue");
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  auto sq = execute(0, commands::delete_io_sq(qid));
  if (!sq.ok()) return sq.take_status();
  FERRY_RETURN_IF_ERROR(check(*sq, fmt::format("delete I/O SQ {}", qid)));
  auto cq = execute(0, commands::delete_io_cq(qid));
  if (!cq.ok()) return cq.take_status();
  FERRY_RETURN_IF_ERROR(check(*cq, fmt::format("delete I/O CQ {}", qid)));
  free_queue_memory(**queue);
  queues_.erase(qid);
  return {};
}

Status Controller::forget_io_queue(uint16_t qid) {
  if (qid == 0) return Error(ErrorCode::kInvalidArgument, "nvme: queue 0 is the admin queue");
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  free_queue_memory(**queue);
  queues_.erase(qid);
  return {};
}

// ---- commands -------------------------------------------------------------------------------

Result<uint16_t> Controller::submit(uint16_t qid, Sqe sqe, const Transfer& data, bool ring) {
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  Queue& q = **queue;
  if (q.ring.sq_space() == 0) {
    return Error(ErrorCode::kFailedPrecondition, "nvme: SQ {} is full ({} commands in flight)",
                 qid, q.in_flight.size());
  }
  // A CID not in flight on this queue (0xffff is left out: some controllers reserve it).
  uint16_t cid = q.next_cid;
  for (int tries = 0; q.in_flight.contains(cid) || cid == 0xffff; ++tries) {
    if (tries > 0x10000) return Error(ErrorCode::kInternal, "nvme: no free CID on queue {}", qid);
    cid = static_cast<uint16_t>(cid + 1);
  }
  q.next_cid = static_cast<uint16_t>(cid + 1);
  sqe.set_cid(cid);

  DataPointer pointer;
  if (!data.segments.empty()) {
    auto built = data.kind == Transfer::Kind::kPrp ? build_prp(*bus_, memory_, data.segments)
                                                   : build_sgl(*bus_, memory_, data.segments, data.sgl);
    if (!built.ok()) return built.take_status();
    pointer = std::move(*built);
    pointer.apply(sqe);
  }
  Status pushed = q.ring.push(*bus_, sqe);
  if (!pushed.ok()) {
    (void)release(memory_, pointer);
    return pushed;
  }
  q.in_flight.add(cid, std::move(pointer));
  if (ring) FERRY_RETURN_IF_ERROR(q.ring.ring_sq(*bus_));
  return cid;
}

Result<uint16_t> Controller::submit_raw(uint16_t qid, const Sqe& sqe, bool ring) {
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  Queue& q = **queue;
  FERRY_RETURN_IF_ERROR(q.ring.push(*bus_, sqe));
  q.in_flight.add(sqe.cid(), {});
  if (ring) FERRY_RETURN_IF_ERROR(q.ring.ring_sq(*bus_));
  return sqe.cid();
}

Status Controller::ring_sq(uint16_t qid) {
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  return (*queue)->ring.ring_sq(*bus_);
}

Status Controller::write_sq_doorbell(uint16_t qid, uint32_t value) {
  return bus_->mmio_write(doorbell(qid, false), value, 4);
}

Status Controller::write_cq_doorbell(uint16_t qid, uint32_t value) {
  return bus_->mmio_write(doorbell(qid, true), value, 4);
}

Status Controller::finish(Queue& queue, const Completion& completion) {
  std::optional<DataPointer> lists;
  // Not in flight: not ours (a raw command sent twice, say).
  if (!queue.in_flight.remove(completion.cid, lists) || !lists) return {};
  return release(memory_, *lists);
}

Result<size_t> Controller::collect(Queue& queue, size_t max) {
  queue.fresh.clear();
  auto taken = queue.ring.reap(*bus_, max, queue.fresh);
  if (!taken.ok()) return taken.take_status();
  if (*taken == 0) return size_t{0};
  FERRY_RETURN_IF_ERROR(queue.ring.ring_cq(*bus_));
  for (const Completion& c : queue.fresh) {
    FERRY_RETURN_IF_ERROR(finish(queue, c));
    queue.arrived.push_back(c);
  }
  return *taken;
}

Result<std::optional<Completion>> Controller::poll(uint16_t qid) {
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  Queue& q = **queue;
  if (q.arrived.empty()) {
    auto taken = collect(q, 64);
    if (!taken.ok()) return taken.take_status();
  }
  if (q.arrived.empty()) return std::optional<Completion>();
  Completion c = q.arrived.front();
  q.arrived.pop_front();
  return std::optional<Completion>(c);
}

Result<std::vector<Completion>> Controller::reap(uint16_t qid, size_t max) {
  std::vector<Completion> out;
  auto taken = reap(qid, max, out);
  if (!taken.ok()) return taken.take_status();
  return out;
}

Result<size_t> Controller::reap(uint16_t qid, size_t max, std::vector<Completion>& out) {
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  Queue& q = **queue;
  if (q.arrived.size() < max) {
    auto taken = collect(q, max - q.arrived.size());
    if (!taken.ok()) return taken.take_status();
  }
  size_t handed = 0;
  for (; !q.arrived.empty() && handed < max; ++handed) {
    out.push_back(q.arrived.front());
    q.arrived.pop_front();
  }
  return handed;
}

Result<Completion> Controller::wait(uint16_t qid, uint16_t cid, std::optional<Millis> timeout) {
  auto queue = find_queue(qid);
  if (!queue.ok()) return queue.take_status();
  Queue& q = **queue;
  Millis limit = timeout.value_or(config_.command_timeout);
  auto deadline = Clock::now() + limit;
  bool woken_for_nothing = false;  // an interrupt (or a shared INTx line) brought nothing
  for (;;) {
    auto it = std::find_if(q.arrived.begin(), q.arrived.end(),
                           [cid](const Completion& c) { return c.cid == cid; });
    if (it != q.arrived.end()) {
      Completion c = *it;
      q.arrived.erase(it);
      return c;
    }
    auto taken = collect(q, 64);
    if (!taken.ok()) return taken.take_status();
    if (*taken > 0) {
      woken_for_nothing = false;
      continue;
    }
    if (Clock::now() > deadline) {
      auto csts = read32(sn::kRegCsts);
      return Error(ErrorCode::kFailedPrecondition,
                   "nvme: no completion for CID {} on queue {} within {} ms (SQ tail {}, CQ head "
                   "{}, phase {}, CSTS=0x{:x})",
                   cid, qid, limit.count(), q.ring.sq_tail(), q.ring.cq_head(),
                   q.ring.expected_phase() ? 1 : 0, csts.ok() ? *csts : 0xffffffffu);
    }
    if (woken_for_nothing) {
      // Whatever woke us is not for this queue (an INTx line shared with a queue nobody
      // reaps stays up): poll once instead of spinning on it.
      woken_for_nothing = false;
      FERRY_RETURN_IF_ERROR(bus_->idle(kIdlePoll));
      continue;
    }
    auto woken = wait_for_signal(q, deadline);
    if (!woken.ok()) return woken.take_status();
    woken_for_nothing = *woken;
  }
}

Result<bool> Controller::wait_for_signal(const Queue& queue, Clock::time_point deadline) {
  if (signal_ == CompletionSignal::kPolling || !queue.interrupts.enabled) {
    FERRY_RETURN_IF_ERROR(bus_->idle(kIdlePoll));
    return false;
  }
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
  auto slice = std::clamp<std::chrono::microseconds>(left, std::chrono::microseconds(0),
                                                     kInterruptSlice);
  if (signal_ == CompletionSignal::kMsix) {
    auto messages = bus_->wait_msi(msi_data(queue.interrupts.vector), slice);
    if (!messages.ok()) return messages.take_status();
    interrupts_taken_ += *messages;
    return *messages > 0;
  }
  auto level = bus_->wait_intx(intx_irq_, true, slice);
  if (!level.ok()) return level.take_status();
  if (*level) ++interrupts_taken_;
  return *level;
}

Result<Completion> Controller::execute(uint16_t qid, const Sqe& sqe, const Transfer& data,
                                       std::optional<Millis> timeout) {
  auto cid = submit(qid, sqe, data);
  if (!cid.ok()) return cid.take_status();
  return wait(qid, *cid, timeout);
}

Status Controller::check(const Completion& completion, std::string_view what) {
  if (completion.ok()) return {};
  return Error(ErrorCode::kFailedPrecondition, "nvme: {} failed: status 0x{:04x}, {}", what,
               completion.status, describe_status(completion.status));
}

size_t Controller::in_flight(uint16_t qid) const {
  auto it = queues_.find(qid);
  return it == queues_.end() ? 0 : it->second->in_flight.size();
}

// ---- admin helpers --------------------------------------------------------------------------

Result<std::vector<uint8_t>> Controller::identify(uint8_t cns, uint32_t nsid, uint16_t cntid) {
  auto buffer = memory_.allocate(sn::kIdentifySize);
  if (!buffer.ok()) return buffer.take_status();
  auto done = execute(0, commands::identify(cns, nsid, cntid),
                      Transfer::prp(*buffer, sn::kIdentifySize));
  Status status = done.ok() ? check(*done, fmt::format("identify CNS 0x{:02x} NSID {}", cns, nsid))
                            : done.take_status();
  std::vector<uint8_t> data(sn::kIdentifySize);
  if (status.ok()) status = bus_->memory_read(*buffer, data);
  (void)memory_.free(*buffer);
  if (!status.ok()) return status;
  return data;
}

Result<uint32_t> Controller::set_number_of_queues(uint16_t submission_queues,
                                                  uint16_t completion_queues) {
  auto done = execute(0, commands::set_number_of_queues(submission_queues, completion_queues));
  if (!done.ok()) return done.take_status();
  FERRY_RETURN_IF_ERROR(check(*done, "set features (number of queues)"));
  return done->dw0;
}

Result<std::vector<uint8_t>> Controller::get_log_page(uint8_t lid, uint32_t bytes, uint32_t nsid) {
  if (bytes == 0 || bytes % 4 != 0) {
    return Error(ErrorCode::kInvalidArgument, "nvme: log page length {} is not a multiple of 4",
                 bytes);
  }
  auto buffer = memory_.allocate(bytes);
  if (!buffer.ok()) return buffer.take_status();
  auto done = execute(0, commands::get_log_page(lid, bytes, nsid), Transfer::prp(*buffer, bytes));
  Status status = done.ok() ? check(*done, fmt::format("get log page 0x{:02x}", lid))
                            : done.take_status();
  std::vector<uint8_t> data(bytes);
  if (status.ok()) status = bus_->memory_read(*buffer, data);
  (void)memory_.free(*buffer);
  if (!status.ok()) return status;
  return data;
}

// ---- MSI-X ----------------------------------------------------------------------------------

Status Controller::enable_msix() {
  auto msix = Msix::probe(*bus_, pci_, bars_);
  if (!msix.ok()) return msix.take_status().prepend_message("nvme: ");
  msix_.emplace(*msix);
  if (msix_page_ == 0) {
    auto page = memory_.allocate(uint64_t{msix_->info().table_size} * 4);
    if (!page.ok()) return page.take_status();
    msix_page_ = *page;
  }
  FERRY_RETURN_IF_ERROR(zero_fill(*bus_, msix_page_, uint64_t{msix_->info().table_size} * 4));
  for (unsigned v = 0; v < msix_->info().table_size; ++v) {
    FERRY_RETURN_IF_ERROR(msix_->set_vector(*bus_, v, msix_page_ + 4 * v, 0x10000u + v));
  }
  return msix_->enable(*bus_);
}

Result<uint32_t> Controller::interrupt_word(uint16_t vector) {
  if (!msix_ || vector >= msix_->info().table_size) {
    return Error(ErrorCode::kFailedPrecondition, "nvme: MSI-X vector {} is not set up", vector);
  }
  auto word = bus_->memory_load(msix_page_ + 4 * uint64_t{vector}, 4);
  if (!word.ok()) return word.take_status();
  return static_cast<uint32_t>(*word);
}

Status Controller::clear_interrupt(uint16_t vector) {
  if (!msix_ || vector >= msix_->info().table_size) {
    return Error(ErrorCode::kFailedPrecondition, "nvme: MSI-X vector {} is not set up", vector);
  }
  return bus_->memory_store(msix_page_ + 4 * uint64_t{vector}, 0, 4);
}

Status Controller::use_msix_interrupts(uint32_t data_base) {
  auto msix = Msix::probe(*bus_, pci_, bars_);
  if (!msix.ok()) return msix.take_status().prepend_message("nvme: ");
  msix_.emplace(*msix);
  // The transport must listen before the first message can be sent.
  FERRY_RETURN_IF_ERROR(bus_->enable_interrupts(InterruptSource::kMsi));
  msi_data_base_ = data_base;
  for (unsigned v = 0; v < msix_->info().table_size; ++v)
    FERRY_RETURN_IF_ERROR(msix_->set_vector(*bus_, v, kMsiWindowBase, msi_data(static_cast<uint16_t>(v))));
  FERRY_RETURN_IF_ERROR(set_intx_disable(*bus_, pci_, true));
  FERRY_RETURN_IF_ERROR(msix_->enable(*bus_));
  signal_ = CompletionSignal::kMsix;
  return {};
}

Status Controller::use_intx_interrupts(std::optional<unsigned> irq) {
  if (!irq) {
    auto line = interrupt_line(*bus_, pci_);
    if (!line.ok()) return line.take_status().prepend_message("nvme: ");
    irq = *line;
  }
  FERRY_RETURN_IF_ERROR(bus_->enable_interrupts(InterruptSource::kIntx));
  if (msix_) {
    FERRY_RETURN_IF_ERROR(msix_->disable(*bus_));
  } else {
    // MSI-X may have been enabled before this driver (or by an earlier one).
    auto msix = Msix::probe(*bus_, pci_, bars_);
    if (msix.ok()) FERRY_RETURN_IF_ERROR(msix->disable(*bus_));
  }
  FERRY_RETURN_IF_ERROR(set_intx_disable(*bus_, pci_, false));
  intx_irq_ = *irq;
  signal_ = CompletionSignal::kIntx;
  return {};
}

void Controller::rebind(GuestBus& bus) { bus_ = &bus; }

}  // namespace ferry::guest::nvme
