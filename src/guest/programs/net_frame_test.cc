// net_frame.h: the workload frame and its crc32c, the Internet checksum, the ARP/ICMP/UDP
// answers (checked against bytes computed by hand, outside this code) and the sequence
// accounting (loss, duplicates, reordering).
#include "guest/programs/net_frame.h"

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "base/crc32c.h"

namespace ferry::guest::netverify {
namespace {

const Mac kGuestMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
const Mac kPeerMac{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
const Ipv4 kGuestIp{10, 0, 2, 15};

TEST(NetFrame, LayoutAndCrc) {
  FrameFields f;
  f.dst = kPeerMac;
  f.src = kGuestMac;
  f.seq = 0x0102030405060708ull;
  f.tx_ns = 0x1112131415161718ull;
  f.echo_ns = 0x2122232425262728ull;
  f.echo_hold_ns = 0x31;
  std::vector<uint8_t> frame = build_frame(f, 64);
  ASSERT_EQ(frame.size(), 64u);
  const std::vector<uint8_t> head = {
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // MACs
      0x88, 0xb5, 'F',  'N',  'V',  '1',  0x01, 0x00, 0x00, 0x00,              // type, magic, kind
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,                          // seq
      0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,                          // tx
      0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,                          // echo
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x31};                         // hold
  EXPECT_EQ(std::vector<uint8_t>(frame.begin(), frame.begin() + 54), head);
  uint32_t crc = crc32c(std::span(frame).subspan(14, 64 - 14 - 4));
  EXPECT_EQ(frame[60], crc >> 24);
  EXPECT_EQ(frame[61], (crc >> 16) & 0xff);
  EXPECT_EQ(frame[62], (crc >> 8) & 0xff);
  EXPECT_EQ(frame[63], crc & 0xff);

  FrameFields back;
  ASSERT_EQ(parse_frame(frame, back), FrameCheck::kOk);
  EXPECT_EQ(back.seq, f.seq);
  EXPECT_EQ(back.tx_ns, f.tx_ns);
  EXPECT_EQ(back.echo_ns, f.echo_ns);
  EXPECT_EQ(back.echo_hold_ns, f.echo_hold_ns);
  EXPECT_EQ(back.kind, FrameKind::kData);
  EXPECT_EQ(back.src, kGuestMac);
  EXPECT_EQ(back.dst, kPeerMac);
}

TEST(NetFrame, SizesAreClampedToEthernet) {
  EXPECT_EQ(build_frame({}, 10).size(), kMinFrame);
  EXPECT_EQ(build_frame({}, 1514).size(), 1514u);
  EXPECT_EQ(build_frame({}, 9000).size(), kMaxFrame);
}

TEST(NetFrame, EveryFlippedBitIsCorruption) {
  FrameFields f;
  f.seq = 7;
  std::vector<uint8_t> frame = build_frame(f, 200);
  FrameFields out;
  for (size_t i = 14; i < frame.size(); ++i) {
    std::vector<uint8_t> bad = frame;
    bad[i] ^= 0x10;
    EXPECT_EQ(parse_frame(bad, out), FrameCheck::kCorrupt) << "byte " << i;
  }
  // Cut short (the crc then covers other bytes) or padded.
  EXPECT_EQ(parse_frame(std::span(frame).first(199), out), FrameCheck::kCorrupt);
  std::vector<uint8_t> longer = frame;
  longer.push_back(0);
  EXPECT_EQ(parse_frame(longer, out), FrameCheck::kCorrupt);
  // Another EtherType is not ours to judge; a stub too short for one neither.
  std::vector<uint8_t> other = frame;
  other[12] = 0x08;
  other[13] = 0x00;
  EXPECT_EQ(parse_frame(other, out), FrameCheck::kNotVerify);
  EXPECT_EQ(parse_frame(std::span(frame).first(10), out), FrameCheck::kNotVerify);
  // Right EtherType, shorter than the minimum frame.
  EXPECT_EQ(parse_frame(std::span(frame).first(40), out), FrameCheck::kCorrupt);
}

TEST(NetFrame, InternetChecksum) {
  // RFC 1071's worked example: the sum is 0xddf2, so the checksum is its complement.
  const std::vector<uint8_t> rfc = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(internet_checksum(rfc), 0x220d);
  // A textbook IPv4 header (checksum b861 in place): checksums to zero.
  const std::vector<uint8_t> ip = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                   0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(internet_checksum(ip), 0);
  // Odd length: the last byte is the high half of a word.
  const std::vector<uint8_t> odd = {0x01};
  EXPECT_EQ(internet_checksum(odd), 0xfeff);
}

TEST(NetFrame, AnswersArpRequest) {
  // Who has 10.0.2.15? Tell 10.0.2.2 (52:54:00:ab:cd:ef), broadcast, as Linux sends it.
  const std::vector<uint8_t> request = {
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x08, 0x06,
      0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,              // Ethernet/IPv4, request
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x0a, 0x00, 0x02, 0x02,  // sender
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x0f};  // target
  const std::vector<uint8_t> reply = {
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
      0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,              // reply
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x02, 0x0f,  // us
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x0a, 0x00, 0x02, 0x02};  // the asker
  auto answer = answer_frame(request, kGuestMac, kGuestIp);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->kind, AnswerKind::kArp);
  EXPECT_EQ(answer->frame, reply);
  // For another address, or a reply rather than a request: nothing.
  std::vector<uint8_t> other = request;
  other[41] = 0x10;
  EXPECT_FALSE(answer_frame(other, kGuestMac, kGuestIp).has_value());
  std::vector<uint8_t> not_request = request;
  not_request[21] = 2;
  EXPECT_FALSE(answer_frame(not_request, kGuestMac, kGuestIp).has_value());
  // Padded to Ethernet's 60 bytes, as it arrives from a wire: the same answer.
  std::vector<uint8_t> padded = request;
  padded.resize(60, 0);
  ASSERT_TRUE(answer_frame(padded, kGuestMac, kGuestIp).has_value());
  EXPECT_EQ(answer_frame(padded, kGuestMac, kGuestIp)->frame, reply);
}

TEST(NetFrame, AnswersIcmpEcho) {
  // 10.0.2.2 pings 10.0.2.15: id 0x1234, sequence 1, 16 payload bytes 00..0f, TTL 64.
  const std::vector<uint8_t> request = {
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef,
      0x08, 0x00, 0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01,
      0x06, 0x7b, 0x0a, 0x00, 0x02, 0x02, 0x0a, 0x00, 0x02, 0x0f, 0x08, 0x00,
      0xad, 0x8a, 0x12, 0x34, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
      0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
  // Addresses swapped (the IP checksum keeps its value), type 0, ICMP checksum + 0x0800.
  const std::vector<uint8_t> reply = {
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
      0x08, 0x00, 0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01,
      0x06, 0x7b, 0x0a, 0x00, 0x02, 0x0f, 0x0a, 0x00, 0x02, 0x02, 0x00, 0x00,
      0xb5, 0x8a, 0x12, 0x34, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
      0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
  auto answer = answer_frame(request, kGuestMac, kGuestIp);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->kind, AnswerKind::kIcmp);
  EXPECT_EQ(answer->frame, reply);

  // A different TTL comes back as 64 with the header checksum recomputed (0x067b + 0x0900).
  std::vector<uint8_t> ttl55 = request;
  ttl55[22] = 55;
  ttl55[24] = 0x0f;  // the request's own checksum for TTL 55: 0x067b + 0x0900
  ttl55[25] = 0x7b;
  ASSERT_TRUE(answer_frame(ttl55, kGuestMac, kGuestIp).has_value());
  EXPECT_EQ(answer_frame(ttl55, kGuestMac, kGuestIp)->frame, reply);

  // Bad IP checksum, bad ICMP checksum, a fragment, another address, another MAC: nothing.
  std::vector<uint8_t> bad = request;
  bad[25] ^= 1;
  EXPECT_FALSE(answer_frame(bad, kGuestMac, kGuestIp).has_value());
  bad = request;
  bad[37] ^= 1;
  EXPECT_FALSE(answer_frame(bad, kGuestMac, kGuestIp).has_value());
  bad = request;
  bad[20] = 0x20;  // MF, checksum fixed below so only the fragment bit differs
  bad[24] = 0x26;
  bad[25] = 0x7b;
  EXPECT_FALSE(answer_frame(bad, kGuestMac, kGuestIp).has_value());
  EXPECT_FALSE(answer_frame(request, kGuestMac, Ipv4{10, 0, 2, 16}).has_value());
  EXPECT_FALSE(answer_frame(request, kPeerMac, kGuestIp).has_value());
}

TEST(NetFrame, EchoesUdp) {
  // 10.0.2.2:40000 -> 10.0.2.15:7, "hello".
  const std::vector<uint8_t> request = {
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef,
      0x08, 0x00, 0x45, 0x00, 0x00, 0x21, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11,
      0x06, 0x76, 0x0a, 0x00, 0x02, 0x02, 0x0a, 0x00, 0x02, 0x0f, 0x9c, 0x40,
      0x00, 0x07, 0x00, 0x0d, 0x07, 0xaa, 0x68, 0x65, 0x6c, 0x6c, 0x6f};
  const std::vector<uint8_t> reply = {
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
      0x08, 0x00, 0x45, 0x00, 0x00, 0x21, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11,
      0x06, 0x76, 0x0a, 0x00, 0x02, 0x0f, 0x0a, 0x00, 0x02, 0x02, 0x00, 0x07,
      0x9c, 0x40, 0x00, 0x0d, 0x07, 0xaa, 0x68, 0x65, 0x6c, 0x6c, 0x6f};
  auto answer = answer_frame(request, kGuestMac, kGuestIp);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->kind, AnswerKind::kUdp);
  EXPECT_EQ(answer->frame, reply);
  // Ethernet padding after the datagram is not echoed.
  std::vector<uint8_t> padded = request;
  padded.resize(60, 0);
  ASSERT_TRUE(answer_frame(padded, kGuestMac, kGuestIp).has_value());
  EXPECT_EQ(answer_frame(padded, kGuestMac, kGuestIp)->frame, reply);
  // A UDP length that disagrees with the IP length: nothing.
  std::vector<uint8_t> bad = request;
  bad[39] = 0x0c;
  EXPECT_FALSE(answer_frame(bad, kGuestMac, kGuestIp).has_value());
}

TEST(NetFrame, SequenceInOrder) {
  SequenceCounters c;
  for (uint64_t s = 0; s < 5000; ++s) count_sequence(c, s);
  EXPECT_EQ(c.received, 5000u);
  EXPECT_EQ(c.lost, 0u);
  EXPECT_EQ(c.duplicates, 0u);
  EXPECT_EQ(c.reordered, 0u);
  EXPECT_EQ(c.next, 5000u);
}

TEST(NetFrame, SequenceLossDuplicatesReordering) {
  SequenceCounters c;
  for (uint64_t s : {0, 1, 2, 5, 6}) count_sequence(c, s);  // 3 and 4 missing
  EXPECT_EQ(c.lost, 2u);
  EXPECT_EQ(c.received, 5u);
  count_sequence(c, 4);  // late: no longer lost, reordered
  EXPECT_EQ(c.lost, 1u);
  EXPECT_EQ(c.reordered, 1u);
  EXPECT_EQ(c.received, 6u);
  count_sequence(c, 4);  // again: a duplicate
  count_sequence(c, 6);  // the highest again: a duplicate
  count_sequence(c, 0);
  EXPECT_EQ(c.duplicates, 3u);
  EXPECT_EQ(c.received, 6u);
  EXPECT_EQ(c.lost, 1u);
  EXPECT_EQ(c.reordered, 1u);
  count_sequence(c, 3);
  EXPECT_EQ(c.lost, 0u);
  EXPECT_EQ(c.reordered, 2u);
}

TEST(NetFrame, SequenceWindowAcrossBigJumps) {
  SequenceCounters c;
  count_sequence(c, 0);
  count_sequence(c, 10'000);  // 9,999 skipped: more than the window
  EXPECT_EQ(c.lost, 9'999u);
  // Inside the window behind 10,000: fresh, then duplicate.
  count_sequence(c, 9'500);
  EXPECT_EQ(c.reordered, 1u);
  count_sequence(c, 9'500);
  EXPECT_EQ(c.duplicates, 1u);
  // A number the window forgot (bits of old numbers sharing its slot were cleared on the
  // way): counted as late, never as a duplicate it cannot prove.
  count_sequence(c, 5);
  EXPECT_EQ(c.reordered, 2u);
  EXPECT_EQ(c.lost, 9'997u);
  // Slots reused by the window do not make new numbers look like duplicates.
  SequenceCounters d;
  for (uint64_t s = 0; s < kWindow; ++s) count_sequence(d, s);
  count_sequence(d, kWindow + 5);  // kWindow .. kWindow+4 skipped: their slots cleared
  count_sequence(d, kWindow + 2);
  EXPECT_EQ(d.duplicates, 0u);
  EXPECT_EQ(d.reordered, 1u);
  EXPECT_EQ(d.lost, 4u);
}

}  // namespace
}  // namespace ferry::guest::netverify
