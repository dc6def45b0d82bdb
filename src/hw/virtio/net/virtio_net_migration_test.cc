// virtio-net-pci's section (virtio_net_migration.h): QEMU 7.2's layout and size, a round
// trip into a fresh device over a copy of guest RAM, every load rule refusing a patched
// stream with its message, and the VLAN table surviving.
#include "hw/virtio/net/virtio_net_migration.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/byte_order.h"
#include "base/event_loop.h"
#include "hw/pci/test_fakes.h"
#include "hw/virtio/net/virtio_net.h"
#include "hw/virtio/net/virtio_net_analyze.h"
#include "hw/virtio/test_driver.h"
#include "net/test_backend.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"
#include "spec/virtio_net.h"
#include "spec/virtio_pci.h"

namespace ferry::virtio::net::migration_test {

namespace vp = ::ferry::spec::virtio_pci;
namespace vn = ::ferry::spec::virtio_net;
using ::ferry::virtio::testing::Buf;
using ::ferry::virtio::testing::SplitDriver;

constexpr uint64_t kRamSize = 4 << 20;
constexpr uint64_t kRxBase = 0x10000;
constexpr uint64_t kTxBase = 0x30000;
constexpr uint64_t kCtrlBase = 0x50000;
constexpr uint64_t kBuffers = 0x100000;
constexpr uint64_t kBaseFeatures = vn::bit(vn::kFMac) | vn::bit(vn::kFStatus) |
                                   vn::bit(vn::kFCtrlVq) | vn::bit(vn::kFCtrlRx) |
                                   vn::bit(vn::kFCtrlVlan) | vn::bit(vn::kFCtrlRxExtra) |
                                   vn::bit(vn::kFMrgRxbuf) |
                                   vp::feature_bit(vp::kFeatureVersion1);

using ::ferry::net::testing::FakeBackend;

// One side of a migration: RAM, a PCI bus, a backend and the NIC.
struct Side {
  Side() {
    auto block = memory::RamBlock::anonymous("pc.ram", kRamSize);
    EXPECT_TRUE(block.ok());
    EXPECT_TRUE(ram.add_ram(0, std::move(*block)).ok());
  }
  void plug(uint64_t extra_properties = 0, uint32_t backend_queues = 1, int vectors = -1) {
    VirtioNetOptions options;
    options.property_features |= extra_properties;
    auto device = VirtioNet::create(options, &backend, backend_queues);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    net = device->get();
    auto pci = VirtioPci::create(std::move(*device),
                                 {.type_name = "virtio-net-pci", .vectors = vectors});
    ASSERT_TRUE(pci.ok()) << pci.status().to_string();
    auto added = machine.bus.add(std::move(*pci), "1.0");
    ASSERT_TRUE(added.ok()) << added.status().to_string();
    vpci = static_cast<VirtioPci*>(*added);
    vpci->attach_dma(ram);
  }
  memory::AddressSpace ram;
  pci::test::Machine machine;
  FakeBackend backend;
  VirtioNet* net = nullptr;
  VirtioPci* vpci = nullptr;
};

class VirtioNetMigrationTest : public ::testing::Test {
 protected:
  void set_common(uint32_t reg, uint64_t value, unsigned size) {
    src.vpci->bar_handler(VirtioPci::kModernBar).write(VirtioPci::kCommonOffset + reg, value, size);
  }
  uint64_t common(uint32_t reg, unsigned size) {
    return src.vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kCommonOffset + reg, size);
  }
  void kick(uint16_t queue) {
    src.vpci->bar_handler(VirtioPci::kModernBar)
        .write(VirtioPci::kNotifyOffset + queue * VirtioPci::kNotifyMultiplier, queue, 2);
  }
  void setup_queue(uint16_t q, const SplitDriver& d) {
    set_common(vp::kCommonQueueSelect, q, 2);
    set_common(vp::kCommonQueueSize, d.layout().size, 2);
    set_common(vp::kCommonQueueDescLo, d.desc_addr(), 8);
    set_common(vp::kCommonQueueDriverLo, d.avail_addr(), 8);
    set_common(vp::kCommonQueueDeviceLo, d.used_addr(), 8);
    set_common(vp::kCommonQueueEnable, 1, 2);
  }
  void bring_up(uint64_t features = kBaseFeatures, uint16_t pairs = 1) {
    src.plug(pairs > 1 ? vn::bit(vn::kFMq) : 0, pairs);
    ctrl_index = static_cast<uint16_t>(2 * pairs);
    src.vpci->config_write(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster, 2);
    const uint8_t base = vp::kStatusAcknowledge | vp::kStatusDriver;
    set_common(vp::kCommonStatus, base, 1);
    for (uint32_t half = 0; half < 2; ++half) {
      set_common(vp::kCommonGfSelect, half, 4);
      set_common(vp::kCommonGf, static_cast<uint32_t>(features >> (32 * half)), 4);
    }
    set_common(vp::kCommonStatus, base | vp::kStatusFeaturesOk, 1);
    ASSERT_EQ(common(vp::kCommonStatus, 1), base | vp::kStatusFeaturesOk);
    setup_queue(0, rx);
    setup_queue(1, tx);
    setup_queue(ctrl_index, ctrl);
    set_common(vp::kCommonStatus, base | vp::kStatusFeaturesOk | vp::kStatusDriverOk, 1);
  }
  void post_rx(uint16_t slot) {
    const Buf b{kBuffers + slot * 0x1000ull, 2048, true};
    rx.add(std::span(&b, 1), slot);
    kick(0);
  }
  uint8_t ctrl_request(uint8_t cls, uint8_t cmd, std::span<const uint8_t> data) {
    const uint64_t hdr = 0x300000 + ctrl_slot * 0x100ull;
    const uint8_t head[2] = {cls, cmd};
    EXPECT_TRUE(src.ram.write(hdr, head).ok());
    EXPECT_TRUE(src.ram.write(hdr + 0x10, data).ok());
    std::vector<Buf> bufs{{hdr, 2}};
    if (!data.empty()) bufs.push_back({hdr + 0x10, static_cast<uint32_t>(data.size())});
    bufs.push_back({hdr + 0x80, 1, true});
    ctrl.add(bufs, ctrl_slot);
    ctrl_slot = static_cast<uint16_t>(ctrl_slot + bufs.size());
    kick(ctrl_index);
    return static_cast<uint8_t>(*src.ram.load(hdr + 0x80, 1));
  }
  std::vector<uint8_t> frame(uint8_t fill) {
    std::vector<uint8_t> f(64, fill);
    const MacAddress dst{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    std::copy(dst.begin(), dst.end(), f.begin());
    f[12] = 0x08;
    f[13] = 0x00;
    return f;
  }

  static std::vector<uint8_t> save(Side& side) {
    side.net->set_running(false);
    ByteWriter w;
    Status st = kVirtioNetState.save(*side.vpci, w);
    EXPECT_TRUE(st.ok()) << st.to_string();
    return w.to_vector();
  }
  // What the destination does: guest RAM first (the RAM section precedes devices), then
  // the section, which must be consumed exactly.
  Status load(Side& side, const std::vector<uint8_t>& bytes) {
    std::vector<uint8_t> memory(kRamSize);
    EXPECT_TRUE(src.ram.read(0, memory).ok());
    EXPECT_TRUE(side.ram.write(0, memory).ok());
    if (patch_ram) patch_ram(side);
    ByteReader r(bytes);
    FERRY_RETURN_IF_ERROR(kVirtioNetState.load(*side.vpci, r, 11));
    if (r.remaining() != 0) return Error(ErrorCode::kCorrupt, "{} bytes left over", r.remaining());
    return {};
  }
  // Loads a copy of `bytes` with `patch` applied into a fresh destination; the error text.
  std::string refusal(const std::vector<uint8_t>& bytes,
                      const std::function<void(std::vector<uint8_t>&)>& patch,
                      uint64_t dst_properties = 0, uint32_t dst_queues = 1,
                      int dst_vectors = -1) {
    std::vector<uint8_t> copy = bytes;
    patch(copy);
    auto dst = std::make_unique<Side>();
    dst->plug(dst_properties, dst_queues, dst_vectors);
    Status st = load(*dst, copy);
    return st.ok() ? std::string("loaded") : st.to_string();
  }
  static void put_be16(std::vector<uint8_t>& b, size_t at, uint16_t v) { store_be<uint16_t>(b.data() + at, v); }
  static void put_be32(std::vector<uint8_t>& b, size_t at, uint32_t v) { store_be<uint32_t>(b.data() + at, v); }
  static size_t find(const std::vector<uint8_t>& bytes, std::string_view what) {
    return std::string(bytes.begin(), bytes.end()).find(what);
  }

  Side src;
  SplitDriver rx{src.ram, 256, kRxBase};
  SplitDriver tx{src.ram, 256, kTxBase};
  SplitDriver ctrl{src.ram, 64, kCtrlBase};
  uint16_t ctrl_slot = 0;
  uint16_t ctrl_index = 2;
  std::function<void(Side&)> patch_ram;
};

// Offsets in the body of an idle default NIC (1 pair, split rings, 4 MSI-X vectors).
constexpr size_t kConfigVectorAt = 341;
constexpr size_t kStatusAt = 343;
constexpr size_t kConfigLenAt = 351;
constexpr size_t kQueueCountAt = 363;
constexpr size_t kQueue0At = 367;
constexpr size_t kMacAt = 415;
constexpr size_t kMergeableAt = 425;
constexpr size_t kNetStatusAt = 429;
constexpr size_t kPromiscAt = 431;
constexpr size_t kVlansAt = 437;
constexpr size_t kVnetHdrAt = 949;
constexpr size_t k64bitAt = 960;
constexpr size_t kVirtqueuesAt = 995;
constexpr size_t kExtraStateAt = 17402;

TEST_F(VirtioNetMigrationTest, IdleDefaultNicHasQemusSizeAndOffsets) {
  Status checked = kVirtioNetState.check();
  ASSERT_TRUE(checked.ok()) << checked.to_string();
  src.plug();
  const std::vector<uint8_t> b = save(src);
  EXPECT_EQ(b.size(), 46143u);  // QEMU 7.2.22's body for an idle virtio-net-pci
  EXPECT_EQ(load_be<uint32_t>(b.data()), 2u);  // PCIDevice version
  EXPECT_EQ(load_be<uint16_t>(b.data() + 0), 0u);
  EXPECT_EQ(load_be<uint16_t>(b.data() + kConfigVectorAt), vp::kNoVector);
  EXPECT_EQ(b[kStatusAt], 0);
  EXPECT_EQ(load_be<uint32_t>(b.data() + kConfigLenAt), 8u);
  EXPECT_EQ(load_be<uint32_t>(b.data() + kQueueCountAt), 3u);
  EXPECT_EQ(load_be<uint32_t>(b.data() + kQueue0At), 256u);            // rx num
  EXPECT_EQ(load_be<uint32_t>(b.data() + kQueue0At + 32), 64u);        // ctrl num
  EXPECT_EQ(load_be<uint16_t>(b.data() + kQueue0At + 14), vp::kNoVector);
  EXPECT_EQ(std::vector<uint8_t>(b.begin() + kMacAt, b.begin() + kMacAt + 6),
            (std::vector<uint8_t>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
  EXPECT_EQ(load_be<uint16_t>(b.data() + kNetStatusAt), vn::kStatusLinkUp);
  EXPECT_EQ(b[kPromiscAt], 1);
  EXPECT_EQ(b[kVlansAt], 0xff);  // every VLAN passes until CTRL_VLAN is negotiated
  EXPECT_EQ(load_be<uint32_t>(b.data() + kVnetHdrAt), 0u);
  EXPECT_EQ(find(b, "virtio/64bit_features"), k64bitAt + 2);
  EXPECT_EQ(find(b, "virtio/virtqueues"), kVirtqueuesAt + 2);
  EXPECT_EQ(find(b, "virtio/extra_state"), kExtraStateAt + 2);
  EXPECT_EQ(find(b, "virtio/started"), std::string::npos);
  EXPECT_EQ(find(b, "virtio/packed_virtqueues"), std::string::npos);

  // Named fields in Ferry's vmdesc, not one blob.
  ByteWriter w;
  vmstate::Json vmdesc = vmstate::Json::object();
  ASSERT_TRUE(kVirtioNetState.save(*src.vpci, w, vmdesc).ok());
  EXPECT_EQ(w.to_vector(), b);
  const std::string json = vmdesc.dump();
  for (const char* name : {"\"virtio\"", "\"config_vector\"", "\"num_queues\"",
                           "\"last_avail_idx\"", "\"virtio-net-device\"", "\"mergeable_rx_bufs\"",
                           "\"vlans\"", "\"virtio/virtqueues\"", "\"virtio_pci/modern_state\""})
    EXPECT_NE(json.find(name), std::string::npos) << name;
}

TEST_F(VirtioNetMigrationTest, SaveRefusesARunningDevice) {
  src.plug();
  ByteWriter w;
  Status st = kVirtioNetState.save(*src.vpci, w);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("saved while the VM runs"), std::string::npos) << st.to_string();
}

TEST_F(VirtioNetMigrationTest, RoundTripWithTrafficRestoresRingsAndFilters) {
  bring_up();
  // The guest reads its configuration (QEMU migrates the bytes of that last read).
  for (uint32_t i = 0; i < 8; ++i)
    (void)src.vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kDeviceCfgOffset + i, 1);
  for (uint16_t slot = 0; slot < 4; ++slot) post_rx(slot);
  src.backend.offer(frame(0x11));
  ASSERT_EQ(rx.used_idx(), 1);
  const uint8_t off[1] = {0};
  ASSERT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxPromisc, off), vn::kCtrlOk);
  uint8_t vid[2];
  store_le<uint16_t>(vid, 100);
  ASSERT_EQ(ctrl_request(vn::kCtrlVlan, vn::kCtrlVlanAdd, vid), vn::kCtrlOk);
  const std::vector<uint8_t> bytes = save(src);
  EXPECT_GT(bytes.size(), 46143u);  // + virtio/started
  EXPECT_EQ(load_be<uint32_t>(bytes.data() + kConfigLenAt + 4), 0x52540012u);  // config: MAC

  Side dst;
  dst.plug();
  Status st = load(dst, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  dst.net->set_running(false);
  EXPECT_EQ(save(dst), bytes);
  EXPECT_EQ(dst.vpci->status(), src.vpci->status());
  EXPECT_EQ(dst.net->queue(0).last_avail_idx(), 1);
  EXPECT_EQ(dst.net->state().rx.promisc, 0);
  // The VLAN table survives (QEMU 7.2 clears it when it applies the loaded features).
  EXPECT_TRUE(dst.net->state().rx.vlan_allowed(100));
  EXPECT_FALSE(dst.net->state().rx.vlan_allowed(101));
  EXPECT_EQ(dst.net->state().rx.vlans, src.net->state().rx.vlans);

  // The destination runs: the next frame lands in the next buffer the source's driver posted.
  dst.net->set_running(true);
  dst.backend.offer(frame(0x22));
  SplitDriver dst_rx{dst.ram, 256, kRxBase};
  EXPECT_EQ(dst_rx.used_idx(), 2);
  EXPECT_EQ(dst_rx.used_elem(1).first, 1u);
  std::vector<uint8_t> got(64);
  ASSERT_TRUE(dst.ram.read(kBuffers + 0x1000 + 12, got).ok());
  EXPECT_EQ(got, frame(0x22));
}

TEST_F(VirtioNetMigrationTest, EveryLoadRuleRefusesAPatchedIdleStream) {
  src.plug();
  const std::vector<uint8_t> b = save(src);
  auto expect = [&](std::function<void(std::vector<uint8_t>&)> patch, std::string_view message) {
    const std::string got = refusal(b, patch);
    EXPECT_NE(got.find(message), std::string::npos) << "expected '" << message << "', got " << got;
  };
  expect([](auto& s) { put_be32(s, kQueueCountAt, 0x401); }, "Invalid number of virtqueues: 0x401");
  expect([](auto& s) { put_be16(s, kQueue0At + 12, 5); },
         "VQ 0 address 0x0 inconsistent with Host index 0x5");
  expect([](auto& s) { put_be32(s, kQueue0At, 512); }, "VQ 0 size 0x200 is not within 1..0x100");
  expect([](auto& s) { put_be16(s, kQueue0At + 14, 9); }, "vector 9 is not one of the device's 4");
  expect([](auto& s) { put_be16(s, kConfigVectorAt, 7); }, "vector 7 is not one of the device's 4");
  expect([](auto& s) { put_be32(s, kVnetHdrAt, 1); }, "virtio-net: saved image requires vnet_hdr=on");
  expect([](auto& s) { s[kVnetHdrAt + 4 + 6] = 1; }, "virtio-net: saved image requires TUN_F_UFO support");
  expect([](auto& s) { put_be16(s, kNetStatusAt, 5); }, "0x5 has bits other than LINK_UP and ANNOUNCE");
  expect([](auto& s) { put_be32(s, kMergeableAt, 1); },
         "mergeable_rx_bufs: found 1, but the driver did not negotiate MRG_RXBUF");
  // CSUM (bit 0) is not offered without a vnet header.
  expect([](auto& s) { s[k64bitAt + 27 + 7] |= 1; }, "Features 0x1 unsupported. Allowed features: 0x");
  expect([](auto& s) { s[kStatusAt] = 0x10; }, "status has bits outside");
  expect([](auto& s) { put_be32(s, kMacAt - 415 + 433, 65); }, "count 65 is outside the declared maximum 64");
}

TEST_F(VirtioNetMigrationTest, RingChecksAgainstGuestRamFailTheLoad) {
  bring_up();
  for (uint16_t slot = 0; slot < 2; ++slot) post_rx(slot);
  src.backend.offer(frame(0x11));
  const std::vector<uint8_t> bytes = save(src);
  // The guest's avail index far ahead of the device's: QEMU breaks the device and runs it;
  // Ferry fails the load, so the source keeps running.
  patch_ram = [](Side& side) {
    SplitDriver r{side.ram, 256, kRxBase};
    r.set_avail_idx(1 + 300);
  };
  std::string got = refusal(bytes, [](auto&) {});
  EXPECT_NE(got.find("VQ 0 size 0x100 Guest index 0x12d inconsistent with Host index 0x1: delta 0x12c"),
            std::string::npos) << got;
  // The used index behind by more than the ring holds.
  patch_ram = [](Side& side) {
    SplitDriver r{side.ram, 256, kRxBase};
    r.set_used_idx(static_cast<uint16_t>(1 - 300));
  };
  got = refusal(bytes, [](auto&) {});
  EXPECT_NE(got.find("VQ 0 size 0x100 < last_avail_idx 0x1 - used_idx 0xfed5"), std::string::npos)
      << got;
}

TEST_F(VirtioNetMigrationTest, QueuePairAndRssRules) {
  // Two pairs on the source (mq=on, a 2-queue backend).
  src.plug(vn::bit(vn::kFMq), 2);
  src.net->mutable_state().rss.enabled = true;
  src.net->mutable_state().rss.indirections_len = 3;  // not a power of two
  std::vector<uint8_t> b = save(src);
  // max/curr pairs follow has_ufo, moved by two more MSI-X entries (6 vectors: 2 x 16
  // bytes), MQ's 2 bytes of config (config_len 10) and two more queue records (2 x 16).
  const size_t ufo_at = 959 + 32 + 2 + 32;
  ASSERT_EQ(load_be<uint16_t>(b.data() + ufo_at + 1), 2u) << "max_queue_pairs";
  EXPECT_NE(refusal(b, [](auto&) {}, vn::bit(vn::kFMq), 2)
                .find("virtio-net: RSS indirections_len 3 is not a power of two from 1 to 128"),
            std::string::npos);
  // A destination with 4 pairs (and the source's 6 vectors, so PCI config matches).
  const std::string pairs = refusal(b, [](auto&) {}, vn::bit(vn::kFMq), 4, 6);
  EXPECT_NE(pairs.find("max_queue_pairs: 4 != 2 (this device has 4 queue pairs, the stream 2)"),
            std::string::npos) << pairs;

  src.net->mutable_state().rss.indirections_len = 4;
  src.net->mutable_state().rss.default_queue = 2;
  b = save(src);
  EXPECT_NE(refusal(b, [](auto&) {}, vn::bit(vn::kFMq), 2)
                .find("rss/default_queue: 2 is not below the 2 queue pairs"),
            std::string::npos);
  src.net->mutable_state().rss.default_queue = 0;
  src.net->mutable_state().rss.indirections_table = {0, 1, 7, 0};
  b = save(src);
  EXPECT_NE(refusal(b, [](auto&) {}, vn::bit(vn::kFMq), 2)
                .find("rss/indirections_table[2]: 7 is not below the 2 queue pairs"),
            std::string::npos);
  src.net->mutable_state().rss = RssState{};
  b = save(src);
  EXPECT_EQ(refusal(b, [](auto&) {}, vn::bit(vn::kFMq), 2), "loaded");
  EXPECT_NE(refusal(b, [&](auto& s) { put_be16(s, ufo_at + 3, 3); }, vn::bit(vn::kFMq), 2)
                .find("virtio-net: curr_queue_pairs 3 > max_queue_pairs 2"),
            std::string::npos);
}

// mq=on with two pairs and the driver switching to both: curr_queue_pairs and the second
// pair's tx_waiting travel, and the destination has both pairs active.
TEST_F(VirtioNetMigrationTest, MultiqueueRoundTripKeepsTheCurrentPairs) {
  bring_up(kBaseFeatures | vn::bit(vn::kFMq), 2);
  uint8_t pairs[2];
  store_le<uint16_t>(pairs, 2);
  ASSERT_EQ(ctrl_request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, pairs), vn::kCtrlOk);
  ASSERT_EQ(src.net->state().queue_pairs.curr, 2);
  const std::vector<uint8_t> bytes = save(src);
  Side dst;
  dst.plug(vn::bit(vn::kFMq), 2);
  Status st = load(dst, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(dst.net->state().queue_pairs.curr, 2);
  EXPECT_TRUE(dst.net->state().queue_pairs.multiqueue);
  dst.net->set_running(false);
  EXPECT_EQ(save(dst), bytes);
  EXPECT_TRUE(dst.net->queue(4).ready());  // ctrl, enabled as the driver left it
}

// A link set down (QMP set_link) stays down: the status bit travels and the destination's
// link follows it.
TEST_F(VirtioNetMigrationTest, LinkDownSurvivesMigration) {
  bring_up();
  src.net->set_link(false);
  const std::vector<uint8_t> bytes = save(src);
  EXPECT_EQ(load_be<uint16_t>(bytes.data() + kNetStatusAt), 0u);
  Side dst;
  dst.plug();
  Status st = load(dst, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(dst.net->state().status & vn::kStatusLinkUp, 0);
  std::array<uint8_t, 8> config{};
  dst.net->get_config(config);
  EXPECT_EQ(config[6], 0);  // the guest reads the link down
}

// GUEST_ANNOUNCE and CTRL_VQ negotiated: the load arms a guest announce, sent when the
// destination runs (ANNOUNCE in the status, a configuration interrupt), as QEMU's post_load
// arms its timer.
// The loaded features are what the announce after migration looks at: a destination told
// the migration is done (the machine does so for every NIC) asks the guest, once it runs.
TEST_F(VirtioNetMigrationTest, ALoadedDeviceAsksTheGuestToAnnounceWhenItRuns) {
  bring_up(kBaseFeatures | vn::bit(vn::kFGuestAnnounce));
  const std::vector<uint8_t> bytes = save(src);
  Side dst;
  dst.plug();
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  VirtualClock clock;
  dst.net->attach_timers(**loop, clock);
  dst.net->set_running(false);  // a destination's devices start quiesced
  Status st = load(dst, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  dst.net->incoming_migration_done({});
  (*loop)->advance_clock(clock, 0);
  EXPECT_EQ(dst.net->state().status & vn::kStatusAnnounce, 0) << "announced before running";
  dst.net->set_running(true);
  EXPECT_NE(dst.net->state().status & vn::kStatusAnnounce, 0);
  EXPECT_NE(dst.vpci->isr() & vp::kIsrConfig, 0);
}

// Hostile bytes: a stream with traffic state, cut at many offsets and with single bytes
// flipped in its variable part (everything before the 1024-entry arrays), loads or fails
// cleanly, never crashes (the sanitizer presets run this too); a cut stream never loads.
TEST_F(VirtioNetMigrationTest, CutAndFlippedStreamsFailCleanly) {
  bring_up(kBaseFeatures | vn::bit(vn::kFGuestAnnounce));
  for (uint16_t slot = 0; slot < 3; ++slot) post_rx(slot);
  src.backend.offer(frame(0x44));
  uint8_t vid[2];
  store_le<uint16_t>(vid, 7);
  ASSERT_EQ(ctrl_request(vn::kCtrlVlan, vn::kCtrlVlanAdd, vid), vn::kCtrlOk);
  const std::vector<uint8_t> bytes = save(src);
  for (size_t cut = 0; cut < bytes.size(); cut += 1499) {
    const std::string got =
        refusal(bytes, [cut](std::vector<uint8_t>& b) { b.resize(cut); });
    EXPECT_NE(got, "loaded") << "cut at " << cut;
  }
  uint32_t x = 12345;
  int loaded = 0;
  for (int i = 0; i < 150; ++i) {
    x = x * 1103515245u + 12345u;
    const size_t at = (x >> 8) % 1100;
    const uint8_t mask = static_cast<uint8_t>(1u << ((x >> 4) % 8));
    const std::string got = refusal(bytes, [at, mask](std::vector<uint8_t>& b) { b[at] ^= mask; });
    if (got == "loaded") ++loaded;
    else EXPECT_FALSE(got.empty());
  }
  // Some flips land in bytes any value of which is valid (MAC, promisc, MSI-X data).
  EXPECT_GT(loaded, 0);
  EXPECT_LT(loaded, 150);
}

// What `ferry analyze` uses for QEMU's opaque "virtio" field: the layout read from the
// bytes alone (no device), every byte accounted for.
TEST_F(VirtioNetMigrationTest, AnalyzeLayoutAccountsForEveryByteWithoutADevice) {
  bring_up();
  post_rx(0);
  src.backend.offer(frame(0x33));
  const std::vector<uint8_t> bytes = save(src);
  auto desc = describe_virtio_net_field(bytes);
  ASSERT_TRUE(desc.ok()) << desc.status().to_string();
  const std::string json = desc->dump();
  for (const char* name : {"\"vmsd_name\":\"virtio\"", "\"parent_obj\"", "\"msix\"",
                           "\"virtio-net-device\"", "\"virtio/started\"",
                           "\"virtio/extra_state\"", "\"last_avail_idx\""})
    EXPECT_NE(json.find(name), std::string::npos) << name;
  // Sizes in the layout add up to the field.
  uint64_t total = 0;
  for (const auto& f : (*desc)["fields"]) total += f["size"].get<uint64_t>();
  EXPECT_LT(total, bytes.size());  // subsections follow the fields

  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  auto extra = describe_virtio_net_field(longer);
  ASSERT_FALSE(extra.ok());
  EXPECT_NE(extra.status().to_string().find("1 bytes follow the last subsection"), std::string::npos)
      << extra.status().to_string();
  auto cut = describe_virtio_net_field(std::span(bytes).first(bytes.size() - 3));
  EXPECT_FALSE(cut.ok());

  // A multiqueue NIC: the pairs come from the queue count.
  Side mq;
  mq.plug(vn::bit(vn::kFMq), 2);
  auto mq_desc = describe_virtio_net_field(save(mq));
  ASSERT_TRUE(mq_desc.ok()) << mq_desc.status().to_string();
  EXPECT_NE(mq_desc->dump().find("\"max_queue_pairs\""), std::string::npos);
}

}  // namespace ferry::virtio::net::migration_test
