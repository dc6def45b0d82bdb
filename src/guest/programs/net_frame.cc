#include "guest/programs/net_frame.h"

#include <algorithm>
#include <cstring>

#include "base/byte_order.h"
#include "base/crc32c.h"

namespace ferry::guest::netverify {

namespace {

constexpr size_t kArpLength = 28;
constexpr uint8_t kIpProtoIcmp = 1;
constexpr uint8_t kIpProtoUdp = 17;
constexpr uint8_t kIcmpEchoRequest = 8;
constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kReplyTtl = 64;

// The filler byte at `offset`: differs per frame, so a frame delivered with another frame's
// tail fails its crc.
uint8_t filler(uint64_t seq, size_t offset) {
  return static_cast<uint8_t>((seq * 0x9e3779b97f4a7c15ull) >> 56) ^ static_cast<uint8_t>(offset);
}

bool same(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// The reply's Ethernet header: back to the sender, from us.
void reply_ethernet(std::vector<uint8_t>& out, std::span<const uint8_t> request, const Mac& mac,
                    uint16_t ether_type) {
  std::copy_n(request.begin() + 6, 6, out.begin());
  std::copy(mac.begin(), mac.end(), out.begin() + 6);
  store_be<uint16_t>(out.data() + 12, ether_type);
}

std::optional<Answer> answer_arp(std::span<const uint8_t> frame, const Mac& mac, const Ipv4& ip) {
  if (frame.size() < kEthHeader + kArpLength) return std::nullopt;
  const uint8_t* arp = frame.data() + kEthHeader;
  // Ethernet hardware (1), IPv4 (0x0800), 6- and 4-byte addresses, a request (1) for us.
  if (load_be<uint16_t>(arp) != 1 || load_be<uint16_t>(arp + 2) != kEtherTypeIpv4 ||
      arp[4] != 6 || arp[5] != 4 || load_be<uint16_t>(arp + 6) != 1 ||
      !same(std::span(arp + 24, 4), ip)) {
    return std::nullopt;
  }
  std::vector<uint8_t> out(kEthHeader + kArpLength, 0);
  reply_ethernet(out, frame, mac, kEtherTypeArp);
  uint8_t* reply = out.data() + kEthHeader;
  std::copy_n(arp, 6, reply);             // htype, ptype, hlen, plen as asked
  store_be<uint16_t>(reply + 6, 2);       // reply
  std::copy(mac.begin(), mac.end(), reply + 8);
  std::copy(ip.begin(), ip.end(), reply + 14);
  std::copy_n(arp + 8, 10, reply + 18);   // the asker's hardware and protocol address
  return Answer{AnswerKind::kArp, std::move(out)};
}

std::optional<Answer> answer_ipv4(std::span<const uint8_t> frame, const Mac& mac, const Ipv4& ip) {
  if (frame.size() < kEthHeader + 20) return std::nullopt;
  const uint8_t* in = frame.data() + kEthHeader;
  const size_t header = size_t{in[0] & 0xfu} * 4;
  const size_t total = load_be<uint16_t>(in + 2);
  if ((in[0] >> 4) != 4 || header < 20 || total < header || kEthHeader + total > frame.size())
    return std::nullopt;
  if (internet_checksum(std::span(in, header)) != 0) return std::nullopt;
  // Fragments (MF set or an offset) would need reassembly: not answered.
  if ((load_be<uint16_t>(in + 6) & 0x3fff) != 0) return std::nullopt;
  if (!same(std::span(in + 16, 4), ip)) return std::nullopt;

  const uint8_t protocol = in[9];
  std::span<const uint8_t> body(in + header, total - header);
  AnswerKind kind;
  if (protocol == kIpProtoIcmp) {
    if (body.size() < 8 || body[0] != kIcmpEchoRequest || body[1] != 0 ||
        internet_checksum(body) != 0)
      return std::nullopt;
    kind = AnswerKind::kIcmp;
  } else if (protocol == kIpProtoUdp) {
    if (body.size() < 8 || load_be<uint16_t>(body.data() + 4) != body.size()) return std::nullopt;
    kind = AnswerKind::kUdp;
  } else {
    return std::nullopt;
  }

  // The reply: the request's IP header (options too) with the addresses swapped, a fresh
  // TTL and header checksum; bytes past the IP total length (Ethernet padding) are left off.
  std::vector<uint8_t> out(kEthHeader + total, 0);
  reply_ethernet(out, frame, mac, kEtherTypeIpv4);
  uint8_t* o = out.data() + kEthHeader;
  std::copy_n(in, total, o);
  std::copy_n(in + 12, 4, o + 16);
  std::copy_n(in + 16, 4, o + 12);
  o[8] = kReplyTtl;
  store_be<uint16_t>(o + 10, 0);
  store_be<uint16_t>(o + 10, internet_checksum(std::span(o, header)));
  uint8_t* b = o + header;
  const size_t length = total - header;
  if (kind == AnswerKind::kIcmp) {
    b[0] = kIcmpEchoReply;
    store_be<uint16_t>(b + 2, 0);
    store_be<uint16_t>(b + 2, internet_checksum(std::span(b, length)));
  } else {
    std::copy_n(body.data(), 2, b + 2);
    std::copy_n(body.data() + 2, 2, b);
    // The checksum over the pseudo-header (addresses, protocol, UDP length) and the datagram;
    // a computed 0 is sent as 0xffff (0 means "no checksum").
    store_be<uint16_t>(b + 6, 0);
    uint32_t sum = internet_sum(std::span(o + 12, 8));
    sum += kIpProtoUdp;
    sum += static_cast<uint32_t>(length);
    uint16_t checksum = internet_checksum(std::span(b, length), sum);
    store_be<uint16_t>(b + 6, checksum == 0 ? 0xffff : checksum);
  }
  return Answer{kind, std::move(out)};
}

}  // namespace

std::vector<uint8_t> build_frame(const FrameFields& f, size_t size) {
  size = std::clamp(size, kMinFrame, kMaxFrame);
  std::vector<uint8_t> out(size, 0);
  uint8_t* p = out.data();
  std::copy(f.dst.begin(), f.dst.end(), p);
  std::copy(f.src.begin(), f.src.end(), p + 6);
  store_be<uint16_t>(p + 12, kEtherTypeVerify);
  store_be<uint32_t>(p + 14, kFrameMagic);
  p[18] = static_cast<uint8_t>(f.kind);
  store_be<uint64_t>(p + 22, f.seq);
  store_be<uint64_t>(p + 30, f.tx_ns);
  store_be<uint64_t>(p + 38, f.echo_ns);
  store_be<uint64_t>(p + 46, f.echo_hold_ns);
  for (size_t i = kFrameHeader; i < size - 4; ++i) p[i] = filler(f.seq, i);
  store_be<uint32_t>(p + size - 4, crc32c(std::span(p + kEthHeader, size - 4 - kEthHeader)));
  return out;
}

FrameCheck parse_frame(std::span<const uint8_t> frame, FrameFields& out) {
  if (frame.size() < kEthHeader || load_be<uint16_t>(frame.data() + 12) != kEtherTypeVerify)
    return FrameCheck::kNotVerify;
  if (frame.size() < kMinFrame || frame.size() > kMaxFrame) return FrameCheck::kCorrupt;
  const uint8_t* p = frame.data();
  const size_t size = frame.size();
  if (load_be<uint32_t>(p + size - 4) != crc32c(std::span(p + kEthHeader, size - 4 - kEthHeader)))
    return FrameCheck::kCorrupt;
  if (load_be<uint32_t>(p + 14) != kFrameMagic) return FrameCheck::kCorrupt;
  if (p[18] != static_cast<uint8_t>(FrameKind::kData) &&
      p[18] != static_cast<uint8_t>(FrameKind::kDone) &&
      p[18] != static_cast<uint8_t>(FrameKind::kHello))
    return FrameCheck::kCorrupt;
  std::copy_n(p, 6, out.dst.begin());
  std::copy_n(p + 6, 6, out.src.begin());
  out.kind = static_cast<FrameKind>(p[18]);
  out.seq = load_be<uint64_t>(p + 22);
  out.tx_ns = load_be<uint64_t>(p + 30);
  out.echo_ns = load_be<uint64_t>(p + 38);
  out.echo_hold_ns = load_be<uint64_t>(p + 46);
  return FrameCheck::kOk;
}

uint32_t internet_sum(std::span<const uint8_t> data, uint32_t sum) {
  size_t i = 0;
  for (; i + 1 < data.size(); i += 2) {
    sum += load_be<uint16_t>(data.data() + i);
    sum = (sum & 0xffff) + (sum >> 16);  // folded as it goes: no 32-bit overflow
  }
  if (i < data.size()) sum += uint32_t{data[i]} << 8;
  return sum;
}

uint16_t internet_checksum(std::span<const uint8_t> data, uint32_t sum) {
  sum = internet_sum(data, sum);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::optional<Answer> answer_frame(std::span<const uint8_t> frame, const Mac& mac,
                                   const Ipv4& ip) {
  if (frame.size() < kEthHeader) return std::nullopt;
  // Only frames for us or broadcast (a promiscuous device hands us everything).
  std::span<const uint8_t> dst = frame.first(6);
  const Mac broadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  if (!same(dst, mac) && !same(dst, broadcast)) return std::nullopt;
  switch (load_be<uint16_t>(frame.data() + 12)) {
    case kEtherTypeArp: return answer_arp(frame, mac, ip);
    case kEtherTypeIpv4: return answer_ipv4(frame, mac, ip);
    default: return std::nullopt;
  }
}

void count_sequence(SequenceCounters& c, uint64_t seq) {
  auto bit = [&c](uint64_t s) -> uint64_t& { return c.seen[(s % kWindow) / 64]; };
  auto mask = [](uint64_t s) { return uint64_t{1} << (s % 64); };
  if (seq >= c.next) {
    // Numbers between the old highest and this one are missing until they turn up.
    c.lost += seq - c.next;
    if (seq - c.next >= kWindow) {
      c.seen.fill(0);
    } else {
      for (uint64_t s = c.next; s < seq; ++s) bit(s) &= ~mask(s);
    }
    bit(seq) |= mask(seq);
    c.next = seq + 1;
    ++c.received;
    return;
  }
  if (c.next - seq <= kWindow) {
    if (bit(seq) & mask(seq)) {
      ++c.duplicates;
      return;
    }
    bit(seq) |= mask(seq);
  }
  ++c.reordered;
  ++c.received;
  if (c.lost > 0) --c.lost;
}

}  // namespace ferry::guest::netverify
