#include "hw/virtio/net/ctrl_commands.h"

#include <algorithm>
#include <bit>

#include "base/byte_order.h"

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;

constexpr uint8_t kOk = vn::kCtrlOk;
constexpr uint8_t kErr = vn::kCtrlErr;

bool negotiated_has(uint64_t negotiated, unsigned feature) {
  return (negotiated & vn::bit(feature)) != 0;
}

uint8_t handle_rx_mode(NetDeviceState& state, uint8_t command, std::span<const uint8_t> data,
                       CtrlOutcome& outcome) {
  if (data.empty()) return kErr;
  const uint8_t on = data[0];  // extra bytes are ignored
  RxFilter& rx = state.rx;
  switch (command) {
    case vn::kCtrlRxPromisc: rx.promisc = on; break;
    case vn::kCtrlRxAllmulti: rx.allmulti = on; break;
    case vn::kCtrlRxAlluni: rx.alluni = on; break;
    case vn::kCtrlRxNomulti: rx.nomulti = on; break;
    case vn::kCtrlRxNouni: rx.nouni = on; break;
    case vn::kCtrlRxNobcast: rx.nobcast = on; break;
    default: return kErr;
  }
  outcome.rx_filter_changed = true;
  return kOk;
}

// MAC TABLE_SET, with QEMU 7.2's arithmetic: counts are le32 and `count * 6` is computed in
// 32 bits (it wraps for counts above 715,827,882; every access stays inside `data`). The
// unicast list may be shorter than the rest of the buffer; the multicast list must fill it
// exactly. A list longer than the table's free entries sets its overflow flag instead.
uint8_t handle_mac_table_set(NetDeviceState& state, std::span<const uint8_t> data,
                             CtrlOutcome& outcome) {
  MacTable table;
  size_t at = 0;

  if (data.size() - at < 4) return kErr;
  const uint32_t unicast = load_le<uint32_t>(data.data() + at);
  at += 4;
  const uint32_t unicast_bytes = unicast * uint32_t{kMacSize};
  if (unicast_bytes > data.size() - at) return kErr;
  if (unicast <= kMacTableEntries) {
    std::copy_n(data.begin() + at, unicast_bytes, table.macs.begin());
    table.in_use = unicast;
  } else {
    table.uni_overflow = 1;
  }
  at += unicast_bytes;
  table.first_multi = table.in_use;

  if (data.size() - at < 4) return kErr;
  const uint32_t multicast = load_le<uint32_t>(data.data() + at);
  at += 4;
  const uint32_t multicast_bytes = multicast * uint32_t{kMacSize};
  if (multicast_bytes != data.size() - at) return kErr;
  if (multicast <= kMacTableEntries - table.in_use) {
    std::copy_n(data.begin() + at, multicast_bytes,
                table.macs.begin() + size_t{table.in_use} * kMacSize);
    table.in_use += multicast;
  } else {
    table.multi_overflow = 1;
  }

  state.rx.mac_table = table;
  outcome.rx_filter_changed = true;
  return kOk;
}

uint8_t handle_mac(NetDeviceState& state, uint8_t command, std::span<const uint8_t> data,
                   CtrlOutcome& outcome) {
  if (command == vn::kCtrlMacAddrSet) {
    if (data.size() != kMacSize) return kErr;
    state.rx.mac = mac_from(data);
    outcome.rx_filter_changed = true;
    return kOk;
  }
  if (command != vn::kCtrlMacTableSet) return kErr;
  return handle_mac_table_set(state, data, outcome);
}

uint8_t handle_vlan(NetDeviceState& state, uint8_t command, std::span<const uint8_t> data,
                    CtrlOutcome& outcome) {
  if (data.size() < 2) return kErr;
  const uint16_t vid = load_le<uint16_t>(data.data());
  if (vid >= kMaxVlan) return kErr;
  if (command == vn::kCtrlVlanAdd) {
    state.rx.set_vlan(vid, true);
  } else if (command == vn::kCtrlVlanDel) {
    state.rx.set_vlan(vid, false);
  } else {
    return kErr;
  }
  outcome.rx_filter_changed = true;
  return kOk;
}

// Only an acknowledgement of a pending announce is accepted; data is ignored.
uint8_t handle_announce(NetDeviceState& state, uint8_t command, CtrlOutcome& outcome) {
  if (command != vn::kCtrlAnnounceAck || (state.status & vn::kStatusAnnounce) == 0) return kErr;
  state.status &= static_cast<uint16_t>(~vn::kStatusAnnounce);
  outcome.announce_step = state.announce_rounds > 0;
  return kOk;
}

// RSS_CONFIG (do_rss) or HASH_CONFIG, in QEMU 7.2's order of checks; fields are written as
// they are parsed, so a refused command leaves what it got to (RSS is then disabled).
// Returns the queue-pair count the command asks for, 0 when refused.
uint16_t configure_rss(NetDeviceState& state, uint64_t negotiated, std::span<const uint8_t> data,
                       bool do_rss) {
  RssState& rss = state.rss;
  const auto refuse = [&rss]() -> uint16_t {
    rss.enabled = false;
    return 0;
  };
  if (do_rss && !negotiated_has(negotiated, vn::kFRss)) return refuse();
  if (!do_rss && !negotiated_has(negotiated, vn::kFHashReport)) return refuse();
  if (data.size() < vn::kRssConfigFixedSize) return refuse();

  rss.hash_types = load_le<uint32_t>(data.data());
  rss.indirections_len = static_cast<uint16_t>(load_le<uint16_t>(data.data() + 4) + 1);
  if (!do_rss) rss.indirections_len = 1;
  if (!std::has_single_bit(rss.indirections_len)) return refuse();
  if (rss.indirections_len > kRssMaxTableLength) return refuse();
  rss.default_queue = do_rss ? load_le<uint16_t>(data.data() + 6) : 0;
  if (rss.default_queue >= state.queue_pairs.max) return refuse();

  size_t at = vn::kRssConfigFixedSize;
  rss.indirections_table.assign(rss.indirections_len, 0);
  const size_t table_bytes = size_t{2} * rss.indirections_len;
  if (data.size() - at < table_bytes) return refuse();
  for (size_t i = 0; i < rss.indirections_len; ++i) {
    rss.indirections_table[i] = load_le<uint16_t>(data.data() + at + 2 * i);
  }
  at += table_bytes;

  if (data.size() - at < 3) return refuse();
  const uint16_t max_tx_vq = load_le<uint16_t>(data.data() + at);
  const uint8_t key_length = data[at + 2];
  at += 3;
  const uint16_t queue_pairs = do_rss ? max_tx_vq : state.queue_pairs.curr;
  if (queue_pairs == 0 || queue_pairs > state.queue_pairs.max) return refuse();
  if (key_length > kRssMaxKeySize) return refuse();
  if (key_length == 0 && rss.hash_types != 0) return refuse();  // "No key provided"
  if (key_length == 0) {
    rss.enabled = false;
    return queue_pairs;
  }
  const size_t available = std::min<size_t>(key_length, data.size() - at);
  std::copy_n(data.begin() + at, available, rss.key.begin());
  if (available != key_length) return refuse();
  rss.enabled = true;
  return queue_pairs;
}

uint8_t handle_mq(NetDeviceState& state, uint64_t negotiated, uint8_t command,
                  std::span<const uint8_t> data, CtrlOutcome& outcome) {
  state.rss.enabled = false;  // every MQ command starts by turning RSS off
  uint16_t queue_pairs = 0;
  if (command == vn::kCtrlMqHashConfig) {
    return configure_rss(state, negotiated, data, false) != 0 ? kOk : kErr;
  }
  if (command == vn::kCtrlMqRssConfig) {
    queue_pairs = configure_rss(state, negotiated, data, true);
  } else if (command == vn::kCtrlMqVqPairsSet) {
    if (!negotiated_has(negotiated, vn::kFMq)) return kErr;
    if (data.size() < 2) return kErr;
    queue_pairs = load_le<uint16_t>(data.data());
  } else {
    return kErr;
  }
  if (queue_pairs < vn::kCtrlMqVqPairsMin || queue_pairs > vn::kCtrlMqVqPairsMax ||
      queue_pairs > state.queue_pairs.max || !state.queue_pairs.multiqueue) {
    return kErr;
  }
  state.queue_pairs.curr = queue_pairs;
  outcome.queue_pairs_set = true;
  return kOk;
}

uint8_t handle_guest_offloads(NetDeviceState& state, uint64_t negotiated, uint8_t command,
                              std::span<const uint8_t> data, CtrlOutcome& outcome) {
  if (!negotiated_has(negotiated, vn::kFCtrlGuestOffloads)) return kErr;
  if (data.size() < 8) return kErr;
  if (command != vn::kCtrlGuestOffloadsSet) return kErr;
  uint64_t offloads = load_le<uint64_t>(data.data());
  // Offloads are the backend's: a peer without a vnet header (stream, socket) has none.
  if (!state.has_vnet_hdr) return kErr;
  const auto has = [&offloads](unsigned feature) { return (offloads & vn::bit(feature)) != 0; };
  state.offloads.rsc4_enabled = has(vn::kFRscExt) && has(vn::kFGuestTso4);
  state.offloads.rsc6_enabled = has(vn::kFRscExt) && has(vn::kFGuestTso6);
  offloads &= ~vn::bit(vn::kFRscExt);
  const uint64_t supported = negotiated & kGuestOffloadsMask;
  if ((offloads & ~supported) != 0) return kErr;
  state.offloads.curr = offloads;
  outcome.offloads_set = true;
  return kOk;
}

}  // namespace

CtrlOutcome execute_ctrl_command(NetDeviceState& state, uint64_t negotiated,
                                 std::span<const uint8_t> request, size_t reply_capacity) {
  CtrlOutcome outcome;
  if (reply_capacity < 1 || request.size() < vn::kCtrlHeaderSize) {
    outcome.missing_headers = true;
    return outcome;
  }
  const uint8_t ctrl_class = request[0];
  const uint8_t command = request[1];
  const std::span<const uint8_t> data = request.subspan(vn::kCtrlHeaderSize);
  switch (ctrl_class) {
    case vn::kCtrlRx: outcome.ack = handle_rx_mode(state, command, data, outcome); break;
    case vn::kCtrlMac: outcome.ack = handle_mac(state, command, data, outcome); break;
    case vn::kCtrlVlan: outcome.ack = handle_vlan(state, command, data, outcome); break;
    case vn::kCtrlAnnounce: outcome.ack = handle_announce(state, command, outcome); break;
    case vn::kCtrlMq: outcome.ack = handle_mq(state, negotiated, command, data, outcome); break;
    case vn::kCtrlGuestOffloads:
      outcome.ack = handle_guest_offloads(state, negotiated, command, data, outcome);
      break;
    default: outcome.ack = kErr; break;  // unknown class
  }
  return outcome;
}

}  // namespace ferry::virtio::net
