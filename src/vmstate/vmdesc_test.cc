// vmdesc JSON: QEMU's shape, exact sizes, array_len exactly where QEMU compresses.
#include <gtest/gtest.h>

#include <array>
#include <list>
#include <memory>
#include <vector>

#include "vmstate/samples/nvme_like.h"
#include "vmstate/test_util.h"
#include "vmstate/vmstate.h"

namespace ferry::vmstate {
namespace {

template <typename Desc, typename Obj>
Json vmdesc_of(const Desc& desc, Obj& obj, size_t* written = nullptr) {
  ByteWriter w;
  Json j = Json::object();
  Status st = desc.save(obj, w, j);
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (written) *written = w.size();
  return j;
}

// Sum of the sizes of the entries QEMU's analyzer would read (array_len entries count
// array_len times).
uint64_t described_bytes(const Json& fields) {
  uint64_t total = 0;
  for (const auto& f : fields) {
    uint64_t n = f.contains("array_len") ? f["array_len"].get<uint64_t>() : 1;
    total += n * f["size"].get<uint64_t>();
  }
  return total;
}

struct Pair {
  uint32_t a = 1;
  uint16_t b = 2;
};
inline constexpr auto kPair =
    describe<Pair>("pair", {}, field("a", &Pair::a), field("b", &Pair::b));

struct PairSub {
  uint8_t x = 0;
};
struct PairWithSub {
  uint8_t x = 3;
};
inline constexpr auto kPairWithSubSub =
    describe<PairWithSub>("pws/more", {}, field("x", &PairWithSub::x));
inline constexpr auto kPairWithSub = describe<PairWithSub>(
    "pws", {}, field("x", &PairWithSub::x), subsection(kPairWithSubSub));

TEST(Vmdesc, ScalarsAndTypes) {
  struct S {
    bool b = true;
    uint32_t u = 5;
    int64_t i = -1;
    uint32_t eq = 9;
  } s;
  static constexpr auto kS = describe<S>("s", {.version = 4, .minimum_version = 2},
                                         field("b", &S::b), field("u", &S::u),
                                         field("i", &S::i), field("eq", &S::eq).equal());
  Json j = vmdesc_of(kS, s);
  EXPECT_EQ(j.dump(),
            R"({"vmsd_name":"s","version":4,"fields":[)"
            R"({"name":"b","type":"bool","size":1},)"
            R"({"name":"u","type":"uint32","size":4},)"
            R"({"name":"i","type":"int64","size":8},)"
            R"({"name":"eq","type":"uint32 equal","size":4}]})");
}

TEST(Vmdesc, CompressesScalarArraysAndFoldableStructArrays) {
  struct S {
    uint16_t regs[3] = {};
    Pair pairs[2];
    PairWithSub subbed[2];
  } s;
  static constexpr auto kS =
      describe<S>("s", {}, field("regs", &S::regs), field("pairs", &S::pairs, kPair),
                  field("subbed", &S::subbed, kPairWithSub));
  size_t written = 0;
  Json j = vmdesc_of(kS, s, &written);
  const Json& f = j["fields"];
  ASSERT_EQ(f.size(), 4u);  // regs, pairs (compressed), subbed[0], subbed[1]
  EXPECT_EQ(f[0].dump(), R"({"name":"regs","array_len":3,"type":"uint16","size":2})");
  EXPECT_EQ(f[1].dump(),
            R"({"name":"pairs","array_len":2,"type":"struct","struct":{"vmsd_name":"pair",)"
            R"("version":1,"fields":[{"name":"a","type":"uint32","size":4},)"
            R"({"name":"b","type":"uint16","size":2}]},"size":6})");
  // A struct with subsections may change shape from element to element: no compression.
  EXPECT_EQ(f[2]["index"], 0);
  EXPECT_EQ(f[3]["index"], 1);
  EXPECT_FALSE(f[2].contains("array_len"));
  EXPECT_EQ(f[2]["struct"]["subsections"][0]["vmsd_name"], "pws/more");
  EXPECT_EQ(f[2]["size"], 1 + 1 + 1 + 8 + 4 + 1);
  EXPECT_EQ(described_bytes(f), written);
}

TEST(Vmdesc, CountedArraysOfOneAndZeroElements) {
  struct S {
    uint8_t n = 1;
    std::vector<uint32_t> v{7};
    uint8_t m = 0;
    std::vector<uint32_t> w;
  } s;
  static constexpr auto kS = describe<S>("s", {}, field("n", &S::n),
                                         varray("v", &S::v, &S::n, 4), field("m", &S::m),
                                         varray("w", &S::w, &S::m, 4));
  Json j = vmdesc_of(kS, s);
  const Json& f = j["fields"];
  ASSERT_EQ(f.size(), 3u);  // an empty array has no entry at all
  EXPECT_EQ(f[1].dump(), R"({"name":"v","type":"uint32","size":4})");
  EXPECT_EQ(f[2]["name"], "m");
}

TEST(Vmdesc, PointerArrayMarkersAndRuns) {
  struct S {
    std::array<std::unique_ptr<Pair>, 3> owned;
    Pair storage[4];
    std::array<Pair*, 4> plain{};
  } s;
  s.owned[1] = std::make_unique<Pair>();
  s.plain = {&s.storage[0], nullptr, &s.storage[2], &s.storage[3]};
  static constexpr auto kS = describe<S>("s", {}, pointers("owned", &S::owned, kPair),
                                         pointers_plain("plain", &S::plain, kPair));
  size_t written = 0;
  Json j = vmdesc_of(kS, s, &written);
  const Json& f = j["fields"];
  ASSERT_EQ(f.size(), 4u + 3u);
  // Auto-allocating form: a marker entry for every slot, then the element if present.
  EXPECT_EQ(f[0].dump(), R"({"name":"owned","index":0,"type":"ptr-marker","size":1})");
  EXPECT_EQ(f[1].dump(), R"({"name":"owned","index":1,"type":"ptr-marker","size":1})");
  EXPECT_EQ(f[2]["type"], "struct");
  EXPECT_EQ(f[2]["index"], 1);
  EXPECT_EQ(f[2]["size"], 6);
  EXPECT_EQ(f[3]["index"], 2);
  // Plain form: runs of present / NULL elements fold into array_len entries.
  EXPECT_EQ(f[4]["index"], 0);
  EXPECT_EQ(f[4]["type"], "struct");
  EXPECT_EQ(f[5].dump(), R"({"name":"plain","index":1,"type":"ptr-marker","size":1})");
  EXPECT_EQ(f[6]["array_len"], 2);
  EXPECT_EQ(f[6]["type"], "struct");
  EXPECT_EQ(described_bytes(f), written);
}

TEST(Vmdesc, DuplicateNamesGetAnIndexSuffix) {
  struct S {
    uint8_t a = 0, b = 0, c = 0;
  } s;
  static constexpr auto kS = describe<S>("s", {}, field("x", &S::a), field("y", &S::b),
                                         field("x", &S::c));
  Json j = vmdesc_of(kS, s);
  EXPECT_EQ(j["fields"][0]["name"], "x[0]");
  EXPECT_EQ(j["fields"][1]["name"], "y");
  EXPECT_EQ(j["fields"][2]["name"], "x[1]");
}

TEST(Vmdesc, BuffersUnusedTmpAndLists) {
  struct S {
    uint8_t id[4] = {};
    std::list<Pair> l{Pair{}, Pair{}};
    uint32_t value = 0;
  } s;
  static constexpr auto kTmp = describe<Pair>("tmp-view", {}, field("a", &Pair::a));
  static constexpr auto kS = describe<S>(
      "s", {}, buffer("id", &S::id), unused(2), list("l", &S::l, kPair, 4),
      with_tmp<S>(
          "tmp", kTmp,
          [](const S& p, Pair& t) {
            t.a = p.value;
            return Status();
          },
          [](S& p, const Pair& t) {
            p.value = t.a;
            return Status();
          }));
  size_t written = 0;
  Json j = vmdesc_of(kS, s, &written);
  const Json& f = j["fields"];
  EXPECT_EQ(f[0].dump(), R"({"name":"id","type":"buffer","size":4})");
  EXPECT_EQ(f[1].dump(), R"({"name":"unused","type":"unused_buffer","size":2})");
  EXPECT_EQ(f[2].dump(), R"({"name":"l","type":"qtailq","size":15})");
  EXPECT_EQ(f[3].dump(),
            R"({"name":"tmp","type":"tmp","vmsd_name":"tmp-view","version":1,)"
            R"("fields":[{"name":"a","type":"uint32","size":4}],"size":4})");
  EXPECT_EQ(described_bytes(f), written);
}

TEST(Vmdesc, SubsectionsOnlyWhenSent) {
  samples::NvmeLike s;
  samples::fill_nvme_like(s);
  Json without = vmdesc_of(samples::kNvmeLikeDesc, s);
  EXPECT_FALSE(without.contains("subsections"));
  s.smart_units_read = 1;
  s.pending_events = {{1, 1, 1}};
  size_t written = 0;
  Json with = vmdesc_of(samples::kNvmeLikeDesc, s, &written);
  ASSERT_EQ(with["subsections"].size(), 2u);
  EXPECT_EQ(with["subsections"][0]["vmsd_name"], "nvme-like/smart");
  EXPECT_EQ(with["subsections"][1]["vmsd_name"], "nvme-like/events");
  EXPECT_EQ(with["subsections"][0]["fields"][0]["name"], "units_read");
  // Every byte is accounted for: fields plus subsection headers (tag, len, name, version)
  // plus subsection bodies.
  uint64_t total = described_bytes(with["fields"]);
  for (const auto& sub : with["subsections"])
    total += 1 + 1 + sub["vmsd_name"].get<std::string>().size() + 4 +
             described_bytes(sub["fields"]);
  EXPECT_EQ(total, written);
}

}  // namespace
}  // namespace ferry::vmstate
