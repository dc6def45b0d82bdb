// analyze_stream: streaming walk, where a cut stream ends, a broken vmdesc, bounded reads.
#include "migration/analyze.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "migration/buffer_channel.h"
#include "migration/ram_section.h"
#include "migration/section_registry.h"
#include "migration/stream.h"
#include "migration/stream_writer.h"
#include "migration/test_devices.h"

namespace ferry::migration {
namespace {

using vmstate::Json;

// A stopped VM's stream: "pc.ram" (`pages` pages), a timer and the NVMe-like device.
std::vector<uint8_t> ferry_stream(uint64_t pages = 16) {
  auto ram = test::make_ram({{"pc.ram", pages}}, true);
  test::Timer timer{0x1122334455667788ull, 250};
  vmstate::samples::NvmeLike nvme;
  vmstate::samples::fill_nvme_like(nvme, 3);
  nvme.smart_units_read = 42;
  SectionRegistry registry;
  EXPECT_TRUE(registry.add_ram().ok());
  EXPECT_TRUE(registry.add("timer", vmstate::bind(test::kTimerDesc, timer)).ok());
  EXPECT_TRUE(registry
                  .add(pci_idstr(0, 0, 2, 0, "nvme"),
                       vmstate::bind(vmstate::samples::kNvmeLikeDesc, nvme))
                  .ok());
  BufferChannel ch;
  StreamWriter w(ch);
  RamSaver saver(test::raw(ram));
  Status st = save_stream(w, "pc-q35-7.2", registry, saver);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return ch.written();
}

// Where the last RAM record ends (its footer included): every cut from here on is after
// the RAM section.
uint64_t end_of_ram(const Json& analysis) {
  uint64_t end = 0;
  for (const Json& rec : analysis["records"])
    if (rec.value("idstr", "") == "ram") {
      // PART and END bodies follow the type byte and the section id.
      uint64_t body = rec.contains("body_offset") ? rec["body_offset"].get<uint64_t>()
                                                  : rec["offset"].get<uint64_t>() + 5;
      end = body + rec["body_size"].get<uint64_t>() + 5;  // and the footer
    }
  return end;
}

std::string first_reason(const Json& analysis) {
  if (analysis["errors"].empty()) return "";
  return analysis["errors"][0]["reason"].get<std::string>();
}

class SpanTail final : public StreamTail {
 public:
  explicit SpanTail(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  Status read_at(uint64_t offset, std::span<uint8_t> out) override {
    ++reads;
    if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
      return Error(ErrorCode::kOutOfRange, "past the end");
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return {};
  }
  int reads = 0;

 private:
  std::span<const uint8_t> bytes_;
};

// A socket stream opens QEMU's return path after the configuration (OPEN_RETURN_PATH, PING
// 1): each is a record of its own, the PING with its value; a wrong length is named.
TEST(AnalyzeStream, ReturnPathCommandsAreDecoded) {
  std::vector<uint8_t> bytes = ferry_stream(2);
  const size_t after_configuration = 8 + 1 + 4 + std::strlen("pc-q35-7.2");
  const std::vector<uint8_t> commands = {0x08, 0, 1, 0, 0, 0x08, 0, 2, 0, 4, 0, 0, 0, 1};
  bytes.insert(bytes.begin() + after_configuration, commands.begin(), commands.end());
  Json j = analyze_stream(bytes);
  ASSERT_TRUE(j["errors"].empty()) << j["errors"].dump();
  std::vector<Json> found;
  for (const Json& rec : j["records"])
    if (rec["type"] == "command") found.push_back(rec);
  ASSERT_EQ(found.size(), 2u) << j["records"].dump();
  EXPECT_EQ(found[0]["name"], "OPEN_RETURN_PATH");
  EXPECT_EQ(found[0]["offset"], after_configuration);
  EXPECT_EQ(found[1]["name"], "PING");
  EXPECT_EQ(found[1]["value"], 1u);

  bytes[after_configuration + 9] = 3;  // PING's length
  Json bad = analyze_stream(bytes);
  ASSERT_EQ(bad["errors"].size(), 1u);
  EXPECT_EQ(bad["errors"][0]["offset"], after_configuration + 5);
  EXPECT_NE(first_reason(bad).find("PING received with bad length - expecting 4, got 3"),
            std::string::npos)
      << first_reason(bad);
}

TEST(AnalyzeStream, EveryCutAfterTheRamSectionSaysWhereTheStreamEnds) {
  std::vector<uint8_t> bytes = ferry_stream(2);  // little RAM: thousands of walks follow
  Json whole = analyze_stream(bytes);
  ASSERT_TRUE(whole["errors"].empty()) << whole["errors"].dump();
  const uint64_t ram_end = end_of_ram(whole);
  ASSERT_GT(ram_end, 0u);
  ASSERT_LT(ram_end, bytes.size());
  // Every cut near a record's start, body and footer and in the vmdesc's header, and every
  // 7th byte elsewhere (each walk costs about a millisecond: the device body is 20 KB).
  std::set<uint64_t> cuts;
  for (uint64_t n = ram_end; n < bytes.size(); n += 7) cuts.insert(n);
  for (const Json& rec : whole["records"]) {
    std::vector<uint64_t> marks = {rec["offset"].get<uint64_t>()};
    if (rec.contains("body_offset")) {
      marks.push_back(rec["body_offset"].get<uint64_t>());
      marks.push_back(rec["body_offset"].get<uint64_t>() + rec["body_size"].get<uint64_t>());
    }
    for (uint64_t mark : marks)
      for (uint64_t n = mark > 40 ? mark - 40 : 0; n < mark + 40 && n < bytes.size(); ++n)
        if (n >= ram_end) cuts.insert(n);
  }
  for (uint64_t n : cuts) {
    Json cut = analyze_stream(std::span(bytes).first(n));
    SCOPED_TRACE(fmt::format("cut at {}: {}", n, cut["errors"].dump()));
    ASSERT_EQ(cut["errors"].size(), 1u);
    // The cut is named where it is, never a complete section further back.
    EXPECT_EQ(cut["errors"][0]["offset"], n);
    EXPECT_TRUE(first_reason(cut).starts_with(fmt::format("the stream ends at offset {} ", n)));
    EXPECT_EQ(first_reason(cut).find("cannot size"), std::string::npos);
  }
}

TEST(AnalyzeStream, CutsInsideSectionsNameTheSection) {
  std::vector<uint8_t> bytes = ferry_stream();
  Json whole = analyze_stream(bytes);
  for (const Json& rec : whole["records"]) {
    if (rec.value("idstr", "") != "timer") continue;
    uint64_t mid = rec["body_offset"].get<uint64_t>() + 3;
    Json cut = analyze_stream(std::span(bytes).first(mid));
    EXPECT_EQ(first_reason(cut),
              fmt::format("the stream ends at offset {} inside the FULL record of section "
                          "'timer' (id 1) at offset {}, whose body starts at offset {} (no footer "
                          "follows, and the stream has no vmdesc)",
                          mid, rec["offset"].get<uint64_t>(), rec["body_offset"].get<uint64_t>()));
  }
  // Inside the vmdesc JSON: the vmdesc is named, with where it starts.
  const Json& last = whole["records"].back();
  ASSERT_EQ(last["type"], "vmdesc");
  uint64_t json_at = last["offset"].get<uint64_t>() + 5;
  Json cut = analyze_stream(std::span(bytes).first(json_at + 10));
  EXPECT_EQ(first_reason(cut),
            fmt::format("the stream ends at offset {} inside the vmdesc JSON that starts at "
                        "offset {} (10 of its {} bytes are there)",
                        json_at + 10, json_at, last["length"].get<uint64_t>()));
}

TEST(AnalyzeStream, BrokenVmdescJsonIsNamedWithItsOffset) {
  std::vector<uint8_t> bytes = ferry_stream();
  Json whole = analyze_stream(bytes);
  const Json& last = whole["records"].back();
  uint64_t json_at = last["offset"].get<uint64_t>() + 5;
  // A '"' in the middle of a key breaks the JSON where the parser notices.
  auto broken = bytes;
  size_t at = json_at + 1;
  while (broken[at] != '"') ++at;
  broken[at + 2] = '\x01';
  Json j = analyze_stream(broken);
  ASSERT_EQ(j["errors"].size(), 1u);
  std::string reason = first_reason(j);
  EXPECT_TRUE(reason.starts_with(
      fmt::format("the vmdesc JSON that starts at offset {} is broken at offset", json_at)))
      << reason;
  uint64_t offset = j["errors"][0]["offset"].get<uint64_t>();
  EXPECT_GE(offset, json_at);
  EXPECT_LE(offset, at + 3);
}

TEST(AnalyzeStream, BadMagicIsRefusedBeforeAnythingElseIsRead) {
  std::vector<uint8_t> zeros(4 << 20, 0);
  SpanTail tail(zeros);
  BufferChannel channel(zeros);
  Json j = analyze_stream(channel, tail);
  ASSERT_EQ(j["errors"].size(), 1u);
  EXPECT_EQ(j["errors"][0]["offset"], 0u);
  EXPECT_EQ(first_reason(j), "bad magic 0x00000000 (expected 0x5145564d, \"QEVM\")");
  EXPECT_EQ(tail.reads, 0) << "the vmdesc is looked for only when a device section needs it";
}

TEST(AnalyzeStream, SameWalkWhateverTheReadSizes) {
  std::vector<uint8_t> bytes = ferry_stream();
  Json whole = analyze_stream(bytes);
  for (size_t max_read : {1, 3, 4095, 4097}) {
    BufferChannel channel(bytes, max_read);
    SpanTail tail(bytes);
    Json j = analyze_stream(channel, tail);
    EXPECT_EQ(j, whole) << max_read;
  }
}

struct Observed final : AnalyzeObserver {
  void device_body(uint64_t offset, std::span<const uint8_t> body) override {
    bodies.emplace_back(offset, body.size());
  }
  void ram_page(std::string_view block, uint64_t, std::span<const uint8_t> page,
                uint8_t) override {
    EXPECT_EQ(block, "pc.ram");
    EXPECT_TRUE(page.empty() || page.size() == 4096);
    ++(page.empty() ? zero_pages : pages);
  }
  std::vector<std::pair<uint64_t, size_t>> bodies;
  uint64_t pages = 0, zero_pages = 0;
};

TEST(AnalyzeStream, ObserverSeesEveryDeviceBodyAndPage) {
  std::vector<uint8_t> bytes = ferry_stream();
  Observed seen;
  Json j = analyze_stream(bytes, &seen);
  ASSERT_TRUE(j["errors"].empty()) << j["errors"].dump();
  EXPECT_EQ(seen.pages, j["ram"]["pages"].get<uint64_t>());
  EXPECT_EQ(seen.zero_pages, j["ram"]["zero_pages"].get<uint64_t>());
  std::vector<std::pair<uint64_t, size_t>> expected;
  for (const Json& rec : j["records"])
    if (rec.contains("fields"))
      expected.emplace_back(rec["body_offset"].get<uint64_t>(), rec["body_size"].get<size_t>());
  EXPECT_EQ(seen.bodies, expected);
  EXPECT_EQ(expected.size(), 2u);
}

}  // namespace
}  // namespace ferry::migration
