// Versions and hooks: minimum_version <= v <= version, fields since a later version are
// skipped in older streams, and a failing hook fails the whole save or load.
#include <gtest/gtest.h>

#include "vmstate/test_util.h"
#include "vmstate/vmstate.h"

namespace ferry::vmstate {
namespace {

using test::hex;
using test::load_from;
using test::saved;

struct Dev {
  uint32_t base = 0;
  uint16_t added_in_2 = 0xaaaa;  // local default kept when an older stream lacks it
  uint8_t added_in_3 = 0xbb;
  uint8_t sub_value = 0;
};
inline constexpr auto kDevSub =
    describe<Dev>("dev/sub", {.version = 2}, field("sub_value", &Dev::sub_value));
inline constexpr auto kDev = describe<Dev>(
    "dev", {.version = 3, .minimum_version = 1}, field("base", &Dev::base),
    field("added_in_2", &Dev::added_in_2).since(2), field("added_in_3", &Dev::added_in_3).since(3),
    subsection(kDevSub, [](const Dev& d) { return d.sub_value != 0; }));

TEST(Versioning, OlderStreamsSkipNewerFields) {
  Dev d;
  ASSERT_TRUE(load_from(kDev, d, hex("00000001"), 1).ok());
  EXPECT_EQ(d.base, 1u);
  EXPECT_EQ(d.added_in_2, 0xaaaa);
  EXPECT_EQ(d.added_in_3, 0xbb);
  ASSERT_TRUE(load_from(kDev, d, hex("00000002 1234"), 2).ok());
  EXPECT_EQ(d.added_in_2, 0x1234);
  EXPECT_EQ(d.added_in_3, 0xbb);
  ASSERT_TRUE(load_from(kDev, d, hex("00000003 5678 09"), 3).ok());
  EXPECT_EQ(d.added_in_3, 0x09);
}

TEST(Versioning, TooNewNamesDescriptionAndBothNumbers) {
  Dev d;
  Status st = load_from(kDev, d, hex("00000001"), 4);
  EXPECT_EQ(st.code(), ErrorCode::kVersionMismatch);
  EXPECT_EQ(st.to_string(), "dev: incoming version 4 of 'dev' is too new for local version 3");
}

TEST(Versioning, TooOldNamesDescriptionAndBothNumbers) {
  static constexpr auto kStrict =
      describe<Dev>("dev", {.version = 3, .minimum_version = 2}, field("base", &Dev::base));
  Dev d;
  Status st = load_from(kStrict, d, hex("00000001"), 1);
  EXPECT_EQ(st.code(), ErrorCode::kVersionMismatch);
  EXPECT_EQ(st.to_string(),
            "dev: incoming version 1 of 'dev' is too old for local minimum version 2");
}

TEST(Versioning, SubsectionVersionIsCheckedAndNamed) {
  Dev d;
  // base, added_in_2, added_in_3, then subsection "dev/sub" claiming version 7.
  Status st = load_from(kDev, d, hex("00000001 0002 03 05 07 6465762f737562 00000007 01"));
  EXPECT_EQ(st.to_string(), "dev/sub: incoming version 7 of 'dev/sub' is too new for local version 2");
}

struct Hooked {
  uint32_t value = 0;
  uint32_t derived = 0;
  int pre_saves = 0, post_saves = 0, pre_loads = 0, post_loads = 0;
  int loaded_version = -1;
  bool fail_pre_save = false, fail_post_load = false, fail_pre_load = false;
};
inline constexpr auto kHooked = describe<Hooked>(
    "hooked",
    {.version = 2,
     .minimum_version = 1,
     .pre_save =
         [](Hooked& h) {
           ++h.pre_saves;
           if (h.fail_pre_save) return Error(ErrorCode::kFailedPrecondition, "device busy");
           h.derived = h.value * 2;
           return Status();
         },
     .post_save =
         [](Hooked& h) {
           ++h.post_saves;
           return Status();
         },
     .pre_load =
         [](Hooked& h) {
           ++h.pre_loads;
           if (h.fail_pre_load) return Error(ErrorCode::kFailedPrecondition, "not quiesced");
           return Status();
         },
     .post_load =
         [](Hooked& h, int version) {
           ++h.post_loads;
           h.loaded_version = version;
           if (h.fail_post_load || h.derived != h.value * 2)
             return Error(ErrorCode::kCorrupt, "derived {} does not match value {}", h.derived,
                          h.value);
           return Status();
         }},
    field("value", &Hooked::value), field("derived", &Hooked::derived));

TEST(Hooks, RunInOrderAndSeeTheVersion) {
  Hooked a;
  a.value = 21;
  auto bytes = saved(kHooked, a);
  EXPECT_EQ(a.pre_saves, 1);
  EXPECT_EQ(a.post_saves, 1);
  EXPECT_EQ(a.derived, 42u);
  Hooked b;
  ASSERT_TRUE(load_from(kHooked, b, bytes, 1).ok());
  EXPECT_EQ(b.pre_loads, 1);
  EXPECT_EQ(b.post_loads, 1);
  EXPECT_EQ(b.loaded_version, 1);
  EXPECT_EQ(b.derived, 42u);
}

TEST(Hooks, FailingPreSaveFailsTheSaveWithItsMessage) {
  Hooked a;
  a.fail_pre_save = true;
  ByteWriter w;
  Status st = kHooked.save(a, w);
  EXPECT_EQ(st.code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(st.to_string(), "hooked: pre_save hook of 'hooked': device busy");
}

TEST(Hooks, PostSaveRunsEvenWhenASaveFails) {
  struct Outer {
    Hooked inner;
  };
  static constexpr auto kOuter = describe<Outer>(
      "outer", {.post_save = [](Outer& o) {
        o.inner.value = 999;  // proves it ran
        return Status();
      }},
      field("inner", &Outer::inner, kHooked));
  Outer o;
  o.inner.fail_pre_save = true;
  ByteWriter w;
  Status st = kOuter.save(o, w);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.path(), "outer/inner");
  EXPECT_EQ(o.inner.value, 999u);
}

TEST(Hooks, FailingLoadHooksFailTheLoad) {
  Hooked a;
  a.value = 3;
  auto bytes = saved(kHooked, a);
  Hooked b;
  b.fail_pre_load = true;
  Status st = load_from(kHooked, b, bytes);
  EXPECT_EQ(st.to_string(), "hooked: pre_load hook of 'hooked': not quiesced");
  EXPECT_EQ(b.value, 0u);  // nothing loaded
  Hooked c;
  bytes[7] = 0x99;  // corrupt "derived": post_load's consistency check refuses it
  st = load_from(kHooked, c, bytes);
  EXPECT_EQ(st.code(), ErrorCode::kCorrupt);
  EXPECT_EQ(st.to_string(), "hooked: post_load hook of 'hooked': derived 153 does not match value 3");
}

}  // namespace
}  // namespace ferry::vmstate
