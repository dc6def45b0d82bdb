#include "hw/virtio/net/ctrl_commands.h"

#include <gtest/gtest.h>

#include <random>

#include "hw/virtio/net/net_test_frames.h"

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;
using testing::kDeviceMac;
using testing::kMulticast;
using testing::kOtherUnicast;
using testing::put_le16;
using testing::put_le32;
using testing::put_le64;
using testing::put_mac;

constexpr uint8_t kOk = vn::kCtrlOk;
constexpr uint8_t kErr = vn::kCtrlErr;

using testing::kStreamNegotiated;

std::vector<uint8_t> request(uint8_t ctrl_class, uint8_t command,
                             std::initializer_list<uint8_t> data = {}) {
  std::vector<uint8_t> bytes{ctrl_class, command};
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

// A MAC TABLE_SET request with `unicast` and `multicast` distinct entries.
std::vector<uint8_t> table_set(uint32_t unicast, uint32_t multicast) {
  std::vector<uint8_t> bytes{vn::kCtrlMac, vn::kCtrlMacTableSet};
  put_le32(bytes, unicast);
  for (uint32_t i = 0; i < unicast; ++i) put_mac(bytes, {0x02, 0, 0, 0, 1, static_cast<uint8_t>(i)});
  put_le32(bytes, multicast);
  for (uint32_t i = 0; i < multicast; ++i) put_mac(bytes, {0x01, 0, 0x5e, 0, 1, static_cast<uint8_t>(i)});
  return bytes;
}

class CtrlCommandsTest : public ::testing::Test {
 protected:
  CtrlCommandsTest() {
    state.reset(kDeviceMac);
    state.features_negotiated(negotiated);
  }
  CtrlOutcome run(const std::vector<uint8_t>& bytes) {
    return execute_ctrl_command(state, negotiated, bytes, 1);
  }
  uint8_t ack(const std::vector<uint8_t>& bytes) { return run(bytes).ack; }
  void negotiate(uint64_t features) {
    negotiated = features;
    state.features_negotiated(features);
  }

  uint64_t negotiated = kStreamNegotiated;
  NetDeviceState state;
};

TEST_F(CtrlCommandsTest, RxModes) {
  struct Mode {
    uint8_t command;
    uint8_t RxFilter::*flag;
  };
  for (const Mode& mode : {Mode{vn::kCtrlRxPromisc, &RxFilter::promisc},
                           Mode{vn::kCtrlRxAllmulti, &RxFilter::allmulti},
                           Mode{vn::kCtrlRxAlluni, &RxFilter::alluni},
                           Mode{vn::kCtrlRxNomulti, &RxFilter::nomulti},
                           Mode{vn::kCtrlRxNouni, &RxFilter::nouni},
                           Mode{vn::kCtrlRxNobcast, &RxFilter::nobcast}}) {
    SCOPED_TRACE(int{mode.command});
    CtrlOutcome on = run(request(vn::kCtrlRx, mode.command, {1}));
    EXPECT_EQ(on.ack, kOk);
    EXPECT_TRUE(on.rx_filter_changed);
    EXPECT_EQ(state.rx.*mode.flag, 1);
    EXPECT_EQ(ack(request(vn::kCtrlRx, mode.command, {0})), kOk);
    EXPECT_EQ(state.rx.*mode.flag, 0);
    // The byte is kept as sent (QEMU migrates it as a u8); extra data is ignored.
    EXPECT_EQ(ack(request(vn::kCtrlRx, mode.command, {2, 9, 9})), kOk);
    EXPECT_EQ(state.rx.*mode.flag, 2);
    CtrlOutcome empty = run(request(vn::kCtrlRx, mode.command));
    EXPECT_EQ(empty.ack, kErr);
    EXPECT_FALSE(empty.rx_filter_changed);
  }
  EXPECT_EQ(ack(request(vn::kCtrlRx, 6, {1})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlRx, 0xff, {1})), kErr);
}

TEST_F(CtrlCommandsTest, MacAddrSet) {
  std::vector<uint8_t> set = request(vn::kCtrlMac, vn::kCtrlMacAddrSet);
  put_mac(set, kOtherUnicast);
  CtrlOutcome outcome = run(set);
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_TRUE(outcome.rx_filter_changed);
  EXPECT_EQ(state.rx.mac, kOtherUnicast);
  // Exactly six bytes.
  EXPECT_EQ(ack(request(vn::kCtrlMac, vn::kCtrlMacAddrSet, {1, 2, 3, 4, 5})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlMac, vn::kCtrlMacAddrSet, {1, 2, 3, 4, 5, 6, 7})), kErr);
  EXPECT_EQ(state.rx.mac, kOtherUnicast);
  EXPECT_EQ(ack(request(vn::kCtrlMac, 2, {1, 2, 3, 4, 5, 6})), kErr);
}

TEST_F(CtrlCommandsTest, MacTableSet) {
  std::vector<uint8_t> bytes = request(vn::kCtrlMac, vn::kCtrlMacTableSet);
  put_le32(bytes, 1);
  put_mac(bytes, kOtherUnicast);
  put_le32(bytes, 1);
  put_mac(bytes, kMulticast);
  CtrlOutcome outcome = run(bytes);
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_TRUE(outcome.rx_filter_changed);
  const MacTable& table = state.rx.mac_table;
  EXPECT_EQ(table.in_use, 2u);
  EXPECT_EQ(table.first_multi, 1u);
  EXPECT_TRUE(table.contains(kOtherUnicast, 0, 1));
  EXPECT_TRUE(table.contains(kMulticast, 1, 2));
  EXPECT_EQ(table.uni_overflow + table.multi_overflow, 0);

  // An empty table (both counts zero) clears it.
  EXPECT_EQ(ack(table_set(0, 0)), kOk);
  EXPECT_EQ(table.in_use, 0u);
}

TEST_F(CtrlCommandsTest, MacTableLimits) {
  const MacTable& table = state.rx.mac_table;
  EXPECT_EQ(ack(table_set(64, 0)), kOk);
  EXPECT_EQ(table.in_use, 64u);
  EXPECT_EQ(table.first_multi, 64u);
  EXPECT_EQ(table.uni_overflow, 0);

  EXPECT_EQ(ack(table_set(65, 0)), kOk);  // too many unicast: all pass, none stored
  EXPECT_EQ(table.in_use, 0u);
  EXPECT_EQ(table.first_multi, 0u);
  EXPECT_EQ(table.uni_overflow, 1);

  EXPECT_EQ(ack(table_set(64, 1)), kOk);  // no room left for the multicast one
  EXPECT_EQ(table.in_use, 64u);
  EXPECT_EQ(table.uni_overflow, 0);
  EXPECT_EQ(table.multi_overflow, 1);

  EXPECT_EQ(ack(table_set(0, 64)), kOk);
  EXPECT_EQ(table.in_use, 64u);
  EXPECT_EQ(table.first_multi, 0u);
  EXPECT_EQ(table.multi_overflow, 0);

  EXPECT_EQ(ack(table_set(65, 65)), kOk);
  EXPECT_EQ(table.in_use, 0u);
  EXPECT_EQ(table.uni_overflow + table.multi_overflow, 2);
}

TEST_F(CtrlCommandsTest, MalformedMacTableIsRefusedAndChangesNothing) {
  ASSERT_EQ(ack(table_set(1, 1)), kOk);
  const MacTable before = state.rx.mac_table;
  auto unchanged = [&] {
    EXPECT_EQ(state.rx.mac_table.in_use, before.in_use);
    EXPECT_EQ(state.rx.mac_table.macs, before.macs);
  };
  // No data, or a unicast count cut short.
  EXPECT_EQ(ack(request(vn::kCtrlMac, vn::kCtrlMacTableSet)), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlMac, vn::kCtrlMacTableSet, {1, 0, 0})), kErr);
  // Unicast entries past the buffer.
  std::vector<uint8_t> bytes = table_set(1, 0);
  bytes[2] = 3;
  EXPECT_EQ(ack(bytes), kErr);
  // No multicast count.
  bytes = table_set(1, 0);
  bytes.resize(bytes.size() - 4);
  EXPECT_EQ(ack(bytes), kErr);
  // Multicast entries must fill the rest exactly: one byte more or less is refused.
  bytes = table_set(1, 1);
  bytes.push_back(0);
  EXPECT_EQ(ack(bytes), kErr);
  bytes.resize(bytes.size() - 2);
  EXPECT_EQ(ack(bytes), kErr);
  // A multicast count past the buffer.
  bytes = table_set(0, 2);
  bytes.resize(bytes.size() - 6);
  EXPECT_EQ(ack(bytes), kErr);
  unchanged();
}

TEST_F(CtrlCommandsTest, MacTableCountsUseQemus32BitArithmetic) {
  // 0x2aaaaaab entries of 6 bytes is 2 bytes in 32 bits: QEMU skips 2 bytes and reports an
  // overflowing unicast list.
  std::vector<uint8_t> bytes = request(vn::kCtrlMac, vn::kCtrlMacTableSet);
  put_le32(bytes, 0x2aaaaaab);
  bytes.insert(bytes.end(), {0xee, 0xee});
  put_le32(bytes, 0);
  EXPECT_EQ(ack(bytes), kOk);
  EXPECT_EQ(state.rx.mac_table.uni_overflow, 1);
  EXPECT_EQ(state.rx.mac_table.in_use, 0u);
}

TEST_F(CtrlCommandsTest, Vlan) {
  std::vector<uint8_t> add = request(vn::kCtrlVlan, vn::kCtrlVlanAdd);
  put_le16(add, 100);
  CtrlOutcome outcome = run(add);
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_TRUE(outcome.rx_filter_changed);
  EXPECT_TRUE(state.rx.vlan_allowed(100));
  EXPECT_FALSE(state.rx.vlan_allowed(101));
  EXPECT_EQ(ack(request(vn::kCtrlVlan, vn::kCtrlVlanAdd, {0xff, 0x0f})), kOk);  // 4095
  EXPECT_TRUE(state.rx.vlan_allowed(4095));
  EXPECT_EQ(ack(request(vn::kCtrlVlan, vn::kCtrlVlanAdd, {0x00, 0x10})), kErr);  // 4096
  EXPECT_EQ(ack(request(vn::kCtrlVlan, vn::kCtrlVlanAdd, {100})), kErr);         // short
  EXPECT_EQ(ack(request(vn::kCtrlVlan, 2, {100, 0})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlVlan, vn::kCtrlVlanDel, {100, 0, 7})), kOk);    // extra ignored
  EXPECT_FALSE(state.rx.vlan_allowed(100));
}

TEST_F(CtrlCommandsTest, AnnounceAck) {
  EXPECT_EQ(ack(request(vn::kCtrlAnnounce, vn::kCtrlAnnounceAck)), kErr);  // none pending
  state.status |= vn::kStatusAnnounce;
  EXPECT_EQ(ack(request(vn::kCtrlAnnounce, 1)), kErr);
  CtrlOutcome outcome = run(request(vn::kCtrlAnnounce, vn::kCtrlAnnounceAck));
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_FALSE(outcome.announce_step);
  EXPECT_EQ(state.status, vn::kStatusLinkUp);
  // With rounds left the device is told to schedule the next one.
  state.status |= vn::kStatusAnnounce;
  state.announce_rounds = 3;
  EXPECT_TRUE(run(request(vn::kCtrlAnnounce, vn::kCtrlAnnounceAck, {5})).announce_step);
}

TEST_F(CtrlCommandsTest, VqPairsSet) {
  state.queue_pairs.max = 4;
  std::vector<uint8_t> two = request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet);
  put_le16(two, 2);
  EXPECT_EQ(ack(two), kErr);  // MQ not negotiated
  negotiate(kStreamNegotiated | vn::bit(vn::kFMq));
  CtrlOutcome outcome = run(two);
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_TRUE(outcome.queue_pairs_set);
  EXPECT_EQ(state.queue_pairs.curr, 2);
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {4, 0})), kOk);
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {1, 0})), kOk);
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {0, 0})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {5, 0})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {0x01, 0x80})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {2})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlMq, 3, {2, 0})), kErr);
  EXPECT_EQ(state.queue_pairs.curr, 1);
  // MQ in the word but features not applied (multiqueue off): refused.
  state.queue_pairs.multiqueue = false;
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {1, 0})), kErr);
}

std::vector<uint8_t> rss_config(uint32_t hash_types, uint16_t mask, uint16_t unclassified,
                                std::initializer_list<uint16_t> table, uint16_t max_tx_vq,
                                uint8_t key_length, size_t key_bytes) {
  std::vector<uint8_t> bytes{vn::kCtrlMq, vn::kCtrlMqRssConfig};
  put_le32(bytes, hash_types);
  put_le16(bytes, mask);
  put_le16(bytes, unclassified);
  for (uint16_t entry : table) put_le16(bytes, entry);
  put_le16(bytes, max_tx_vq);
  bytes.push_back(key_length);
  for (size_t i = 0; i < key_bytes; ++i) bytes.push_back(static_cast<uint8_t>(0xa0 + i));
  return bytes;
}

TEST_F(CtrlCommandsTest, RssConfig) {
  state.queue_pairs.max = 4;
  const auto good = rss_config(vn::kHashTypeTcpv4, 3, 1, {0, 1, 2, 3}, 4, 40, 40);
  EXPECT_EQ(ack(good), kErr);  // RSS not negotiated
  negotiate(kStreamNegotiated | vn::bit(vn::kFRss));
  EXPECT_TRUE(state.rss.redirect);
  CtrlOutcome outcome = run(good);
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_TRUE(outcome.queue_pairs_set);
  EXPECT_EQ(state.queue_pairs.curr, 4);
  EXPECT_TRUE(state.rss.enabled);
  EXPECT_EQ(state.rss.indirections_len, 4);
  EXPECT_EQ(state.rss.default_queue, 1);
  EXPECT_EQ(state.rss.indirections_table, (std::vector<uint16_t>{0, 1, 2, 3}));
  EXPECT_EQ(state.rss.key[39], 0xa0 + 39);

  struct Bad {
    const char* what;
    std::vector<uint8_t> bytes;
  };
  for (const Bad& bad : {
           Bad{"table length 3", rss_config(0, 2, 0, {0, 0, 0}, 1, 0, 0)},
           Bad{"table longer than 128", rss_config(0, 255, 0, {}, 1, 0, 0)},
           Bad{"mask 0xffff wraps to 0", rss_config(0, 0xffff, 0, {}, 1, 0, 0)},
           Bad{"default queue 4 of 4", rss_config(0, 0, 4, {0}, 1, 0, 0)},
           Bad{"table cut short", rss_config(0, 1, 0, {0}, 1, 0, 0)},
           Bad{"no queue count", std::vector<uint8_t>(good.begin(), good.begin() + 2 + 8 + 8)},
           Bad{"zero queues", rss_config(0, 0, 0, {0}, 0, 0, 0)},
           Bad{"five queues", rss_config(0, 0, 0, {0}, 5, 0, 0)},
           Bad{"key of 41", rss_config(1, 0, 0, {0}, 1, 41, 41)},
           Bad{"hash types without key", rss_config(1, 0, 0, {0}, 1, 0, 0)},
           Bad{"key cut short", rss_config(1, 0, 0, {0}, 1, 40, 39)},
           Bad{"fixed part cut short", std::vector<uint8_t>(good.begin(), good.begin() + 9)},
       }) {
    SCOPED_TRACE(bad.what);
    ASSERT_EQ(ack(good), kOk);
    EXPECT_EQ(ack(bad.bytes), kErr);
    EXPECT_FALSE(state.rss.enabled);
  }
  // Neither key nor hash types: accepted, RSS off, the queue count applied.
  CtrlOutcome off = run(rss_config(0, 0, 0, {0}, 2, 0, 0));
  EXPECT_EQ(off.ack, kOk);
  EXPECT_FALSE(state.rss.enabled);
  EXPECT_EQ(state.queue_pairs.curr, 2);
  // A shorter key leaves the older bytes after it, which migrate (QEMU's key[40]).
  ASSERT_EQ(ack(rss_config(1, 0, 0, {0}, 1, 2, 2)), kOk);
  EXPECT_EQ(state.rss.key[0], 0xa0);
  EXPECT_EQ(state.rss.key[39], 0xa0 + 39);
}

TEST_F(CtrlCommandsTest, EveryMqCommandTurnsRssOff) {
  state.queue_pairs.max = 2;
  negotiate(kStreamNegotiated | vn::bit(vn::kFRss) | vn::bit(vn::kFMq));
  ASSERT_EQ(ack(rss_config(1, 0, 0, {1}, 2, 4, 4)), kOk);
  ASSERT_TRUE(state.rss.enabled);
  EXPECT_EQ(ack(request(vn::kCtrlMq, 9)), kErr);
  EXPECT_FALSE(state.rss.enabled);
  ASSERT_EQ(ack(rss_config(1, 0, 0, {1}, 2, 4, 4)), kOk);
  EXPECT_EQ(ack(request(vn::kCtrlMq, vn::kCtrlMqVqPairsSet, {1, 0})), kOk);
  EXPECT_FALSE(state.rss.enabled);
}

TEST_F(CtrlCommandsTest, ResetKeepsRssEnabledWithoutSteering) {
  state.queue_pairs.max = 4;
  negotiate(kStreamNegotiated | vn::bit(vn::kFRss));
  ASSERT_EQ(ack(rss_config(2, 3, 1, {0, 1, 2, 3}, 4, 40, 40)), kOk);
  ASSERT_TRUE(state.rss.redirect);
  state.rx.set_vlan(7, false);
  state.reset(kDeviceMac);
  // QEMU 7.2.22 after a status-0 reset (observed in its migration stream): RSS still enabled
  // with the same table and key, steering off; one queue pair; no multiqueue.
  EXPECT_TRUE(state.rss.enabled);
  EXPECT_FALSE(state.rss.redirect);
  EXPECT_EQ(state.rss.indirections_len, 4);
  EXPECT_EQ(state.queue_pairs.curr, 1);
  EXPECT_FALSE(state.queue_pairs.multiqueue);
  EXPECT_EQ(state.mergeable_rx_bufs, 0u);
  EXPECT_TRUE(state.rx.vlan_allowed(7));
  EXPECT_EQ(state.rx.promisc, 1);
}

TEST_F(CtrlCommandsTest, HashConfig) {
  std::vector<uint8_t> bytes{vn::kCtrlMq, vn::kCtrlMqHashConfig};
  put_le32(bytes, vn::kHashTypeIpv4);
  put_le64(bytes, 0);  // reserved[4]
  bytes.push_back(40);
  for (int i = 0; i < 40; ++i) bytes.push_back(static_cast<uint8_t>(i));
  EXPECT_EQ(ack(bytes), kErr);  // HASH_REPORT not negotiated
  negotiate(kStreamNegotiated | vn::bit(vn::kFHashReport));
  CtrlOutcome outcome = run(bytes);
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_FALSE(outcome.queue_pairs_set);
  EXPECT_TRUE(state.rss.enabled);
  EXPECT_EQ(state.rss.indirections_len, 1);
  EXPECT_EQ(state.queue_pairs.curr, 1);
}

TEST_F(CtrlCommandsTest, GuestOffloads) {
  std::vector<uint8_t> csum = request(vn::kCtrlGuestOffloads, vn::kCtrlGuestOffloadsSet);
  put_le64(csum, vn::bit(vn::kFGuestCsum));
  // A stream peer has no vnet header: QEMU 7.2 answers ERR (observed).
  EXPECT_EQ(ack(csum), kErr);

  state.has_vnet_hdr = true;
  negotiate(kStreamNegotiated | vn::bit(vn::kFGuestCsum) | vn::bit(vn::kFGuestTso4));
  EXPECT_EQ(state.offloads.curr, vn::bit(vn::kFGuestCsum) | vn::bit(vn::kFGuestTso4));
  CtrlOutcome outcome = run(csum);
  EXPECT_EQ(outcome.ack, kOk);
  EXPECT_TRUE(outcome.offloads_set);
  EXPECT_EQ(state.offloads.curr, vn::bit(vn::kFGuestCsum));
  // Not negotiated: refused, unchanged.
  std::vector<uint8_t> tso6 = request(vn::kCtrlGuestOffloads, vn::kCtrlGuestOffloadsSet);
  put_le64(tso6, vn::bit(vn::kFGuestTso6));
  EXPECT_EQ(ack(tso6), kErr);
  EXPECT_EQ(state.offloads.curr, vn::bit(vn::kFGuestCsum));
  // RSC_EXT is taken out before the check, and remembered with TSO4.
  std::vector<uint8_t> rsc = request(vn::kCtrlGuestOffloads, vn::kCtrlGuestOffloadsSet);
  put_le64(rsc, vn::bit(vn::kFGuestTso4) | vn::bit(vn::kFRscExt));
  EXPECT_EQ(ack(rsc), kOk);
  EXPECT_TRUE(state.offloads.rsc4_enabled);
  EXPECT_EQ(state.offloads.curr, vn::bit(vn::kFGuestTso4));
  // Short data, unknown command.
  EXPECT_EQ(ack(request(vn::kCtrlGuestOffloads, vn::kCtrlGuestOffloadsSet, {1, 0, 0})), kErr);
  EXPECT_EQ(ack(request(vn::kCtrlGuestOffloads, 1, {0, 0, 0, 0, 0, 0, 0, 0})), kErr);
  // CTRL_GUEST_OFFLOADS itself not negotiated.
  negotiate(kStreamNegotiated & ~vn::bit(vn::kFCtrlGuestOffloads));
  EXPECT_EQ(ack(csum), kErr);
}

TEST_F(CtrlCommandsTest, UnknownClassesAreRefused) {
  for (uint8_t ctrl_class : {uint8_t{6}, uint8_t{99}, uint8_t{0xff}}) {
    CtrlOutcome outcome = run(request(ctrl_class, 0, {1, 2, 3}));
    EXPECT_EQ(outcome.ack, kErr);
    EXPECT_FALSE(outcome.missing_headers);
  }
}

TEST_F(CtrlCommandsTest, MissingHeaders) {
  EXPECT_TRUE(execute_ctrl_command(state, negotiated, std::vector<uint8_t>{0}, 1).missing_headers);
  EXPECT_TRUE(execute_ctrl_command(state, negotiated, {}, 1).missing_headers);
  EXPECT_TRUE(
      execute_ctrl_command(state, negotiated, request(vn::kCtrlRx, 0, {0}), 0).missing_headers);
  EXPECT_EQ(state.rx.promisc, 1);  // nothing was executed
  // A header alone is a request (with no data).
  CtrlOutcome bare = execute_ctrl_command(state, negotiated, request(vn::kCtrlRx, 0), 1);
  EXPECT_FALSE(bare.missing_headers);
  EXPECT_EQ(bare.ack, kErr);
}

// Hostile requests: any bytes give an ack of 0 or 1 and leave the state within its bounds.
TEST_F(CtrlCommandsTest, RandomRequestsStayInBounds) {
  state.queue_pairs.max = 8;
  state.has_vnet_hdr = true;
  negotiate(~uint64_t{0});
  std::mt19937 random(7);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bytes(random() % 80);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(random());
    if (bytes.size() >= 2) {
      bytes[0] %= 7;  // mostly known classes
      bytes[1] %= 4;
    }
    CtrlOutcome outcome = execute_ctrl_command(state, negotiated, bytes, 1);
    ASSERT_TRUE(outcome.missing_headers || outcome.ack <= 1);
    ASSERT_LE(state.rx.mac_table.in_use, kMacTableEntries);
    ASSERT_LE(state.rx.mac_table.first_multi, state.rx.mac_table.in_use);
    ASSERT_GE(state.queue_pairs.curr, 1);
    ASSERT_LE(state.queue_pairs.curr, state.queue_pairs.max);
    ASSERT_LE(state.rss.indirections_table.size(), kRssMaxTableLength);
  }
}

}  // namespace
}  // namespace ferry::virtio::net
