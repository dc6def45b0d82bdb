// NVMe live migration, black box: two ferry-vm processes, each with `-device nvme`, driven
// over QMP; the guest NVMe driver runs in this process over qtest, first against the source
// and, after `migrate`, against the destination (Controller::rebind), keeping its queues,
// outstanding commands and guest memory layout. Every check is what a guest or an
// operator sees: completions, data in guest RAM and in the image, interrupts written into
// RAM, QMP replies, and a refusing destination's exit status and message.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "migration/analyze.h"
#include "support/nvme_rig.h"
#include "support/vm_waits.h"

namespace ferry::testing {
namespace {

namespace sn = spec::nvme;
namespace commands = guest::nvme::commands;
using guest::nvme::Completion;
using guest::nvme::QueueInterrupts;
using guest::nvme::Sqe;
using guest::nvme::Transfer;
using Millis = std::chrono::milliseconds;

constexpr const char* kFerryVm = FERRY_VM_PATH;
constexpr uint64_t kPage = 4096;

std::vector<uint8_t> pattern(uint32_t seed, size_t n) {
  std::vector<uint8_t> out(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out[i] = static_cast<uint8_t>(x >> 33);
  }
  return out;
}

Completion run(NvmeRig& rig, uint16_t qid, const Sqe& sqe, const Transfer& data = {}) {
  auto done = rig.c().execute(qid, sqe, data);
  EXPECT_TRUE(done.ok()) << done.status().to_string();
  if (!done.ok()) {
    Completion failed;
    failed.status = 0xffff;
    return failed;
  }
  return *done;
}

// Starts a destination with the same machine as the rig's source and migrates into it over
// a unix socket; then the driver talks to the destination. Returns query-migrate's final
// reply; the source VM is kept in `old` (for its run state).
Json migrate(NvmeRig& rig, const std::vector<std::string>& machine,
             std::unique_ptr<FerryVm>* old = nullptr) {
  std::string sock = unique_base("nvme-mig") + ".sock";
  std::vector<std::string> args = {"-m", "256M"};
  args.insert(args.end(), machine.begin(), machine.end());
  args.insert(args.end(), {"-incoming", "unix:" + sock});
  auto dst = FerryVm::start(kFerryVm, args);
  EXPECT_TRUE(dst);
  if (!dst) return Json();
  rig.vm->ok("migrate", Json{{"uri", "unix:" + sock}});
  Json result = wait_migration_end(*rig.vm);
  EXPECT_EQ(result["status"], "completed") << result.dump() << "\n"
                                           << dst->process().stderr_text();
  EXPECT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok())
      << dst->process().stderr_text();
  EXPECT_EQ(rig.vm->ok("query-status")["status"], "postmigrate");
  auto bus = std::make_unique<client::QtestBus>(dst->qtest());
  rig.ctrl->rebind(*bus);
  rig.bus = std::move(bus);
  std::swap(rig.vm, dst);
  if (old) *old = std::move(dst);
  return result;
}

std::vector<std::string> one_controller(const TempImage& image, const std::string& extra = "") {
  std::vector<std::string> args = drive_args("d0", image);
  args.insert(args.end(), {"-device", "nvme,serial=MIGTEST,drive=d0,addr=4" + extra});
  return args;
}

// The device-breakdown entry of the NVMe section.
Json nvme_breakdown(const Json& result) {
  for (const Json& d : result["device-breakdown"]["devices"])
    if (d.value("name", "") == "0000:00:04.0/nvme") return d;
  ADD_FAILURE() << "no nvme entry in " << result.dump();
  return Json::object();
}

// ---- 1. idle configured controller -------------------------------------------------------

TEST(NvmeMigration, IdleControllerWithFourQueuePairsContinuesOnTheDestination) {
  TempImage image(16 << 20);
  auto machine = one_controller(image);
  auto rig = start_rig(kFerryVm, machine);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().enable_msix().ok());
  for (uint16_t qid = 1; qid <= 4; ++qid)
    ASSERT_TRUE(rig->c().create_io_queue_pair(qid, 32, QueueInterrupts{true, qid}).ok());
  uint64_t buf = rig->alloc(8 * kPage);
  for (uint16_t qid = 1; qid <= 4; ++qid) {
    rig->put(buf, pattern(qid, 8 * 512));
    Completion w = run(*rig, qid, commands::write(1, qid * 64, 8), Transfer::prp(buf, 8 * 512));
    ASSERT_TRUE(w.ok()) << w.status;
  }
  std::unique_ptr<FerryVm> old;
  Json result = migrate(*rig, machine, &old);
  ASSERT_FALSE(HasFailure());
  Json nvme = nvme_breakdown(result);
  EXPECT_GT(nvme.value("bytes", 0), 4096) << nvme.dump();
  EXPECT_TRUE(nvme.contains("load-us")) << nvme.dump();

  for (uint16_t qid = 1; qid <= 4; ++qid) {
    ASSERT_TRUE(rig->c().clear_interrupt(qid).ok());
    rig->fill(buf, 8 * 512, 0);
    Completion r = run(*rig, qid, commands::read(1, qid * 64, 8), Transfer::prp(buf, 8 * 512));
    ASSERT_TRUE(r.ok()) << r.status;
    EXPECT_EQ(rig->get(buf, 8 * 512), pattern(qid, 8 * 512)) << "queue " << qid;
    auto irq = rig->c().interrupt_word(qid);
    ASSERT_TRUE(irq.ok());
    EXPECT_NE(*irq, 0u) << "MSI-X vector " << qid << " delivers on the destination";
    rig->put(buf, pattern(100 + qid, 8 * 512));
    Completion w = run(*rig, qid, commands::write(1, qid * 64 + 8, 8), Transfer::prp(buf, 8 * 512));
    ASSERT_TRUE(w.ok()) << w.status;
  }
  for (uint16_t qid = 1; qid <= 4; ++qid) {
    EXPECT_EQ(image.read(qid * 64 * 512, 8 * 512), pattern(qid, 8 * 512));
    EXPECT_EQ(image.read((qid * 64 + 8) * 512, 8 * 512), pattern(100 + qid, 8 * 512));
  }
}

// ---- 2. a full CQ ---------------------------------------------------------------------------

struct RawPair {
  uint16_t qid = 0;
  uint64_t sq = 0, cq = 0;
  uint32_t sq_entries = 0, cq_entries = 0;
  uint32_t sq_tail = 0;
};

RawPair create_raw_pair(NvmeRig& rig, uint16_t qid, uint32_t sq_entries, uint32_t cq_entries) {
  RawPair q{qid, rig.alloc(sq_entries * sn::kSqeSize), rig.alloc(cq_entries * sn::kCqeSize),
            sq_entries, cq_entries, 0};
  rig.fill(q.cq, kPage, 0);
  rig.fill(q.sq, sq_entries * sn::kSqeSize, 0);
  EXPECT_TRUE(run(rig, 0, commands::create_io_cq(qid, cq_entries, q.cq, false, 0)).ok());
  EXPECT_TRUE(run(rig, 0, commands::create_io_sq(qid, sq_entries, q.sq, qid)).ok());
  return q;
}

void push_raw(NvmeRig& rig, RawPair& q, Sqe sqe, uint16_t cid) {
  sqe.set_cid(cid);
  rig.put(q.sq + uint64_t{q.sq_tail} * sn::kSqeSize, sqe.bytes);
  q.sq_tail = (q.sq_tail + 1) % q.sq_entries;
}

TEST(NvmeMigration, FullCompletionQueueDeliversEveryCompletionOnceInOrder) {
  TempImage image(16 << 20);
  image.write(0, pattern(5, 12 * 512));
  auto machine = one_controller(image);
  auto rig = start_rig(kFerryVm, machine);
  ASSERT_NE(rig, nullptr);
  RawPair q = create_raw_pair(*rig, 3, 16, 4);
  // 6 commands that complete at once (in submission order), then 6 reads: 12 completions
  // for a CQ with 3 usable slots; nothing consumed before the migration.
  for (uint16_t i = 0; i < 6; ++i) {
    Sqe bad;
    bad.set_opcode(0x7f).set_nsid(1);
    push_raw(*rig, q, bad, static_cast<uint16_t>(100 + i));
  }
  uint64_t bufs = rig->alloc(6 * kPage);
  for (uint16_t i = 0; i < 6; ++i) {
    Sqe read = commands::read(1, i, 1);
    read.set_prp1(bufs + i * kPage);
    push_raw(*rig, q, read, static_cast<uint16_t>(200 + i));
  }
  ASSERT_TRUE(rig->c().write_sq_doorbell(q.qid, q.sq_tail).ok());
  ASSERT_TRUE(wait_for_phase(*rig, q.cq, 2, true)) << "three completions fit";
  std::this_thread::sleep_for(Millis(50));
  migrate(*rig, machine);
  ASSERT_FALSE(HasFailure());

  std::multiset<uint16_t> reads;
  for (uint32_t index = 0; index < 12; ++index) {
    uint32_t slot = index % q.cq_entries;
    bool phase = (index / q.cq_entries) % 2 == 0;
    ASSERT_TRUE(wait_for_phase(*rig, q.cq, slot, phase)) << "completion " << index;
    Completion c = read_cqe(*rig, q.cq, slot);
    if (index < 6) {
      EXPECT_EQ(c.cid, 100 + index) << "out of order";
      EXPECT_EQ(c.code(), sn::kInvalidOpcode);
    } else {
      EXPECT_TRUE(c.ok()) << c.status;
      reads.insert(c.cid);
    }
    ASSERT_TRUE(rig->c().write_cq_doorbell(q.qid, (index + 1) % q.cq_entries).ok());
  }
  EXPECT_EQ(reads, (std::multiset<uint16_t>{200, 201, 202, 203, 204, 205}));
  std::this_thread::sleep_for(Millis(50));
  EXPECT_NE(read_cqe(*rig, q.cq, 12 % q.cq_entries).phase, (12 / q.cq_entries) % 2 == 0)
      << "a thirteenth completion appeared";
  std::vector<uint8_t> blocks = pattern(5, 12 * 512);
  for (uint16_t i = 0; i < 6; ++i)
    EXPECT_EQ(rig->get(bufs + i * kPage, 512),
              std::vector<uint8_t>(blocks.begin() + i * 512, blocks.begin() + (i + 1) * 512));
}

// ---- 3. asynchronous events -----------------------------------------------------------------

Completion set_feature(NvmeRig& rig, uint8_t fid, uint32_t value) {
  return run(rig, 0, commands::set_features(fid, value));
}

TEST(NvmeMigration, AsynchronousEventsAreDeliveredExactlyOnceAcrossMigrations) {
  TempImage image(16 << 20);
  auto machine = one_controller(image);
  auto rig = start_rig(kFerryVm, machine);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(set_feature(*rig, sn::kFeatAsyncEventConfig, sn::kSmartWarnTemperature).ok());

  // (a) An event queued, no AER command outstanding.
  ASSERT_TRUE(set_feature(*rig, sn::kFeatTemperatureThreshold, 0x100).ok());
  migrate(*rig, machine);
  ASSERT_FALSE(HasFailure());
  auto first = rig->c().submit(0, commands::async_event_request());
  ASSERT_TRUE(first.ok());
  auto event = rig->c().wait(0, *first);
  ASSERT_TRUE(event.ok()) << event.status().to_string();
  EXPECT_EQ(event->dw0 & 0x7, sn::kAerTypeSmart);

  // (b) Both: an event queued behind the SMART mask, and two AER commands outstanding.
  ASSERT_TRUE(set_feature(*rig, sn::kFeatTemperatureThreshold, 0x101).ok());
  auto aer1 = rig->c().submit(0, commands::async_event_request());
  auto aer2 = rig->c().submit(0, commands::async_event_request());
  ASSERT_TRUE(aer1.ok() && aer2.ok());
  migrate(*rig, machine);
  ASSERT_FALSE(HasFailure());
  // Reading the SMART log unmasks: the queued event completes the newest AER, once.
  ASSERT_TRUE(rig->c().get_log_page(sn::kLogSmartHealth, 512).ok());
  auto delivered = rig->c().wait(0, *aer2);
  ASSERT_TRUE(delivered.ok()) << delivered.status().to_string();
  EXPECT_EQ(delivered->dw0 & 0x7, sn::kAerTypeSmart);
  EXPECT_EQ(rig->c().in_flight(0), 1u) << "one AER command still outstanding";

  // (c) An AER command outstanding, no event: it survives and reports the next event.
  migrate(*rig, machine);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(rig->c().in_flight(0), 1u);
  // A doorbell write for a queue that does not exist is an error event.
  ASSERT_TRUE(rig->c().write_sq_doorbell(9, 1).ok());
  auto error = rig->c().wait(0, *aer1);
  ASSERT_TRUE(error.ok()) << error.status().to_string();
  EXPECT_EQ(error->dw0 & 0x7, sn::kAerTypeError);
  // Nothing else arrives: no event twice, no AER completed twice.
  std::this_thread::sleep_for(Millis(50));
  auto extra = rig->c().poll(0);
  ASSERT_TRUE(extra.ok());
  EXPECT_FALSE(extra->has_value()) << "unexpected admin completion cid " << (*extra)->cid;
}

// ---- 4. two namespaces, SMART and the timestamp ---------------------------------------------

uint64_t smart_u64(const std::vector<uint8_t>& log, size_t at) { return le_field(log, at, 8); }

TEST(NvmeMigration, TwoNamespacesSmartCountersAndTimestampContinue) {
  TempImage image0(16 << 20), image1(32 << 20);
  std::vector<std::string> machine = drive_args("d0", image0);
  auto more = drive_args("d1", image1);
  machine.insert(machine.end(), more.begin(), more.end());
  machine.insert(machine.end(), {"-device", "nvme,serial=MIGTEST,drive=d0,addr=4", "-device",
                                 "nvme-ns,drive=d1,nsid=2,logical_block_size=4096"});
  auto rig = start_rig(kFerryVm, machine);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(1, 16).ok());
  uint64_t buf = rig->alloc(4 * kPage);
  rig->put(buf, pattern(1, 4096));
  ASSERT_TRUE(run(*rig, 1, commands::write(1, 0, 8), Transfer::prp(buf, 4096)).ok());
  rig->put(buf, pattern(2, 4096));
  ASSERT_TRUE(run(*rig, 1, commands::write(2, 3, 1), Transfer::prp(buf, 4096)).ok());
  ASSERT_TRUE(run(*rig, 1, commands::read(2, 3, 1), Transfer::prp(buf, 4096)).ok());
  // The host sets the timestamp (1,000,000 ms).
  uint64_t ts_buf = rig->alloc(kPage);
  rig->put(ts_buf, std::vector<uint8_t>{0x40, 0x42, 0x0f, 0, 0, 0, 0, 0});
  Sqe set_ts = commands::set_features(sn::kFeatTimestamp, 0);
  ASSERT_TRUE(run(*rig, 0, set_ts, Transfer::prp(ts_buf, 8)).ok());
  auto timestamp = [&]() -> uint64_t {
    rig->fill(ts_buf, 8, 0);
    Completion c =
        run(*rig, 0, commands::get_features(sn::kFeatTimestamp), Transfer::prp(ts_buf, 8));
    EXPECT_TRUE(c.ok()) << c.status;
    return le_field(rig->get(ts_buf, 8), 0, 8);
  };
  uint64_t before = timestamp();
  EXPECT_TRUE(before & (1ull << 49)) << "origin: set by the host";
  auto smart1 = rig->c().get_log_page(sn::kLogSmartHealth, 512, 1);
  auto smart2 = rig->c().get_log_page(sn::kLogSmartHealth, 512, 2);
  ASSERT_TRUE(smart1.ok() && smart2.ok());

  migrate(*rig, machine);
  ASSERT_FALSE(HasFailure());
  auto id1 = rig->c().identify(sn::kCnsNamespace, 1);
  auto id2 = rig->c().identify(sn::kCnsNamespace, 2);
  ASSERT_TRUE(id1.ok() && id2.ok());
  EXPECT_EQ(le_field(*id1, 0, 8), (16u << 20) / 512) << "NSZE of namespace 1";
  EXPECT_EQ(le_field(*id2, 0, 8), (32u << 20) / 4096) << "NSZE of namespace 2";
  auto after1 = rig->c().get_log_page(sn::kLogSmartHealth, 512, 1);
  auto after2 = rig->c().get_log_page(sn::kLogSmartHealth, 512, 2);
  ASSERT_TRUE(after1.ok() && after2.ok());
  // Host read/write commands (bytes 64..79, 80..95) and data units (32..63) carried over.
  for (size_t at : {32u, 48u, 64u, 80u}) {
    EXPECT_EQ(smart_u64(*after1, at), smart_u64(*smart1, at)) << "ns 1 SMART byte " << at;
    EXPECT_EQ(smart_u64(*after2, at), smart_u64(*smart2, at)) << "ns 2 SMART byte " << at;
  }
  EXPECT_EQ(smart_u64(*after2, 64), 1u);
  EXPECT_EQ(smart_u64(*after2, 80), 1u);
  ASSERT_TRUE(run(*rig, 1, commands::read(2, 3, 1), Transfer::prp(buf, 4096)).ok());
  EXPECT_EQ(rig->get(buf, 4096), pattern(2, 4096));
  auto later2 = rig->c().get_log_page(sn::kLogSmartHealth, 512, 2);
  ASSERT_TRUE(later2.ok());
  EXPECT_EQ(smart_u64(*later2, 64), 2u) << "counting continues";
  uint64_t after = timestamp();
  EXPECT_TRUE(after & (1ull << 49)) << "origin survives";
  EXPECT_GE(after & 0xffffffffffffull, before & 0xffffffffffffull) << "the timestamp continues";
  EXPECT_LT(after & 0xffffffffffffull, 1'000'000ull + 3'600'000ull) << "from the host's value";
}

// ---- 5. shadow doorbells ----------------------------------------------------------------------

TEST(NvmeMigration, ShadowDoorbellsKeepWorkingOnTheDestination) {
  TempImage image(16 << 20);
  image.write(0, pattern(31, 8 * 512));
  auto machine = one_controller(image);
  auto rig = start_rig(kFerryVm, machine);
  ASSERT_NE(rig, nullptr);
  uint64_t shadow = rig->alloc(kPage), events = rig->alloc(kPage);
  rig->fill(shadow, kPage, 0);
  rig->fill(events, kPage, 0);
  Sqe dbbuf;
  dbbuf.set_opcode(sn::kAdminDoorbellBufferConfig).set_prp1(shadow).set_prp2(events);
  ASSERT_TRUE(run(*rig, 0, dbbuf).ok());
  ASSERT_TRUE(rig->c().create_io_queue_pair(1, 16).ok());
  guest::nvme::QueuePair& q = *rig->c().queue(1);
  uint64_t buf = rig->alloc(kPage);
  auto shadow_store = [&](uint64_t offset, uint32_t value) {
    ASSERT_TRUE(rig->bus->memory_store(shadow + offset, value, 4).ok());
  };
  auto event_index = [&](uint64_t offset) {
    auto v = rig->bus->memory_load(events + offset, 4);
    EXPECT_TRUE(v.ok());
    return v.ok() ? static_cast<uint32_t>(*v) : 0xffffffffu;
  };
  // One read with the shadow tail ahead of a stale MMIO doorbell; returns its completion.
  auto shadow_read = [&](uint32_t lba) {
    uint32_t stale = q.sq_tail();
    auto cid = rig->c().submit(1, commands::read(1, lba, 1), Transfer::prp(buf, 512), false);
    EXPECT_TRUE(cid.ok());
    shadow_store(8, q.sq_tail());
    EXPECT_TRUE(rig->c().write_sq_doorbell(1, stale).ok());
    auto c = rig->c().wait(1, *cid);
    EXPECT_TRUE(c.ok() && c->ok()) << (c.ok() ? c->status : 0xffff);
    shadow_store(12, q.cq_head());
  };
  const std::vector<uint8_t> blocks = pattern(31, 8 * 512);
  for (uint32_t lba = 0; lba < 3; ++lba) shadow_read(lba);
  EXPECT_EQ(event_index(8), q.sq_tail());
  migrate(*rig, machine);
  ASSERT_FALSE(HasFailure());
  for (uint32_t lba = 3; lba < 8; ++lba) {
    shadow_read(lba);
    EXPECT_EQ(rig->get(buf, 512),
              std::vector<uint8_t>(blocks.begin() + lba * 512, blocks.begin() + (lba + 1) * 512));
    EXPECT_EQ(event_index(8), q.sq_tail()) << "the destination writes the SQ event index";
  }
}

// ---- 6. I/O in flight at the backend when the VM stops --------------------------------------

// The writes are held at the source's backend (not merely slowed: a delay can run out before
// the stop on a busy machine) until the stop's drain releases them; each then waits 200 ms
// more, so the drain certainly lasts that long. They complete once, on the source, and their
// completions travel to the destination.
TEST(NvmeMigration, WritesHeldAtTheBackendWhenTheVmStopsCompleteOnceAndTheDrainIsReported) {
  TempImage image(16 << 20);
  auto machine = one_controller(image);
  std::vector<std::string> source = machine;
  constexpr int64_t kDelayAfterReleaseMs = 200;
  source.insert(source.end(), {"-blkdebug", "drive=d0,op=write,hold=on,delay-ms=" +
                                                std::to_string(kDelayAfterReleaseMs)});
  auto rig = start_rig(kFerryVm, source);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(1, 32).ok());
  uint64_t bufs = rig->alloc(8 * kPage);
  std::vector<uint16_t> cids;
  for (uint16_t i = 0; i < 8; ++i) {
    rig->put(bufs + i * kPage, pattern(40 + i, 512));
    auto cid = rig->c().submit(1, commands::write(1, 16 + i, 1),
                               Transfer::prp(bufs + i * kPage, 512));
    ASSERT_TRUE(cid.ok());
    cids.push_back(*cid);
  }
  // All eight have reached the backend and are held there (the controller fetches them on
  // its own time: wait for it, with a deadline no busy machine reaches).
  Json held;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
       std::chrono::steady_clock::now() < end;) {
    held = rig->vm->ok("x-blkdebug-query", Json{{"drive", "d0"}});
    if (held.value("held", 0) == 8) break;
    std::this_thread::sleep_for(Millis(5));
  }
  ASSERT_EQ(held.value("held", 0), 8) << held.dump();
  for (uint16_t i = 0; i < 8; ++i)
    ASSERT_NE(image.read((16 + i) * 512, 512), pattern(40 + i, 512)) << "held write " << i;
  Json result = migrate(*rig, machine);
  ASSERT_FALSE(HasFailure());
  Json nvme = nvme_breakdown(result);
  EXPECT_GE(nvme.value("drain-us", 0), kDelayAfterReleaseMs * 1000) << nvme.dump();
  EXPECT_GE(nvme.value("quiesce-us", 0), nvme.value("drain-us", 0)) << nvme.dump();
  std::set<uint16_t> done;
  for (uint16_t cid : cids) {
    auto c = rig->c().wait(1, cid);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_TRUE(c->ok()) << c->status;
    EXPECT_TRUE(done.insert(c->cid).second);
  }
  std::this_thread::sleep_for(Millis(50));
  auto extra = rig->c().poll(1);
  ASSERT_TRUE(extra.ok());
  EXPECT_FALSE(extra->has_value()) << "a write completed twice";
  for (uint16_t i = 0; i < 8; ++i) EXPECT_EQ(image.read((16 + i) * 512, 512), pattern(40 + i, 512));
}

// ---- 7. hostile streams and mismatched destinations ------------------------------------------

// Byte ranges of every field of a device section, from the stream's own vmdesc.
void locate(const Json& fields, uint64_t& at, const std::string& prefix,
            std::map<std::string, std::pair<uint64_t, uint64_t>>& out) {
  for (const auto& f : fields) {
    std::string name = prefix + f["name"].get<std::string>();
    if (f.contains("index")) name += fmt::format("[{}]", f["index"].get<uint64_t>());
    uint64_t size = f["size"].get<uint64_t>();
    if (f["type"] == "ptr-marker") {
      at += size;
      continue;
    }
    uint64_t count = f.contains("array_len") ? f["array_len"].get<uint64_t>() : 1;
    for (uint64_t k = 0; k < count; ++k) {
      std::string element = count > 1 ? fmt::format("{}[{}]", name, k) : name;
      out[element] = {at, size};
      uint64_t inner = at;
      if (f.contains("struct")) locate(f["struct"]["fields"], inner, element + "/", out);
      else if (f.contains("fields")) locate(f["fields"], inner, element + "/", out);
      at += size;
    }
  }
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Runs a destination on `stream` and returns (exit code, stderr).
std::pair<int, std::string> load_into_destination(const std::vector<std::string>& machine,
                                                  const std::string& stream,
                                                  Millis timeout = Millis(20000)) {
  std::vector<std::string> argv = {kFerryVm, "-m", "256M"};
  argv.insert(argv.end(), machine.begin(), machine.end());
  argv.insert(argv.end(), {"-incoming", "file:" + stream});
  std::string base = unique_base("nvme-dst");
  auto child = ChildProcess::spawn(argv, base + ".stderr");
  EXPECT_TRUE(child.ok()) << child.status().to_string();
  if (!child.ok()) return {-1, ""};
  std::optional<int> code = child->wait(timeout);
  std::string text = child->stderr_text();
  EXPECT_EQ(text.find("Sanitizer"), std::string::npos) << text;
  return {code.value_or(-1), text};
}

// Runs a destination with QMP on `stream` and waits for the load to end: the destination's
// query-migrate reports "completed" and its run state leaves "inmigrate" for `run_state`.
// A refused or hung load fails the test. The destination is returned, still running.
std::unique_ptr<FerryVm> load_and_confirm(const std::vector<std::string>& machine,
                                          const std::string& stream,
                                          const std::string& run_state) {
  std::vector<std::string> args = {"-m", "256M"};
  args.insert(args.end(), machine.begin(), machine.end());
  args.insert(args.end(), {"-incoming", "file:" + stream});
  auto dst = FerryVm::start(kFerryVm, args);
  EXPECT_TRUE(dst);
  if (!dst) return nullptr;
  std::string migration, status;
  for (int i = 0; i < 500; ++i) {
    auto reply = dst->qmp().execute("query-migrate");
    if (!reply.ok() || !reply->contains("return")) break;  // it exited
    migration = (*reply)["return"].value("status", "");
    auto state = dst->qmp().execute("query-status");
    if (!state.ok() || !state->contains("return")) break;
    status = (*state)["return"].value("status", "");
    if (migration == "failed" || (migration == "completed" && status != "inmigrate")) break;
    std::this_thread::sleep_for(Millis(20));
  }
  EXPECT_EQ(migration, "completed") << dst->process().stderr_text();
  EXPECT_EQ(status, run_state) << dst->process().stderr_text();
  return dst;
}

// A stream saved to a file from a running source (which continues afterwards), with the
// byte range of every field of its NVMe section, from the stream's own vmdesc.
struct SavedStream {
  std::string path;
  std::vector<uint8_t> bytes;
  std::map<std::string, std::pair<uint64_t, uint64_t>> fields;
};
SavedStream save_stream(NvmeRig& rig) {
  SavedStream out;
  out.path = unique_base("nvme-stream") + ".mig";
  rig.vm->ok("migrate", Json{{"uri", "file:" + out.path}});
  Json result = wait_migration_end(*rig.vm);
  EXPECT_EQ(result["status"], "completed") << result.dump();
  rig.vm->ok("cont");  // the source keeps running
  out.bytes = read_file(out.path);
  Json analysis = migration::analyze_stream(out.bytes);
  EXPECT_TRUE(analysis["errors"].empty()) << analysis["errors"].dump();
  uint64_t body = 0;
  for (const Json& rec : analysis["records"])
    if (rec.value("idstr", "") == "0000:00:04.0/nvme") body = rec["body_offset"].get<uint64_t>();
  EXPECT_GT(body, 0u);
  for (const Json& dev : analysis["vmdesc"]["devices"])
    if (dev.value("name", "") == "0000:00:04.0/nvme") {
      uint64_t at = body;
      locate(dev["fields"], at, "", out.fields);
    }
  return out;
}

// A copy of `bytes` with `field` (big-endian, its full width) set to `value`.
std::vector<uint8_t> patched(const SavedStream& stream, const std::string& field,
                             uint64_t value) {
  std::vector<uint8_t> out = stream.bytes;
  auto it = stream.fields.find(field);
  EXPECT_NE(it, stream.fields.end()) << field;
  if (it == stream.fields.end()) return out;
  auto [at, size] = it->second;
  for (uint64_t i = 0; i < size; ++i)
    out[at + i] = static_cast<uint8_t>(value >> (8 * (size - 1 - i)));
  return out;
}

// Runs a destination on `bytes`: it must exit 1 naming the device and `expected`.
void expect_stream_refused(const std::vector<std::string>& machine,
                           const std::vector<uint8_t>& bytes, const std::string& expected) {
  std::string path = unique_base("nvme-bad") + ".mig";
  write_file(path, bytes);
  auto [code, text] = load_into_destination(machine, path);
  ::unlink(path.c_str());
  EXPECT_EQ(code, 1) << text;
  EXPECT_NE(text.find(expected), std::string::npos) << text;
  EXPECT_NE(text.find("nvme"), std::string::npos) << text;
}

class NvmeHostileStream : public ::testing::Test {
 protected:
  // A busy source saved to a file: 2 I/O queue pairs, MSI-X, AER commands outstanding, a
  // full CQ with completions waiting, shadow doorbells. The source is left running.
  void SetUp() override {
    image_ = std::make_unique<TempImage>(16 << 20);
    machine_ = one_controller(*image_);
    rig_ = start_rig(kFerryVm, machine_);
    ASSERT_NE(rig_, nullptr);
    ASSERT_TRUE(rig_->c().enable_msix().ok());
    ASSERT_TRUE(rig_->c().create_io_queue_pair(1, 16, QueueInterrupts{true, 1}).ok());
    raw_ = create_raw_pair(*rig_, 2, 16, 4);
    for (uint16_t i = 0; i < 6; ++i) {
      Sqe bad;
      bad.set_opcode(0x7f).set_nsid(1);
      push_raw(*rig_, raw_, bad, static_cast<uint16_t>(100 + i));
    }
    ASSERT_TRUE(rig_->c().write_sq_doorbell(raw_.qid, raw_.sq_tail).ok());
    ASSERT_TRUE(wait_for_phase(*rig_, raw_.cq, 2, true));
    ASSERT_TRUE(rig_->c().submit(0, commands::async_event_request()).ok());
    ASSERT_TRUE(rig_->c().submit(0, commands::async_event_request()).ok());
    shadow_ = rig_->alloc(kPage);
    uint64_t events = rig_->alloc(kPage);
    Sqe dbbuf;
    dbbuf.set_opcode(sn::kAdminDoorbellBufferConfig).set_prp1(shadow_).set_prp2(events);
    ASSERT_TRUE(run(*rig_, 0, dbbuf).ok());
    stream_ = save_stream(*rig_);
    ASSERT_FALSE(HasFailure());
    ASSERT_TRUE(stream_.fields.contains("state/sqs[1]/head"));
  }
  void TearDown() override { ::unlink(stream_.path.c_str()); }

  // Patches `field` (big-endian, its full width) to `value`, runs a destination on the
  // result, expects exit 1 and `expected` in its message; the source still runs.
  void expect_refused(const std::string& field, uint64_t value, const std::string& expected) {
    SCOPED_TRACE(field);
    ASSERT_TRUE(stream_.fields.contains(field));
    expect_refused_bytes(patched(stream_, field, value), expected);
  }
  void expect_refused_bytes(const std::vector<uint8_t>& bytes, const std::string& expected) {
    expect_stream_refused(machine_, bytes, expected);
    ASSERT_TRUE(rig_->vm_answers()) << "the source no longer answers";
    EXPECT_EQ(rig_->vm->ok("query-status")["status"], "running");
  }
  std::pair<uint64_t, uint64_t> field(const std::string& name) {
    EXPECT_TRUE(stream_.fields.contains(name)) << name;
    return stream_.fields[name];
  }

  std::unique_ptr<TempImage> image_;
  std::vector<std::string> machine_;
  std::unique_ptr<NvmeRig> rig_;
  RawPair raw_;
  uint64_t shadow_ = 0;  // the shadow doorbell buffer (the controller reads I/O heads there)
  SavedStream stream_;
};

// The destination confirms the load over QMP (query-migrate completed, then running) and
// the guest carries on there: the CQ that was full delivers its 6 completions, in order.
TEST_F(NvmeHostileStream, TheUnpatchedStreamLoads) {
  // The source keeps running on its image: the destination gets its own (a second writer
  // of one image is refused the lock at switchover and stays paused, as in QEMU).
  TempImage own(16 << 20);
  auto dst = load_and_confirm(one_controller(own), stream_.path, "running");
  ASSERT_NE(dst, nullptr);
  ASSERT_FALSE(HasFailure());
  auto bus = std::make_unique<client::QtestBus>(dst->qtest());
  rig_->ctrl->rebind(*bus);
  rig_->bus = std::move(bus);
  std::swap(rig_->vm, dst);
  for (uint32_t index = 0; index < 6; ++index) {
    uint32_t slot = index % raw_.cq_entries;
    bool phase = (index / raw_.cq_entries) % 2 == 0;
    ASSERT_TRUE(wait_for_phase(*rig_, raw_.cq, slot, phase)) << "completion " << index;
    EXPECT_EQ(read_cqe(*rig_, raw_.cq, slot).cid, 100 + index);
    // Shadow doorbells are on: the head goes to the shadow buffer, then the doorbell.
    uint32_t head = (index + 1) % raw_.cq_entries;
    ASSERT_TRUE(rig_->bus->memory_store(shadow_ + 8 * raw_.qid + 4, head, 4).ok());
    ASSERT_TRUE(rig_->c().write_cq_doorbell(raw_.qid, head).ok());
  }
  std::this_thread::sleep_for(Millis(50));
  EXPECT_NE(read_cqe(*rig_, raw_.cq, 6 % raw_.cq_entries).phase, (6 / raw_.cq_entries) % 2 == 0)
      << "a seventh completion appeared";
  EXPECT_EQ(rig_->vm->ok("query-status")["status"], "running");
}

TEST_F(NvmeHostileStream, QueueIdMustEqualItsSlot) {
  expect_refused("state/sqs[1]/id", 2, "queue id 2 does not match its slot 1");
  expect_refused("state/cqs[2]/id", 1, "queue id 1 does not match its slot 2");
}
TEST_F(NvmeHostileStream, EverySqPostsToAnExistingCq) {
  expect_refused("state/sqs[1]/cq_id", 7, "completion queue 7 does not exist");
}
TEST_F(NvmeHostileStream, OnlyTheAdminSqUsesTheAdminCq) {
  expect_refused("state/sqs[2]/cq_id", 0, "only the admin SQ uses the admin CQ");
}
TEST_F(NvmeHostileStream, QueueSizeWithinTwoAndMqesPlusOne) {
  expect_refused("state/sqs[1]/size", 1, "size 1 is outside [2, 2048]");
  expect_refused("state/cqs[1]/size", 5000, "size 5000 is outside [2, 2048]");
}
TEST_F(NvmeHostileStream, HeadAndTailBelowSize) {
  expect_refused("state/sqs[1]/head", 16, "head 16 is not below size 16");
  expect_refused("state/cqs[2]/tail", 4, "tail 4 is not below size 4");
}
TEST_F(NvmeHostileStream, QueueAddressesAlignedAndInsideRam) {
  expect_refused("state/sqs[1]/base", 0x1000040, "not aligned to the 4096-byte page size");
  expect_refused("state/cqs[1]/base", 0x40000000, "not inside guest RAM");
}
TEST_F(NvmeHostileStream, MsixVectorBelowTableSize) {
  expect_refused("state/cqs[1]/vector", 65, "MSI-X vector 65 is not below the table size 65");
}
TEST_F(NvmeHostileStream, InterruptEnableConsistent) {
  expect_refused("state/cqs[0]/irq_enabled", 0, "the admin CQ always interrupts on vector 0");
  expect_refused("state/cqs[0]/vector", 1, "the admin CQ always interrupts on vector 0");
}
// The stream's MSI-X is enabled: an asserted INTx level is not a state a guest can reach.
TEST_F(NvmeHostileStream, IntxIsNeverAssertedWhileMsixIsEnabled) {
  expect_refused("parent_obj/irq_state[0]", 1, "INTx is asserted while MSI-X is enabled");
}
TEST_F(NvmeHostileStream, OutstandingAerCountWithinAerl) {
  // Both ends allow AERL + 1 = 4. The stream claims 6 outstanding AER commands: within the
  // description's maximum (256), so only the AERL rule can refuse it. Sections carry no
  // length, so the 4 extra identifiers are simply inserted after the 2 the source had.
  auto [count_at, count_size] = field("state/aer/outstanding/count");
  ASSERT_EQ(count_size, 4u);
  std::vector<uint8_t> bytes = patched(stream_, "state/aer/outstanding/count", 6);
  ASSERT_EQ(bytes[count_at + 3], 6);
  std::vector<uint8_t> more = {0x10, 0x00, 0x10, 0x01, 0x10, 0x02, 0x10, 0x03};
  bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(count_at + 4 + 2 * 2), more.begin(),
               more.end());
  expect_refused_bytes(bytes, "6 AER commands outstanding, above AERL + 1 = 4");
  // Beyond the declared maximum the count is refused before any allocation; a stream
  // from a source with another AERL is refused by the configuration check.
  expect_refused("state/aer/outstanding/count", 1000, "count 1000 is outside the declared maximum");
  expect_refused("config/aerl", 0, "expected 3 (must equal the local value), found 0");
}
TEST_F(NvmeHostileStream, PendingCompletionsReferToTheirCq) {
  // The first waiting completion of CQ 2: list marker, dw0, then sq_id.
  auto [at, size] = field("state/cqs[2]/pending");
  ASSERT_GT(size, 7u);
  stream_.fields["pending-sq-id"] = {at + 1 + 4, 2};
  expect_refused("pending-sq-id", 1, "completion for SQ 1, which does not post to CQ 2");
}
TEST_F(NvmeHostileStream, ReadOnlyRegistersEqualTheDestinations) {
  expect_refused("state/regs/cap", 0x1234, "must equal the local value");
  expect_refused("state/regs/vs", 0x10300, "must equal the local value");
}
TEST_F(NvmeHostileStream, NamespaceSetAndGeometry) {
  expect_refused("namespaces/entries[1]/lba_size", 4096,
                 "namespace 1 has 4096-byte LBAs on the source, 512 here");
  expect_refused("namespaces/entries[1]/lba_count", 99, "namespace 1 has 99 LBAs on the source");
  expect_refused("namespaces/entries[1]/nsid", 5,
                 "namespace 5 is attached on the source but not here");
}
TEST_F(NvmeHostileStream, ShadowDoorbellsInsideRam) {
  expect_refused("state/shadow/event_indexes", 0x40000000, "not inside guest RAM");
}

TEST_F(NvmeHostileStream, DestinationWithAnotherConfigurationIsRefused) {
  TempImage other(8 << 20);  // another size
  auto [code, text] = load_into_destination(one_controller(other), stream_.path);
  EXPECT_EQ(code, 1) << text;
  EXPECT_NE(text.find("namespace 1 has 32768 LBAs on the source, 16384 here"), std::string::npos)
      << text;
  TempImage same(16 << 20);
  auto [code2, text2] = load_into_destination(one_controller(same, ",logical_block_size=4096"),
                                              stream_.path);
  EXPECT_EQ(code2, 1) << text2;
  EXPECT_NE(text2.find("namespace 1 has 512-byte LBAs on the source, 4096 here"),
            std::string::npos)
      << text2;
  auto [code3, text3] =
      load_into_destination(one_controller(same, ",max_ioqpairs=8"), stream_.path);
  EXPECT_EQ(code3, 1) << text3;
  EXPECT_NE(text3.find("config/max_ioqpairs"), std::string::npos) << text3;
}

// Pin-based interrupts (MSI-X off): an I/O CQ with interrupts enabled (vector 0) holds a
// completion the host has not consumed, so INTx is asserted when the source stops. The
// level must be one the queues call for: a stream whose CQ no longer enables interrupts,
// or whose INTMS masks the vector, or whose CQ is consumed, is refused.
TEST(NvmeMigration, IntxLevelMustMatchTheQueuesInterruptEnable) {
  TempImage image(16 << 20);
  auto machine = one_controller(image);
  auto rig = start_rig(kFerryVm, machine);
  ASSERT_NE(rig, nullptr);
  RawPair q{1, rig->alloc(16 * sn::kSqeSize), rig->alloc(4 * sn::kCqeSize), 16, 4, 0};
  rig->fill(q.cq, kPage, 0);
  ASSERT_TRUE(run(*rig, 0, commands::create_io_cq(1, 4, q.cq, true, 0)).ok());
  ASSERT_TRUE(run(*rig, 0, commands::create_io_sq(1, 16, q.sq, 1)).ok());
  Sqe bad;
  bad.set_opcode(0x7f).set_nsid(1);
  push_raw(*rig, q, bad, 7);
  ASSERT_TRUE(rig->c().write_sq_doorbell(1, q.sq_tail).ok());
  ASSERT_TRUE(wait_for_phase(*rig, q.cq, 0, true));
  SavedStream stream = save_stream(*rig);
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(stream.bytes[stream.fields["parent_obj/irq_state[0]"].first + 3], 1)
      << "INTx asserted at the source";
  {
    TempImage own(16 << 20);  // the source still writes `image`
    auto dst = load_and_confirm(one_controller(own), stream.path, "running");
    ASSERT_FALSE(HasFailure());
  }
  expect_stream_refused(machine, patched(stream, "state/cqs[1]/irq_enabled", 0),
                        "INTx is asserted, but no completion queue with interrupts enabled");
  expect_stream_refused(machine, patched(stream, "state/regs/intms", 1),
                        "on a vector that INTMS 0x1 leaves unmasked");
  expect_stream_refused(machine, patched(stream, "state/cqs[1]/head", 1),
                        "INTx is asserted, but no completion queue with interrupts enabled");
  EXPECT_TRUE(rig->vm_answers());
  ::unlink(stream.path.c_str());
}

TEST(NvmeMigration, RefusingDestinationLeavesTheSourceRunning) {
  TempImage image(16 << 20);
  auto machine = one_controller(image);
  auto rig = start_rig(kFerryVm, machine);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(1, 16).ok());
  std::string sock = unique_base("nvme-mig") + ".sock";
  std::vector<std::string> args = {"-m", "256M"};
  auto other = one_controller(image, ",logical_block_size=4096");
  args.insert(args.end(), other.begin(), other.end());
  args.insert(args.end(), {"-incoming", "unix:" + sock});
  auto dst = FerryVm::start(kFerryVm, args);
  ASSERT_TRUE(dst);
  rig->vm->ok("migrate", Json{{"uri", "unix:" + sock}});
  Json result = wait_migration_end(*rig->vm);
  EXPECT_EQ(result["status"], "failed") << result.dump();
  EXPECT_EQ(dst->process().wait(Millis(10000)).value_or(-1), 1);
  EXPECT_NE(dst->process().stderr_text().find("512-byte LBAs on the source, 4096 here"),
            std::string::npos)
      << dst->process().stderr_text();
  EXPECT_EQ(rig->vm->ok("query-status")["status"], "running");
  uint64_t buf = rig->alloc(kPage);
  rig->put(buf, pattern(9, 512));
  EXPECT_TRUE(run(*rig, 1, commands::write(1, 0, 1), Transfer::prp(buf, 512)).ok());
  EXPECT_EQ(image.read(0, 512), pattern(9, 512));
}

// ---- commands held on a block error (-drive werror=stop) --------------------------------------

// A source paused in io-error with `count` writes held (each failed with EIO under
// werror=stop). Its drive on `image`; the destination's machine is `dst_machine`.
struct HeldSource {
  std::unique_ptr<NvmeRig> rig;
  std::vector<uint16_t> cids;
  uint64_t bufs = 0;
};
HeldSource held_source(const TempImage& image, unsigned count) {
  HeldSource out;
  auto machine = drive_args("d0", image);
  machine[1] += ",werror=stop";
  machine.insert(machine.end(), {"-device", "nvme,serial=MIGTEST,drive=d0,addr=4", "-blkdebug",
                                 "drive=d0,op=write,errno=EIO"});
  out.rig = start_rig(kFerryVm, machine);
  if (!out.rig) return out;
  EXPECT_TRUE(out.rig->c().create_io_queue_pair(1, 16).ok());
  out.bufs = out.rig->alloc(count * kPage);
  for (uint16_t i = 0; i < count; ++i) {
    out.rig->put(out.bufs + i * kPage, pattern(70 + i, 512));
    auto cid = out.rig->c().submit(1, commands::write(1, 32 + i, 1),
                                   Transfer::prp(out.bufs + i * kPage, 512));
    EXPECT_TRUE(cid.ok());
    if (cid.ok()) out.cids.push_back(*cid);
  }
  EXPECT_TRUE(out.rig->vm->qmp().wait_event("STOP", Millis(30000)).ok());
  EXPECT_EQ(out.rig->vm->ok("query-status")["status"], "io-error");
  return out;
}

TEST(NvmeMigration, WritesHeldOnAnIoErrorAreRetriedOnTheDestinationAfterCont) {
  TempImage image(16 << 20);
  HeldSource src = held_source(image, 6);
  ASSERT_NE(src.rig, nullptr);
  ASSERT_FALSE(HasFailure());
  std::string sock = unique_base("nvme-mig") + ".sock";
  std::vector<std::string> args = {"-m", "256M"};
  auto machine = one_controller(image);  // no fault here
  args.insert(args.end(), machine.begin(), machine.end());
  args.insert(args.end(), {"-incoming", "unix:" + sock});
  auto dst = FerryVm::start(kFerryVm, args);
  ASSERT_TRUE(dst);
  src.rig->vm->ok("migrate", Json{{"uri", "unix:" + sock}});
  Json result = wait_migration_end(*src.rig->vm);
  ASSERT_EQ(result["status"], "completed") << result.dump() << dst->process().stderr_text();
  EXPECT_EQ(src.rig->vm->ok("query-status")["status"], "postmigrate");
  for (int i = 0; i < 3000 && dst->ok("query-status")["status"] == "inmigrate"; ++i)
    std::this_thread::sleep_for(Millis(10));
  EXPECT_EQ(dst->ok("query-status")["status"], "io-error");
  auto bus = std::make_unique<client::QtestBus>(dst->qtest());
  src.rig->ctrl->rebind(*bus);
  src.rig->bus = std::move(bus);
  std::swap(src.rig->vm, dst);
  NvmeRig& rig = *src.rig;
  std::this_thread::sleep_for(Millis(100));
  auto early = rig.c().poll(1);
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(early->has_value()) << "a held write completed before cont";
  rig.vm->ok("cont");
  std::set<uint16_t> done;
  for (uint16_t cid : src.cids) {
    auto c = rig.c().wait(1, cid);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_TRUE(c->ok()) << c->status;
    EXPECT_TRUE(done.insert(c->cid).second);
  }
  std::this_thread::sleep_for(Millis(50));
  auto extra = rig.c().poll(1);
  ASSERT_TRUE(extra.ok());
  EXPECT_FALSE(extra->has_value()) << "a write completed twice";
  for (uint16_t i = 0; i < src.cids.size(); ++i)
    EXPECT_EQ(image.read((32 + i) * 512, 512), pattern(70 + i, 512));
}

// The held list in a saved stream: after the subsection header, per command 0x01, be16
// SQ id, the 64-byte SQE; then 0x00. Each malformed variant is refused by name.
TEST(NvmeMigration, AMalformedHeldRequestListIsRefused) {
  TempImage image(16 << 20);
  HeldSource src = held_source(image, 2);
  ASSERT_NE(src.rig, nullptr);
  ASSERT_FALSE(HasFailure());
  std::string stream = unique_base("nvme-held") + ".mig";
  src.rig->vm->ok("migrate", Json{{"uri", "file:" + stream}});
  ASSERT_EQ(wait_migration_end(*src.rig->vm)["status"], "completed");
  std::vector<uint8_t> bytes = read_file(stream);
  ::unlink(stream.c_str());
  const std::string name = "nvme-state/held-requests";
  auto at = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
  ASSERT_NE(at, bytes.end()) << "no held-requests subsection in the stream";
  size_t list = static_cast<size_t>(at - bytes.begin()) + name.size() + 4;
  ASSERT_EQ(bytes[list], 0x01);
  ASSERT_EQ(bytes[list + 1], 0x00);
  ASSERT_EQ(bytes[list + 2], 0x01) << "SQ 1";
  ASSERT_EQ(bytes[list + 3], sn::kNvmWrite) << "the SQE's opcode";
  const size_t sq_id = list + 1, opcode = list + 3, nsid = list + 3 + 4;
  auto machine = one_controller(image);
  struct Case {
    size_t offset;
    uint8_t value;
    const char* expected;
  };
  for (const Case& c : {Case{sq_id + 1, 0, "held command for SQ 0"},
                        Case{sq_id + 1, 5, "held command for SQ 5"},
                        Case{opcode, sn::kNvmWriteUncorrectable, "opcode 0x04"},
                        Case{nsid, 7, "namespace 7"},
                        Case{list, 0x02, "held"}}) {
    SCOPED_TRACE(c.expected);
    std::vector<uint8_t> patched = bytes;
    patched[c.offset] = c.value;
    expect_stream_refused(machine, patched, c.expected);
  }
  // An SQ of 16 entries has at most 15 commands outstanding: 16 held ones (the first one
  // copied until there are 16; the list has no count, only its end marker) are refused.
  // (Held: the writes that failed before the VM stopped; a later one may still be in the SQ.)
  {
    constexpr size_t kElement = 1 + 2 + 64;
    size_t held = 0;
    while (bytes[list + held * kElement] == 0x01) ++held;
    ASSERT_GE(held, 1u);
    ASSERT_LE(held, 2u);
    std::vector<uint8_t> patched = bytes;
    std::vector<uint8_t> first(bytes.begin() + static_cast<std::ptrdiff_t>(list),
                               bytes.begin() + static_cast<std::ptrdiff_t>(list + kElement));
    for (size_t i = held; i < 16; ++i)
      patched.insert(patched.begin() + static_cast<std::ptrdiff_t>(list), first.begin(),
                     first.end());
    expect_stream_refused(machine, patched, "16 commands held for SQ 1, which has only 16 entries");
  }
  // Unpatched, the destination confirms the load and waits in io-error; `cont` there runs
  // the held writes.
  std::string path = unique_base("nvme-good") + ".mig";
  write_file(path, bytes);
  auto dst = load_and_confirm(machine, path, "io-error");
  ::unlink(path.c_str());
  ASSERT_NE(dst, nullptr);
  ASSERT_FALSE(HasFailure());
  dst->ok("cont");
  for (int i = 0; i < 3000 && image.read(33 * 512, 512) != pattern(71, 512); ++i)
    std::this_thread::sleep_for(Millis(20));
  EXPECT_EQ(image.read(32 * 512, 512), pattern(70, 512));
  EXPECT_EQ(image.read(33 * 512, 512), pattern(71, 512));
}

TEST(NvmeMigration, BlockingPropertyNamesItselfInTheBlocker) {
  TempImage image(16 << 20);
  auto rig = start_rig(kFerryVm, one_controller(image, ",aer_max_queued=1000"), false);
  ASSERT_NE(rig, nullptr);
  auto reply = rig->vm->qmp().execute("migrate", Json{{"uri", "file:/dev/null"}});
  ASSERT_TRUE(reply.ok());
  ASSERT_TRUE(reply->contains("error")) << reply->dump();
  std::string desc = (*reply)["error"].value("desc", "");
  EXPECT_NE(desc.find("aer_max_queued=1000"), std::string::npos) << desc;
  Json blocked = rig->vm->ok("query-migrate");
  EXPECT_NE(blocked.dump().find("aer_max_queued"), std::string::npos) << blocked.dump();
}

}  // namespace
}  // namespace ferry::testing
