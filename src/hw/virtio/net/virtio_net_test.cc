// virtio-net behind the virtio-pci transport, driven as a guest driver would (test_driver.h
// rings in test RAM) against a fake backend that records what the NIC sends and offers
// frames with the backpressure rules of net_backend.h.
#include "hw/virtio/net/virtio_net.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <vector>

#include "hw/pci/test_fakes.h"
#include "hw/virtio/test_driver.h"
#include "net/test_backend.h"
#include "hw/virtio/virtio_pci.h"
#include "memory/address_space.h"
#include "net/announce.h"
#include "memory/ram_block.h"
#include "spec/virtio_net.h"
#include "spec/virtio_pci.h"

namespace ferry::virtio::net {
namespace {

namespace vp = ::ferry::spec::virtio_pci;
namespace vn = ::ferry::spec::virtio_net;
using testing::Buf;
using testing::SplitDriver;

using ::ferry::net::testing::FakeBackend;

class Events final : public VirtioNetEvents {
 public:
  void rx_filter_changed() override { ++changes; }
  int changes = 0;
};

constexpr uint64_t kRxBase = 0x10000;
constexpr uint64_t kTxBase = 0x30000;
constexpr uint64_t kCtrlBase = 0x50000;
constexpr uint64_t kBuffers = 0x100000;

constexpr uint64_t kBaseFeatures = vn::bit(vn::kFMac) | vn::bit(vn::kFStatus) |
                                   vn::bit(vn::kFCtrlVq) | vn::bit(vn::kFCtrlRx) |
                                   vn::bit(vn::kFCtrlVlan) | vn::bit(vn::kFCtrlRxExtra) |
                                   vp::feature_bit(vp::kFeatureVersion1);
constexpr uint64_t kMergeable = vn::bit(vn::kFMrgRxbuf);

std::vector<uint8_t> frame_to(const MacAddress& dst, size_t size, uint8_t fill) {
  std::vector<uint8_t> frame(size, fill);
  std::copy(dst.begin(), dst.end(), frame.begin());
  const MacAddress src{0x02, 0, 0, 0, 0, 0x99};
  std::copy(src.begin(), src.end(), frame.begin() + 6);
  frame[12] = 0x08;
  frame[13] = 0x00;
  return frame;
}

class VirtioNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto block = memory::RamBlock::anonymous("pc.ram", 4 << 20);
    ASSERT_TRUE(block.ok());
    ASSERT_TRUE(ram.add_ram(0, std::move(*block)).ok());
  }

  void plug() {
    auto device = VirtioNet::create({}, &backend, 1, &events);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    net = device->get();
    auto pci = VirtioPci::create(std::move(*device), {.type_name = "virtio-net-pci"});
    ASSERT_TRUE(pci.ok()) << pci.status().to_string();
    auto added = machine.bus.add(std::move(*pci), "1.0");
    ASSERT_TRUE(added.ok()) << added.status().to_string();
    vpci = static_cast<VirtioPci*>(*added);
    vpci->attach_dma(ram);
    vpci->config_write(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster, 2);
  }

  uint64_t common(uint32_t reg, unsigned size) {
    return vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kCommonOffset + reg, size);
  }
  void set_common(uint32_t reg, uint64_t value, unsigned size) {
    vpci->bar_handler(VirtioPci::kModernBar).write(VirtioPci::kCommonOffset + reg, value, size);
  }
  void kick(uint16_t queue) {
    vpci->bar_handler(VirtioPci::kModernBar)
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
  // The whole modern handshake with `features`, queues RX0/TX0/ctrl, DRIVER_OK.
  void bring_up(uint64_t features) {
    plug();
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
    setup_queue(2, ctrl);
    set_common(vp::kCommonStatus, base | vp::kStatusFeaturesOk | vp::kStatusDriverOk, 1);
  }
  std::vector<uint8_t> read(uint64_t addr, size_t len) {
    std::vector<uint8_t> out(len);
    for (size_t i = 0; i < len; ++i) out[i] = static_cast<uint8_t>(*ram.load(addr + i, 1));
    return out;
  }
  void write(uint64_t addr, std::span<const uint8_t> bytes) {
    for (size_t i = 0; i < bytes.size(); ++i) ASSERT_TRUE(ram.store(addr + i, bytes[i], 1).ok());
  }
  // One RX buffer of `len` bytes in descriptor slot `slot`.
  void post_rx(uint16_t slot, uint32_t len, bool notify = true) {
    const Buf b{kBuffers + slot * 0x1000ull, len, true};
    rx.add(std::span(&b, 1), slot);
    if (notify) kick(0);
  }
  // A control request: out {class, cmd, data}, in 1-byte ack. Returns the ack.
  uint8_t ctrl_request(uint8_t cls, uint8_t cmd, std::span<const uint8_t> data) {
    const uint64_t hdr = 0x300000 + ctrl_slot * 0x100ull;
    const uint8_t head[2] = {cls, cmd};
    write(hdr, head);
    write(hdr + 0x10, data);
    write(hdr + 0x80, std::vector<uint8_t>{0xee});
    std::vector<Buf> bufs{{hdr, 2}};
    if (!data.empty()) bufs.push_back({hdr + 0x10, static_cast<uint32_t>(data.size())});
    bufs.push_back({hdr + 0x80, 1, true});
    ctrl.add(bufs, ctrl_slot);
    ctrl_slot = static_cast<uint16_t>(ctrl_slot + bufs.size());
    kick(2);
    return read(hdr + 0x80, 1)[0];
  }

  memory::AddressSpace ram;
  pci::test::Machine machine;
  FakeBackend backend;
  Events events;
  VirtioNet* net = nullptr;
  VirtioPci* vpci = nullptr;
  SplitDriver rx{ram, 256, kRxBase};
  SplitDriver tx{ram, 256, kTxBase};
  SplitDriver ctrl{ram, 64, kCtrlBase};
  uint16_t ctrl_slot = 0;
  const MacAddress mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
};

TEST_F(VirtioNetTest, OffersQemusQueuesConfigAndFeaturesForAStreamBackend) {
  plug();
  EXPECT_EQ(vpci->num_queues(), 3);
  EXPECT_EQ(net->queue_max_size(0), 256);
  EXPECT_EQ(net->queue_max_size(1), 256);
  EXPECT_EQ(net->queue_max_size(2), 64);
  EXPECT_EQ(vpci->host_features() & ~VirtioPci::kLegacyOnlyFeatures & ~net->legacy_only_features(),
            0x0000010130bf8024ull);
  std::array<uint8_t, 8> config{};
  net->get_config(config);
  EXPECT_EQ(config, (std::array<uint8_t, 8>{0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0}));
}

TEST_F(VirtioNetTest, TransmitStripsTheHeaderAndUsesLengthZero) {
  bring_up(kBaseFeatures | kMergeable);
  std::vector<uint8_t> packet(12, 0);
  const auto frame = frame_to(mac, 60, 0xab);
  packet.insert(packet.end(), frame.begin(), frame.end());
  write(kBuffers, packet);
  const Buf b{kBuffers, static_cast<uint32_t>(packet.size())};
  tx.add(std::span(&b, 1), 0);
  kick(1);
  ASSERT_EQ(backend.sent.size(), 1u);
  EXPECT_EQ(backend.sent[0], frame);
  EXPECT_EQ(tx.used_idx(), 1);
  EXPECT_EQ(tx.used_elem(0), (std::pair<uint32_t, uint32_t>{0, 0}));
}

TEST_F(VirtioNetTest, TransmitHeaderSplitAcrossDescriptorsIsStrippedToo) {
  bring_up(kBaseFeatures);
  const auto frame = frame_to(mac, 64, 0x11);
  std::vector<uint8_t> first(8, 0);
  std::vector<uint8_t> second(4, 0);
  second.insert(second.end(), frame.begin(), frame.end());
  write(kBuffers, first);
  write(kBuffers + 0x1000, second);
  const Buf bufs[] = {{kBuffers, 8}, {kBuffers + 0x1000, static_cast<uint32_t>(second.size())}};
  tx.add(bufs, 0);
  kick(1);
  ASSERT_EQ(backend.sent.size(), 1u);
  EXPECT_EQ(backend.sent[0], frame);
}

TEST_F(VirtioNetTest, BusyBackendKeepsTheChainUntilItIsReady) {
  bring_up(kBaseFeatures);
  backend.busy = true;
  std::vector<uint8_t> packet(12, 0);
  const auto frame = frame_to(mac, 60, 0x22);
  packet.insert(packet.end(), frame.begin(), frame.end());
  write(kBuffers, packet);
  const Buf b{kBuffers, static_cast<uint32_t>(packet.size())};
  tx.add(std::span(&b, 1), 0);
  kick(1);
  EXPECT_TRUE(backend.sent.empty());
  EXPECT_EQ(tx.used_idx(), 0);
  backend.unblock();
  ASSERT_EQ(backend.sent.size(), 1u);
  EXPECT_EQ(tx.used_idx(), 1);
}

TEST_F(VirtioNetTest, ReceiveWithoutMergeableBuffersWritesHeaderAndFrame) {
  bring_up(kBaseFeatures);
  post_rx(0, 2048);
  const auto frame = frame_to(mac, 64, 0x5a);
  backend.offer(frame);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used_elem(0), (std::pair<uint32_t, uint32_t>{0, 76}));
  EXPECT_EQ(read(kBuffers, 12), std::vector<uint8_t>(12, 0));  // num_buffers only with MRG_RXBUF
  EXPECT_EQ(read(kBuffers + 12, 64), frame);
}

TEST_F(VirtioNetTest, ReceiveWithMergeableBuffersSpansChainsAndCountsThem) {
  bring_up(kBaseFeatures | kMergeable);
  post_rx(0, 40);
  post_rx(1, 40);
  post_rx(2, 40);
  const auto frame = frame_to(mac, 100, 0x33);  // 112 bytes with the header: 3 chains
  backend.offer(frame);
  ASSERT_EQ(rx.used_idx(), 3);
  EXPECT_EQ(rx.used_elem(0).second, 40u);
  EXPECT_EQ(rx.used_elem(1).second, 40u);
  EXPECT_EQ(rx.used_elem(2).second, 32u);
  EXPECT_EQ(read(kBuffers, 12),
            (std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0}));
  std::vector<uint8_t> got = read(kBuffers + 12, 28);
  auto more = read(kBuffers + 0x1000, 40);
  got.insert(got.end(), more.begin(), more.end());
  more = read(kBuffers + 0x2000, 32);
  got.insert(got.end(), more.begin(), more.end());
  EXPECT_EQ(got, frame);
}

TEST_F(VirtioNetTest, ReceiveWaitsWithoutBuffersAndFlowsWhenTheyArrive) {
  bring_up(kBaseFeatures | kMergeable);
  const auto frame = frame_to(mac, 64, 0x44);
  backend.offer(frame);
  EXPECT_EQ(backend.waiting.size(), 1u) << "the frame stays with the backend";
  post_rx(0, 2048);
  EXPECT_TRUE(backend.waiting.empty());
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(read(kBuffers + 12, 64), frame);
}

TEST_F(VirtioNetTest, AFrameLargerThanThePostedChainsWaitsInTheDevice) {
  bring_up(kBaseFeatures | kMergeable);
  post_rx(0, 40);
  const auto frame = frame_to(mac, 100, 0x66);
  backend.offer(frame);
  EXPECT_TRUE(net->frame_waiting());
  EXPECT_EQ(rx.used_idx(), 0) << "the chain went back to the ring";
  backend.offer(frame_to(mac, 60, 0x67));
  EXPECT_EQ(backend.waiting.size(), 1u) << "no second frame while one waits";
  post_rx(1, 40);
  post_rx(2, 40);
  EXPECT_FALSE(net->frame_waiting());
  EXPECT_EQ(rx.used_idx(), 3);
}

TEST_F(VirtioNetTest, WithoutMergeableBuffersAFrameTooBigForTheChainIsDropped) {
  bring_up(kBaseFeatures);
  post_rx(0, 40);
  backend.offer(frame_to(mac, 100, 0x12));
  EXPECT_TRUE(backend.waiting.empty());
  EXPECT_FALSE(net->frame_waiting()) << "QEMU 7.2 drops it rather than wait";
  EXPECT_EQ(rx.used_idx(), 0) << "the chain stays available";
  const auto small = frame_to(mac, 28, 0x13);
  backend.offer(small);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used_elem(0).second, 40u);
  EXPECT_EQ(read(kBuffers + 12, 28), small);
}

TEST_F(VirtioNetTest, StoppedVmNeitherReceivesNorTransmits) {
  bring_up(kBaseFeatures);
  post_rx(0, 2048);
  net->set_running(false);
  backend.offer(frame_to(mac, 60, 1));
  EXPECT_EQ(backend.waiting.size(), 1u);
  std::vector<uint8_t> packet(12 + 60, 0);
  write(kBuffers + 0x10000, packet);
  const Buf b{kBuffers + 0x10000, static_cast<uint32_t>(packet.size())};
  tx.add(std::span(&b, 1), 0);
  kick(1);
  EXPECT_TRUE(backend.sent.empty());
  net->set_running(true);
  EXPECT_EQ(backend.sent.size(), 1u);
  EXPECT_TRUE(backend.waiting.empty());
  EXPECT_EQ(rx.used_idx(), 1);
}

TEST_F(VirtioNetTest, ControlCommandsAreAckedAndApplyEveryFilterMode) {
  bring_up(kBaseFeatures | kMergeable);
  for (uint16_t slot = 0; slot < 16; ++slot) post_rx(slot, 2048, false);
  kick(0);
  const MacAddress other{0x02, 0, 0, 0, 0, 0x02};
  const MacAddress bcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  auto delivered = [&](const MacAddress& dst) {
    const uint16_t before = rx.used_idx();
    backend.offer(frame_to(dst, 60, 7));
    return rx.used_idx() != before;
  };
  // After reset: promiscuous.
  EXPECT_TRUE(delivered(other));
  const uint8_t off[] = {0};
  const uint8_t on[] = {1};
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxPromisc, off), vn::kCtrlOk);
  EXPECT_EQ(events.changes, 1);
  EXPECT_FALSE(delivered(other)) << "unicast to another address is filtered";
  EXPECT_TRUE(delivered(mac));
  EXPECT_TRUE(delivered(bcast));
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxNobcast, on), vn::kCtrlOk);
  EXPECT_FALSE(delivered(bcast));
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxAlluni, on), vn::kCtrlOk);
  EXPECT_TRUE(delivered(other));
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxNouni, on), vn::kCtrlOk);
  EXPECT_FALSE(delivered(mac));
  EXPECT_EQ(events.changes, 1) << "one event until the filter is queried";
  auto info = net->query_rx_filter("nic0");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ((*info)["name"], "nic0");
  EXPECT_EQ((*info)["unicast"], "none");  // nouni on
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxNouni, off), vn::kCtrlOk);
  EXPECT_EQ(events.changes, 2);
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxAlluni, off), vn::kCtrlOk);
  // MAC table: one unicast entry, no multicast.
  std::vector<uint8_t> table{1, 0, 0, 0};
  table.insert(table.end(), other.begin(), other.end());
  table.insert(table.end(), {0, 0, 0, 0});
  EXPECT_EQ(ctrl_request(vn::kCtrlMac, vn::kCtrlMacTableSet, table), vn::kCtrlOk);
  EXPECT_TRUE(delivered(other));
  const MacAddress group{0x01, 0x00, 0x5e, 0, 0, 1};
  EXPECT_FALSE(delivered(group));
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxAllmulti, on), vn::kCtrlOk);
  EXPECT_TRUE(delivered(group));
  EXPECT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxNomulti, on), vn::kCtrlOk);
  EXPECT_FALSE(delivered(group));
  // Unknown class: ERR, and the queue keeps working.
  EXPECT_EQ(ctrl_request(99, 0, off), vn::kCtrlErr);
  EXPECT_EQ(ctrl.used_idx(), 10);
  EXPECT_FALSE(net->broken());
}

TEST_F(VirtioNetTest, VlanFilterDropsTagsNotInTheTable) {
  bring_up(kBaseFeatures);
  for (uint16_t slot = 0; slot < 8; ++slot) post_rx(slot, 2048, false);
  kick(0);
  const uint8_t off[] = {0};
  ASSERT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxPromisc, off), vn::kCtrlOk);
  auto tagged = [&](uint16_t vid) {
    auto frame = frame_to(mac, 64, 0);
    frame[12] = 0x81;
    frame[13] = 0x00;
    frame[14] = static_cast<uint8_t>(vid >> 8);
    frame[15] = static_cast<uint8_t>(vid);
    const uint16_t before = rx.used_idx();
    backend.offer(frame);
    return rx.used_idx() != before;
  };
  EXPECT_FALSE(tagged(100));
  const uint8_t vid[] = {100, 0};
  EXPECT_EQ(ctrl_request(vn::kCtrlVlan, vn::kCtrlVlanAdd, vid), vn::kCtrlOk);
  EXPECT_TRUE(tagged(100));
  EXPECT_FALSE(tagged(101));
}

TEST_F(VirtioNetTest, HostileChainBreaksTheDeviceWithNeedsResetAndAConfigInterrupt) {
  bring_up(kBaseFeatures);
  // A descriptor chain that loops on itself.
  tx.write_desc(0, kBuffers, 100, spec::virtio::kDescFNext, 0);
  tx.publish(0);
  machine.irqs.events.clear();
  kick(1);
  EXPECT_TRUE(net->broken());
  EXPECT_NE(common(vp::kCommonStatus, 1) & vp::kStatusNeedsReset, 0u);
  EXPECT_NE(vpci->isr() & 2, 0) << "configuration change in the ISR";
  ASSERT_EQ(machine.irqs.events.size(), 1u) << "the configuration interrupt (INTx)";
  EXPECT_NE(machine.irqs.events[0].find("raise"), std::string::npos) << machine.irqs.events[0];
  // Nothing more is processed until reset.
  post_rx(0, 2048);
  backend.offer(frame_to(mac, 60, 1));
  EXPECT_EQ(rx.used_idx(), 0);
  EXPECT_EQ(backend.waiting.size(), 1u);
}

TEST_F(VirtioNetTest, ControlRequestWithoutHeadersBreaksTheDevice) {
  bring_up(kBaseFeatures);
  const Buf only{0x300000, 1, true};
  write(0x300000, std::vector<uint8_t>{0});
  ctrl.add(std::span(&only, 1), 0);
  kick(2);
  EXPECT_TRUE(net->broken());
  EXPECT_NE(common(vp::kCommonStatus, 1) & vp::kStatusNeedsReset, 0u);
}

TEST_F(VirtioNetTest, ResetRestoresPromiscuousModeAndTheDeviceWorksAgain) {
  bring_up(kBaseFeatures);
  const uint8_t off[] = {0};
  ASSERT_EQ(ctrl_request(vn::kCtrlRx, vn::kCtrlRxPromisc, off), vn::kCtrlOk);
  EXPECT_EQ(net->state().rx.promisc, 0);
  set_common(vp::kCommonStatus, 0, 1);
  EXPECT_EQ(net->state().rx.promisc, 1);
  EXPECT_FALSE(net->can_receive());
  // A fresh driver brings it up again at new rings.
  SplitDriver rx2{ram, 256, 0x200000};
  const uint8_t base = vp::kStatusAcknowledge | vp::kStatusDriver;
  set_common(vp::kCommonStatus, base, 1);
  for (uint32_t half = 0; half < 2; ++half) {
    set_common(vp::kCommonGfSelect, half, 4);
    set_common(vp::kCommonGf, static_cast<uint32_t>(kBaseFeatures >> (32 * half)), 4);
  }
  set_common(vp::kCommonStatus, base | vp::kStatusFeaturesOk, 1);
  setup_queue(0, rx2);
  set_common(vp::kCommonStatus, base | vp::kStatusFeaturesOk | vp::kStatusDriverOk, 1);
  const Buf b{kBuffers, 2048, true};
  rx2.add(std::span(&b, 1), 0);
  kick(0);
  backend.offer(frame_to(mac, 60, 9));
  EXPECT_EQ(rx2.used_idx(), 1);
}

TEST_F(VirtioNetTest, SetLinkChangesStatusAndInterrupts) {
  bring_up(kBaseFeatures);
  const uint8_t generation = vpci->config_generation();
  net->set_link(false);
  std::array<uint8_t, 8> config{};
  net->get_config(config);
  EXPECT_EQ(config[6], 0);
  EXPECT_NE(vpci->config_generation(), generation);
  EXPECT_NE(vpci->isr() & 2, 0);
}

TEST_F(VirtioNetTest, LinkDownDropsReceivedFramesAndUsesTxChainsUnsent) {
  bring_up(kBaseFeatures);
  net->set_link(false);
  EXPECT_EQ(net->state().status & vn::kStatusLinkUp, 0);
  // RX: buffers posted, the frame is taken from the backend and dropped.
  post_rx(0, 2048);
  backend.offer(frame_to(mac, 60, 1));
  EXPECT_TRUE(backend.waiting.empty());
  EXPECT_EQ(rx.used_idx(), 0);
  // TX: the chain comes back used with length 0, nothing reaches the backend.
  std::vector<uint8_t> packet(12, 0);
  const auto frame = frame_to(mac, 60, 0xab);
  packet.insert(packet.end(), frame.begin(), frame.end());
  write(kBuffers + 0x10000, packet);
  const Buf b{kBuffers + 0x10000, static_cast<uint32_t>(packet.size())};
  tx.add(std::span(&b, 1), 0);
  kick(1);
  EXPECT_TRUE(backend.sent.empty());
  EXPECT_EQ(tx.used_idx(), 1);
  EXPECT_EQ(tx.used_elem(0), (std::pair<uint32_t, uint32_t>{0, 0}));
  // Up again: frames flow into the buffer still posted.
  net->set_link(true);
  backend.offer(frame_to(mac, 60, 2));
  EXPECT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(read(kBuffers + 12, 60), frame_to(mac, 60, 2));
}

TEST_F(VirtioNetTest, LinkDownEmptiesATxQueueWaitingForABusyBackend) {
  bring_up(kBaseFeatures);
  backend.busy = true;
  std::vector<uint8_t> packet(72, 0);
  write(kBuffers, packet);
  const Buf b{kBuffers, 72};
  tx.add(std::span(&b, 1), 0);
  kick(1);
  EXPECT_EQ(tx.used_idx(), 0);  // kept for the backend
  net->set_link(false);
  EXPECT_EQ(tx.used_idx(), 1);  // dropped, as QEMU does at link down
  backend.unblock();
  EXPECT_TRUE(backend.sent.empty());
}

TEST_F(VirtioNetTest, LinkUpAgainInterruptsOnlyOnAChange) {
  bring_up(kBaseFeatures);
  net->set_link(false);
  (void)vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kIsrOffset, 1);
  const uint8_t generation = vpci->config_generation();
  net->set_link(false);
  EXPECT_EQ(vpci->config_generation(), generation);
  net->set_link(true);
  EXPECT_NE(vpci->config_generation(), generation);
  EXPECT_NE(vpci->isr() & 2, 0);
  EXPECT_EQ(net->state().status & vn::kStatusLinkUp, vn::kStatusLinkUp);
}

TEST_F(VirtioNetTest, SendRawGoesOutUnlessTheLinkIsDown) {
  bring_up(kBaseFeatures);
  const auto frame = ::ferry::net::rarp_announce_frame(net->current_mac());
  net->send_raw(frame);
  ASSERT_EQ(backend.sent.size(), 1u);
  EXPECT_EQ(backend.sent[0], std::vector<uint8_t>(frame.begin(), frame.end()));
  net->set_link(false);
  net->send_raw(frame);
  EXPECT_EQ(backend.sent.size(), 1u);
}

TEST_F(VirtioNetTest, SendRawWhileStoppedGoesOutWhenTheVmRuns) {
  bring_up(kBaseFeatures);
  const auto frame = ::ferry::net::rarp_announce_frame(net->current_mac());
  net->set_running(false);
  net->send_raw(frame);
  net->send_raw(frame);
  EXPECT_TRUE(backend.sent.empty());
  net->set_running(true);
  EXPECT_EQ(backend.sent.size(), 2u);
}

TEST_F(VirtioNetTest, CurrentMacFollowsTheDriversAddress) {
  bring_up(kBaseFeatures | vn::bit(vn::kFCtrlMacAddr));
  const uint8_t next[] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  ASSERT_EQ(ctrl_request(vn::kCtrlMac, vn::kCtrlMacAddrSet, next), vn::kCtrlOk);
  EXPECT_EQ(net->current_mac(), (MacAddress{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}));
}

TEST_F(VirtioNetTest, AnnounceWithoutGuestAnnounceOnlyLeavesStatusAlone) {
  bring_up(kBaseFeatures);  // CTRL_VQ without GUEST_ANNOUNCE
  (void)vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kIsrOffset, 1);
  net->announce();
  EXPECT_EQ(net->state().status & vn::kStatusAnnounce, 0);
  EXPECT_EQ(vpci->isr() & 2, 0);
}

TEST_F(VirtioNetTest, AnnounceAsksTheGuestWithGuestAnnounceAndCtrlVq) {
  bring_up(kBaseFeatures | vn::bit(vn::kFGuestAnnounce));
  (void)vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kIsrOffset, 1);
  net->announce();
  EXPECT_NE(net->state().status & vn::kStatusAnnounce, 0);
  EXPECT_NE(vpci->isr() & 2, 0);
  // The guest's acknowledgement clears it.
  ASSERT_EQ(ctrl_request(vn::kCtrlAnnounce, vn::kCtrlAnnounceAck, {}), vn::kCtrlOk);
  EXPECT_EQ(net->state().status & vn::kStatusAnnounce, 0);
}

// QEMU 7.2's post-migration guest announce: one round at once, each next one only once the
// guest acknowledged the last, after QEMU's delay, on the VM clock.
TEST_F(VirtioNetTest, AfterAnIncomingMigrationTheGuestIsAskedRoundByRoundOnItsAcks) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  VirtualClock clock;
  bring_up(kBaseFeatures | vn::bit(vn::kFGuestAnnounce));
  net->attach_timers(**loop, clock);
  auto isr = [&] {
    return vpci->bar_handler(VirtioPci::kModernBar).read(VirtioPci::kIsrOffset, 1);
  };
  (void)isr();
  net->incoming_migration_done({.initial_ms = 50, .max_ms = 550, .rounds = 3, .step_ms = 100});
  EXPECT_EQ(net->state().status & vn::kStatusAnnounce, 0);  // the timer, not the call
  (*loop)->advance_clock(clock, 0);
  EXPECT_NE(net->state().status & vn::kStatusAnnounce, 0);
  EXPECT_NE(isr() & 2, 0u);
  EXPECT_EQ(net->state().announce_rounds, 2u);
  // announce-self meanwhile leaves the guest to these rounds (QEMU's virtio_net_announce).
  net->announce();
  EXPECT_EQ(isr() & 2, 0u);
  // Nothing more until the guest acknowledges.
  (*loop)->advance_clock(clock, 10'000'000'000);
  EXPECT_EQ(net->state().announce_rounds, 2u);
  ASSERT_EQ(ctrl_request(vn::kCtrlAnnounce, vn::kCtrlAnnounceAck, {}), vn::kCtrlOk);
  EXPECT_EQ(net->state().status & vn::kStatusAnnounce, 0);
  const int64_t acked = clock.now_ns();
  (*loop)->advance_clock(clock, acked + 49'000'000);
  EXPECT_EQ(net->state().announce_rounds, 2u);
  (*loop)->advance_clock(clock, acked + 50'000'000);  // initial: 50 ms
  EXPECT_EQ(net->state().announce_rounds, 1u);
  EXPECT_NE(net->state().status & vn::kStatusAnnounce, 0);
  // A stopped VM's round waits for it to run again.
  ASSERT_EQ(ctrl_request(vn::kCtrlAnnounce, vn::kCtrlAnnounceAck, {}), vn::kCtrlOk);
  net->set_running(false);
  (*loop)->advance_clock(clock, clock.now_ns() + 150'000'000);  // initial + step
  EXPECT_EQ(net->state().announce_rounds, 1u);
  net->set_running(true);
  EXPECT_EQ(net->state().announce_rounds, 0u);
  EXPECT_NE(net->state().status & vn::kStatusAnnounce, 0);
  // The last acknowledgement schedules nothing.
  ASSERT_EQ(ctrl_request(vn::kCtrlAnnounce, vn::kCtrlAnnounceAck, {}), vn::kCtrlOk);
  EXPECT_FALSE((*loop)->next_deadline(clock).has_value());
}

TEST_F(VirtioNetTest, ResetDropsPendingGuestAnnounceRounds) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  VirtualClock clock;
  bring_up(kBaseFeatures | vn::bit(vn::kFGuestAnnounce));
  net->attach_timers(**loop, clock);
  net->incoming_migration_done({.initial_ms = 50, .max_ms = 550, .rounds = 3, .step_ms = 100});
  set_common(vp::kCommonStatus, 0, 1);
  EXPECT_FALSE((*loop)->next_deadline(clock).has_value());
  EXPECT_EQ(net->state().announce_rounds, 0u);
}

TEST_F(VirtioNetTest, NoGuestAnnounceRoundsWithoutTheFeature) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  VirtualClock clock;
  bring_up(kBaseFeatures);
  net->attach_timers(**loop, clock);
  net->incoming_migration_done({});
  EXPECT_FALSE((*loop)->next_deadline(clock).has_value());
}

}  // namespace
}  // namespace ferry::virtio::net
