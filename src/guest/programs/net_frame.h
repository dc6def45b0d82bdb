// The byte-level half of `-guest net-verify` (net_verify.h): the workload's frame format, the
// answers a minimal IPv4 host gives (ARP, ICMP echo, UDP echo) and the per-direction sequence
// accounting. Pure functions and plain data over byte spans, so each is checked without a
// device.
//
// Workload frame (Ethernet II, EtherType 0x88b5, IEEE's "local experimental" type; every
// multi-byte field big-endian, offsets from the start of the frame):
//   0   destination MAC, 6   source MAC, 12  EtherType 0x88b5
//   14  magic "FNV1"
//   18  kind (1 data, 2 done, 3 hello), 19..21 zero
//   22  sequence number (done: how many data frames the sender sent)
//   30  sender's send time (ns of its own monotonic clock)
//   38  echo: the send time of the last frame the sender received from us (0: none yet)
//   46  echo hold: how long the sender held that frame before this one went out (ns)
//   54  filler (a pattern derived from the sequence number) up to the last 4 bytes
//   end-4  crc32c (Castagnoli, as base/crc32c.h) of bytes [14, end-4)
// A round trip is then `now - echo - hold`, measured on one clock only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>


namespace ferry::guest::netverify {

using Mac = std::array<uint8_t, 6>;
using Ipv4 = std::array<uint8_t, 4>;

inline constexpr uint16_t kEtherTypeVerify = 0x88b5;
inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint32_t kFrameMagic = 0x464e5631;  // "FNV1"
inline constexpr size_t kEthHeader = 14;
inline constexpr size_t kFrameHeader = 54;           // through the echo hold
inline constexpr size_t kMinFrame = 60;              // Ethernet's minimum without FCS
inline constexpr size_t kMaxFrame = 1514;            // no VLAN tag, no FCS

// hello: "I am here" (`seq` 1: "and I hear you") until the peer is known to hear us (frames
// sent before the link carries them would count as lost); done: no more data, `seq` is how
// many were sent.
enum class FrameKind : uint8_t { kData = 1, kDone = 2, kHello = 3 };

struct FrameFields {
  Mac dst{};
  Mac src{};
  FrameKind kind = FrameKind::kData;
  uint64_t seq = 0;
  uint64_t tx_ns = 0;
  uint64_t echo_ns = 0;
  uint64_t echo_hold_ns = 0;
};

// A workload frame of `size` bytes (kMinFrame..kMaxFrame) with its crc32c.
std::vector<uint8_t> build_frame(const FrameFields& fields, size_t size);

enum class FrameCheck {
  kOk,
  kNotVerify,  // another EtherType (or too short to hold one): not a workload frame
  kCorrupt,    // the EtherType says workload but the magic, kind, length or crc32c is wrong
};
// Checks a received frame; on kOk, `out` holds its fields.
FrameCheck parse_frame(std::span<const uint8_t> frame, FrameFields& out);

// The Internet checksum (RFC 1071) of `data`, continuing from `sum` (a 32-bit partial sum).
uint32_t internet_sum(std::span<const uint8_t> data, uint32_t sum = 0);
uint16_t internet_checksum(std::span<const uint8_t> data, uint32_t sum = 0);

// What a minimal host with `mac` and `ip` answers to `frame`, if anything: an ARP reply to a
// request for `ip`; an ICMP echo reply to an echo request to `ip`; a UDP datagram to `ip`
// sent back with addresses and ports swapped. Frames with bad checksums, fragments and
// anything else get no answer (nothing).
enum class AnswerKind : uint8_t { kArp, kIcmp, kUdp };
struct Answer {
  AnswerKind kind;
  std::vector<uint8_t> frame;
};
std::optional<Answer> answer_frame(std::span<const uint8_t> frame, const Mac& mac,
                                   const Ipv4& ip);

// One direction's accounting: frames taken in by sequence number. `lost` counts the numbers
// skipped so far (a late frame filling a gap takes one back), `reordered` frames that came
// after a higher number, `duplicates` numbers seen twice. Numbers are remembered in a window
// of the last kWindow below the highest; a frame older than that is counted as reordered
// (whether it is a duplicate cannot be told any more).
inline constexpr uint32_t kWindow = 1024;
struct SequenceCounters {
  uint64_t received = 0;   // distinct data frames with a good crc
  uint64_t lost = 0;
  uint64_t duplicates = 0;
  uint64_t reordered = 0;
  uint64_t corrupted = 0;  // workload frames whose crc32c or layout is wrong
  uint64_t next = 0;       // highest sequence number seen + 1 (0: none yet)
  std::array<uint64_t, kWindow / 64> seen{};  // bit seq % kWindow, for seq in [next-kWindow, next)
};
// Accounts for data frame `seq`.
void count_sequence(SequenceCounters& counters, uint64_t seq);

}  // namespace ferry::guest::netverify
