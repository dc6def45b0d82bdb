// Arrays sized by the local configuration (config_count.h): the same bytes and vmdesc as
// the equivalent fixed-size and counted fields, the count taken from the destination's own
// configuration, and a stream count that disagrees with it refused by name and value.
#include <gtest/gtest.h>

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

struct Vec {
  uint16_t a = 0;
  uint8_t b = 0;
  bool operator==(const Vec&) const = default;
};
inline constexpr auto kVec =
    describe<Vec>("vec", {}, field("a", &Vec::a), field("b", &Vec::b));

// A device whose arrays the configuration sizes at creation, as NVMe's queues and vectors.
struct Device {
  explicit Device(size_t queues, uint32_t vector_count)
      : slots(queues), vectors(vector_count), table(vector_count * 4), pba(8),
        n_vectors(vector_count) {}
  std::vector<std::unique_ptr<Vec>> slots;
  std::vector<Vec> vectors;
  std::vector<uint8_t> table;
  std::vector<uint8_t> pba;  // whole qwords; only the bytes holding a bit migrate
  uint32_t n_vectors;        // local, never sent
  std::vector<uint32_t> levels = std::vector<uint32_t>(n_vectors);
};

size_t pba_bytes(const Device& d) { return (size_t{d.n_vectors} + 7) / 8; }

inline constexpr auto kDevice = describe<Device>(
    "dev", {},
    config_pointers("slots", &Device::slots, own_size, kVec),
    config_array("vectors", &Device::vectors, own_size, kVec),
    config_buffer("table", &Device::table, own_size),
    config_buffer("pba", &Device::pba, &pba_bytes),
    config_array("levels", &Device::levels, &Device::n_vectors));

// The same wire layout written with fixed arrays (no count anywhere): what QEMU sends for
// a device created with 3 queue slots and 2 vectors.
struct FixedDevice {
  std::array<std::unique_ptr<Vec>, 3> slots;
  std::array<Vec, 2> vectors;
  std::array<uint8_t, 8> table{};
  std::array<uint8_t, 1> pba{};
  std::array<uint32_t, 2> levels{};
};
inline constexpr auto kFixedDevice = describe<FixedDevice>(
    "dev", {},
    pointers("slots", &FixedDevice::slots, kVec),
    field("vectors", &FixedDevice::vectors, kVec),
    buffer("table", &FixedDevice::table),
    buffer("pba", &FixedDevice::pba),
    field("levels", &FixedDevice::levels));

Device filled_device() {
  Device d(3, 2);
  d.slots[0] = std::make_unique<Vec>(Vec{0x1111, 0x22});
  d.slots[2] = std::make_unique<Vec>(Vec{0x3333, 0x44});
  d.vectors = {{0x0102, 0x03}, {0x0405, 0x06}};
  d.table = {1, 2, 3, 4, 5, 6, 7, 8};
  d.pba[0] = 0x02;
  d.levels = {0xaabbccdd, 0x00000001};
  return d;
}

TEST(ConfigSizedArrays, EncodeExactlyAsTheFixedSizeLayout) {
  Device d = filled_device();
  auto bytes = saved(kDevice, d);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("31 1111 22   30   31 3333 44"  // slots
                                      "0102 03 0405 06"               // vectors
                                      "0102030405060708"              // table
                                      "02"                            // pba: 1 of 8 bytes
                                      "aabbccdd 00000001")));         // levels

  FixedDevice f;
  f.slots[0] = std::make_unique<Vec>(Vec{0x1111, 0x22});
  f.slots[2] = std::make_unique<Vec>(Vec{0x3333, 0x44});
  f.vectors = {Vec{0x0102, 0x03}, Vec{0x0405, 0x06}};
  f.table = {1, 2, 3, 4, 5, 6, 7, 8};
  f.pba[0] = 0x02;
  f.levels = {0xaabbccdd, 0x00000001};
  EXPECT_EQ(to_hex(saved(kFixedDevice, f)), to_hex(bytes));
}

TEST(ConfigSizedArrays, VmdescMatchesTheFixedSizeLayout) {
  Device d = filled_device();
  FixedDevice f;
  f.slots[0] = std::make_unique<Vec>();
  f.slots[2] = std::make_unique<Vec>();
  ByteWriter w1, w2;
  Json j1 = Json::object(), j2 = Json::object();
  ASSERT_TRUE(kDevice.save(d, w1, j1).ok());
  ASSERT_TRUE(kFixedDevice.save(f, w2, j2).ok());
  EXPECT_EQ(j1.dump(), j2.dump());
}

TEST(ConfigSizedArrays, LoadTakesTheCountFromTheDestinationsConfiguration) {
  Device src = filled_device();
  auto bytes = saved(kDevice, src);
  Device dst(3, 2);
  size_t consumed = 0;
  ASSERT_TRUE(load_from(kDevice, dst, bytes, -1, &consumed).ok());
  EXPECT_EQ(consumed, bytes.size());
  ASSERT_TRUE(dst.slots[0] && !dst.slots[1] && dst.slots[2]);
  EXPECT_EQ(*dst.slots[2], (Vec{0x3333, 0x44}));
  EXPECT_EQ(dst.vectors, src.vectors);
  EXPECT_EQ(dst.table, src.table);
  EXPECT_EQ(dst.pba, src.pba);
  EXPECT_EQ(dst.levels, src.levels);
  EXPECT_EQ(saved(kDevice, dst), bytes);
}

TEST(ConfigSizedArrays, ADestinationConfiguredSmallerReadsOnlyItsOwnCount) {
  // Nothing in the stream says how many elements follow: a destination created with fewer
  // queue slots reads fewer, and what follows no longer lines up (the configuration fields
  // described before such arrays, checked with .equal(), exist to refuse this first).
  Device src = filled_device();
  auto bytes = saved(kDevice, src);
  Device dst(2, 2);
  size_t consumed = 0;
  ASSERT_TRUE(load_from(kDevice, dst, bytes, -1, &consumed).ok());
  EXPECT_EQ(consumed, bytes.size() - 4);  // slot 2 ("31 3333 44") read as later fields
  EXPECT_NE(dst.vectors, src.vectors);
}

TEST(ConfigSizedArrays, SavingMoreThanTheContainerHoldsIsRefusedByName) {
  Device d = filled_device();
  d.n_vectors = 3;  // the levels vector still holds 2
  ByteWriter w;
  Status st = kDevice.save(d, w);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::kInternal);
  EXPECT_EQ(st.path(), "dev/levels");
  EXPECT_NE(st.to_string().find("gives 3 elements but only 2 are held"), std::string::npos)
      << st.to_string();
}

TEST(ConfigSizedArrays, LoadingIntoAContainerSmallerThanTheConfigurationIsRefused) {
  Device src = filled_device();
  auto bytes = saved(kDevice, src);
  Device dst(3, 2);
  dst.levels.resize(1);  // a device bug: the vector does not match its property
  Status st = load_from(kDevice, dst, bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.path(), "dev/levels");
  EXPECT_NE(st.to_string().find("gives 2 elements but only 1 are held"), std::string::npos)
      << st.to_string();
}

TEST(ConfigSizedArrays, CheckAcceptsEveryCountSource) { EXPECT_TRUE(kDevice.check().ok()); }

// ---- a count in the stream that must equal the local configuration ----

struct Queues {
  uint32_t depth = 0;               // local: the configured queue depth
  uint16_t count = 0;               // sent
  std::vector<Vec> entries;         // count entries
  std::vector<uint8_t> tags;        // count tags
};
size_t configured_depth(const Queues& q) { return q.depth; }

inline constexpr auto kQueues = describe<Queues>(
    "queues", {},
    field("count", &Queues::count),
    config_varray("entries", &Queues::entries, &Queues::count, &configured_depth, kVec),
    config_varray("tags", &Queues::tags, &Queues::count, &Queues::depth));

// The same bytes as a plain counted array.
inline constexpr auto kQueuesAsVarray = describe<Queues>(
    "queues", {},
    field("count", &Queues::count),
    varray("entries", &Queues::entries, &Queues::count, 64, kVec),
    varray("tags", &Queues::tags, &Queues::count, 64));

Queues two_queues() {
  Queues q;
  q.depth = 2;
  q.count = 2;
  q.entries = {{0x0a0b, 0x0c}, {0x0d0e, 0x0f}};
  q.tags = {7, 9};
  return q;
}

TEST(ConfigSizedArrays, MatchingCountEncodesAsACountedArray) {
  Queues q = two_queues();
  auto bytes = saved(kQueues, q);
  EXPECT_EQ(to_hex(bytes), to_hex(hex("0002 0a0b 0c 0d0e 0f 07 09")));
  EXPECT_EQ(to_hex(saved(kQueuesAsVarray, q)), to_hex(bytes));
  EXPECT_TRUE(kQueues.check().ok());

  Queues dst;
  dst.depth = 2;
  ASSERT_TRUE(load_from(kQueues, dst, bytes).ok());
  EXPECT_EQ(dst.entries, q.entries);
  EXPECT_EQ(dst.tags, q.tags);
}

TEST(ConfigSizedArrays, AStreamCountOtherThanTheLocalConfigurationIsRefusedByName) {
  Queues q = two_queues();
  auto bytes = saved(kQueues, q);
  Queues dst;
  dst.depth = 4;
  Status st = load_from(kQueues, dst, bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::kCorrupt);
  EXPECT_EQ(st.path(), "queues/entries");
  EXPECT_EQ(st.message(), "found count 2, expected 4 (the local configuration)");
  EXPECT_TRUE(dst.entries.empty()) << "nothing is allocated before the count is checked";

  // A hostile count far above the configuration allocates nothing either.
  auto huge = bytes;
  huge[0] = 0xff;
  huge[1] = 0xff;
  Status st2 = load_from(kQueues, dst, huge);
  ASSERT_FALSE(st2.ok());
  EXPECT_EQ(st2.message(), "found count 65535, expected 4 (the local configuration)");
  EXPECT_TRUE(dst.entries.empty());
}

TEST(ConfigSizedArrays, MatchingCountMustBeAnEarlierField) {
  struct Late {
    std::vector<uint8_t> v;
    uint8_t n = 0;
    uint8_t local = 0;
  };
  static constexpr auto kLate = describe<Late>(
      "late", {}, config_varray("v", &Late::v, &Late::n, &Late::local), field("n", &Late::n));
  Status st = kLate.check();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("the count of array 'v' is not an earlier field of 'late'"),
            std::string::npos)
      << st.to_string();
}

}  // namespace
}  // namespace ferry::vmstate
