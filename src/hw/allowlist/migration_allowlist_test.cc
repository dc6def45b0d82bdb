#include "hw/allowlist/migration_allowlist.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include <fmt/format.h>

namespace ferry::allowlist {
namespace {

using ::testing::ElementsAre;

// A made-up device: two kinds of rows, two ways to discover things.
enum class Kind { kProperty, kCapability, kFeature };
enum class Found { kCapabilityId, kRegisterBit };

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::kProperty: return "toy property";
    case Kind::kCapability: return "capability";
    case Kind::kFeature: return "feature";
  }
  return "item";
}
constexpr bool discoverable(Kind k) { return k != Kind::kProperty; }

constexpr Row<Kind> kRows[] = {
    {Kind::kProperty, "serial", true, "identity"},
    {Kind::kProperty, "queues", true, "at most 8 travel", 8},
    {Kind::kProperty, "cache", false, "the cache is not migrated"},
    {Kind::kCapability, "msix", true, "table and PBA"},
    {Kind::kCapability, "sr-iov", false, "virtual functions are not migrated"},
    {Kind::kFeature, "msix", true, "a feature row of the same name comes second"},
};
constexpr Probe<Found> kProbes[] = {
    {Found::kCapabilityId, 0x11, "msix"},
    {Found::kCapabilityId, 0x10, "sr-iov"},
    {Found::kRegisterBit, 3, "sr-iov"},
};
constexpr Table<Kind, Found> kTable{kRows, kProbes, &kind_name, &discoverable};
static_assert(kTable.every_probe_names_a_row());

struct Item {
  Found kind;
  uint32_t id;
};
std::string describe(Found kind, uint32_t id) {
  return fmt::format("{} {:#x}", kind == Found::kCapabilityId ? "capability" : "bit", id);
}

TEST(MigrationAllowlist, FindsRowsByKindAndName) {
  EXPECT_EQ(kTable.find(Kind::kProperty, "serial"), &kRows[0]);
  EXPECT_EQ(kTable.find(Kind::kFeature, "msix"), &kRows[5]);
  EXPECT_EQ(kTable.find(Kind::kFeature, "serial"), nullptr);
  // Probes name discoverable rows only, the first of a name.
  EXPECT_EQ(kTable.classify(Found::kCapabilityId, 0x11), &kRows[3]);
  EXPECT_EQ(kTable.classify(Found::kRegisterBit, 3), &kRows[4]);
  EXPECT_EQ(kTable.classify(Found::kRegisterBit, 4), nullptr);
}

TEST(MigrationAllowlist, ProbesNamingMissingRowsAreCaught) {
  static constexpr Probe<Found> bad[] = {{Found::kCapabilityId, 0x11, "msix"},
                                         {Found::kCapabilityId, 0x12, "serial"}};  // a property
  static constexpr Table<Kind, Found> table{kRows, bad, &kind_name, &discoverable};
  static_assert(!table.every_probe_names_a_row());
  EXPECT_EQ(table.classify(Found::kCapabilityId, 0x12), nullptr);
}

TEST(MigrationAllowlist, PropertyBlockersNameEveryBlockingOrUnclassifiedProperty) {
  // "color" is in the schema but has no row: a property the model gained unclassified.
  OptSchema schema{.option = "-device",
                   .implied_key = "driver",
                   .properties = {{.name = "driver"},
                                  {.name = "serial"},
                                  {.name = "queues", .type = OptType::kNumber},
                                  {.name = "cache", .type = OptType::kBool},
                                  {.name = "color"}}};
  auto opts = parse_opts(schema, "serial=a,queues=9,cache=on,color=red");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  EXPECT_THAT(kTable.property_blockers(Kind::kProperty, *opts, "toy at 03.0"),
              ElementsAre("toy at 03.0: toy property 'queues=9' blocks migration (at most 8 "
                          "travel)",
                          "toy at 03.0: toy property 'cache' blocks migration (the cache is not "
                          "migrated)",
                          "toy at 03.0: toy property 'color' is not classified as migratable"));
  auto fine = parse_opts(schema, "serial=a,queues=8");
  ASSERT_TRUE(fine.ok());
  EXPECT_TRUE(kTable.property_blockers(Kind::kProperty, *fine, "x").empty());
  // Rows of another kind do not classify properties.
  EXPECT_EQ(kTable.property_blockers(Kind::kFeature, *fine, "x").size(), 2u);
}

TEST(MigrationAllowlist, AdvertisedBlockersOnePerRowAndEveryUnclassifiedItem) {
  std::vector<Item> items = {{Found::kCapabilityId, 0x11},
                             {Found::kCapabilityId, 0x10},
                             {Found::kRegisterBit, 3},  // same row: no second reason
                             {Found::kRegisterBit, 9}};
  EXPECT_THAT(kTable.advertised_blockers(std::span<const Item>(items), describe, "toy at 03.0"),
              ElementsAre("toy at 03.0: capability 'sr-iov' (capability 0x10) blocks migration "
                          "(virtual functions are not migrated)",
                          "toy at 03.0: bit 0x9 is advertised but not classified as migratable"));
  std::vector<Item> fine = {{Found::kCapabilityId, 0x11}};
  EXPECT_TRUE(kTable.advertised_blockers(std::span<const Item>(fine), describe, "x").empty());
}

}  // namespace
}  // namespace ferry::allowlist
