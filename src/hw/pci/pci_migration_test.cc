#include <gtest/gtest.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "hw/pci/test_fakes.h"

namespace ferry::pci {
namespace {

using test::Machine;
using test::TestDevice;

std::vector<uint8_t> save(TestDevice& d) {
  ByteWriter w;
  Status st = test::kTestDeviceDesc.save(d, w);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return w.to_vector();
}

Status load(TestDevice& d, const std::vector<uint8_t>& bytes) {
  ByteReader r(bytes);
  FERRY_RETURN_IF_ERROR(test::kTestDeviceDesc.load(d, r));
  if (r.remaining() != 0)
    return Error(ErrorCode::kCorrupt, "{} bytes left after the device", r.remaining());
  return {};
}

// Offsets into a saved express TestDevice.
constexpr size_t kConfigAt = 4;                 // after version_id
constexpr size_t kIrqStateAt = kConfigAt + 4096;
constexpr size_t kTableAt = kIrqStateAt + 16;
constexpr size_t kPbaAt = kTableAt + TestDevice::kVectors * 16;
constexpr size_t kStreamSize = kPbaAt + (TestDevice::kVectors + 7) / 8 + 4;

struct Pair : ::testing::Test {
  void SetUp() override {
    src_dev = static_cast<TestDevice*>(*src.bus.add(std::make_unique<TestDevice>("dev"), "2"));
    src_old = static_cast<TestDevice*>(
        *src.bus.add(std::make_unique<TestDevice>("old", PciKind::kConventional), "5"));
    dst_dev = static_cast<TestDevice*>(*dst.bus.add(std::make_unique<TestDevice>("dev"), "2"));
    dst_old = static_cast<TestDevice*>(
        *dst.bus.add(std::make_unique<TestDevice>("old", PciKind::kConventional), "5"));
  }

  // The guest's setup on the source: BARs placed and decoded, MSI-X with vector 0 live,
  // vector 3 masked and pending, vector 16 masked; the conventional function on INTx.
  void configure_source() {
    TestDevice& d = *src_dev;
    d.config_write(kBar0, 0xfe000000, 4);
    d.config_write(kBar0 + 4, 0x1, 4);
    d.config_write(kBar0 + 8, 0xc000, 4);
    d.config_write(kCommand, kCommandMemory | kCommandIo | kCommandBusMaster, 2);
    d.config_write(kInterruptLine, 0x0b, 1);
    const uint8_t cap = *d.find_capability(kCapMsix);
    d.config_write(cap + kMsixControl, kMsixEnable, 2);
    MmioHandler& bar = d.bar_handler(0);
    auto program = [&](unsigned v, uint32_t data, bool masked) {
      bar.write(TestDevice::kTableOffset + v * 16, 0xfee00000 | v << 12, 4);
      bar.write(TestDevice::kTableOffset + v * 16 + 8, data, 4);
      bar.write(TestDevice::kTableOffset + v * 16 + 12, masked, 4);
    };
    program(0, 0x40, false);
    program(3, 0x43, true);
    program(16, 0x50, true);
    d.msix_notify(3);
    d.model_register = 0xdecafbad;

    TestDevice& o = *src_old;
    o.config_write(kBar0, 0xfd000000, 4);
    o.config_write(kBar0 + 4, 0, 4);
    o.config_write(kCommand, kCommandMemory, 2);
    o.set_irq(true);
    src.msi.take();
    ASSERT_TRUE(src.irqs.level(10));
  }

  Machine src, dst;
  TestDevice* src_dev = nullptr;
  TestDevice* src_old = nullptr;
  TestDevice* dst_dev = nullptr;
  TestDevice* dst_old = nullptr;
};

TEST_F(Pair, DescriptionChecksAndStreamHasQemuShape) {
  ASSERT_TRUE(test::kTestDeviceDesc.check().ok()) << test::kTestDeviceDesc.check().to_string();
  configure_source();
  auto bytes = save(*src_dev);
  ASSERT_EQ(bytes.size(), kStreamSize);
  EXPECT_EQ((std::vector<uint8_t>(bytes.begin(), bytes.begin() + 6)),
            (std::vector<uint8_t>{0, 0, 0, 2, 0x36, 0x1b}));  // be32 2, then config LE
  EXPECT_EQ(save(*src_old).size(), 4 + 256 + 16 + 17 * 16 + 3 + 4u);

  ByteWriter w;
  vmstate::Json desc = vmstate::Json::object();
  ASSERT_TRUE(test::kTestDeviceDesc.save(*src_dev, w, desc).ok());
  const std::string json = desc.dump();
  EXPECT_NE(json.find("\"PCIDevice\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"config\""), std::string::npos);
  EXPECT_NE(json.find("4096"), std::string::npos);

  // Snapshots and the type-erased binding see the same fields.
  auto binding = vmstate::bind(test::kTestDeviceDesc, *src_dev);
  auto before = binding->snapshot();
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->bytes, save(*src_dev));
  src_dev->msix_notify(16);
  auto after = binding->snapshot();
  ASSERT_TRUE(after.ok());
  auto changed = vmstate::diff(*before, *after);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(*changed, std::vector<std::string>{"msix"});
}

TEST_F(Pair, RoundTripGivesIdenticalMappingsInterruptsAndBehaviour) {
  configure_source();
  auto dev_bytes = save(*src_dev);
  auto old_bytes = save(*src_old);
  dst.host.take_events();
  ASSERT_TRUE(load(*dst_dev, dev_bytes).ok()) << load(*dst_dev, dev_bytes).to_string();
  ASSERT_TRUE(load(*dst_old, old_bytes).ok());

  // Same regions announced, same interrupt line level, same bytes when saved again.
  EXPECT_EQ(dst.host.layout(), src.host.layout());
  EXPECT_EQ(dst.host.layout().size(), 3u);
  EXPECT_TRUE(dst.host.errors.empty());
  EXPECT_TRUE(dst.irqs.level(10));
  EXPECT_EQ(save(*dst_dev), dev_bytes);
  EXPECT_EQ(save(*dst_old), old_bytes);
  EXPECT_EQ(dst_dev->model_register, 0xdecafbadu);
  for (uint32_t i = 0; i < kExpressConfigSize; i += 4)
    ASSERT_EQ(dst_dev->config_read(i, 4), src_dev->config_read(i, 4)) << i;
  EXPECT_TRUE(dst.msi.take().empty()) << "nothing unmasked was pending";

  // Both ends now behave the same way.
  for (Machine* m : {&src, &dst}) {
    TestDevice& d = m == &src ? *src_dev : *dst_dev;
    TestDevice& o = m == &src ? *src_old : *dst_old;
    EXPECT_TRUE(d.msix_pending(3));
    EXPECT_EQ(d.bar_handler(0).read(TestDevice::kPbaOffset, 4), 0x8u);
    d.msix_notify(0);
    d.msix_notify(16);
    d.bar_handler(0).write(TestDevice::kTableOffset + 3 * 16 + 12, 0, 4);  // unmask 3
    EXPECT_EQ(m->msi.take(),
              (std::vector<MsiMessage>{{0xfee00000, 0x40}, {0xfee03000, 0x43}}));
    EXPECT_TRUE(d.msix_pending(16));
    o.set_irq(false);
    EXPECT_FALSE(m->irqs.level(10));
    o.config_write(kCommand, 0, 2);
    EXPECT_TRUE(m->host.mapped.find({&o, 0}) == m->host.mapped.end());
  }
}

TEST_F(Pair, LoadRefusesChangedReadOnlyConfigBytes) {
  configure_source();
  const auto good = save(*src_dev);
  struct Case {
    uint32_t offset;
    uint8_t value;
    const char* expect;
  };
  for (Case c : {Case{kVendorId, 0x37, "config byte 0x000"},
                 Case{kClassProgIf + 2, 0x02, "config byte 0x00b"},
                 Case{kCapabilityPointer, 0x50, "config byte 0x034"},
                 Case{kBar0, 0x00, "config byte 0x010"},       // BAR type bits
                 Case{0x200, 0x01, "config byte 0x200"}}) {    // extended space
    auto bytes = good;
    const uint8_t expected = bytes[kConfigAt + c.offset];
    bytes[kConfigAt + c.offset] = c.value;
    Status st = load(*dst_dev, bytes);
    ASSERT_FALSE(st.ok()) << c.expect;
    EXPECT_EQ(st.code(), ErrorCode::kCorrupt);
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << st.to_string();
    EXPECT_NE(st.message().find(fmt::format("expected {:#04x}, found {:#04x}", expected, c.value)),
              std::string::npos)
        << st.to_string();
    EXPECT_NE(st.to_string().find("testdev/parent_obj"), std::string::npos) << st.to_string();
    // The refused device keeps its own configuration and announces nothing.
    EXPECT_EQ(dst_dev->vendor_id(), 0x1b36);
    EXPECT_EQ(dst_dev->config_u8(kCapabilityPointer), 0x40);
    EXPECT_TRUE(dst.host.mapped.empty());
  }
}

TEST_F(Pair, LoadAcceptsGuestWritableChanges) {
  configure_source();
  auto bytes = save(*src_dev);
  bytes[kConfigAt + kInterruptLine] = 0x05;
  bytes[kConfigAt + kStatus] |= kStatusInterrupt;  // volatile: the device's own level
  ASSERT_TRUE(load(*dst_dev, bytes).ok());
  EXPECT_EQ(dst_dev->config_u8(kInterruptLine), 0x05);
  // The status bit is derived again from the loaded INTx level (low).
  EXPECT_FALSE(dst_dev->config_u16(kStatus) & kStatusInterrupt);
}

TEST_F(Pair, LoadRefusesBadIrqStateBadPbaAndShortStreams) {
  configure_source();
  const auto good = save(*src_dev);

  auto bytes = good;
  bytes[kIrqStateAt + 4 + 3] = 2;  // pin B: 2
  Status st = load(*dst_dev, bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("irq_state[1]: expected 0 or 1, found 2"), std::string::npos)
      << st.to_string();

  bytes = good;
  bytes[kPbaAt + 2] |= 0x02;  // vector 17 of 17
  st = load(*dst_dev, bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("pending bit 17 set, but the device has only 17 vectors"),
            std::string::npos)
      << st.to_string();

  bytes = good;
  bytes[0] = 0x7f;  // version_id
  EXPECT_FALSE(load(*dst_dev, bytes).ok());

  for (size_t cut : {size_t{0}, size_t{3}, kConfigAt + 100, kIrqStateAt + 2, kTableAt + 17,
                     kStreamSize - 1}) {
    std::vector<uint8_t> shorter(good.begin(), good.begin() + cut);
    Status cut_st = load(*dst_dev, shorter);
    EXPECT_FALSE(cut_st.ok()) << "cut at " << cut;
    EXPECT_EQ(dst_dev->vendor_id(), 0x1b36) << "a cut stream must not touch the live config";
  }
  // After every refusal, the complete stream still loads (a retry succeeds).
  ASSERT_TRUE(load(*dst_dev, good).ok());
  EXPECT_EQ(save(*dst_dev), good);
  EXPECT_EQ(dst.host.layout().size(), 2u);
}

}  // namespace
}  // namespace ferry::pci
