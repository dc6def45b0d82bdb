// A representative NVMe-like device state and its description, shared by the vmstate
// tests, the load fuzzer, the benchmark and the demo: 31 scalar registers, a 64-slot
// array of owned queue structs (8 scalars each) with NULL holes, a list of pending events,
// a counted vector, and subsections.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <tuple>
#include <vector>

#include "vmstate/vmstate.h"

namespace ferry::vmstate::samples {

struct Queue {
  uint64_t dma_addr = 0;
  uint32_t head = 0;
  uint32_t tail = 0;
  uint16_t size = 0;
  uint16_t cqid = 0;
  uint16_t vector = 0;
  uint8_t phase = 0;
  bool irq_enabled = false;

  bool operator==(const Queue&) const = default;
};

inline constexpr auto kQueueDesc = describe<Queue>(
    "nvme-queue", {.version = 1},
    field("dma_addr", &Queue::dma_addr),
    field("head", &Queue::head),
    field("tail", &Queue::tail),
    field("size", &Queue::size),
    field("cqid", &Queue::cqid),
    field("vector", &Queue::vector),
    field("phase", &Queue::phase),
    field("irq_enabled", &Queue::irq_enabled));

struct Event {
  uint8_t type = 0;
  uint8_t info = 0;
  uint8_t log_page = 0;
  bool operator==(const Event&) const = default;
};

inline constexpr auto kEventDesc = describe<Event>(
    "nvme-event", {.version = 1},
    field("type", &Event::type),
    field("info", &Event::info),
    field("log_page", &Event::log_page));

inline constexpr size_t kQueueSlots = 64;

struct NvmeLike {
  // 31 registers
  uint64_t cap = 0, asq = 0, acq = 0, cmbloc_base = 0, pmr_base = 0;
  uint32_t vs = 0, intms = 0, intmc = 0, cc = 0, csts = 0, nssr = 0, aqa = 0;
  uint32_t cmbloc = 0, cmbsz = 0, bpinfo = 0, bprsel = 0, cmbmsc = 0, cmbsts = 0;
  uint32_t pmrcap = 0, pmrctl = 0, pmrsts = 0, pmrebs = 0, pmrswtp = 0, features = 0;
  uint32_t temperature = 0, timestamp_lo = 0, timestamp_hi = 0, irq_status = 0;
  uint16_t num_queues = 0;
  uint8_t aer_outstanding = 0;
  std::array<std::unique_ptr<Queue>, kQueueSlots> queues;
  // beyond the benchmark's shape: a list, a counted vector and subsection state
  std::list<Event> pending_events;
  uint16_t n_log = 0;
  std::vector<uint16_t> error_log;
  uint64_t smart_units_read = 0;
  uint64_t smart_units_written = 0;
  std::array<uint8_t, 16> serial{};

  bool operator==(const NvmeLike& o) const;
};

inline constexpr auto kNvmeLikeSmart = describe<NvmeLike>(
    "nvme-like/smart", {.version = 1},
    field("units_read", &NvmeLike::smart_units_read),
    field("units_written", &NvmeLike::smart_units_written));

inline constexpr auto kNvmeLikeEvents = describe<NvmeLike>(
    "nvme-like/events", {.version = 1},
    list("pending_events", &NvmeLike::pending_events, kEventDesc, 64));

inline constexpr auto kNvmeLikeDesc = describe<NvmeLike>(
    "nvme-like", {.version = 2, .minimum_version = 1},
    field("cap", &NvmeLike::cap), field("asq", &NvmeLike::asq), field("acq", &NvmeLike::acq),
    field("cmbloc_base", &NvmeLike::cmbloc_base), field("pmr_base", &NvmeLike::pmr_base),
    field("vs", &NvmeLike::vs), field("intms", &NvmeLike::intms),
    field("intmc", &NvmeLike::intmc), field("cc", &NvmeLike::cc),
    field("csts", &NvmeLike::csts), field("nssr", &NvmeLike::nssr),
    field("aqa", &NvmeLike::aqa), field("cmbloc", &NvmeLike::cmbloc),
    field("cmbsz", &NvmeLike::cmbsz), field("bpinfo", &NvmeLike::bpinfo),
    field("bprsel", &NvmeLike::bprsel), field("cmbmsc", &NvmeLike::cmbmsc),
    field("cmbsts", &NvmeLike::cmbsts), field("pmrcap", &NvmeLike::pmrcap),
    field("pmrctl", &NvmeLike::pmrctl), field("pmrsts", &NvmeLike::pmrsts),
    field("pmrebs", &NvmeLike::pmrebs), field("pmrswtp", &NvmeLike::pmrswtp),
    field("features", &NvmeLike::features), field("temperature", &NvmeLike::temperature),
    field("timestamp_lo", &NvmeLike::timestamp_lo),
    field("timestamp_hi", &NvmeLike::timestamp_hi),
    field("irq_status", &NvmeLike::irq_status),
    field("num_queues", &NvmeLike::num_queues)
        .validate([](uint16_t n) { return n <= kQueueSlots; }, "more queues than slots"),
    field("aer_outstanding", &NvmeLike::aer_outstanding),
    pointers("queues", &NvmeLike::queues, kQueueDesc),
    field("n_log", &NvmeLike::n_log).since(2),
    varray("error_log", &NvmeLike::error_log, &NvmeLike::n_log, 256).since(2),
    buffer("serial", &NvmeLike::serial).since(2),
    subsection(kNvmeLikeSmart,
               [](const NvmeLike& s) { return s.smart_units_read != 0 || s.smart_units_written != 0; }),
    subsection(kNvmeLikeEvents, [](const NvmeLike& s) { return !s.pending_events.empty(); }));

inline bool NvmeLike::operator==(const NvmeLike& o) const {
  auto regs = [](const NvmeLike& s) {
    return std::tie(s.cap, s.asq, s.acq, s.cmbloc_base, s.pmr_base, s.vs, s.intms, s.intmc,
                    s.cc, s.csts, s.nssr, s.aqa, s.cmbloc, s.cmbsz, s.bpinfo, s.bprsel,
                    s.cmbmsc, s.cmbsts, s.pmrcap, s.pmrctl, s.pmrsts, s.pmrebs, s.pmrswtp,
                    s.features, s.temperature, s.timestamp_lo, s.timestamp_hi, s.irq_status,
                    s.num_queues, s.aer_outstanding, s.pending_events, s.n_log, s.error_log,
                    s.smart_units_read, s.smart_units_written, s.serial);
  };
  if (regs(*this) != regs(o)) return false;
  for (size_t i = 0; i < kQueueSlots; ++i) {
    if (!queues[i] != !o.queues[i]) return false;
    if (queues[i] && !(*queues[i] == *o.queues[i])) return false;
  }
  return true;
}

// A populated state: every other queue slot filled, distinct values everywhere.
inline void fill_nvme_like(NvmeLike& s, uint32_t seed = 1) {
  uint64_t x = seed;
  auto next = [&x]() { x = x * 6364136223846793005ULL + 1442695040888963407ULL; return x >> 17; };
  for (uint64_t* r : {&s.cap, &s.asq, &s.acq, &s.cmbloc_base, &s.pmr_base}) *r = next();
  for (uint32_t* r : {&s.vs, &s.intms, &s.intmc, &s.cc, &s.csts, &s.nssr, &s.aqa, &s.cmbloc,
                      &s.cmbsz, &s.bpinfo, &s.bprsel, &s.cmbmsc, &s.cmbsts, &s.pmrcap,
                      &s.pmrctl, &s.pmrsts, &s.pmrebs, &s.pmrswtp, &s.features,
                      &s.temperature, &s.timestamp_lo, &s.timestamp_hi, &s.irq_status})
    *r = static_cast<uint32_t>(next());
  s.num_queues = kQueueSlots / 2;
  s.aer_outstanding = 3;
  for (size_t i = 0; i < kQueueSlots; ++i) {
    if (i % 2) continue;
    auto q = std::make_unique<Queue>();
    q->dma_addr = next();
    q->head = static_cast<uint32_t>(next());
    q->tail = static_cast<uint32_t>(next());
    q->size = static_cast<uint16_t>(next());
    q->cqid = static_cast<uint16_t>(i);
    q->vector = static_cast<uint16_t>(i / 2);
    q->phase = 1;
    q->irq_enabled = true;
    s.queues[i] = std::move(q);
  }
}

}  // namespace ferry::vmstate::samples
