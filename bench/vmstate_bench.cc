// Saving and loading an NVMe-like device state (31 scalar registers and 64 slots of owned
// queue structs, every other slot NULL) with four encoders, in one process run:
//   ferry         the VMState description (src/vmstate)
//   hand-written  plain code writing the very same bytes with the same ByteWriter/ByteReader,
//                 checking every read like Ferry does
//   protobuf      copy struct -> message + SerializeToString; ParseFromString + copy back
//   cereal        BinaryOutputArchive / BinaryInputArchive on the struct itself
// Every load starts by freeing the queues of the previous iteration and ends with the
// 32 queues allocated again, the same for all four, so allocation costs are shared.
// After Google Benchmark's own output, a table compares the best time of each contender
// (CPU time, the minimum over repetitions: on a shared machine noise only ever adds).
// Benchmarks are not tests: the exit code is non-zero only when the round-trip checks at
// start-up fail.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <istream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <streambuf>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <benchmark/benchmark.h>
#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/memory.hpp>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"
#include "vmstate/vmstate.h"
#include "vmstate_bench.pb.h"

namespace ferry::bench {
namespace {

namespace vm = ferry::vmstate;

// ---- the state -------------------------------------------------------------------------

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

constexpr size_t kSlots = 64;

struct NvmeState {
  // 31 registers: 6 x u64, 17 x u32, 5 x u16, 3 x u8
  uint64_t cap = 0, asq = 0, acq = 0, cmbloc_base = 0, pmr_base = 0, bpmbl = 0;
  uint32_t vs = 0, intms = 0, intmc = 0, cc = 0, csts = 0, nssr = 0, aqa = 0, cmbloc = 0;
  uint32_t cmbsz = 0, bpinfo = 0, bprsel = 0, pmrcap = 0, pmrctl = 0, pmrsts = 0, pmrebs = 0;
  uint32_t pmrswtp = 0, irq_status = 0;
  uint16_t num_queues = 0, max_q_entries = 0, temperature = 0, temp_threshold = 0;
  uint16_t arbitration = 0;
  uint8_t aer_outstanding = 0, aer_queued = 0, critical_warning = 0;
  std::array<std::unique_ptr<Queue>, kSlots> queues;

  auto registers() const {
    return std::tie(cap, asq, acq, cmbloc_base, pmr_base, bpmbl, vs, intms, intmc, cc, csts,
                    nssr, aqa, cmbloc, cmbsz, bpinfo, bprsel, pmrcap, pmrctl, pmrsts, pmrebs,
                    pmrswtp, irq_status, num_queues, max_q_entries, temperature,
                    temp_threshold, arbitration, aer_outstanding, aer_queued,
                    critical_warning);
  }
  bool operator==(const NvmeState& other) const {
    if (registers() != other.registers()) return false;
    for (size_t i = 0; i < kSlots; ++i) {
      if (!queues[i] != !other.queues[i]) return false;
      if (queues[i] && !(*queues[i] == *other.queues[i])) return false;
    }
    return true;
  }
};
static_assert(std::tuple_size_v<decltype(std::declval<NvmeState>().registers())> == 31);

// Distinct, deterministic values everywhere; even slots hold a queue, odd slots are NULL.
void fill_state(NvmeState& s) {
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  auto next = [&x] {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x >> 17;
  };
  for (uint64_t* r : {&s.cap, &s.asq, &s.acq, &s.cmbloc_base, &s.pmr_base, &s.bpmbl})
    *r = next();
  for (uint32_t* r : {&s.vs, &s.intms, &s.intmc, &s.cc, &s.csts, &s.nssr, &s.aqa, &s.cmbloc,
                      &s.cmbsz, &s.bpinfo, &s.bprsel, &s.pmrcap, &s.pmrctl, &s.pmrsts,
                      &s.pmrebs, &s.pmrswtp, &s.irq_status})
    *r = static_cast<uint32_t>(next());
  for (uint16_t* r : {&s.max_q_entries, &s.temperature, &s.temp_threshold, &s.arbitration})
    *r = static_cast<uint16_t>(next());
  s.num_queues = kSlots / 2;
  s.aer_outstanding = 3;
  s.aer_queued = 1;
  s.critical_warning = 0x10;
  for (size_t i = 0; i < kSlots; i += 2) {
    auto q = std::make_unique<Queue>();
    q->dma_addr = next();
    q->head = static_cast<uint32_t>(next());
    q->tail = static_cast<uint32_t>(next());
    q->size = static_cast<uint16_t>(next());
    q->cqid = static_cast<uint16_t>(i);
    q->vector = static_cast<uint16_t>(i / 2);
    q->phase = 1;
    q->irq_enabled = (i % 4) == 0;
    s.queues[i] = std::move(q);
  }
}

// Every load starts from empty slots (Ferry's loader refuses to overwrite a queue).
void free_queues(NvmeState& s) {
  for (auto& q : s.queues) q.reset();
}

// ---- 1. Ferry ----------------------------------------------------------------------------

inline constexpr auto kQueueDesc = vm::describe<Queue>(
    "nvme-queue", {.version = 1},
    vm::field("dma_addr", &Queue::dma_addr),
    vm::field("head", &Queue::head),
    vm::field("tail", &Queue::tail),
    vm::field("size", &Queue::size),
    vm::field("cqid", &Queue::cqid),
    vm::field("vector", &Queue::vector),
    vm::field("phase", &Queue::phase),
    vm::field("irq_enabled", &Queue::irq_enabled));

inline constexpr auto kStateDesc = vm::describe<NvmeState>(
    "nvme", {.version = 1},
    vm::field("cap", &NvmeState::cap),
    vm::field("asq", &NvmeState::asq),
    vm::field("acq", &NvmeState::acq),
    vm::field("cmbloc_base", &NvmeState::cmbloc_base),
    vm::field("pmr_base", &NvmeState::pmr_base),
    vm::field("bpmbl", &NvmeState::bpmbl),
    vm::field("vs", &NvmeState::vs),
    vm::field("intms", &NvmeState::intms),
    vm::field("intmc", &NvmeState::intmc),
    vm::field("cc", &NvmeState::cc),
    vm::field("csts", &NvmeState::csts),
    vm::field("nssr", &NvmeState::nssr),
    vm::field("aqa", &NvmeState::aqa),
    vm::field("cmbloc", &NvmeState::cmbloc),
    vm::field("cmbsz", &NvmeState::cmbsz),
    vm::field("bpinfo", &NvmeState::bpinfo),
    vm::field("bprsel", &NvmeState::bprsel),
    vm::field("pmrcap", &NvmeState::pmrcap),
    vm::field("pmrctl", &NvmeState::pmrctl),
    vm::field("pmrsts", &NvmeState::pmrsts),
    vm::field("pmrebs", &NvmeState::pmrebs),
    vm::field("pmrswtp", &NvmeState::pmrswtp),
    vm::field("irq_status", &NvmeState::irq_status),
    vm::field("num_queues", &NvmeState::num_queues),
    vm::field("max_q_entries", &NvmeState::max_q_entries),
    vm::field("temperature", &NvmeState::temperature),
    vm::field("temp_threshold", &NvmeState::temp_threshold),
    vm::field("arbitration", &NvmeState::arbitration),
    vm::field("aer_outstanding", &NvmeState::aer_outstanding),
    vm::field("aer_queued", &NvmeState::aer_queued),
    vm::field("critical_warning", &NvmeState::critical_warning),
    vm::pointers("queues", &NvmeState::queues, kQueueDesc));

Status ferry_save(NvmeState& s, ByteWriter& w) { return kStateDesc.save(s, w); }
Status ferry_load(NvmeState& s, std::span<const uint8_t> bytes) {
  ByteReader r(bytes);
  return kStateDesc.load(s, r);
}

// ---- 2. hand-written, the same bytes -------------------------------------------------------

constexpr uint8_t kNullSlot = 0x30;
constexpr uint8_t kPresentSlot = 0x31;

void hand_save(const NvmeState& s, ByteWriter& w) {
  w.put_be64(s.cap);
  w.put_be64(s.asq);
  w.put_be64(s.acq);
  w.put_be64(s.cmbloc_base);
  w.put_be64(s.pmr_base);
  w.put_be64(s.bpmbl);
  w.put_be32(s.vs);
  w.put_be32(s.intms);
  w.put_be32(s.intmc);
  w.put_be32(s.cc);
  w.put_be32(s.csts);
  w.put_be32(s.nssr);
  w.put_be32(s.aqa);
  w.put_be32(s.cmbloc);
  w.put_be32(s.cmbsz);
  w.put_be32(s.bpinfo);
  w.put_be32(s.bprsel);
  w.put_be32(s.pmrcap);
  w.put_be32(s.pmrctl);
  w.put_be32(s.pmrsts);
  w.put_be32(s.pmrebs);
  w.put_be32(s.pmrswtp);
  w.put_be32(s.irq_status);
  w.put_be16(s.num_queues);
  w.put_be16(s.max_q_entries);
  w.put_be16(s.temperature);
  w.put_be16(s.temp_threshold);
  w.put_be16(s.arbitration);
  w.put_u8(s.aer_outstanding);
  w.put_u8(s.aer_queued);
  w.put_u8(s.critical_warning);
  for (const auto& q : s.queues) {
    if (!q) {
      w.put_u8(kNullSlot);
      continue;
    }
    w.put_u8(kPresentSlot);
    w.put_be64(q->dma_addr);
    w.put_be32(q->head);
    w.put_be32(q->tail);
    w.put_be16(q->size);
    w.put_be16(q->cqid);
    w.put_be16(q->vector);
    w.put_u8(q->phase);
    w.put_u8(q->irq_enabled ? 1 : 0);
  }
}

// Same checks as Ferry's loader: every read bounded, bools 0 or 1, markers 0x30 or 0x31,
// no overwriting of a queue already there. Written the way a careful engineer would for
// speed: bool results on the hot path, the Status built only when something is wrong.
bool hand_load_queue(Queue& q, ByteReader& r, Status& err) {
  uint8_t irq_enabled = 0;
  if (!r.get_be64(q.dma_addr) || !r.get_be32(q.head) || !r.get_be32(q.tail) ||
      !r.get_be16(q.size) || !r.get_be16(q.cqid) || !r.get_be16(q.vector) ||
      !r.get_u8(q.phase) || !r.get_u8(irq_enabled)) [[unlikely]] {
    err = Error(ErrorCode::kOutOfRange, "queue: input ends early at offset {}", r.offset());
    return false;
  }
  if (irq_enabled > 1) [[unlikely]] {
    err = Error(ErrorCode::kCorrupt, "irq_enabled: expected a bool, found {:#04x}", irq_enabled);
    return false;
  }
  q.irq_enabled = irq_enabled != 0;
  return true;
}

Status hand_load(NvmeState& s, std::span<const uint8_t> bytes) {
  ByteReader r(bytes);
  if (!r.get_be64(s.cap)) return r.truncated(8);
  if (!r.get_be64(s.asq)) return r.truncated(8);
  if (!r.get_be64(s.acq)) return r.truncated(8);
  if (!r.get_be64(s.cmbloc_base)) return r.truncated(8);
  if (!r.get_be64(s.pmr_base)) return r.truncated(8);
  if (!r.get_be64(s.bpmbl)) return r.truncated(8);
  if (!r.get_be32(s.vs)) return r.truncated(4);
  if (!r.get_be32(s.intms)) return r.truncated(4);
  if (!r.get_be32(s.intmc)) return r.truncated(4);
  if (!r.get_be32(s.cc)) return r.truncated(4);
  if (!r.get_be32(s.csts)) return r.truncated(4);
  if (!r.get_be32(s.nssr)) return r.truncated(4);
  if (!r.get_be32(s.aqa)) return r.truncated(4);
  if (!r.get_be32(s.cmbloc)) return r.truncated(4);
  if (!r.get_be32(s.cmbsz)) return r.truncated(4);
  if (!r.get_be32(s.bpinfo)) return r.truncated(4);
  if (!r.get_be32(s.bprsel)) return r.truncated(4);
  if (!r.get_be32(s.pmrcap)) return r.truncated(4);
  if (!r.get_be32(s.pmrctl)) return r.truncated(4);
  if (!r.get_be32(s.pmrsts)) return r.truncated(4);
  if (!r.get_be32(s.pmrebs)) return r.truncated(4);
  if (!r.get_be32(s.pmrswtp)) return r.truncated(4);
  if (!r.get_be32(s.irq_status)) return r.truncated(4);
  if (!r.get_be16(s.num_queues)) return r.truncated(2);
  if (!r.get_be16(s.max_q_entries)) return r.truncated(2);
  if (!r.get_be16(s.temperature)) return r.truncated(2);
  if (!r.get_be16(s.temp_threshold)) return r.truncated(2);
  if (!r.get_be16(s.arbitration)) return r.truncated(2);
  if (!r.get_u8(s.aer_outstanding)) return r.truncated(1);
  if (!r.get_u8(s.aer_queued)) return r.truncated(1);
  if (!r.get_u8(s.critical_warning)) return r.truncated(1);
  for (size_t i = 0; i < kSlots; ++i) {
    uint8_t marker;
    if (!r.get_u8(marker)) return r.truncated(1);
    if (marker != kNullSlot && marker != kPresentSlot) [[unlikely]]
      return Error(ErrorCode::kCorrupt, "queues[{}]: bad pointer marker {:#04x}", i, marker);
    if (s.queues[i]) [[unlikely]]
      return Error(ErrorCode::kFailedPrecondition, "queues[{}]: slot already holds a queue", i);
    if (marker == kNullSlot) continue;
    s.queues[i] = std::make_unique<Queue>();
    Status err;
    if (!hand_load_queue(*s.queues[i], r, err)) [[unlikely]] return err;
  }
  return {};
}

// ---- 3. protobuf ----------------------------------------------------------------------------

// Reuses `msg` (its queue sub-messages stay allocated across Clear) and `out`'s capacity,
// as a long-lived migration stream would.
void protobuf_save(const NvmeState& s, ferry_bench_pb::NvmeStateMsg& msg, std::string& out) {
  msg.set_cap(s.cap);
  msg.set_asq(s.asq);
  msg.set_acq(s.acq);
  msg.set_cmbloc_base(s.cmbloc_base);
  msg.set_pmr_base(s.pmr_base);
  msg.set_bpmbl(s.bpmbl);
  msg.set_vs(s.vs);
  msg.set_intms(s.intms);
  msg.set_intmc(s.intmc);
  msg.set_cc(s.cc);
  msg.set_csts(s.csts);
  msg.set_nssr(s.nssr);
  msg.set_aqa(s.aqa);
  msg.set_cmbloc(s.cmbloc);
  msg.set_cmbsz(s.cmbsz);
  msg.set_bpinfo(s.bpinfo);
  msg.set_bprsel(s.bprsel);
  msg.set_pmrcap(s.pmrcap);
  msg.set_pmrctl(s.pmrctl);
  msg.set_pmrsts(s.pmrsts);
  msg.set_pmrebs(s.pmrebs);
  msg.set_pmrswtp(s.pmrswtp);
  msg.set_irq_status(s.irq_status);
  msg.set_num_queues(s.num_queues);
  msg.set_max_q_entries(s.max_q_entries);
  msg.set_temperature(s.temperature);
  msg.set_temp_threshold(s.temp_threshold);
  msg.set_arbitration(s.arbitration);
  msg.set_aer_outstanding(s.aer_outstanding);
  msg.set_aer_queued(s.aer_queued);
  msg.set_critical_warning(s.critical_warning);
  msg.clear_queues();
  for (size_t i = 0; i < kSlots; ++i) {
    const Queue* q = s.queues[i].get();
    if (!q) continue;
    ferry_bench_pb::QueueMsg* m = msg.add_queues();
    m->set_slot(static_cast<uint32_t>(i));
    m->set_dma_addr(q->dma_addr);
    m->set_head(q->head);
    m->set_tail(q->tail);
    m->set_size(q->size);
    m->set_cqid(q->cqid);
    m->set_vector(q->vector);
    m->set_phase(q->phase);
    m->set_irq_enabled(q->irq_enabled);
  }
  msg.SerializeToString(&out);
}

// Narrows a uint32 that carries a 16- or 8-bit register; false if it does not fit.
template <typename Narrow>
bool narrow_into(uint32_t wide, Narrow& out) {
  if (wide > std::numeric_limits<Narrow>::max()) [[unlikely]] return false;
  out = static_cast<Narrow>(wide);
  return true;
}

Status protobuf_load(NvmeState& s, const std::string& bytes, ferry_bench_pb::NvmeStateMsg& msg) {
  if (!msg.ParseFromString(bytes)) return Error(ErrorCode::kCorrupt, "protobuf parse failed");
  s.cap = msg.cap();
  s.asq = msg.asq();
  s.acq = msg.acq();
  s.cmbloc_base = msg.cmbloc_base();
  s.pmr_base = msg.pmr_base();
  s.bpmbl = msg.bpmbl();
  s.vs = msg.vs();
  s.intms = msg.intms();
  s.intmc = msg.intmc();
  s.cc = msg.cc();
  s.csts = msg.csts();
  s.nssr = msg.nssr();
  s.aqa = msg.aqa();
  s.cmbloc = msg.cmbloc();
  s.cmbsz = msg.cmbsz();
  s.bpinfo = msg.bpinfo();
  s.bprsel = msg.bprsel();
  s.pmrcap = msg.pmrcap();
  s.pmrctl = msg.pmrctl();
  s.pmrsts = msg.pmrsts();
  s.pmrebs = msg.pmrebs();
  s.pmrswtp = msg.pmrswtp();
  s.irq_status = msg.irq_status();
  bool fits = narrow_into(msg.num_queues(), s.num_queues) &&
              narrow_into(msg.max_q_entries(), s.max_q_entries) &&
              narrow_into(msg.temperature(), s.temperature) &&
              narrow_into(msg.temp_threshold(), s.temp_threshold) &&
              narrow_into(msg.arbitration(), s.arbitration) &&
              narrow_into(msg.aer_outstanding(), s.aer_outstanding) &&
              narrow_into(msg.aer_queued(), s.aer_queued) &&
              narrow_into(msg.critical_warning(), s.critical_warning);
  if (!fits) [[unlikely]] return Error(ErrorCode::kCorrupt, "a register is out of range");
  for (const ferry_bench_pb::QueueMsg& m : msg.queues()) {
    if (m.slot() >= kSlots || s.queues[m.slot()]) [[unlikely]]
      return Error(ErrorCode::kCorrupt, "queue slot {} is out of range or repeated", m.slot());
    auto q = std::make_unique<Queue>();
    q->dma_addr = m.dma_addr();
    q->head = m.head();
    q->tail = m.tail();
    fits = narrow_into(m.size(), q->size) && narrow_into(m.cqid(), q->cqid) &&
           narrow_into(m.vector(), q->vector) && narrow_into(m.phase(), q->phase);
    if (!fits) [[unlikely]] return Error(ErrorCode::kCorrupt, "a queue field is out of range");
    q->irq_enabled = m.irq_enabled();
    s.queues[m.slot()] = std::move(q);
  }
  return {};
}

// ---- 4. cereal ------------------------------------------------------------------------------

template <typename Archive>
void serialize(Archive& ar, Queue& q) {
  ar(q.dma_addr, q.head, q.tail, q.size, q.cqid, q.vector, q.phase, q.irq_enabled);
}

template <typename Archive>
void serialize(Archive& ar, NvmeState& s) {
  ar(s.cap, s.asq, s.acq, s.cmbloc_base, s.pmr_base, s.bpmbl, s.vs, s.intms, s.intmc, s.cc,
     s.csts, s.nssr, s.aqa, s.cmbloc, s.cmbsz, s.bpinfo, s.bprsel, s.pmrcap, s.pmrctl,
     s.pmrsts, s.pmrebs, s.pmrswtp, s.irq_status, s.num_queues, s.max_q_entries,
     s.temperature, s.temp_threshold, s.arbitration, s.aer_outstanding, s.aer_queued,
     s.critical_warning, s.queues);
}

// Cereal talks to a std::ostream/istream. These stream buffers append to a reused string
// and read from a fixed span, so cereal is not charged for std::stringstream's own
// overhead (the streams are built once; only the archives are built per save/load).
class StringSinkBuf : public std::streambuf {
 public:
  explicit StringSinkBuf(std::string& out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* data, std::streamsize n) override {
    out_.append(data, static_cast<size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof()))
      out_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }

 private:
  std::string& out_;
};

class SpanSourceBuf : public std::streambuf {
 public:
  void reset(const std::string& bytes) {
    char* begin = const_cast<char*>(bytes.data());  // read-only: no put area is set
    setg(begin, begin, begin + bytes.size());
  }
};

struct CerealSaver {
  std::string bytes;
  StringSinkBuf buf{bytes};
  std::ostream stream{&buf};

  void save(NvmeState& s) {
    bytes.clear();
    cereal::BinaryOutputArchive ar(stream);
    ar(s);
  }
};

struct CerealLoader {
  SpanSourceBuf buf;
  std::istream stream{&buf};

  // Cereal reports a short read by throwing.
  Status load(NvmeState& s, const std::string& bytes) {
    buf.reset(bytes);
    stream.clear();
    try {
      cereal::BinaryInputArchive ar(stream);
      ar(s);
    } catch (const cereal::Exception& e) {
      return Error(ErrorCode::kCorrupt, "cereal: {}", e.what());
    }
    return {};
  }
};

// ---- correctness, checked once before timing -------------------------------------------------

[[noreturn]] void fail(std::string_view what) {
  std::fprintf(stderr, "vmstate_bench: correctness check failed: %.*s\n",
               static_cast<int>(what.size()), what.data());
  std::exit(1);
}

void expect_ok(const Status& st, std::string_view what) {
  if (!st.ok()) fail(fmt::format("{}: {}", what, st.to_string()));
}

struct EncodedSizes {
  size_t vmstate = 0;
  size_t protobuf = 0;
  size_t cereal = 0;
};

EncodedSizes check_all_round_trips(NvmeState& src) {
  EncodedSizes sizes;
  ByteWriter ferry_bytes, hand_bytes;
  expect_ok(ferry_save(src, ferry_bytes), "ferry save");
  hand_save(src, hand_bytes);
  if (!std::ranges::equal(ferry_bytes.bytes(), hand_bytes.bytes()))
    fail(fmt::format("hand-written bytes ({}) differ from Ferry's ({})", hand_bytes.size(),
                     ferry_bytes.size()));
  sizes.vmstate = ferry_bytes.size();

  NvmeState dst;
  expect_ok(ferry_load(dst, ferry_bytes.bytes()), "ferry load");
  if (!(dst == src)) fail("ferry load does not reproduce the state");
  free_queues(dst);
  expect_ok(hand_load(dst, ferry_bytes.bytes()), "hand-written load");
  if (!(dst == src)) fail("hand-written load does not reproduce the state");

  // Both VMState decoders must refuse every truncation and a bad marker: the hand-written
  // one is held to Ferry's safety level.
  std::vector<uint8_t> bytes = ferry_bytes.to_vector();
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::span<const uint8_t> prefix(bytes.data(), len);
    free_queues(dst);
    bool ferry_refused = !ferry_load(dst, prefix).ok();
    free_queues(dst);
    bool hand_refused = !hand_load(dst, prefix).ok();
    if (!ferry_refused || !hand_refused)
      fail(fmt::format("a load accepted {} of {} bytes (ferry refused: {}, hand refused: {})",
                       len, bytes.size(), ferry_refused, hand_refused));
  }
  auto both_refuse = [&](size_t offset, uint8_t bad, std::string_view what) {
    std::vector<uint8_t> corrupt = bytes;
    corrupt[offset] = bad;
    free_queues(dst);
    bool ferry_refused = !ferry_load(dst, corrupt).ok();
    free_queues(dst);
    bool hand_refused = !hand_load(dst, corrupt).ok();
    if (!ferry_refused || !hand_refused) fail(fmt::format("{} was accepted", what));
  };
  constexpr size_t kFirstMarker = 6 * 8 + 17 * 4 + 5 * 2 + 3;
  constexpr size_t kFirstIrqEnabled = kFirstMarker + 1 + 8 + 4 + 4 + 2 + 2 + 2 + 1;
  if (bytes[kFirstMarker] != kPresentSlot || bytes[kFirstIrqEnabled] != 1)
    fail("the first queue is not where expected");
  both_refuse(kFirstMarker, 0x7f, "a bad pointer marker");
  both_refuse(kFirstIrqEnabled, 2, "a bool of 2");

  ferry_bench_pb::NvmeStateMsg msg;
  std::string pb_bytes;
  protobuf_save(src, msg, pb_bytes);
  free_queues(dst);
  ferry_bench_pb::NvmeStateMsg parsed;
  expect_ok(protobuf_load(dst, pb_bytes, parsed), "protobuf load");
  if (!(dst == src)) fail("protobuf round trip does not reproduce the state");
  sizes.protobuf = pb_bytes.size();

  CerealSaver saver;
  saver.save(src);
  CerealLoader loader;
  free_queues(dst);
  expect_ok(loader.load(dst, saver.bytes), "cereal load");
  if (!(dst == src)) fail("cereal round trip does not reproduce the state");
  sizes.cereal = saver.bytes.size();
  return sizes;
}

// ---- the timed loops ------------------------------------------------------------------------

// What every save writes and every load rebuilds.
NvmeState& source_state() {
  static NvmeState state = [] {
    NvmeState s;
    fill_state(s);
    return s;
  }();
  return state;
}

std::vector<uint8_t> vmstate_bytes() {
  ByteWriter w;
  hand_save(source_state(), w);
  return w.to_vector();
}

void stop_on_error(benchmark::State& bench, const Status& st) {
  bench.SkipWithError(st.to_string().c_str());
}

void BM_SaveFerry(benchmark::State& bench) {
  NvmeState& src = source_state();
  ByteWriter w;
  for (auto _ : bench) {
    w.clear();
    Status st = ferry_save(src, w);
    if (!st.ok()) [[unlikely]] {
      stop_on_error(bench, st);
      break;
    }
    benchmark::DoNotOptimize(w.bytes().data());
    benchmark::ClobberMemory();
  }
}

void BM_SaveHandWritten(benchmark::State& bench) {
  NvmeState& src = source_state();
  ByteWriter w;
  for (auto _ : bench) {
    w.clear();
    hand_save(src, w);
    benchmark::DoNotOptimize(w.bytes().data());
    benchmark::ClobberMemory();
  }
}

void BM_SaveProtobuf(benchmark::State& bench) {
  NvmeState& src = source_state();
  ferry_bench_pb::NvmeStateMsg msg;
  std::string out;
  for (auto _ : bench) {
    protobuf_save(src, msg, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
}

void BM_SaveCereal(benchmark::State& bench) {
  NvmeState& src = source_state();
  CerealSaver saver;
  for (auto _ : bench) {
    saver.save(src);
    benchmark::DoNotOptimize(saver.bytes.data());
    benchmark::ClobberMemory();
  }
}

// The loads: `free_queues` first, so every iteration frees 32 queues and allocates 32.
void BM_LoadFerry(benchmark::State& bench) {
  std::vector<uint8_t> bytes = vmstate_bytes();
  NvmeState dst;
  for (auto _ : bench) {
    free_queues(dst);
    Status st = ferry_load(dst, bytes);
    if (!st.ok()) [[unlikely]] {
      stop_on_error(bench, st);
      break;
    }
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
}

void BM_LoadHandWritten(benchmark::State& bench) {
  std::vector<uint8_t> bytes = vmstate_bytes();
  NvmeState dst;
  for (auto _ : bench) {
    free_queues(dst);
    Status st = hand_load(dst, bytes);
    if (!st.ok()) [[unlikely]] {
      stop_on_error(bench, st);
      break;
    }
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
}

void BM_LoadProtobuf(benchmark::State& bench) {
  ferry_bench_pb::NvmeStateMsg msg;
  std::string bytes;
  protobuf_save(source_state(), msg, bytes);
  NvmeState dst;
  for (auto _ : bench) {
    free_queues(dst);
    Status st = protobuf_load(dst, bytes, msg);
    if (!st.ok()) [[unlikely]] {
      stop_on_error(bench, st);
      break;
    }
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
}

void BM_LoadCereal(benchmark::State& bench) {
  CerealSaver saver;
  saver.save(source_state());
  CerealLoader loader;
  NvmeState dst;
  for (auto _ : bench) {
    free_queues(dst);
    Status st = loader.load(dst, saver.bytes);
    if (!st.ok()) [[unlikely]] {
      stop_on_error(bench, st);
      break;
    }
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
}

// Not a contender: the part of every load above that frees and allocates the 32 queues.
void BM_AllocationFloor(benchmark::State& bench) {
  NvmeState dst;
  for (auto _ : bench) {
    free_queues(dst);
    for (size_t i = 0; i < kSlots; i += 2) dst.queues[i] = std::make_unique<Queue>();
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
}

// ---- reporting ------------------------------------------------------------------------------

#if defined(__clang__)
constexpr std::string_view kCompiler = "clang " __clang_version__;
#elif defined(__GNUC__)
constexpr std::string_view kCompiler = "g++ " __VERSION__;
#else
constexpr std::string_view kCompiler = "unknown";
#endif

constexpr std::array<std::string_view, 4> kContenders = {"ferry", "hand-written", "protobuf",
                                                         "cereal"};

// Prints Google Benchmark's usual lines and keeps every repetition's CPU time per name.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  using ConsoleReporter::ConsoleReporter;

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      times_[run.run_name.function_name].push_back(run.GetAdjustedCPUTime());
    }
  }

  // Best time in ns of a benchmark, if it ran.
  std::optional<double> best(std::string_view name) const {
    auto it = times_.find(name);
    if (it == times_.end() || it->second.empty()) return std::nullopt;
    return *std::ranges::min_element(it->second);
  }
  std::optional<double> best(std::string_view op, std::string_view contender) const {
    return best(fmt::format("{}/{}", op, contender));
  }
  size_t repetitions() const {
    size_t most = 0;
    for (const auto& [name, times] : times_) most = std::max(most, times.size());
    return most;
  }

 private:
  std::map<std::string, std::vector<double>, std::less<>> times_;
};

std::string format_ns(std::optional<double> ns) {
  return ns ? fmt::format("{:9.1f}", *ns) : fmt::format("{:>9}", "-");
}

std::optional<double> ratio(std::optional<double> num, std::optional<double> den) {
  if (!num || !den || *den <= 0) return std::nullopt;
  return *num / *den;
}

std::string format_ratio(std::optional<double> r) {
  return r ? fmt::format("{:.2f}x", *r) : std::string("-");
}

// One ratio line; PASS needs both ratios present and within the target.
void print_ratio_line(std::string_view label, std::optional<double> save,
                      std::optional<double> load, std::string_view target, bool pass) {
  fmt::print("{:<22}{:>10}{:>12}     {:<30} -> {}\n", label, format_ratio(save),
             format_ratio(load), target, save && load ? (pass ? "PASS" : "FAIL") : "n/a");
}

void print_table(const CollectingReporter& rep, const EncodedSizes& sizes) {
  auto save = [&](std::string_view c) { return rep.best("save", c); };
  auto load = [&](std::string_view c) { return rep.best("load", c); };
  size_t reps = rep.repetitions();
  if (reps == 0) return;  // nothing ran (--benchmark_list_tests, a filter matching nothing)
  fmt::print("\nVMState benchmark (NVMe-like state: 31 registers + {} queue slots, {} present; "
             "{} bytes)\n",
             kSlots, kSlots / 2, sizes.vmstate);
  fmt::print("CPU time per operation, best of {} repetition{}; compiler {}\n", reps,
             reps == 1 ? "" : "s", kCompiler);
  fmt::print("{:<14}{:>10}{:>10}{:>8}\n", "", "save ns", "load ns", "bytes");
  std::array<size_t, 4> bytes = {sizes.vmstate, sizes.vmstate, sizes.protobuf, sizes.cereal};
  for (size_t i = 0; i < kContenders.size(); ++i)
    fmt::print("{:<14}{:>10}{:>10}{:>8}\n", kContenders[i], format_ns(save(kContenders[i])),
               format_ns(load(kContenders[i])), bytes[i]);

  if (auto floor = rep.best("alloc-floor")) {
    // Shows how much of each load is decoding; a rough figure (a difference of minimums).
    fmt::print("every load includes freeing and allocating the 32 queues: {:.1f} ns alone;\n",
               *floor);
    fmt::print("load ns without it:");
    for (std::string_view c : kContenders)
      if (auto t = load(c)) fmt::print("  {} {:.1f}", c, *t - *floor);
    fmt::print("\n");
  }

  auto vs_hand_save = ratio(save("ferry"), save("hand-written"));
  auto vs_hand_load = ratio(load("ferry"), load("hand-written"));
  auto pb_save = ratio(save("protobuf"), save("ferry"));
  auto pb_load = ratio(load("protobuf"), load("ferry"));
  auto cereal_save = ratio(save("cereal"), save("ferry"));
  auto cereal_load = ratio(load("cereal"), load("ferry"));
  fmt::print("\n{:<22}{:>10}{:>12}     {}\n", "ratios", "save", "load", "target");
  print_ratio_line("ferry / hand-written", vs_hand_save, vs_hand_load,
                   "save <= 1.2x, load <= 1.3x",
                   vs_hand_save && vs_hand_load && *vs_hand_save <= 1.2 && *vs_hand_load <= 1.3);
  print_ratio_line("protobuf / ferry", pb_save, pb_load, ">= 3x",
                   pb_save && pb_load && *pb_save >= 3 && *pb_load >= 3);
  print_ratio_line("cereal / ferry", cereal_save, cereal_load, ">= 10x",
                   cereal_save && cereal_load && *cereal_save >= 10 && *cereal_load >= 10);
}

void register_benchmarks() {
  struct Entry {
    const char* name;
    void (*fn)(benchmark::State&);
  };
  // Saves, then loads, each in the order of kContenders.
  const Entry entries[] = {
      {"save/ferry", BM_SaveFerry},       {"save/hand-written", BM_SaveHandWritten},
      {"save/protobuf", BM_SaveProtobuf}, {"save/cereal", BM_SaveCereal},
      {"load/ferry", BM_LoadFerry},       {"load/hand-written", BM_LoadHandWritten},
      {"load/protobuf", BM_LoadProtobuf}, {"load/cereal", BM_LoadCereal},
      {"alloc-floor", BM_AllocationFloor},
  };
  for (const Entry& e : entries)
    benchmark::RegisterBenchmark(e.name, e.fn)->Unit(benchmark::kNanosecond);
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  GOOGLE_PROTOBUF_VERIFY_VERSION;

  // Defaults chosen for a noisy shared machine and a run of well under 30 s; flags given
  // on the command line come later and so win. The console output is always the text
  // format; --benchmark_out=<file> --benchmark_out_format=json gives machine-readable data.
  std::vector<char*> args = {argv[0]};
  std::string defaults[] = {"--benchmark_repetitions=5", "--benchmark_min_time=0.2",
                            "--benchmark_enable_random_interleaving=true"};
  for (std::string& d : defaults) args.push_back(d.data());
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  int arg_count = static_cast<int>(args.size());
  args.push_back(nullptr);

  benchmark::Initialize(&arg_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(arg_count, args.data())) return 2;

  EncodedSizes sizes = check_all_round_trips(source_state());
  register_benchmarks();
  CollectingReporter reporter(isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_Defaults
                                                    : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_table(reporter, sizes);
  return 0;
}
