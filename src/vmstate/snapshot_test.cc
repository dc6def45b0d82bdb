// Snapshots record top-level byte ranges; diff names exactly what changed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace ferry::vmstate {
namespace {

using samples::kNvmeLikeDesc;
using samples::NvmeLike;
using Names = std::vector<std::string>;

Snapshot snap(NvmeLike& s) {
  auto r = take_snapshot(kNvmeLikeDesc, s);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return std::move(r).value();
}

Names changed(const Snapshot& a, const Snapshot& b) {
  auto r = diff(a, b);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : Names{};
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override { samples::fill_nvme_like(state_, 3); }
  NvmeLike state_;
};

TEST_F(SnapshotTest, RangesTileTheSavedBytes) {
  Snapshot s = snap(state_);
  ASSERT_EQ(s.fields.size(), kNvmeLikeDesc.kFieldCount);
  uint64_t at = 0;
  for (const auto& f : s.fields) {
    EXPECT_EQ(f.begin, at) << f.name;
    at = f.end;
  }
  EXPECT_EQ(at, s.bytes.size());  // no subsection needed in this state
  EXPECT_EQ(s.fields[0].name, "cap");
  EXPECT_EQ(s.fields[0].end - s.fields[0].begin, 8u);
  // Bytes equal a plain save.
  ByteWriter w;
  ASSERT_TRUE(kNvmeLikeDesc.save(state_, w).ok());
  EXPECT_EQ(s.bytes, w.to_vector());
}

TEST_F(SnapshotTest, IdenticalStatesDoNotDiffer) {
  Snapshot a = snap(state_);
  Snapshot b = snap(state_);
  EXPECT_EQ(changed(a, b), Names{});
}

TEST_F(SnapshotTest, ScalarChange) {
  Snapshot a = snap(state_);
  state_.csts ^= 1;
  state_.num_queues = 7;
  EXPECT_EQ(changed(a, snap(state_)), (Names{"csts", "num_queues"}));
}

TEST_F(SnapshotTest, ArrayAndBufferChange) {
  Snapshot a = snap(state_);
  state_.serial[15] = 'Z';
  EXPECT_EQ(changed(a, snap(state_)), Names{"serial"});
  Snapshot b = snap(state_);
  state_.n_log = 1;
  state_.error_log = {3};
  EXPECT_EQ(changed(b, snap(state_)), (Names{"n_log", "error_log"}));
}

TEST_F(SnapshotTest, PointerArrayElementChangesAndAppears) {
  Snapshot a = snap(state_);
  state_.queues[4]->tail += 1;  // a field inside a present element
  EXPECT_EQ(changed(a, snap(state_)), Names{"queues"});
  Snapshot b = snap(state_);
  state_.queues[5] = std::make_unique<samples::Queue>();  // a NULL hole filled
  EXPECT_EQ(changed(b, snap(state_)), Names{"queues"});
}

TEST_F(SnapshotTest, NestedStructChange) {
  struct Holder {
    samples::Queue q;
    uint32_t other = 0;
  };
  static constexpr auto kHolder = describe<Holder>(
      "holder", {}, field("q", &Holder::q, samples::kQueueDesc), field("other", &Holder::other));
  Holder h;
  auto a = take_snapshot(kHolder, h);
  h.q.phase = 1;
  auto b = take_snapshot(kHolder, h);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*diff(*a, *b), Names{"q"});
}

TEST_F(SnapshotTest, SubsectionsAppearChangeAndGo) {
  Snapshot none = snap(state_);
  state_.smart_units_read = 10;
  Snapshot smart = snap(state_);
  EXPECT_EQ(changed(none, smart), Names{"nvme-like/smart"});
  ASSERT_EQ(smart.subsections.size(), 1u);
  EXPECT_EQ(smart.subsections[0].end, smart.bytes.size());
  state_.smart_units_written = 99;
  Snapshot smart2 = snap(state_);
  EXPECT_EQ(changed(smart, smart2), Names{"nvme-like/smart"});
  state_.smart_units_read = 0;
  state_.pending_events = {{1, 2, 3}};
  EXPECT_EQ(changed(smart2, snap(state_)), (Names{"nvme-like/smart", "nvme-like/events"}));
}

TEST(Snapshot, DuplicateFieldNamesStayDistinct) {
  struct S {
    uint8_t a = 0, b = 0;
  } s;
  static constexpr auto kS = describe<S>("s", {}, field("x", &S::a), field("x", &S::b));
  auto a = take_snapshot(kS, s);
  s.b = 1;
  auto b = take_snapshot(kS, s);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*diff(*a, *b), Names{"x[1]"});
}

TEST(Snapshot, DifferentDescriptionsCannotBeCompared) {
  Snapshot a{.vmsd_name = "a", .version = 1};
  Snapshot b{.vmsd_name = "b", .version = 1};
  auto r = diff(a, b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "cannot compare snapshots of 'a' v1 and 'b' v1");
}

}  // namespace
}  // namespace ferry::vmstate
