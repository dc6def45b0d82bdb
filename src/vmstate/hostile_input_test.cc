// The loader treats its input as hostile: every malformed stream yields an error naming
// the path and the expected and found values; nothing crashes, reads out of bounds,
// allocates beyond declared maxima or leaks (this test also runs under ASan+UBSan).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "vmstate/samples/nvme_like.h"
#include "vmstate/test_util.h"
#include "vmstate/vmstate.h"

namespace ferry::vmstate {
namespace {

using samples::kNvmeLikeDesc;
using samples::NvmeLike;
using test::hex;
using test::load_from;
using test::saved;

// Byte offsets in a saved NvmeLike (5 x u64 + 23 x u32 registers, then u16, u8, then the
// 64 queue slots: marker + 24-byte queue when present, every other slot).
constexpr size_t kNumQueuesAt = 132;
constexpr size_t kQueuesAt = 135;
constexpr size_t kQueueBytes = 24;
constexpr size_t kAfterQueues = kQueuesAt + 32 * (1 + kQueueBytes) + 32;  // n_log

std::vector<uint8_t> valid_stream(bool with_subsections = false) {
  NvmeLike s;
  samples::fill_nvme_like(s, 11);
  if (with_subsections) {
    s.smart_units_read = 1;
    s.pending_events = {{1, 2, 3}, {4, 5, 6}};
  }
  return saved(kNvmeLikeDesc, s);
}

Status load(const std::vector<uint8_t>& bytes, size_t* consumed = nullptr) {
  NvmeLike s;
  return load_from(kNvmeLikeDesc, s, bytes, -1, consumed);
}

TEST(HostileInput, LayoutAssumptionsHold) {
  auto bytes = valid_stream();
  EXPECT_EQ(bytes[kQueuesAt], 0x31);
  EXPECT_EQ(bytes[kQueuesAt + 1 + kQueueBytes], 0x30);
  EXPECT_EQ(bytes.size(), kAfterQueues + 2 + 16);
}

TEST(HostileInput, EveryTruncationIsRefusedOrEndsAtASubsectionBoundary) {
  NvmeLike full;
  samples::fill_nvme_like(full, 11);
  full.smart_units_read = 1;
  full.pending_events = {{1, 2, 3}, {4, 5, 6}};
  auto snapshot = take_snapshot(kNvmeLikeDesc, full);
  ASSERT_TRUE(snapshot.ok());
  // Where a load may legitimately stop: after the fields, or after a whole subsection.
  // Optional subsections may simply be absent; the section framing of the migration
  // layer then notices the bytes left over.
  std::vector<size_t> boundaries = {snapshot->fields.back().end};
  for (const auto& sub : snapshot->subsections) boundaries.push_back(sub.end);
  const auto& bytes = snapshot->bytes;
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(len));
    size_t consumed = 0;
    Status st = load(cut, &consumed);
    if (st.ok()) {
      EXPECT_LE(consumed, len);
      EXPECT_NE(std::find(boundaries.begin(), boundaries.end(), consumed), boundaries.end())
          << "prefix of " << len << " bytes accepted, consumed " << consumed;
      continue;
    }
    EXPECT_TRUE(st.path().starts_with("nvme-like")) << st.to_string();
    EXPECT_FALSE(st.message().empty());
  }
}

TEST(HostileInput, TruncationInsideANestedElementNamesTheFullPath) {
  auto bytes = valid_stream();
  size_t queue2 = kQueuesAt + (1 + kQueueBytes) + 1 + 1;  // after slot 0, NULL slot 1, marker 2
  size_t size_field = queue2 + 16;
  bytes.resize(size_field + 1);
  Status st = load(bytes);
  EXPECT_EQ(st.code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(st.to_string(), fmt::format("nvme-like/queues[2]/size: input ends early at offset "
                                        "{}: needed 2 bytes, 1 left",
                                        size_field));
}

TEST(HostileInput, WrongPointerMarker) {
  auto bytes = valid_stream();
  bytes[kQueuesAt + 1 + kQueueBytes] = 0x5a;  // slot 1's marker
  Status st = load(bytes);
  EXPECT_EQ(st.code(), ErrorCode::kCorrupt);
  EXPECT_EQ(st.to_string(),
            "nvme-like/queues[1]: expected pointer marker 0x30 (NULL) or 0x31 (present), "
            "found 0x5a");
}

TEST(HostileInput, OccupiedDestinationSlotIsRefusedNotLeaked) {
  auto bytes = valid_stream();
  NvmeLike s;
  s.queues[3] = std::make_unique<samples::Queue>();
  Status st = load_from(kNvmeLikeDesc, s, bytes);
  EXPECT_EQ(st.code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(st.to_string(),
            "nvme-like/queues[3]: destination slot already holds an object; refusing to "
            "overwrite it");
}

TEST(HostileInput, CountAboveDeclaredMaximum) {
  auto bytes = valid_stream();
  bytes[kAfterQueues] = 0x01;  // n_log = 300 > 256
  bytes[kAfterQueues + 1] = 0x2c;
  Status st = load(bytes);
  EXPECT_EQ(st.code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(st.to_string(), "nvme-like/error_log: count 300 is outside the declared maximum 256");
}

TEST(HostileInput, ValidatorRejectsValue) {
  auto bytes = valid_stream();
  bytes[kNumQueuesAt] = 0x00;
  bytes[kNumQueuesAt + 1] = 65;
  Status st = load(bytes);
  EXPECT_EQ(st.to_string(), "nvme-like/num_queues: more queues than slots: found 65");
}

TEST(HostileInput, EqualFieldMismatch) {
  struct Cfg {
    uint32_t queues = 64;
  };
  static constexpr auto kCfg = describe<Cfg>("cfg", {}, field("queues", &Cfg::queues).equal());
  Cfg c;
  Status st = load_from(kCfg, c, hex("00000020"));
  EXPECT_EQ(st.to_string(), "cfg/queues: expected 64 (must equal the local value), found 32");
  EXPECT_TRUE(load_from(kCfg, c, hex("00000040")).ok());
}

TEST(HostileInput, BoolOtherThanZeroOrOne) {
  auto bytes = valid_stream();
  size_t irq_enabled_of_queue0 = kQueuesAt + 1 + 23;
  bytes[irq_enabled_of_queue0] = 2;
  EXPECT_EQ(load(bytes).to_string(),
            "nvme-like/queues[0]/irq_enabled: expected a bool (0 or 1), found 0x02");
}

std::vector<uint8_t> with_subsection(std::vector<uint8_t> bytes, std::string_view name,
                                     std::vector<uint8_t> body) {
  bytes.push_back(0x05);
  bytes.push_back(static_cast<uint8_t>(name.size()));
  bytes.insert(bytes.end(), name.begin(), name.end());
  for (uint8_t b : {0, 0, 0, 1}) bytes.push_back(b);
  bytes.insert(bytes.end(), body.begin(), body.end());
  return bytes;
}

TEST(HostileInput, UnknownSubsectionNamesParentAndChild) {
  auto bytes = with_subsection(valid_stream(), "nvme-like/bogus", {});
  Status st = load(bytes);
  EXPECT_EQ(st.code(), ErrorCode::kCorrupt);
  EXPECT_EQ(st.to_string(), "nvme-like: unknown subsection 'nvme-like/bogus' of 'nvme-like'");
}

TEST(HostileInput, RepeatedSubsection) {
  std::vector<uint8_t> smart = hex("0000000000000001 0000000000000002");
  auto bytes = with_subsection(with_subsection(valid_stream(), "nvme-like/smart", smart),
                               "nvme-like/smart", smart);
  EXPECT_EQ(load(bytes).to_string(), "nvme-like: subsection 'nvme-like/smart' appears twice");
}

TEST(HostileInput, ListMarkersAndBound) {
  auto bad_marker = with_subsection(valid_stream(), "nvme-like/events", hex("01 010203 07"));
  EXPECT_EQ(load(bad_marker).to_string(),
            "nvme-like/events/pending_events[1]: expected list marker 0x01 (element) or 0x00 "
            "(end), found 0x07");
  std::vector<uint8_t> many;
  for (int i = 0; i < 65; ++i) {
    many.push_back(0x01);
    for (int j = 0; j < 3; ++j) many.push_back(0);
  }
  many.push_back(0x00);
  auto too_many = with_subsection(valid_stream(), "nvme-like/events", many);
  EXPECT_EQ(load(too_many).to_string(),
            "nvme-like/events/pending_events: more than the declared maximum of 64 elements");
}

TEST(HostileInput, RandomBytesNeverCrash) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> bytes(rng() % 1200);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    Status st = load(bytes);
    if (!st.ok()) {
      EXPECT_TRUE(st.path().starts_with("nvme-like")) << st.to_string();
    }
  }
}

TEST(HostileInput, MutatedValidStreamsNeverCrash) {
  const auto base = valid_stream(true);
  std::mt19937 rng(99);
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    auto bytes = base;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k)
      bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    Status st = load(bytes);
    if (!st.ok()) {
      ++refused;
      EXPECT_TRUE(st.path().starts_with("nvme-like")) << st.to_string();
    }
  }
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace ferry::vmstate
