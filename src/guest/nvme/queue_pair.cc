#include "guest/nvme/queue_pair.h"

#include <algorithm>
#include <array>
#include <span>

namespace ferry::guest::nvme {

namespace sn = spec::nvme;

uint32_t QueuePair::sq_space() const {
  uint32_t used = (sq_tail_ + layout_.sq_entries - sq_head_) % layout_.sq_entries;
  return layout_.sq_entries - 1 - used;
}

Status QueuePair::push(GuestBus& bus, const Sqe& sqe) {
  if (sq_space() == 0) {
    return Error(ErrorCode::kFailedPrecondition,
                 "nvme: SQ {} is full (tail {}, head {}, {} entries)", layout_.qid, sq_tail_,
                 sq_head_, layout_.sq_entries);
  }
  FERRY_RETURN_IF_ERROR(
      bus.memory_write(layout_.sq_address + uint64_t{sq_tail_} * sn::kSqeSize, sqe.bytes));
  sq_tail_ = (sq_tail_ + 1) % layout_.sq_entries;
  return {};
}

Status QueuePair::ring_sq(GuestBus& bus) { return bus.mmio_write(layout_.sq_doorbell, sq_tail_, 4); }

Status QueuePair::ring_cq(GuestBus& bus) { return bus.mmio_write(layout_.cq_doorbell, cq_head_, 4); }

Result<size_t> QueuePair::reap(GuestBus& bus, size_t max, std::vector<Completion>& out) {
  size_t taken = 0;
  while (taken < max) {
    // Read a run of entries up to the ring's end in one transfer (a round trip over qtest).
    constexpr size_t kMaxRun = 64;
    size_t run = std::min<size_t>({max - taken, layout_.cq_entries - cq_head_, kMaxRun});
    std::array<uint8_t, kMaxRun * sn::kCqeSize> buffer;
    auto bytes = std::span(buffer).first(run * sn::kCqeSize);
    FERRY_RETURN_IF_ERROR(
        bus.memory_read(layout_.cq_address + uint64_t{cq_head_} * sn::kCqeSize, bytes));
    size_t in_run = 0;
    for (; in_run < run; ++in_run) {
      auto entry = std::span<const uint8_t, sn::kCqeSize>(bytes.data() + in_run * sn::kCqeSize,
                                                          sn::kCqeSize);
      Completion c = Completion::parse(entry);
      if (c.phase != phase_) break;
      // Another SQ may share this CQ: only our own SQ's head moves ours.
      if (c.sq_id == layout_.qid && c.sq_head < layout_.sq_entries) sq_head_ = c.sq_head;
      out.push_back(c);
      if (++cq_head_ == layout_.cq_entries) {
        cq_head_ = 0;
        phase_ = !phase_;
      }
    }
    taken += in_run;
    if (in_run < run) break;
  }
  return taken;
}

}  // namespace ferry::guest::nvme
