#include "hw/pci/pci_address.h"

#include <gtest/gtest.h>

namespace ferry::pci {
namespace {

TEST(PciAddress, ParsesSlotAndOptionalFunction) {
  struct Case {
    const char* text;
    int slot, function;
  };
  for (Case c : {Case{"2", 2, 0}, {"02.0", 2, 0}, {"1f.7", 0x1f, 7}, {"1F.3", 0x1f, 3},
                 {"0", 0, 0}, {"a", 10, 0}, {"003.1", 3, 1}}) {
    auto r = parse_pci_address(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().to_string();
    EXPECT_EQ(r->slot, c.slot) << c.text;
    EXPECT_EQ(r->function, c.function) << c.text;
  }
}

TEST(PciAddress, RefusesBadValuesNamingThem) {
  for (const char* bad : {"", "20", "1.8", "2.", ".1", "x", "2.0.0", "02:0", "12345", "0x2",
                          "-1", " 2", "2 "}) {
    auto r = parse_pci_address(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "' was accepted";
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(std::string("addr='") + bad + "'"), std::string::npos)
        << r.status().to_string();
  }
  EXPECT_NE(parse_pci_address("20").status().message().find("slot 0x20 is above 0x1f"),
            std::string::npos);
  EXPECT_NE(parse_pci_address("1.8").status().message().find("function 0x8 is above 7"),
            std::string::npos);
}

TEST(PciAddress, Formats) {
  PciAddress a{0x1f, 7};
  EXPECT_EQ(a.to_string(), "1f.7");
  EXPECT_EQ(a.to_bdf(), "0000:00:1f.7");
  EXPECT_EQ(a.devfn(), 0xff);
  EXPECT_EQ((PciAddress{2, 0}.to_bdf()), "0000:00:02.0");
}

}  // namespace
}  // namespace ferry::pci
