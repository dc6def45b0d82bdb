// Section handlers and the one order of a save (stream.cc's run_save): the phases a
// handler goes through, an iterative section sent until nothing is pending, and where each
// kind of section lands on the wire whatever order it was registered in.
#include "migration/section_handler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "migration/analyze.h"
#include "migration/buffer_channel.h"
#include "migration/ram_section.h"
#include "migration/section_registry.h"
#include "migration/stream.h"
#include "migration/test_devices.h"
#include "migration/wire.h"

namespace ferry::migration {
namespace {

// The records of a stream as "TYPE idstr" (idstr left out where a record has none).
std::vector<std::string> record_list(std::span<const uint8_t> bytes) {
  vmstate::Json analysis = analyze_stream(bytes);
  EXPECT_TRUE(analysis["errors"].empty()) << analysis["errors"].dump();
  std::vector<std::string> out;
  for (const vmstate::Json& rec : analysis["records"]) {
    std::string line = rec["type"].get<std::string>();
    if (rec.contains("idstr")) line += " " + rec["idstr"].get<std::string>();
    out.push_back(line);
  }
  return out;
}

// Registered in the order a machine might (a stop-and-copy device, RAM, then an early-setup
// device): the stream is still early device, RAM START, RAM END, device, because run_save
// decides the order, not the registry.
TEST(SaveOrder, EarlySetupDevicesPrecedeRamAndTheOthersFollowItWhateverTheRegistration) {
  auto ram = test::make_ram({{"pc.ram", 8}}, true);
  test::Timer timer{5, 6}, clock{7, 8};
  SectionRegistry registry;
  ASSERT_TRUE(registry.add("timer", vmstate::bind(test::kTimerDesc, timer)).ok());
  ASSERT_TRUE(registry.add_ram().ok());
  ASSERT_TRUE(registry.add("kvmclock", vmstate::bind(test::kTimerDesc, clock), 0, true).ok());
  for (bool switchover : {false, true}) {
    BufferChannel out;
    StreamWriter w(out);
    RamSaver saver(test::raw(ram));
    ASSERT_TRUE(save_stream(w, "pc", registry, saver, {.send_switchover_start = switchover}).ok());
    std::vector<std::string> expected = {"header",    "configuration", "FULL kvmclock",
                                         "START ram", "END ram"};
    if (switchover) expected.push_back("command");
    expected.insert(expected.end(), {"FULL timer", "EOF", "vmdesc"});
    EXPECT_EQ(record_list(out.written()), expected) << "switchover-start " << switchover;
  }
}

// What a handler was asked to do, in order.
using CallLog = std::vector<std::string>;

// An iterative section with `total` bytes to send: setup sends an empty START record, each
// iteration one PART record of up to the budget (be32 length, then 0xab bytes), complete an
// END record. Loaded, it counts the bytes and the records it received.
class PendingSection final : public SectionHandler {
 public:
  PendingSection(uint64_t total, CallLog& log) : total_(total), log_(log) {}
  bool iterative() const override { return true; }
  Status save_setup(StreamWriter& w, const SectionEntry& entry, SaveContext&) override {
    write_section_header(w, wire::kSectionStart, entry, 1);
    write_footer(w, entry.section_id);
    log_.push_back("setup");
    return {};
  }
  uint64_t sync_pending() override {
    pending_ = total_ - sent_;
    log_.push_back("sync " + std::to_string(pending_));
    return pending_;
  }
  uint64_t pending_bytes() const override { return pending_; }
  Result<bool> save_iterate(StreamWriter& w, const SectionEntry& entry,
                            uint64_t byte_budget) override {
    uint64_t n = std::min(byte_budget, pending_);
    write_section_continuation(w, wire::kSectionPart, entry.section_id);
    w.put_be32(static_cast<uint32_t>(n));
    w.put_bytes(std::vector<uint8_t>(n, 0xab));
    write_footer(w, entry.section_id);
    pending_ -= n;
    sent_ += n;
    log_.push_back("iterate " + std::to_string(n));
    return pending_ == 0;
  }
  Status save_complete(StreamWriter& w, const SectionEntry& entry, SaveContext&) override {
    write_section_continuation(w, wire::kSectionEnd, entry.section_id);
    write_footer(w, entry.section_id);
    log_.push_back("complete");
    return {};
  }
  int version() const override { return 1; }
  Status load(StreamReader& r, uint8_t type, int) override {
    log_.push_back(std::string("load ") + (type == wire::kSectionStart  ? "START"
                                           : type == wire::kSectionPart ? "PART"
                                                                        : "END"));
    if (type != wire::kSectionPart) return {};
    uint32_t n = 0;
    FERRY_RETURN_IF_ERROR(r.read_be32(n, "length"));
    std::span<const uint8_t> bytes;
    FERRY_RETURN_IF_ERROR(r.take(n, bytes, "bytes"));
    if (std::any_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b != 0xab; }))
      return Error(ErrorCode::kCorrupt, "a byte other than 0xab");
    received += n;
    return {};
  }
  uint64_t received = 0;

 private:
  uint64_t total_, sent_ = 0, pending_ = 0;
  CallLog& log_;
};

// A live save's iterate phase in miniature: sync, then iterate until the pass is done.
class IteratingRunner final : public SaveRunner {
 public:
  IteratingRunner(const SectionRegistry& registry, CallLog& log) : registry_(registry), log_(log) {}
  Result<DeviceRecords> device_records(SavePhase phase) override {
    return save_device_sections(registry_, phase);
  }
  Status iterate(StreamWriter& w, IterativeSections& sections) override {
    pending_at_sync = sections.sync();
    for (;;) {
      auto done = sections.iterate(w, 4096);
      if (!done.ok()) return done.take_status();
      pending_after.push_back(sections.pending_bytes());
      if (*done) return {};
    }
  }
  uint64_t pending_at_sync = 0;
  std::vector<uint64_t> pending_after;

 private:
  const SectionRegistry& registry_;
  CallLog& log_;
};

TEST(SectionHandler, AnIterativeSectionIsIteratedUntilNothingIsPending) {
  auto ram = test::make_ram({{"pc.ram", 4}}, false);  // 4 zero pages: one PART carries them
  CallLog log;
  SectionRegistry registry;
  ASSERT_TRUE(registry.add_ram().ok());
  ASSERT_TRUE(registry.add_section("pending", std::make_unique<PendingSection>(10000, log)).ok());
  BufferChannel out;
  StreamWriter w(out);
  RamSaver saver(test::raw(ram));
  RamSection ram_section(saver);
  IteratingRunner runner(registry, log);
  ASSERT_TRUE(run_save(w, "pc", registry, ram_section, runner).ok());
  // RAM's 4 pages and the section's 10000 bytes were pending; 4096 bytes a record.
  EXPECT_EQ(runner.pending_at_sync, 4 * memory::kPageSize + 10000);
  EXPECT_EQ(log, (CallLog{"setup", "sync 10000", "iterate 4096", "iterate 4096", "iterate 1808",
                          "complete"}));
  ASSERT_FALSE(runner.pending_after.empty());
  EXPECT_EQ(runner.pending_after.back(), 0u);
  // On the wire: the section's START, three PART records of its bytes, and its END (its
  // section id is 1; RAM's, registered first, is 0).
  auto count = [&](std::vector<uint8_t> pattern) {
    const std::vector<uint8_t>& bytes = out.written();
    size_t n = 0;
    for (auto it = bytes.begin();
         (it = std::search(it, bytes.end(), pattern.begin(), pattern.end())) != bytes.end(); ++it)
      ++n;
    return n;
  };
  EXPECT_EQ(count({wire::kSectionStart, 0, 0, 0, 1, 7, 'p', 'e', 'n', 'd', 'i', 'n', 'g'}), 1u);
  EXPECT_EQ(count({wire::kSectionPart, 0, 0, 0, 1, 0, 0, 0x10, 0, 0xab, 0xab}), 2u);
  EXPECT_EQ(count({wire::kSectionPart, 0, 0, 0, 1, 0, 0, 0x07, 0x10, 0xab, 0xab}), 1u);
  EXPECT_EQ(count({wire::kSectionEnd, 0, 0, 0, 1, wire::kFooter, 0, 0, 0, 1}), 1u);

  // The destination hands each of the section's records to its handler, in order.
  auto dst_ram = test::make_ram({{"pc.ram", 4}}, false);
  CallLog loaded;
  SectionRegistry dst;
  ASSERT_TRUE(dst.add_ram().ok());
  auto receiver = std::make_unique<PendingSection>(0, loaded);
  PendingSection& pending = *receiver;
  ASSERT_TRUE(dst.add_section("pending", std::move(receiver)).ok());
  BufferChannel in(out.written());
  StreamReader r(in);
  RamLoader loader(test::raw(dst_ram));
  Status st = load_stream(r, "pc", dst, loader);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(loaded, (CallLog{"load START", "load PART", "load PART", "load PART", "load END"}));
  EXPECT_EQ(pending.received, 10000u);

  // A PART whose body the handler refuses names the section and the record.
  std::vector<uint8_t> bad = out.written();
  auto part = std::find(bad.begin(), bad.end(), uint8_t{0xab});  // the first PART's body
  ASSERT_NE(part, bad.end());
  *part = 0xcd;
  CallLog ignored;
  SectionRegistry dst2;
  ASSERT_TRUE(dst2.add_ram().ok());
  ASSERT_TRUE(dst2.add_section("pending", std::make_unique<PendingSection>(0, ignored)).ok());
  BufferChannel in2(bad);
  StreamReader r2(in2);
  RamLoader loader2(test::raw(dst_ram));
  st = load_stream(r2, "pc", dst2, loader2);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("section 'pending' PART"), std::string::npos) << st.to_string();
}

// Both FULL records arrive, in that order, the first before any RAM and the second after
// all of it.
using test::TwiceSentSection;

TEST(SectionHandler, ADeviceSectionMaySendAFullRecordAtSetupAndAgainAtComplete) {
  auto src_ram = test::make_ram({{"pc.ram", 16}}, true, 3);
  auto dst_ram = test::make_ram({{"pc.ram", 16}}, false);
  uint32_t src_value = 0x1234, dst_value = 0;
  SectionRegistry src, dst;
  ASSERT_TRUE(src.add_ram().ok());
  ASSERT_TRUE(src.add_section("twice", std::make_unique<TwiceSentSection>(src_value)).ok());
  ASSERT_TRUE(dst.add_ram().ok());
  auto receiver = std::make_unique<TwiceSentSection>(dst_value);
  TwiceSentSection& twice = *receiver;
  ASSERT_TRUE(dst.add_section("twice", std::move(receiver)).ok());

  // The device changes between setup and stop-and-copy.
  class ChangingRunner final : public SaveRunner {
   public:
    ChangingRunner(const SectionRegistry& r, uint32_t& v) : registry_(r), value_(v) {}
    Result<DeviceRecords> device_records(SavePhase phase) override {
      if (phase == SavePhase::kComplete) value_ = 0x5678;
      return save_device_sections(registry_, phase);
    }

   private:
    const SectionRegistry& registry_;
    uint32_t& value_;
  } runner(src, src_value);
  BufferChannel out;
  StreamWriter w(out);
  RamSaver saver(test::raw(src_ram));
  RamSection ram_section(saver);
  ASSERT_TRUE(run_save(w, "pc", src, ram_section, runner).ok());

  BufferChannel in(out.written());
  StreamReader r(in);
  RamLoader loader(test::raw(dst_ram));
  twice.watch(loader);
  Status st = load_stream(r, "pc", dst, loader);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(twice.loads, (std::vector<TwiceSentSection::Load>{{wire::kSectionFull, 0x1234, 0},
                                                              {wire::kSectionFull, 0x5678, 16}}));
  EXPECT_EQ(dst_value, 0x5678u);
  EXPECT_TRUE(test::same_ram(src_ram, dst_ram));
}

TEST(SectionRegistry, AHandlerSectionIsCheckedLikeAnyOther) {
  uint32_t value = 0;
  SectionRegistry registry;
  EXPECT_FALSE(registry.add_section("twice", nullptr).ok());
  EXPECT_FALSE(registry.add_section("ram", std::make_unique<TwiceSentSection>(value)).ok());
  auto first = registry.add_section("twice", std::make_unique<TwiceSentSection>(value));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(registry.add_section("twice", std::make_unique<TwiceSentSection>(value)).ok());
  EXPECT_EQ(registry.find("twice", 1)->section_id, *first + 1);  // the next free instance
  EXPECT_FALSE(registry.add_section("twice", std::make_unique<TwiceSentSection>(value), 0).ok());
}

}  // namespace
}  // namespace ferry::migration
