// Golden bytes: every field kind encodes exactly as QEMU's VMState does, and loads back.
#include <gtest/gtest.h>

#include <array>
#include <deque>
#include <list>
#include <memory>
#include <vector>

#include "vmstate/test_util.h"
#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace ferry::vmstate {
namespace {

using test::hex;
using test::load_from;
using test::saved;
using test::to_hex;

struct Int32Box {
  int32_t v = 0;
  bool operator==(const Int32Box&) const = default;
};
inline constexpr auto kInt32Box = describe<Int32Box>("box", {}, field("v", &Int32Box::v));

// design.md §5's example: 4 x struct{int32} = {0, NULL, 2, 3}.
struct FourBoxes {
  std::array<std::unique_ptr<Int32Box>, 4> owned;
  Int32Box storage[4];
  std::array<Int32Box*, 4> plain{};
};
inline constexpr auto kAutoAlloc =
    describe<FourBoxes>("four", {}, pointers("b", &FourBoxes::owned, kInt32Box));
inline constexpr auto kPlain =
    describe<FourBoxes>("four", {}, pointers_plain("b", &FourBoxes::plain, kInt32Box));

TEST(GoldenBytes, PointerArrayWithAllocationOnLoad) {
  FourBoxes src;
  src.owned[0] = std::make_unique<Int32Box>(Int32Box{0});
  src.owned[2] = std::make_unique<Int32Box>(Int32Box{2});
  src.owned[3] = std::make_unique<Int32Box>(Int32Box{3});
  auto bytes = saved(kAutoAlloc, src);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("31 00000000 30 31 00000002 31 00000003")));

  FourBoxes dst;
  ASSERT_TRUE(load_from(kAutoAlloc, dst, bytes).ok());
  ASSERT_TRUE(dst.owned[0] && dst.owned[2] && dst.owned[3]);
  EXPECT_FALSE(dst.owned[1]);
  EXPECT_EQ(dst.owned[2]->v, 2);
  EXPECT_EQ(dst.owned[3]->v, 3);
}

TEST(GoldenBytes, PlainPointerArray) {
  FourBoxes src;
  src.storage[0].v = 0;
  src.storage[2].v = 2;
  src.storage[3].v = 3;
  src.plain = {&src.storage[0], nullptr, &src.storage[2], &src.storage[3]};
  auto bytes = saved(kPlain, src);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("00000000 30 00000002 00000003")));

  FourBoxes dst;  // the destination's configuration has the same objects
  dst.plain = {&dst.storage[0], nullptr, &dst.storage[2], &dst.storage[3]};
  ASSERT_TRUE(load_from(kPlain, dst, bytes).ok());
  EXPECT_EQ(dst.storage[2].v, 2);
  EXPECT_EQ(dst.storage[3].v, 3);
}

enum class Mode : uint8_t { kIdle = 1, kBusy = 2 };
enum class Wide : int { kA = 7 };

struct Scalars {
  bool b = false;
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  int8_t i8 = 0;
  int16_t i16 = 0;
  int32_t i32 = 0;
  int64_t i64 = 0;
  Mode mode = Mode::kIdle;
  Wide wide = Wide::kA;
  bool operator==(const Scalars&) const = default;
};
inline constexpr auto kScalars = describe<Scalars>(
    "scalars", {}, field("b", &Scalars::b), field("u8", &Scalars::u8),
    field("u16", &Scalars::u16), field("u32", &Scalars::u32), field("u64", &Scalars::u64),
    field("i8", &Scalars::i8), field("i16", &Scalars::i16), field("i32", &Scalars::i32),
    field("i64", &Scalars::i64), field("mode", &Scalars::mode),
    field_as<uint16_t>("wide", &Scalars::wide));

TEST(GoldenBytes, Scalars) {
  Scalars s{true, 0x11, 0x2233, 0x44556677, 0x8899aabbccddeeffULL, -1, -2, -3, -4,
            Mode::kBusy, Wide::kA};
  auto bytes = saved(kScalars, s);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("01 11 2233 44556677 8899aabbccddeeff ff fffe fffffffd "
                                      "fffffffffffffffc 02 0007")));
  Scalars back;
  ASSERT_TRUE(load_from(kScalars, back, bytes).ok());
  EXPECT_EQ(back, s);
}

struct Arrays {
  uint16_t c_array[3] = {1, 2, 3};
  std::array<uint32_t, 2> std_array{{0xa, 0xb}};
  Int32Box boxes[2] = {{5}, {6}};
  uint8_t n = 2;
  uint32_t counted[4] = {7, 8, 9, 10};
  uint32_t nv = 3;
  std::vector<uint8_t> vec{1, 2, 3};
  uint16_t nb = 1;
  std::vector<Int32Box> vboxes{{9}};
};
inline constexpr auto kArrays = describe<Arrays>(
    "arrays", {}, field("c_array", &Arrays::c_array), field("std_array", &Arrays::std_array),
    field("boxes", &Arrays::boxes, kInt32Box), field("n", &Arrays::n),
    varray("counted", &Arrays::counted, &Arrays::n, 4), field("nv", &Arrays::nv),
    varray("vec", &Arrays::vec, &Arrays::nv, 16), field("nb", &Arrays::nb),
    varray("vboxes", &Arrays::vboxes, &Arrays::nb, 8, kInt32Box));

TEST(GoldenBytes, FixedCountedAndVectorArrays) {
  Arrays a;
  auto bytes = saved(kArrays, a);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("0001 0002 0003  0000000a 0000000b  00000005 00000006 "
                                      "02 00000007 00000008  00000003 010203  0001 00000009")));
  Arrays b;
  b.n = 0;
  b.vec.clear();
  b.vboxes.clear();
  ASSERT_TRUE(load_from(kArrays, b, bytes).ok());
  EXPECT_EQ(b.n, 2);
  EXPECT_EQ(b.counted[1], 8u);
  EXPECT_EQ(b.vec, (std::vector<uint8_t>{1, 2, 3}));
  ASSERT_EQ(b.vboxes.size(), 1u);
  EXPECT_EQ(b.vboxes[0].v, 9);
  EXPECT_EQ(b.boxes[1].v, 6);
}

struct Buffers {
  uint8_t id[4] = {0xde, 0xad, 0xbe, 0xef};
  uint32_t len = 2;
  std::vector<uint8_t> log{0x01, 0x02};
  uint32_t after = 0x55;
};
inline constexpr auto kBuffers = describe<Buffers>(
    "buffers", {}, buffer("id", &Buffers::id), field("len", &Buffers::len),
    vbuffer("log", &Buffers::log, &Buffers::len, 64), unused(3), field("after", &Buffers::after));

TEST(GoldenBytes, BuffersAndReservedBytes) {
  Buffers b;
  auto bytes = saved(kBuffers, b);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("deadbeef 00000002 0102 000000 00000055")));
  Buffers c;
  c.len = 0;
  c.log.clear();
  auto with_junk = bytes;
  with_junk[10] = 0x99;  // reserved bytes are ignored on load
  ASSERT_TRUE(load_from(kBuffers, c, with_junk).ok());
  EXPECT_EQ(c.log, b.log);
  EXPECT_EQ(c.after, 0x55u);
}

struct Lists {
  std::list<Int32Box> l;
  std::deque<Int32Box> d;
};
inline constexpr auto kLists = describe<Lists>("lists", {}, list("l", &Lists::l, kInt32Box, 8),
                                               list("d", &Lists::d, kInt32Box, 8));

TEST(GoldenBytes, ListsAreMarkedElementByElement) {
  Lists a;
  a.l = {{1}, {2}};
  auto bytes = saved(kLists, a);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("01 00000001 01 00000002 00  00")));
  Lists b;
  ASSERT_TRUE(load_from(kLists, b, bytes).ok());
  EXPECT_EQ(b.l, a.l);
  EXPECT_TRUE(b.d.empty());
}

// "with tmp": the device keeps a 64-bit value, the stream carries two 32-bit halves.
struct Split {
  uint64_t value = 0;
};
struct SplitTmp {
  uint32_t hi = 0, lo = 0;
};
inline constexpr auto kSplitTmp = describe<SplitTmp>(
    "split-tmp", {}, field("hi", &SplitTmp::hi), field("lo", &SplitTmp::lo));
inline constexpr auto kSplit = describe<Split>(
    "split", {},
    with_tmp<Split>(
        "tmp", kSplitTmp,
        [](const Split& s, SplitTmp& t) {
          t.hi = static_cast<uint32_t>(s.value >> 32);
          t.lo = static_cast<uint32_t>(s.value);
          return Status();
        },
        [](Split& s, const SplitTmp& t) {
          s.value = (uint64_t{t.hi} << 32) | t.lo;
          return Status();
        }));

TEST(GoldenBytes, WithTmpView) {
  Split s{0x0102030405060708ULL};
  auto bytes = saved(kSplit, s);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("01020304 05060708")));
  Split back;
  ASSERT_TRUE(load_from(kSplit, back, bytes).ok());
  EXPECT_EQ(back.value, s.value);
}

struct WithSubs {
  uint32_t a = 1;
  uint16_t extra = 0;
  uint8_t other = 0;
};
inline constexpr auto kWithSubsExtra =
    describe<WithSubs>("ws/extra", {.version = 3}, field("extra", &WithSubs::extra));
inline constexpr auto kWithSubsOther =
    describe<WithSubs>("ws/other", {}, field("other", &WithSubs::other));
inline constexpr auto kWithSubs = describe<WithSubs>(
    "ws", {}, field("a", &WithSubs::a),
    subsection(kWithSubsExtra, [](const WithSubs& w) { return w.extra != 0; }),
    subsection(kWithSubsOther));

TEST(GoldenBytes, SubsectionsOnlyWhenNeeded) {
  WithSubs w;
  w.other = 0x42;
  EXPECT_EQ(to_hex(saved(kWithSubs, w)),
            to_hex(hex("00000001 05 08 77732f6f74686572 00000001 42")));
  w.extra = 0x1234;
  auto bytes = saved(kWithSubs, w);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("00000001 05 08 77732f6578747261 00000003 1234 "
                                      "05 08 77732f6f74686572 00000001 42")));
  WithSubs back;
  size_t consumed = 0;
  ASSERT_TRUE(load_from(kWithSubs, back, bytes, -1, &consumed).ok());
  EXPECT_EQ(consumed, bytes.size());
  EXPECT_EQ(back.extra, 0x1234);
  EXPECT_EQ(back.other, 0x42);
}

TEST(GoldenBytes, NestedStructWithSubsectionStopsAtForeignTag) {
  // A 0x05 that follows a nested struct but does not name one of its subsections belongs
  // to the enclosing struct's next field.
  struct Outer {
    WithSubs inner;
    uint8_t next = 0x05;
    uint8_t after = 0x02;
  };
  static constexpr auto kOuter =
      describe<Outer>("outer", {}, field("inner", &Outer::inner, kWithSubs),
                      field("next", &Outer::next), field("after", &Outer::after));
  Outer o;
  auto bytes = saved(kOuter, o);
  Outer back;
  back.next = back.after = 0;
  ASSERT_TRUE(load_from(kOuter, back, bytes).ok());
  EXPECT_EQ(back.next, 0x05);
  EXPECT_EQ(back.after, 0x02);
}

TEST(GoldenBytes, NvmeLikeRoundTrip) {
  samples::NvmeLike a;
  samples::fill_nvme_like(a, 7);
  a.smart_units_read = 5;
  a.pending_events = {{1, 2, 3}};
  a.n_log = 2;
  a.error_log = {0x10, 0x20};
  auto bytes = saved(samples::kNvmeLikeDesc, a);
  samples::NvmeLike b;
  ASSERT_TRUE(load_from(samples::kNvmeLikeDesc, b, bytes).ok());
  EXPECT_TRUE(a == b);
}

}  // namespace
}  // namespace ferry::vmstate
