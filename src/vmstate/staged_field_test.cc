// staged_buffer (staged_field.h): the same bytes and vmdesc as a plain buffer; a load puts
// the bytes in the staging member, post_load commits them, and a stream refused anywhere
// after the buffer (a later field, post_load) or cut inside it leaves the live bytes as
// they were.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <vector>

#include "vmstate/test_util.h"
#include "vmstate/vmstate.h"

namespace ferry::vmstate {
namespace {

using test::hex;
using test::load_from;
using test::saved;
using test::to_hex;

// A config-space-like block: byte 0 is read-only (must arrive unchanged), only the first
// `size` bytes exist and migrate; the staging buffer lives behind a pointer.
struct StagedRegs {
  std::array<uint8_t, 8> bytes{};
  std::unique_ptr<std::array<uint8_t, 8>> incoming;
  uint32_t size = 6;  // local, never sent
  uint16_t tail = 0;
};

Status commit_regs(StagedRegs& r, int) {
  if ((*r.incoming)[0] != r.bytes[0])
    return Error(ErrorCode::kCorrupt, "read-only byte 0: expected {:#04x}, found {:#04x}",
                 r.bytes[0], (*r.incoming)[0]);
  std::copy_n(r.incoming->begin(), r.size, r.bytes.begin());
  return {};
}

inline constexpr auto kStagedRegs = describe<StagedRegs>(
    "regs", {.post_load = commit_regs},
    staged_buffer("bytes", &StagedRegs::bytes, &StagedRegs::incoming, &StagedRegs::size),
    field("tail", &StagedRegs::tail).validate([](uint16_t v) { return v != 0xdead; }, "tail is dead"));

// The same wire layout as a plain buffer of `size` bytes.
struct PlainRegs {
  std::array<uint8_t, 6> bytes{};
  uint16_t tail = 0;
};
inline constexpr auto kPlainRegs =
    describe<PlainRegs>("regs", {}, buffer("bytes", &PlainRegs::bytes), field("tail", &PlainRegs::tail));

StagedRegs live_regs() {
  StagedRegs r;
  r.bytes = {0xa0, 1, 2, 3, 4, 5, 0xee, 0xee};
  r.tail = 7;
  return r;
}

TEST(StagedBuffer, SavesAndDescribesAsAPlainBuffer) {
  EXPECT_TRUE(kStagedRegs.check().ok()) << kStagedRegs.check().to_string();
  StagedRegs r = live_regs();
  PlainRegs p{{0xa0, 1, 2, 3, 4, 5}, 7};
  EXPECT_EQ(to_hex(saved(kStagedRegs, r)), to_hex(saved(kPlainRegs, p)));
  EXPECT_EQ(to_hex(saved(kStagedRegs, r)), "a001020304050007");

  ByteWriter w;
  Json staged = Json::object();
  ASSERT_TRUE(kStagedRegs.save(r, w, staged).ok());
  ByteWriter w2;
  Json plain = Json::object();
  ASSERT_TRUE(kPlainRegs.save(p, w2, plain).ok());
  EXPECT_EQ(staged.dump(), plain.dump());
  EXPECT_EQ(staged["fields"][0].dump(), R"({"name":"bytes","type":"buffer","size":6})");
}

TEST(StagedBuffer, GoodLoadCommitsThroughPostLoad) {
  StagedRegs r = live_regs();
  ASSERT_TRUE(load_from(kStagedRegs, r, hex("a0 1112131415 0009")).ok());
  EXPECT_EQ(to_hex(r.bytes), "a01112131415eeee");  // bytes past `size` are not sent
  EXPECT_EQ(r.tail, 9);
  ASSERT_NE(r.incoming, nullptr);  // allocated by the load itself
}

TEST(StagedBuffer, RefusedLoadLeavesTheLiveBytesUntouched) {
  const std::string before = to_hex(live_regs().bytes);
  struct Case {
    const char* what;
    std::vector<uint8_t> stream;
    const char* words;
  };
  const Case cases[] = {
      {"post_load refuses", hex("ff 1112131415 0009"), "read-only byte 0"},
      {"a later field refuses", hex("a0 1112131415 dead"), "tail is dead"},
      {"cut inside the buffer", hex("a0 1112"), "needed 6 bytes"},
      {"cut after the buffer", hex("a0 1112131415 00"), "needed 2 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    StagedRegs r = live_regs();
    Status st = load_from(kStagedRegs, r, c.stream);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.to_string().find(c.words), std::string::npos) << st.to_string();
    EXPECT_EQ(to_hex(r.bytes), before);
  }
}

// A vector live member with a vector staging member sized by the load.
struct StagedTable {
  std::vector<uint8_t> live = std::vector<uint8_t>(4, 0x55);
  std::vector<uint8_t> staged;
};
Status commit_table(StagedTable& t, int) {
  t.live = t.staged;
  return {};
}
inline constexpr auto kStagedTable = describe<StagedTable>(
    "table", {.post_load = commit_table}, staged_buffer("t", &StagedTable::live, &StagedTable::staged, own_size));

TEST(StagedBuffer, StagesIntoAVectorOfTheLiveSize) {
  ASSERT_TRUE(kStagedTable.check().ok());
  StagedTable t;
  ASSERT_TRUE(load_from(kStagedTable, t, hex("01020304")).ok());
  EXPECT_EQ(to_hex(t.live), "01020304");
  StagedTable cut;
  EXPECT_FALSE(load_from(kStagedTable, cut, hex("0102")).ok());
  EXPECT_EQ(to_hex(cut.live), "55555555");
}

struct StagedTwin {
  std::array<uint8_t, 4> a{};
  std::array<uint8_t, 4> b{};
};
Status twin_post_load(StagedTwin&, int) { return {}; }

TEST(StagedBuffer, CheckRefusesWhatCouldNeverCommit) {
  constexpr auto no_post_load =
      describe<StagedTwin>("twin", {}, staged_buffer("a", &StagedTwin::a, &StagedTwin::b));
  Status st = no_post_load.check();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("staged buffer 'a' needs a post_load hook of 'twin'"),
            std::string::npos)
      << st.to_string();

  constexpr auto into_itself =
      describe<StagedTwin>("twin", {.post_load = twin_post_load}, staged_buffer("a", &StagedTwin::a, &StagedTwin::a));
  st = into_itself.check();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("staged buffer 'a' stages into its own live member"),
            std::string::npos)
      << st.to_string();

  constexpr auto fine =
      describe<StagedTwin>("twin", {.post_load = twin_post_load}, staged_buffer("a", &StagedTwin::a, &StagedTwin::b));
  EXPECT_TRUE(fine.check().ok());
}

}  // namespace
}  // namespace ferry::vmstate
