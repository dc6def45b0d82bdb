// The "guest-net-verify" section: the counters, the sequence window and the round-trip
// histogram travel whole, so accounting goes on after a load as if nothing happened; a
// destination with other options, and an unknown phase, are refused.
#include "guest/programs/net_verify_state.h"

#include <gtest/gtest.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "guest/programs/net_verify.h"
#include "vmstate/vmstate.h"

namespace ferry::guest::netverify {
namespace {

ConfigEcho echo() {
  ConfigEcho c;
  c.role = 0;
  c.peer = {0x52, 0x54, 0x00, 0, 0, 2};
  c.ip = {10, 0, 2, 15};
  c.frame_size = 1514;
  c.rate = 1000;
  c.dma_base = 0x1000000;
  c.dma_size = kNetVerifyDmaBytes;
  c.bar_base = 0xe0000000;
  return c;
}

std::vector<uint8_t> save(NetVerifyState& s) {
  ByteWriter w;
  vmstate::Json vmdesc = vmstate::Json::object();
  auto binding = bind_state(s);
  Status saved = binding->save(w, vmdesc);
  EXPECT_TRUE(saved.ok()) << saved.to_string();
  EXPECT_EQ(vmdesc["vmsd_name"], "guest-net-verify") << vmdesc.dump();
  return std::vector<uint8_t>(w.bytes().begin(), w.bytes().end());
}

TEST(NetVerifyState, CountersAndWindowTravel) {
  NetVerifyState source;
  source.config = source.local = echo();
  source.phase = Phase::kRun;
  source.peer_heard = source.peer_heard_us = true;
  source.sent = 12345;
  source.mac = {0x52, 0x54, 0x00, 0, 0, 1};
  for (uint64_t seq : {0, 1, 2, 4, 5, 7}) count_sequence(source.rx, seq);
  source.rtt[verify::latency_bucket(400'000)] = 9;
  source.icmp_answers = 3;
  auto binding = bind_state(source);
  Status checked = binding->check();
  EXPECT_TRUE(checked.ok()) << checked.to_string();
  std::vector<uint8_t> bytes = save(source);

  NetVerifyState destination;
  destination.local = echo();
  ByteReader r(bytes);
  Status loaded = bind_state(destination)->load(r, 1);
  ASSERT_TRUE(loaded.ok()) << loaded.to_string();
  EXPECT_TRUE(r.at_end());
  EXPECT_EQ(destination.phase, Phase::kRun);
  EXPECT_EQ(destination.sent, 12345u);
  EXPECT_EQ(destination.mac, source.mac);
  EXPECT_EQ(destination.rx.received, 6u);
  EXPECT_EQ(destination.rx.lost, 2u);
  EXPECT_EQ(destination.rtt, source.rtt);
  EXPECT_EQ(destination.icmp_answers, 3u);
  // The window came along: 4 again is a duplicate, 6 fills a gap, 3 too.
  count_sequence(destination.rx, 4);
  count_sequence(destination.rx, 6);
  count_sequence(destination.rx, 3);
  EXPECT_EQ(destination.rx.duplicates, 1u);
  EXPECT_EQ(destination.rx.reordered, 2u);
  EXPECT_EQ(destination.rx.lost, 0u);
  EXPECT_EQ(destination.rx.received, 8u);
}

TEST(NetVerifyState, OtherOptionsAreRefusedByName) {
  NetVerifyState source;
  source.config = source.local = echo();
  std::vector<uint8_t> bytes = save(source);
  NetVerifyState destination;
  destination.local = echo();
  destination.local.frame_size = 64;
  ByteReader r(bytes);
  Status loaded = bind_state(destination)->load(r, 1);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.to_string().find("-guest net-verify options differ from the source's: size"),
            std::string::npos)
      << loaded.to_string();
}

TEST(NetVerifyState, AnUnknownPhaseIsRefused) {
  NetVerifyState source;
  source.config = source.local = echo();
  source.phase = static_cast<Phase>(kPhaseCount);
  std::vector<uint8_t> bytes = save(source);
  NetVerifyState destination;
  destination.local = echo();
  ByteReader r(bytes);
  Status loaded = bind_state(destination)->load(r, 1);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.to_string().find("unknown phase"), std::string::npos) << loaded.to_string();
}

}  // namespace
}  // namespace ferry::guest::netverify
