// The virtio-pci transport driven as a guest driver would: config space, BAR0/BAR1/BAR4,
// interrupts seen by fake sinks, migration round trips. The device behind it is a tiny
// virtio device that records what the transport told it.
#include "hw/virtio/virtio_pci.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "hw/pci/capability_walk.h"
#include "hw/pci/test_fakes.h"
#include "hw/virtio/virtio_pci_migration.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"

namespace ferry::virtio {
namespace {

namespace vp = ::ferry::spec::virtio_pci;
using pci::BarType;

constexpr uint64_t kRefusedFeature = 1ull << 5;  // the tiny device refuses this one if asked
constexpr uint64_t kOfferedFeatures = (1ull << 0) | kRefusedFeature | (1ull << 6) |
                                      vp::feature_bit(vp::kFeatureRingReset);

// A tiny virtio device: `queues` queues of 256 (the last one 64), 8 bytes of
// configuration, and a log of everything the transport told it.
class TinyDevice : public VirtioDevice {
 public:
  explicit TinyDevice(uint16_t queues = 1) : queues_(queues) {}

  uint16_t device_id() const override { return 1; }
  VirtioPciIdentity pci_identity() const override {
    return {.pci_device_id = vp::kTransitionalNetDeviceId,
            .class_code = vp::kClassNetworkEthernet, .subsystem_id = vp::kDeviceIdNet};
  }
  uint64_t host_features() const override { return kOfferedFeatures; }
  uint64_t legacy_only_features() const override { return 1ull << 6; }
  uint16_t num_queues() const override { return queues_; }
  uint16_t queue_max_size(uint16_t index) const override {
    return index + 1 == queues_ && queues_ > 1 ? 64 : 256;
  }
  uint32_t config_size() const override { return 8; }
  void get_config(std::span<uint8_t> out) override {
    ++config_reads;
    std::copy(config.begin(), config.end(), out.begin());
  }
  void set_config(std::span<const uint8_t> in) override {
    std::copy(in.begin(), in.end(), config.begin());
  }
  void attach(VirtioTransport& t) override { transport = &t; }
  Status features_negotiated(uint64_t features) override {
    negotiated.push_back(features);
    if (features & kRefusedFeature)
      return Error(ErrorCode::kInvalidArgument, "feature 5 is not for this driver");
    return {};
  }
  void queue_enabled(uint16_t index, const QueueLayout& layout, uint64_t features) override {
    enabled.push_back({index, layout, features});
  }
  void queue_notify(uint16_t index) override { notified.push_back(index); }
  void queue_reset(uint16_t index) override { queue_resets.push_back(index); }
  void status_changed(uint8_t status) override { statuses.push_back(status); }
  void reset() override { ++resets; }

  struct Enabled {
    uint16_t index;
    QueueLayout layout;
    uint64_t features;
  };
  VirtioTransport* transport = nullptr;
  std::array<uint8_t, 8> config{0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01, 0x00};
  std::vector<uint64_t> negotiated;
  std::vector<Enabled> enabled;
  std::vector<uint16_t> notified;
  std::vector<uint16_t> queue_resets;
  std::vector<uint8_t> statuses;
  int resets = 0;
  int config_reads = 0;

 private:
  uint16_t queues_;
};

class VirtioPciTest : public ::testing::Test {
 protected:
  // Plugs a transport for a TinyDevice with `queues` queues into a bus of fakes.
  VirtioPci& plug(uint16_t queues = 1, int vectors = -1) {
    auto tiny = std::make_unique<TinyDevice>(queues);
    dev = tiny.get();
    auto pci = VirtioPci::create(std::move(tiny), {.type_name = "virtio-tiny-pci", .vectors = vectors});
    EXPECT_TRUE(pci.ok()) << pci.status().to_string();
    auto added = machine.bus.add(std::move(*pci), "1.0");
    EXPECT_TRUE(added.ok()) << added.status().to_string();
    vpci = static_cast<VirtioPci*>(*added);
    return *vpci;
  }

  uint64_t common(uint32_t reg, unsigned size) {
    return vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kCommonOffset + reg, size);
  }
  void set_common(uint32_t reg, uint64_t value, unsigned size) {
    vpci->bar_handler(VirtioPci::kModernBar).write(VirtioPci::kCommonOffset + reg, value, size);
  }
  uint64_t modern(uint32_t offset, unsigned size) {
    return vpci->bar_handler(VirtioPci::kModernBar).read(offset, size);
  }
  void set_modern(uint32_t offset, uint64_t value, unsigned size) {
    vpci->bar_handler(VirtioPci::kModernBar).write(offset, value, size);
  }
  uint64_t legacy(uint32_t offset, unsigned size) {
    return vpci->bar_handler(VirtioPci::kLegacyBar).read(offset, size);
  }
  void set_legacy(uint32_t offset, uint64_t value, unsigned size) {
    vpci->bar_handler(VirtioPci::kLegacyBar).write(offset, value, size);
  }
  // The modern handshake up to FEATURES_OK with `features`; returns the status read back.
  uint8_t negotiate(uint64_t features) {
    set_common(vp::kCommonStatus, vp::kStatusAcknowledge, 1);
    set_common(vp::kCommonStatus, vp::kStatusAcknowledge | vp::kStatusDriver, 1);
    for (uint32_t half = 0; half < 2; ++half) {
      set_common(vp::kCommonGfSelect, half, 4);
      set_common(vp::kCommonGf, static_cast<uint32_t>(features >> (32 * half)), 4);
    }
    set_common(vp::kCommonStatus,
               vp::kStatusAcknowledge | vp::kStatusDriver | vp::kStatusFeaturesOk, 1);
    return static_cast<uint8_t>(common(vp::kCommonStatus, 1));
  }
  // Sets queue `q` up at desc/avail/used and enables it.
  void setup_queue(uint16_t q, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used) {
    set_common(vp::kCommonQueueSelect, q, 2);
    set_common(vp::kCommonQueueSize, size, 2);
    set_common(vp::kCommonQueueDescLo, desc, 8);  // split into two dword writes
    set_common(vp::kCommonQueueDriverLo, avail, 8);
    set_common(vp::kCommonQueueDeviceLo, used, 8);
    set_common(vp::kCommonQueueEnable, 1, 2);
  }
  // MSI-X table entry `v` → address 0xfee00000 + 16 v, data 0x100 + v, unmasked; then
  // MSI-X and bus mastering on.
  void enable_msix(unsigned vectors) {
    auto& table = vpci->bar_handler(VirtioPci::kMsixBar);
    for (unsigned v = 0; v < vectors; ++v) {
      table.write(16 * v, 0xfee00000 + 16 * v, 4);
      table.write(16 * v + 4, 0, 4);
      table.write(16 * v + 8, 0x100 + v, 4);
      table.write(16 * v + 12, 0, 4);
    }
    vpci->config_write(VirtioPci::kMsixCap + pci::kMsixControl, pci::kMsixEnable, 2);
    vpci->config_write(pci::kCommand, pci::kCommandMemory | pci::kCommandIo | pci::kCommandBusMaster, 2);
  }

  pci::test::Machine machine;
  TinyDevice* dev = nullptr;
  VirtioPci* vpci = nullptr;
};

// ---- identity, capabilities, BARs ----------------------------------------------------------

TEST_F(VirtioPciTest, PresentsQemusTransitionalIdentity) {
  VirtioPci& p = plug(3);
  EXPECT_EQ(p.vendor_id(), 0x1af4);
  EXPECT_EQ(p.device_id(), 0x1000);
  EXPECT_EQ(p.revision(), 0);
  EXPECT_EQ(p.class_code(), 0x020000u);
  EXPECT_EQ(p.config_read(pci::kSubsystemVendorId, 2), 0x1af4u);
  EXPECT_EQ(p.config_read(pci::kSubsystemId, 2), 0x0001u);
  EXPECT_EQ(p.config_read(pci::kInterruptPin, 1), 1u);
  EXPECT_EQ(p.config_read(pci::kStatus, 2), pci::kStatusCapabilityList);
  EXPECT_FALSE(p.is_express());
  EXPECT_EQ(p.config_size(), 256u);
}

TEST_F(VirtioPciTest, CapabilitiesSitWhereQemuPutsThem) {
  VirtioPci& p = plug(3);
  using pci::CapabilityEntry;
  std::vector<CapabilityEntry> want = {
      {false, pci::kCapMsix, 0x98}, {false, vp::kCapVendor, 0x84}, {false, vp::kCapVendor, 0x70},
      {false, vp::kCapVendor, 0x60}, {false, vp::kCapVendor, 0x50}, {false, vp::kCapVendor, 0x40}};
  EXPECT_EQ(pci::walk_capabilities(p), want);

  struct Want {
    uint32_t at;
    uint8_t len, type, bar;
    uint32_t offset, length;
  };
  for (const Want& w : {Want{0x40, 16, vp::kCapCommonCfg, 4, 0x0000, 0x1000},
                        Want{0x50, 16, vp::kCapIsrCfg, 4, 0x1000, 0x1000},
                        Want{0x60, 16, vp::kCapDeviceCfg, 4, 0x2000, 0x1000},
                        Want{0x70, 20, vp::kCapNotifyCfg, 4, 0x3000, 0x1000},
                        Want{0x84, 20, vp::kCapPciCfg, 0, 0, 0}}) {
    SCOPED_TRACE(w.at);
    EXPECT_EQ(p.config_read(w.at + vp::kCapLen, 1), w.len);
    EXPECT_EQ(p.config_read(w.at + vp::kCapCfgType, 1), w.type);
    EXPECT_EQ(p.config_read(w.at + vp::kCapBar, 1), w.bar);
    EXPECT_EQ(p.config_read(w.at + vp::kCapOffset, 4), w.offset);
    EXPECT_EQ(p.config_read(w.at + vp::kCapLength, 4), w.length);
  }
  EXPECT_EQ(p.config_read(0x70 + vp::kNotifyCapMultiplier, 4), 4u);
  // MSI-X: 4 vectors (queues + 1), table in BAR1 at 0, PBA at 0x800.
  EXPECT_EQ(p.config_read(0x98 + pci::kMsixControl, 2), 0x0003u);
  EXPECT_EQ(p.config_read(0x98 + pci::kMsixTable, 4), 0x00000001u);
  EXPECT_EQ(p.config_read(0x98 + pci::kMsixPba, 4), 0x00000801u);
}

TEST_F(VirtioPciTest, BarsHaveQemusSizesAndKinds) {
  VirtioPci& p = plug(3);
  EXPECT_EQ(p.bar_type(0), BarType::kIo);
  EXPECT_EQ(p.bar_size(0), 32u);  // 24-byte header with MSI-X + 8 bytes of config
  EXPECT_EQ(p.bar_type(1), BarType::kMem32);
  EXPECT_EQ(p.bar_size(1), 4096u);
  EXPECT_EQ(p.bar_type(4), BarType::kMem64);
  EXPECT_TRUE(p.bar_prefetchable(4));
  EXPECT_EQ(p.bar_size(4), 0x4000u);
  EXPECT_EQ(p.config_read(pci::kBar0 + 16, 4), 0xcu);  // 64-bit prefetchable
  for (int unused : {2, 3, 5}) EXPECT_FALSE(p.bar_registered(unused)) << unused;
}

TEST_F(VirtioPciTest, WithoutVectorsThereIsNoMsix) {
  VirtioPci& p = plug(1, 0);
  EXPECT_FALSE(p.bar_registered(1));
  EXPECT_EQ(p.config_read(pci::kCapabilityPointer, 1), 0x84u);
  EXPECT_EQ(pci::walk_capabilities(p).size(), 5u);
  EXPECT_EQ(p.bar_size(0), 32u);  // 20 + 8, rounded up
}

TEST_F(VirtioPciTest, RefusesDevicesItCannotPresent) {
  auto none = VirtioPci::create(nullptr);
  EXPECT_FALSE(none.ok());
  auto zero = VirtioPci::create(std::make_unique<TinyDevice>(0));
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().to_string().find("0 queues"), std::string::npos)
      << zero.status().to_string();
  auto vectors = VirtioPci::create(std::make_unique<TinyDevice>(1), {.vectors = 5000});
  ASSERT_FALSE(vectors.ok());
  EXPECT_NE(vectors.status().to_string().find("vectors 5000"), std::string::npos);
}

class PlatformDevice : public TinyDevice {
 public:
  uint64_t host_features() const override {
    return vp::feature_bit(vp::kFeatureAccessPlatform);
  }
};

TEST_F(VirtioPciTest, ATransitionalDeviceCannotOfferAccessPlatform) {
  auto pci = VirtioPci::create(std::make_unique<PlatformDevice>(), {.type_name = "virtio-tiny-pci"});
  ASSERT_FALSE(pci.ok());
  EXPECT_NE(pci.status().to_string().find(
                "virtio-tiny-pci: VIRTIO_F_IOMMU_PLATFORM was supported by neither legacy nor "
                "transitional device"),
            std::string::npos)
      << pci.status().to_string();
}

TEST_F(VirtioPciTest, SystemResetAlsoResetsTheVirtioState) {
  plug();
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  setup_queue(0, 128, 0x10000, 0x11000, 0x12000);
  const int resets = dev->resets;
  vpci->reset();
  EXPECT_EQ(dev->resets, resets + 1);
  EXPECT_EQ(vpci->status(), 0);
  EXPECT_FALSE(vpci->queue_layout(0).enabled);
  EXPECT_EQ(common(vp::kCommonQueueSize, 2), 256u);
  EXPECT_EQ(vpci->config_read(pci::kCapabilityPointer, 1), VirtioPci::kMsixCap);
}

// ---- common configuration -----------------------------------------------------------------

TEST_F(VirtioPciTest, FeatureWindowsShowModernFeaturesIn32BitHalves) {
  plug();
  const uint64_t modern = (kOfferedFeatures & ~(1ull << 6)) | vp::feature_bit(vp::kFeatureVersion1);
  set_common(vp::kCommonDfSelect, 0, 4);
  EXPECT_EQ(common(vp::kCommonDf, 4), modern & 0xffffffff);
  set_common(vp::kCommonDfSelect, 1, 4);
  EXPECT_EQ(common(vp::kCommonDfSelect, 4), 1u);
  EXPECT_EQ(common(vp::kCommonDf, 4), modern >> 32);
  set_common(vp::kCommonDfSelect, 2, 4);
  EXPECT_EQ(common(vp::kCommonDf, 4), 0u);
  // driver_feature reads back per select; the device sees only offered bits.
  set_common(vp::kCommonGfSelect, 1, 4);
  set_common(vp::kCommonGf, 0x3, 4);  // VERSION_1 and bit 33 (not offered)
  EXPECT_EQ(common(vp::kCommonGf, 4), 0x3u);
  EXPECT_EQ(vpci->driver_features(), vp::feature_bit(vp::kFeatureVersion1));
  EXPECT_EQ(common(vp::kCommonNumQueues, 2), 1u);
}

TEST_F(VirtioPciTest, StatusHandshakeKeepsFeaturesOkOnlyWhenTheDeviceAccepts) {
  plug();
  const uint64_t version1 = vp::feature_bit(vp::kFeatureVersion1);
  EXPECT_EQ(negotiate(version1 | 1), 0xb);
  ASSERT_EQ(dev->negotiated.size(), 1u);
  EXPECT_EQ(dev->negotiated[0], version1 | 1);
  set_common(vp::kCommonStatus, 0xf, 1);
  EXPECT_EQ(common(vp::kCommonStatus, 1), 0xfu);
  EXPECT_EQ(dev->statuses.back(), 0xf);
  // Features are fixed once FEATURES_OK is set.
  set_common(vp::kCommonGfSelect, 0, 4);
  set_common(vp::kCommonGf, 0, 4);
  EXPECT_EQ(vpci->driver_features(), version1 | 1);

  set_common(vp::kCommonStatus, 0, 1);
  EXPECT_EQ(negotiate(version1 | kRefusedFeature), 0x3) << "FEATURES_OK must stay clear";
  EXPECT_EQ(dev->negotiated.back(), version1 | kRefusedFeature);
}

TEST_F(VirtioPciTest, StatusZeroResetsEverything) {
  plug(3);
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  setup_queue(1, 128, 0x10000, 0x11000, 0x12000);
  set_common(vp::kCommonQueueMsix, 2, 2);
  set_common(vp::kCommonMsix, 0, 2);
  set_common(vp::kCommonDfSelect, 1, 4);
  set_common(vp::kCommonStatus, 0xf, 1);
  dev->transport->notify_queue(1);
  ASSERT_NE(vpci->isr(), 0);
  const int resets = dev->resets;

  set_common(vp::kCommonStatus, 0, 1);
  EXPECT_EQ(dev->resets, resets + 1);
  EXPECT_EQ(common(vp::kCommonStatus, 1), 0u);
  EXPECT_EQ(vpci->isr(), 0);
  EXPECT_EQ(vpci->driver_features(), 0u);
  EXPECT_EQ(common(vp::kCommonQueueSelect, 2), 0u);
  EXPECT_EQ(common(vp::kCommonMsix, 2), vp::kNoVector);
  EXPECT_EQ(common(vp::kCommonDfSelect, 4), 0u);
  set_common(vp::kCommonQueueSelect, 1, 2);
  EXPECT_EQ(common(vp::kCommonQueueSize, 2), 256u);
  EXPECT_EQ(common(vp::kCommonQueueEnable, 2), 0u);
  EXPECT_EQ(common(vp::kCommonQueueDescLo, 4), 0u);
  EXPECT_EQ(common(vp::kCommonQueueMsix, 2), vp::kNoVector);
  EXPECT_FALSE(vpci->queue_layout(1).enabled);
  EXPECT_EQ(vpci->modern_state().vqs[1].num, 0);
}

TEST_F(VirtioPciTest, QueueRegistersFollowQueueSelect) {
  plug(3);
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  set_common(vp::kCommonQueueSelect, 0, 2);
  set_common(vp::kCommonQueueDescLo, 0x1000, 4);
  set_common(vp::kCommonQueueDescHi, 0x1, 4);
  set_common(vp::kCommonQueueSelect, 2, 2);
  EXPECT_EQ(common(vp::kCommonQueueSize, 2), 64u);  // each queue's own maximum
  set_common(vp::kCommonQueueDescLo, 0x2000, 4);
  EXPECT_EQ(common(vp::kCommonQueueNotifyOff, 2), 2u);
  set_common(vp::kCommonQueueSelect, 0, 2);
  EXPECT_EQ(common(vp::kCommonQueueDescLo, 4), 0x1000u);
  EXPECT_EQ(common(vp::kCommonQueueDescHi, 4), 0x1u);
  EXPECT_EQ(common(vp::kCommonQueueNotifyOff, 2), 0u);

  // Sizes: power of two, 1..max; anything else is ignored.
  EXPECT_EQ(common(vp::kCommonQueueSize, 2), 256u);
  for (uint32_t bad : {0u, 512u, 100u}) {
    set_common(vp::kCommonQueueSize, bad, 2);
    EXPECT_EQ(common(vp::kCommonQueueSize, 2), 256u) << bad;
  }
  set_common(vp::kCommonQueueSize, 32, 2);
  EXPECT_EQ(common(vp::kCommonQueueSize, 2), 32u);
  EXPECT_EQ(vpci->modern_state().vqs[0].num, 32);

  // Vectors past the table read back NO_VECTOR, as QEMU.
  set_common(vp::kCommonQueueMsix, 3, 2);
  EXPECT_EQ(common(vp::kCommonQueueMsix, 2), 3u);
  set_common(vp::kCommonQueueMsix, 4, 2);
  EXPECT_EQ(common(vp::kCommonQueueMsix, 2), vp::kNoVector);

  // A queue the device lacks reads as absent and takes no writes.
  set_common(vp::kCommonQueueSelect, 7, 2);
  EXPECT_EQ(common(vp::kCommonQueueSelect, 2), 7u);
  EXPECT_EQ(common(vp::kCommonQueueSize, 2), 0u);
  set_common(vp::kCommonQueueDescLo, 0x5000, 4);
  EXPECT_EQ(common(vp::kCommonQueueDescLo, 4), 0u);
  set_common(vp::kCommonQueueSelect, 1024, 2);
  EXPECT_EQ(common(vp::kCommonQueueSelect, 2), 7u);

  setup_queue(1, 128, 0x10000, 0x11000, 0x12000);
  ASSERT_EQ(dev->enabled.size(), 1u);
  EXPECT_EQ(dev->enabled[0].index, 1);
  EXPECT_EQ(dev->enabled[0].layout.size, 128);
  EXPECT_TRUE(dev->enabled[0].layout.enabled);
  EXPECT_EQ(dev->enabled[0].layout.desc, 0x10000u);
  EXPECT_EQ(dev->enabled[0].layout.driver, 0x11000u);
  EXPECT_EQ(dev->enabled[0].layout.device, 0x12000u);
  EXPECT_EQ(dev->enabled[0].features, vp::feature_bit(vp::kFeatureVersion1));
  EXPECT_EQ(common(vp::kCommonQueueEnable, 2), 1u);
}

TEST_F(VirtioPciTest, QueueEnableOtherThanOneNeedsReset) {
  plug();
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  set_common(vp::kCommonStatus, 0xf, 1);
  set_common(vp::kCommonQueueEnable, 0, 2);
  EXPECT_TRUE(vpci->broken());
  EXPECT_EQ(common(vp::kCommonStatus, 1), 0xfu | vp::kStatusNeedsReset);
  EXPECT_TRUE(dev->enabled.empty());
}

TEST_F(VirtioPciTest, QueueResetNeedsRingResetAndReturnsTheQueueToItsDefaults) {
  plug();
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  setup_queue(0, 128, 0x10000, 0x11000, 0x12000);
  set_common(vp::kCommonQueueReset, 1, 2);
  EXPECT_TRUE(dev->queue_resets.empty()) << "RING_RESET was not negotiated";
  EXPECT_EQ(common(vp::kCommonQueueEnable, 2), 1u);

  set_common(vp::kCommonStatus, 0, 1);
  negotiate(vp::feature_bit(vp::kFeatureVersion1) | vp::feature_bit(vp::kFeatureRingReset));
  setup_queue(0, 128, 0x10000, 0x11000, 0x12000);
  set_common(vp::kCommonQueueReset, 1, 2);
  EXPECT_EQ(dev->queue_resets, std::vector<uint16_t>{0});
  EXPECT_EQ(common(vp::kCommonQueueReset, 2), 0u);
  EXPECT_EQ(common(vp::kCommonQueueEnable, 2), 0u);
  EXPECT_EQ(common(vp::kCommonQueueSize, 2), 256u);
  EXPECT_EQ(common(vp::kCommonQueueDescLo, 4), 0u);
}

// ---- notify, device config, ISR, interrupts ------------------------------------------------------

TEST_F(VirtioPciTest, NotifyRegionNamesTheQueueByAddress) {
  plug(3);
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  set_modern(VirtioPci::kNotifyOffset + 4 * 1, 1, 2);
  EXPECT_TRUE(dev->notified.empty()) << "a queue not set up ignores kicks";
  setup_queue(1, 256, 0x10000, 0x11000, 0x12000);
  set_modern(VirtioPci::kNotifyOffset + 4 * 1, 0x55, 2);  // the value does not matter
  set_modern(VirtioPci::kNotifyOffset + 4 * 9, 9, 2);     // no such queue
  EXPECT_EQ(dev->notified, std::vector<uint16_t>{1});
  EXPECT_EQ(modern(VirtioPci::kNotifyOffset + 4, 2), 0u);
}

TEST_F(VirtioPciTest, DeviceConfigReadsLittleEndianAndAllOnesPastItsEnd) {
  plug();
  EXPECT_EQ(modern(VirtioPci::kDeviceCfgOffset, 4), 0x12005452u);
  EXPECT_EQ(modern(VirtioPci::kDeviceCfgOffset + 6, 2), 0x0001u);
  EXPECT_EQ(modern(VirtioPci::kDeviceCfgOffset + 8, 1), 0xffu);
  EXPECT_EQ(modern(VirtioPci::kDeviceCfgOffset + 6, 4), 0xffffffffu);
  EXPECT_EQ(vpci->config_buffer()[0], 0x52) << "the buffer keeps what the guest last read";
  set_modern(VirtioPci::kDeviceCfgOffset + 4, 0xbeef, 2);
  EXPECT_EQ(dev->config[4], 0xef);
  EXPECT_EQ(dev->config[5], 0xbe);
}

TEST_F(VirtioPciTest, IntxFollowsIsrBitZeroAndAnIsrReadClearsBoth) {
  plug();
  vpci->config_write(pci::kCommand, pci::kCommandMemory, 2);
  dev->transport->notify_queue(0);
  EXPECT_EQ(vpci->isr(), vp::kIsrQueue);
  EXPECT_TRUE(vpci->intx_asserted());
  EXPECT_EQ(modern(VirtioPci::kIsrOffset, 1), vp::kIsrQueue);
  EXPECT_FALSE(vpci->intx_asserted());
  EXPECT_EQ(modern(VirtioPci::kIsrOffset, 1), 0u);
  EXPECT_TRUE(machine.msi.writes.empty());
}

TEST_F(VirtioPciTest, ConfigInterruptNeedsDriverOkAndBumpsTheGeneration) {
  plug();
  const uint8_t gen = vpci->config_generation();
  dev->transport->notify_config();
  EXPECT_EQ(vpci->isr(), 0) << "ignored before DRIVER_OK";
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  set_common(vp::kCommonStatus, 0xf, 1);
  dev->transport->notify_config();
  EXPECT_EQ(vpci->isr(), vp::kIsrQueue | vp::kIsrConfig);
  EXPECT_EQ(common(vp::kCommonCfgGeneration, 1), uint8_t(gen + 1));
  dev->transport->bump_config_generation();
  EXPECT_EQ(common(vp::kCommonCfgGeneration, 1), uint8_t(gen + 2));
  EXPECT_TRUE(vpci->intx_asserted());
}

TEST_F(VirtioPciTest, MsixSendsTheQueuesAndConfigVectors) {
  plug(3);
  enable_msix(4);
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  set_common(vp::kCommonMsix, 3, 2);
  set_common(vp::kCommonQueueSelect, 1, 2);
  set_common(vp::kCommonQueueMsix, 2, 2);
  set_common(vp::kCommonStatus, 0xf, 1);

  dev->transport->notify_queue(1);
  dev->transport->notify_queue(0);  // no vector: nothing sent
  dev->transport->notify_config();
  EXPECT_EQ(machine.msi.take(), (std::vector<pci::MsiMessage>{{0xfee00020, 0x102},
                                                              {0xfee00030, 0x103}}));
  EXPECT_FALSE(vpci->intx_asserted());
  EXPECT_EQ(vpci->isr(), vp::kIsrQueue | vp::kIsrConfig) << "the ISR is set with MSI-X too";
}

TEST_F(VirtioPciTest, TheDevicesDmaGoesThroughTheFunctionsBusMasterGate) {
  plug();
  EXPECT_EQ(&dev->transport->dma(), &vpci->dma());
  memory::AddressSpace ram;
  auto block = memory::RamBlock::anonymous("pc.ram", 1 << 20);
  ASSERT_TRUE(block.ok());
  ASSERT_TRUE(ram.add_ram(0, std::move(*block)).ok());
  vpci->attach_dma(ram);
  const std::array<uint8_t, 4> bytes{1, 2, 3, 4};
  EXPECT_FALSE(dev->transport->dma().write(0x1000, bytes).ok()) << "bus mastering is off";
  vpci->config_write(pci::kCommand, pci::kCommandBusMaster, 2);
  Status st = dev->transport->dma().write(0x1000, bytes);
  EXPECT_TRUE(st.ok()) << st.to_string();
}

TEST_F(VirtioPciTest, ProgrammedBarsReachTheMachineWithTheirSizes) {
  plug(3);
  machine.host.take_events();
  vpci->config_write(pci::kBar0, 0xc000, 4);
  vpci->config_write(pci::kBar0 + 4, 0xe0100000, 4);
  vpci->config_write(pci::kBar0 + 16, 0xe0000000, 4);
  vpci->config_write(pci::kBar0 + 20, 0, 4);
  vpci->config_write(pci::kCommand, pci::kCommandIo | pci::kCommandMemory, 2);
  EXPECT_EQ(machine.host.layout(),
            (std::vector<std::tuple<int, uint64_t, uint64_t, bool>>{
                {0, 0xc000, 32, true}, {1, 0xe0100000, 4096, false}, {4, 0xe0000000, 0x4000, false}}));
  EXPECT_TRUE(machine.host.errors.empty());
}

TEST_F(VirtioPciTest, ClearingBusMasterTakesDriverOkAway) {
  plug();
  vpci->config_write(pci::kCommand, pci::kCommandBusMaster, 2);
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  set_common(vp::kCommonStatus, 0xf, 1);
  vpci->config_write(pci::kCommand, 0, 2);
  EXPECT_EQ(common(vp::kCommonStatus, 1), 0xbu);
}

TEST_F(VirtioPciTest, PciCfgWindowWritesIntoBar4) {
  plug();
  vpci->config_write(VirtioPci::kPciCfgCap + vp::kCapOffset, vp::kCommonQueueDescLo, 4);
  vpci->config_write(VirtioPci::kPciCfgCap + vp::kCapLength, 4, 4);
  vpci->config_write(VirtioPci::kPciCfgCap + vp::kPciCfgCapData, 0xabc000, 4);
  EXPECT_EQ(common(vp::kCommonQueueDescLo, 4), 0xabc000u);
}

// ---- legacy I/O BAR -----------------------------------------------------------------------------

TEST_F(VirtioPciTest, LegacyDriverSetsUpAndKicksAQueue) {
  plug(3);
  // Host features (low 32 bits) include the legacy-only ones, not VERSION_1.
  const uint32_t host = static_cast<uint32_t>(legacy(vp::kLegacyHostFeatures, 4));
  EXPECT_EQ(host, static_cast<uint32_t>(kOfferedFeatures | VirtioPci::kLegacyOnlyFeatures));
  set_legacy(vp::kLegacyStatus, vp::kStatusAcknowledge | vp::kStatusDriver, 1);
  EXPECT_TRUE(vpci->bus_master_enabled()) << "QEMU turns bus mastering on for old drivers";
  set_legacy(vp::kLegacyGuestFeatures, 0x41, 4);
  EXPECT_EQ(legacy(vp::kLegacyGuestFeatures, 4), 0x41u);
  EXPECT_EQ(dev->negotiated.back(), 0x41u);

  set_legacy(vp::kLegacyQueueSel, 2, 2);
  EXPECT_EQ(legacy(vp::kLegacyQueueNum, 2), 64u);
  set_legacy(vp::kLegacyQueuePfn, 0x123, 4);
  ASSERT_EQ(dev->enabled.size(), 1u);
  const QueueLayout& l = dev->enabled[0].layout;
  EXPECT_EQ(dev->enabled[0].index, 2);
  EXPECT_EQ(l.size, 64);
  EXPECT_EQ(l.desc, 0x123000u);
  EXPECT_EQ(l.driver, 0x123000u + 64 * 16);
  EXPECT_EQ(l.device, 0x124000u);  // avail end 0x123484 aligned to 4096
  EXPECT_EQ(legacy(vp::kLegacyQueuePfn, 4), 0x123u);

  set_legacy(vp::kLegacyQueueNotify, 2, 2);
  EXPECT_EQ(dev->notified, std::vector<uint16_t>{2});
  set_legacy(vp::kLegacyStatus, 7, 1);
  EXPECT_EQ(legacy(vp::kLegacyStatus, 1), 7u);

  // Without MSI-X enabled the device config starts at 20 and INTx carries interrupts.
  EXPECT_EQ(legacy(20, 4), 0x12005452u);
  dev->transport->notify_queue(2);
  EXPECT_TRUE(vpci->intx_asserted());
  EXPECT_EQ(legacy(vp::kLegacyIsr, 1), 1u);
  EXPECT_FALSE(vpci->intx_asserted());

  // A PFN of 0 resets the device.
  const int resets = dev->resets;
  set_legacy(vp::kLegacyQueuePfn, 0, 4);
  EXPECT_EQ(dev->resets, resets + 1);
  EXPECT_EQ(legacy(vp::kLegacyStatus, 1), 0u);
}

TEST_F(VirtioPciTest, LegacyVectorsAppearWithMsixAndMoveTheConfig) {
  plug(3);
  enable_msix(4);
  EXPECT_EQ(legacy(24, 4), 0x12005452u);
  set_legacy(vp::kLegacyMsiConfigVector, 1, 2);
  EXPECT_EQ(legacy(vp::kLegacyMsiConfigVector, 2), 1u);
  set_legacy(vp::kLegacyQueueSel, 0, 2);
  set_legacy(vp::kLegacyMsiQueueVector, 9, 2);
  EXPECT_EQ(legacy(vp::kLegacyMsiQueueVector, 2), vp::kNoVector);
}

TEST_F(VirtioPciTest, LegacyBadFeatureBitMeansNoFeatures) {
  plug();
  set_legacy(vp::kLegacyGuestFeatures, 0x40000001, 4);
  EXPECT_EQ(vpci->driver_features(), 0u);
}

TEST_F(VirtioPciTest, TheCoreRestoresLegacyQueueRecordsWithChecks) {
  plug(3);
  EXPECT_TRUE(vpci->restore_queue_vector(1, 3).ok());
  EXPECT_EQ(vpci->queue_vector(1), 3);
  EXPECT_TRUE(vpci->restore_queue_vector(1, vp::kNoVector).ok());
  Status bad = vpci->restore_queue_vector(1, 4);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.to_string().find("queue 1: vector 4"), std::string::npos) << bad.to_string();
  EXPECT_FALSE(vpci->restore_queue_vector(3, 0).ok());
  EXPECT_FALSE(vpci->restore_config_vector(7).ok());

  QueueLayout layout{.size = 64, .enabled = true, .desc = 0x5000, .driver = 0x5400, .device = 0x6000};
  EXPECT_TRUE(vpci->restore_queue_layout(2, layout).ok());
  EXPECT_EQ(vpci->queue_layout(2).desc, 0x5000u);
  layout.size = 128;  // above queue 2's maximum
  Status big = vpci->restore_queue_layout(2, layout);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.to_string().find("size 128 exceeds the maximum 64"), std::string::npos);
}

// ---- migration -----------------------------------------------------------------------------------

class VirtioPciMigrationTest : public VirtioPciTest {
 protected:
  std::vector<uint8_t> save(VirtioPci& p) {
    ByteWriter w;
    Status st = kVirtioPciTransportState.save(p, w);
    EXPECT_TRUE(st.ok()) << st.to_string();
    return w.to_vector();
  }
  Status load(VirtioPci& p, const std::vector<uint8_t>& bytes) {
    ByteReader r(bytes);
    FERRY_RETURN_IF_ERROR(kVirtioPciTransportState.load(p, r));
    if (r.remaining() != 0)
      return Error(ErrorCode::kCorrupt, "{} bytes left over", r.remaining());
    return {};
  }
  // A second transport with the same device shape, as a destination builds it.
  VirtioPci& fresh(uint16_t queues = 3) {
    auto pci = VirtioPci::create(std::make_unique<TinyDevice>(queues), {.type_name = "virtio-tiny-pci"});
    EXPECT_TRUE(pci.ok());
    auto added = dest_machine.bus.add(std::move(*pci), "1.0");
    EXPECT_TRUE(added.ok());
    return *static_cast<VirtioPci*>(*added);
  }
  // A source with a driver part-way through its life.
  void drive_source() {
    plug(3);
    enable_msix(4);
    negotiate(vp::feature_bit(vp::kFeatureVersion1) | 1);
    setup_queue(0, 128, 0x10000, 0x11000, 0x12000);
    set_common(vp::kCommonQueueMsix, 1, 2);
    setup_queue(2, 64, 0x20000, 0x21000, 0x22000);
    set_common(vp::kCommonQueueMsix, 2, 2);
    set_common(vp::kCommonMsix, 3, 2);
    set_common(vp::kCommonDfSelect, 1, 4);
    set_common(vp::kCommonStatus, 0xf, 1);
    dev->transport->notify_queue(0);
  }
  static size_t find(const std::vector<uint8_t>& bytes, std::string_view what) {
    std::string s(bytes.begin(), bytes.end());
    return s.find(what);
  }

  pci::test::Machine dest_machine;
};

TEST_F(VirtioPciMigrationTest, RoundTripReSavesTheSameBytes) {
  drive_source();
  const std::vector<uint8_t> bytes = save(*vpci);
  // QEMU's layout: PCI (4 + 256 + 16), MSI-X table and PBA (64 + 1), config vector (2),
  // header (1 + 1 + 2 + 4), queue vectors (3 x 2), 64bit_features (27 + 8),
  // extra_state (24) + modern_state (29 + 16 + 1024 x 28).
  EXPECT_EQ(bytes.size(), 276u + 65 + 2 + 8 + 6 + 35 + 24 + 45 + 28672);
  size_t extra = find(bytes, "virtio/extra_state");
  size_t modern = find(bytes, "virtio_pci/modern_state");
  ASSERT_NE(extra, std::string::npos);
  ASSERT_NE(modern, std::string::npos);
  EXPECT_LT(find(bytes, "virtio/64bit_features"), extra);
  EXPECT_EQ(modern, extra + 18 + 4 + 2);  // the subsection header's name, version, tag, length
  // vqs[0]: num be16 128, unused, enabled 1, desc lo/hi be32.
  const size_t vq0 = modern + 23 + 4 + 16;
  EXPECT_EQ(std::vector<uint8_t>(bytes.begin() + vq0, bytes.begin() + vq0 + 8),
            (std::vector<uint8_t>{0x00, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}));

  VirtioPci& dst = fresh();
  Status st = load(dst, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(save(dst), bytes);
  EXPECT_EQ(dst.status(), 0xf);
  EXPECT_EQ(dst.isr(), vp::kIsrQueue);
  EXPECT_EQ(dst.driver_features(), vp::feature_bit(vp::kFeatureVersion1) | 1);
  EXPECT_EQ(dst.config_vector(), 3);
  EXPECT_EQ(dst.queue_vector(0), 1);
  EXPECT_EQ(dst.queue_vector(2), 2);
  EXPECT_TRUE(dst.queue_layout(2).enabled);
  EXPECT_EQ(dst.queue_layout(2).size, 64);
  EXPECT_EQ(dst.queue_layout(2).desc, 0x20000u);
  EXPECT_EQ(dst.queue_layout(2).device, 0x22000u);
  EXPECT_FALSE(dst.queue_layout(1).enabled);
  EXPECT_EQ(dst.modern_state().dfselect, 1u);
  EXPECT_TRUE(dst.msix_enabled());
}

TEST_F(VirtioPciMigrationTest, DescriptionPassesRegistrationChecksAndDescribesItself) {
  Status checked = kVirtioPciTransportState.check();
  EXPECT_TRUE(checked.ok()) << checked.to_string();
  drive_source();
  ByteWriter w;
  vmstate::Json vmdesc = vmstate::Json::object();
  Status st = kVirtioPciTransportState.save(*vpci, w, vmdesc);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(w.to_vector(), save(*vpci)) << "describing must not change the bytes";
  const std::string json = vmdesc.dump();
  for (const char* name : {"\"config_vector\"", "\"queue_vector\"", "\"virtio/extra_state\"",
                           "\"virtio_pci/modern_state\"", "\"dfselect\""})
    EXPECT_NE(json.find(name), std::string::npos) << name << " missing from " << json.substr(0, 400);
}

TEST_F(VirtioPciMigrationTest, WithoutMsixNoVectorsTravel) {
  plug(1, 0);
  negotiate(vp::feature_bit(vp::kFeatureVersion1));
  setup_queue(0, 64, 0x10000, 0x11000, 0x12000);
  const std::vector<uint8_t> bytes = save(*vpci);
  EXPECT_EQ(bytes.size(), 276u + 8 + 35 + 24 + 45 + 28672);
  auto pci = VirtioPci::create(std::make_unique<TinyDevice>(1),
                               {.type_name = "virtio-tiny-pci", .vectors = 0});
  ASSERT_TRUE(pci.ok());
  auto added = dest_machine.bus.add(std::move(*pci), "1.0");
  ASSERT_TRUE(added.ok());
  VirtioPci& dst = *static_cast<VirtioPci*>(*added);
  Status st = load(dst, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(save(dst), bytes);
  EXPECT_EQ(dst.queue_layout(0).size, 64);
}

// Offsets of fields in the saved bytes (see RoundTripReSavesTheSameBytes).
constexpr size_t kConfigVectorAt = 276 + 65;
constexpr size_t kHeaderAt = kConfigVectorAt + 2;
constexpr size_t kQueueVectorsAt = kHeaderAt + 8;

TEST_F(VirtioPciMigrationTest, RefusesAConfigVectorOutsideTheTable) {
  drive_source();
  std::vector<uint8_t> bytes = save(*vpci);
  bytes[kConfigVectorAt] = 0x00;
  bytes[kConfigVectorAt + 1] = 0x09;
  Status st = load(fresh(), bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("config_vector"), std::string::npos) << st.to_string();
  EXPECT_NE(st.to_string().find("vector 9"), std::string::npos) << st.to_string();
}

TEST_F(VirtioPciMigrationTest, RefusesAQueueVectorOutsideTheTable) {
  drive_source();
  std::vector<uint8_t> bytes = save(*vpci);
  bytes[kQueueVectorsAt + 2] = 0x00;
  bytes[kQueueVectorsAt + 3] = 0x04;
  Status st = load(fresh(), bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("queue_vector"), std::string::npos) << st.to_string();
  EXPECT_NE(st.to_string().find("queue 1: vector 4"), std::string::npos) << st.to_string();
}

TEST_F(VirtioPciMigrationTest, RefusesQueueSelectPast1024) {
  drive_source();
  std::vector<uint8_t> bytes = save(*vpci);
  bytes[kHeaderAt + 2] = 0x04;  // queue_sel 0x0400
  bytes[kHeaderAt + 3] = 0x00;
  Status st = load(fresh(), bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("header/queue_sel"), std::string::npos) << st.to_string();
}

TEST_F(VirtioPciMigrationTest, RefusesFeaturesTheDeviceDoesNotOfferWithQemusWords) {
  drive_source();
  std::vector<uint8_t> bytes = save(*vpci);
  const size_t sub = find(bytes, "virtio/64bit_features");
  ASSERT_NE(sub, std::string::npos);
  // guest_features is a be64 after the 21-byte name and the version: set bit 7 (not offered)
  // beside VERSION_1 and bit 0.
  bytes[sub + 21 + 4 + 7] |= 0x80;
  Status st = load(fresh(), bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("Features 0x100000081 unsupported. Allowed features: 0x"),
            std::string::npos)
      << st.to_string();
}

TEST_F(VirtioPciMigrationTest, RefusesAQueueTheDeviceDoesNotHave) {
  drive_source();
  std::vector<uint8_t> bytes = save(*vpci);
  const size_t modern = find(bytes, "virtio_pci/modern_state");
  const size_t vq5 = modern + 23 + 4 + 16 + 5 * 28;
  bytes[vq5 + 1] = 0x10;  // num 16
  Status st = load(fresh(), bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("vqs[5]"), std::string::npos) << st.to_string();
  EXPECT_NE(st.to_string().find("modern_state"), std::string::npos) << st.to_string();
}

TEST_F(VirtioPciMigrationTest, RefusesAQueueSizeAboveTheMaximum) {
  drive_source();
  std::vector<uint8_t> bytes = save(*vpci);
  const size_t modern = find(bytes, "virtio_pci/modern_state");
  const size_t vq2 = modern + 23 + 4 + 16 + 2 * 28;
  bytes[vq2] = 0x01;  // num 0x0140 > 64
  Status st = load(fresh(), bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("vqs[2]/num: 320 exceeds the queue's maximum size 64"),
            std::string::npos)
      << st.to_string();
}

}  // namespace
}  // namespace ferry::virtio
