// One submission/completion queue pair as the host driver keeps it: the rings in guest
// memory, the SQ tail the host owns, the SQ head the controller reports in completions, the
// CQ head and the phase bit the host expects next. Doorbells are rung explicitly so callers
// can batch submissions and completions (or, in tests, write whatever value they like).
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "guest/guest_bus.h"
#include "guest/nvme/command.h"

namespace ferry::guest::nvme {

struct QueueLayout {
  uint16_t qid = 0;
  uint64_t sq_address = 0;
  uint32_t sq_entries = 0;
  uint64_t cq_address = 0;
  uint32_t cq_entries = 0;
  uint64_t sq_doorbell = 0;  // guest-physical addresses of the two doorbell registers
  uint64_t cq_doorbell = 0;
};

class QueuePair {
 public:
  explicit QueuePair(const QueueLayout& layout) : layout_(layout) {}

  const QueueLayout& layout() const { return layout_; }
  uint16_t qid() const { return layout_.qid; }
  uint32_t sq_tail() const { return sq_tail_; }
  uint32_t sq_head() const { return sq_head_; }
  uint32_t cq_head() const { return cq_head_; }
  bool expected_phase() const { return phase_; }
  // Free SQ slots (one slot always stays empty, as the specification requires).
  uint32_t sq_space() const;

  // Copies the entry to the SQ tail slot and advances the tail; no doorbell.
  Status push(GuestBus& bus, const Sqe& sqe);
  // Writes the current tail to the SQ doorbell.
  Status ring_sq(GuestBus& bus);
  // Takes up to `max` new completions (phase bit matching), appending them to `out`; updates
  // the SQ head from them. The CQ head doorbell is not written: ring_cq() does.
  Result<size_t> reap(GuestBus& bus, size_t max, std::vector<Completion>& out);
  Status ring_cq(GuestBus& bus);

 private:
  QueueLayout layout_;
  uint32_t sq_tail_ = 0;
  uint32_t sq_head_ = 0;
  uint32_t cq_head_ = 0;
  bool phase_ = true;
};

}  // namespace ferry::guest::nvme
