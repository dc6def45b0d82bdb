#include "support/virtio_net_battery.h"

#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <optional>

#include "guest/dma_memory.h"
#include "guest/pci.h"
#include "guest/virtio/net_driver.h"
#include "guest/virtio/virtio_pci_driver.h"
#include "spec/virtio_net.h"

namespace ferry::testing {

namespace {

namespace vn = spec::virtio_net;
using guest::virtio::MacAddress;
using guest::virtio::NetCtrlCommand;
using guest::virtio::NetDriver;
using guest::virtio::VirtioPciDriver;
using Millis = std::chrono::milliseconds;

constexpr uint64_t kDmaBase = 16 << 20;
// How long a frame may take to cross the link and the device (generous: a busy machine).
constexpr Millis kFrameTimeout{20000};
// Frames the filter should drop are followed by one it must pass; this long after the
// passing one, nothing else is on its way.
constexpr Millis kQuietTimeout{200};

constexpr MacAddress kOtherUnicast = {0x52, 0x54, 0x00, 0x99, 0x99, 0x99};
constexpr MacAddress kNewAddress = {0x52, 0x54, 0x00, 0x12, 0x34, 0x99};
constexpr MacAddress kMulticast = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
constexpr MacAddress kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr MacAddress kPeer = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};

std::string hex(uint64_t v) { return fmt::format("0x{:x}", v); }

std::string mac_text(const MacAddress& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                     m[5]);
}

// A 60-byte frame to `dst` from the peer, ethertype 0x88b5 (local experimental), `tag` as
// its first payload byte, optionally behind an 802.1Q tag.
std::vector<uint8_t> frame_to(const MacAddress& dst, uint8_t tag, std::optional<uint16_t> vlan = {}) {
  std::vector<uint8_t> f(dst.begin(), dst.end());
  f.insert(f.end(), kPeer.begin(), kPeer.end());
  if (vlan) {
    f.insert(f.end(), {0x81, 0x00, static_cast<uint8_t>(*vlan >> 8), static_cast<uint8_t>(*vlan)});
  }
  f.insert(f.end(), {0x88, 0xb5, tag});
  while (f.size() < 60) f.push_back(static_cast<uint8_t>(f.size()));
  return f;
}

// The payload tag of a frame built by frame_to.
uint8_t tag_of(const std::vector<uint8_t>& f) {
  const size_t at = (f.size() > 16 && f[12] == 0x81 && f[13] == 0x00) ? 18 : 14;
  return f.size() > at ? f[at] : 0;
}

std::vector<uint8_t> le16(uint16_t v) { return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)}; }

class NetBattery {
 public:
  NetBattery(guest::GuestBus& bus, StreamPeer& peer, client::QmpClient& qmp,
             const NetBatteryOptions& options)
      : bus_(bus), peer_(peer), qmp_(qmp), options_(options) {}

  std::vector<Observation> run();

 private:
  void add(std::string name, std::string value) {
    observations_.push_back({std::move(name), std::move(value)});
  }
  void add_error(std::string name, const Status& status) {
    add(std::move(name), "error: " + status.to_string());
  }

  void identity();
  void capabilities();
  bool probe();
  void transport();
  bool start();
  void control_queue();
  void receive_filter();
  void transmit();
  void rx_filter_query();

  void ctrl(const std::string& name, uint8_t cls, uint8_t cmd, std::vector<uint8_t> data = {});
  // Sends `frames` from the peer, the last one a frame the filter passes, and records the
  // tags of what the guest received (in order) until that last one arrived.
  void filter_case(const std::string& name, const std::vector<std::vector<uint8_t>>& frames);

  guest::GuestBus& bus_;
  StreamPeer& peer_;
  client::QmpClient& qmp_;
  NetBatteryOptions options_;
  std::optional<guest::DmaMemory> dma_;
  std::unique_ptr<VirtioPciDriver> pci_;
  std::unique_ptr<NetDriver> driver_;
  std::vector<Observation> observations_;
};

void NetBattery::identity() {
  struct Field {
    const char* name;
    uint16_t offset;
    unsigned size;
  };
  static constexpr Field kFields[] = {
      {"pci.vendor", 0x00, 2},        {"pci.device", 0x02, 2},
      {"pci.command", 0x04, 2},       {"pci.status", 0x06, 2},
      {"pci.revision", 0x08, 1},      {"pci.class", 0x08, 4},
      {"pci.header_type", 0x0e, 1},   {"pci.subsystem_vendor", 0x2c, 2},
      {"pci.subsystem", 0x2e, 2},     {"pci.capabilities", 0x34, 1},
      {"pci.interrupt_pin", 0x3d, 1},
  };
  for (const Field& f : kFields) {
    auto v = bus_.config_read(options_.slot, 0, f.offset, f.size);
    if (!v.ok()) {
      add_error(f.name, v.status());
      continue;
    }
    add(f.name, hex(f.size == 4 ? (*v >> 8) : *v));  // class: the dword above the revision
  }
}

void NetBattery::capabilities() {
  auto read = [&](uint16_t at, unsigned size) -> uint32_t {
    auto v = bus_.config_read(options_.slot, 0, at, size);
    return v.ok() ? *v : 0xffffffffu;
  };
  uint16_t at = static_cast<uint16_t>(read(0x34, 1) & 0xfc);
  for (int i = 0; at != 0 && i < 48; ++i) {
    const uint8_t id = static_cast<uint8_t>(read(at, 1));
    std::string value = fmt::format("id {} at {}", hex(id), hex(at));
    if (id == 0x09) {  // virtio vendor capability
      value += fmt::format(" len {} type {} bar {} offset {} length {}", read(at + 2, 1),
                           read(at + 3, 1), read(at + 4, 1), hex(read(at + 8, 4)),
                           hex(read(at + 12, 4)));
      if (read(at + 3, 1) == 2) value += fmt::format(" multiplier {}", read(at + 16, 4));
    } else if (id == 0x11) {  // MSI-X
      value += fmt::format(" control {} table {} pba {}", hex(read(at + 2, 2)),
                           hex(read(at + 4, 4)), hex(read(at + 8, 4)));
    }
    add(fmt::format("pci.cap.{}", i), value);
    at = static_cast<uint16_t>(read(at + 1, 1) & 0xfc);
  }
}

bool NetBattery::probe() {
  auto dma = guest::DmaMemory::create(kDmaBase, options_.ram_bytes);
  if (!dma.ok()) {
    add_error("probe", dma.status());
    return false;
  }
  dma_.emplace(std::move(*dma));
  guest::MmioWindow window = guest::MmioWindow::standard();
  auto pci = VirtioPciDriver::probe(bus_, *dma_, window, {.device_id = 0x1000});
  if (!pci.ok()) {
    add_error("probe", pci.status());
    return false;
  }
  pci_ = std::move(*pci);
  for (const guest::PciBar& bar : pci_->bars()) {
    add(fmt::format("pci.bar{}", bar.index),
        fmt::format("size {} {}{}{}", hex(bar.size), bar.io ? "io" : "memory",
                    bar.is_64bit ? " 64-bit" : "", bar.prefetchable ? " prefetchable" : ""));
  }
  return true;
}

void NetBattery::transport() {
  VirtioPciDriver& pci = *pci_;
  if (Status st = pci.reset(); !st.ok()) add_error("reset", st);
  uint64_t offered = 0;
  for (uint32_t word = 0; word < 2; ++word) {
    Status st = pci.write_common(0x00, word, 4);  // device_feature_select
    auto bits = st.ok() ? pci.read_common(0x04, 4) : Result<uint64_t>(st);
    if (!bits.ok()) {
      add_error("features.offered", bits.status());
      return;
    }
    offered |= *bits << (32 * word);
  }
  add("features.offered", hex(offered));
  auto queues = pci.num_queues();
  if (!queues.ok()) return add_error("queues", queues.status());
  add("queues", std::to_string(*queues));
  for (uint16_t q = 0; q < *queues; ++q) {
    auto size = pci.queue_max_size(q);
    add(fmt::format("queue.{}.max_size", q), size.ok() ? std::to_string(*size) : "error");
  }
  // Byte by byte, a little past the structure: what lies beyond the configuration's length.
  std::string bytes;
  for (uint32_t i = 0; i < vn::kConfigSize + 4; ++i) {
    auto b = pci.read_config_le(i, 1);
    bytes += b.ok() ? fmt::format("{:02x}", *b) : "??";
  }
  add("config.bytes", bytes);
}

bool NetBattery::start() {
  auto driver = NetDriver::start(std::move(pci_), *dma_, {.mergeable = true});
  if (!driver.ok()) {
    add_error("start", driver.status());
    return false;
  }
  driver_ = std::move(*driver);
  add("start.features", hex(driver_->features()));
  add("start.mergeable", driver_->mergeable() ? "yes" : "no");
  auto link = driver_->link_up();
  add("start.link_up", link.ok() ? (*link ? "yes" : "no") : "error");
  add("start.max_queue_pairs", std::to_string(driver_->max_queue_pairs()));
  add("start.rx_posted", std::to_string(driver_->rx_posted()));
  return true;
}

void NetBattery::ctrl(const std::string& name, uint8_t cls, uint8_t cmd, std::vector<uint8_t> data) {
  auto ack = driver_->control(NetCtrlCommand{cls, cmd, std::move(data)});
  if (!ack.ok()) return add_error("ctrl." + name, ack.status());
  add("ctrl." + name, *ack == vn::kCtrlOk ? "ok" : *ack == vn::kCtrlErr ? "err" : hex(*ack));
}

void NetBattery::control_queue() {
  const std::pair<const char*, uint8_t> modes[] = {
      {"promisc", vn::kCtrlRxPromisc}, {"allmulti", vn::kCtrlRxAllmulti},
      {"alluni", vn::kCtrlRxAlluni},   {"nomulti", vn::kCtrlRxNomulti},
      {"nouni", vn::kCtrlRxNouni},     {"nobcast", vn::kCtrlRxNobcast}};
  for (const auto& [name, cmd] : modes) {
    ctrl(fmt::format("rx.{}.on", name), vn::kCtrlRx, cmd, {1});
    ctrl(fmt::format("rx.{}.off", name), vn::kCtrlRx, cmd, {0});
  }
  ctrl("rx.unknown_cmd_6", vn::kCtrlRx, 6, {1});
  ctrl("rx.promisc.two_bytes", vn::kCtrlRx, vn::kCtrlRxPromisc, {0, 0});

  const MacAddress mac = driver_->mac();
  std::vector<uint8_t> table = {1, 0, 0, 0};
  table.insert(table.end(), kOtherUnicast.begin(), kOtherUnicast.end());
  table.insert(table.end(), {1, 0, 0, 0});
  table.insert(table.end(), kMulticast.begin(), kMulticast.end());
  ctrl("mac.table_set", vn::kCtrlMac, vn::kCtrlMacTableSet, table);
  ctrl("mac.table_set.truncated", vn::kCtrlMac, vn::kCtrlMacTableSet, {2, 0, 0, 0, 1, 2});
  ctrl("mac.addr_set", vn::kCtrlMac, vn::kCtrlMacAddrSet,
       std::vector<uint8_t>(kNewAddress.begin(), kNewAddress.end()));
  auto config_mac = driver_->pci().read_config_le(vn::kCfgMac, 4);
  add("mac.addr_set.config", config_mac.ok() ? hex(*config_mac) : "error");
  ctrl("mac.addr_set.back", vn::kCtrlMac, vn::kCtrlMacAddrSet,
       std::vector<uint8_t>(mac.begin(), mac.end()));
  ctrl("mac.addr_set.five_bytes", vn::kCtrlMac, vn::kCtrlMacAddrSet, {0x52, 0x54, 0, 1, 2});
  ctrl("mac.unknown_cmd_2", vn::kCtrlMac, 2);

  ctrl("vlan.add_5", vn::kCtrlVlan, vn::kCtrlVlanAdd, le16(5));
  ctrl("vlan.del_5", vn::kCtrlVlan, vn::kCtrlVlanDel, le16(5));
  ctrl("vlan.add_4096", vn::kCtrlVlan, vn::kCtrlVlanAdd, le16(4096));
  ctrl("vlan.add.one_byte", vn::kCtrlVlan, vn::kCtrlVlanAdd, {5});
  ctrl("vlan.unknown_cmd_2", vn::kCtrlVlan, 2, le16(5));

  ctrl("announce.ack", vn::kCtrlAnnounce, vn::kCtrlAnnounceAck);
  ctrl("announce.unknown_cmd_1", vn::kCtrlAnnounce, 1);

  ctrl("mq.pairs_1", vn::kCtrlMq, vn::kCtrlMqVqPairsSet, le16(1));
  ctrl("mq.pairs_0", vn::kCtrlMq, vn::kCtrlMqVqPairsSet, le16(0));
  ctrl("mq.rss_config", vn::kCtrlMq, vn::kCtrlMqRssConfig, std::vector<uint8_t>(16, 0));
  ctrl("mq.hash_config", vn::kCtrlMq, vn::kCtrlMqHashConfig, std::vector<uint8_t>(16, 0));
  ctrl("mq.unknown_cmd_3", vn::kCtrlMq, 3, le16(1));

  ctrl("offloads.set", vn::kCtrlGuestOffloads, vn::kCtrlGuestOffloadsSet,
       std::vector<uint8_t>(8, 0));
  ctrl("class.unknown_0x7f", 0x7f, 0);
}

void NetBattery::filter_case(const std::string& name,
                             const std::vector<std::vector<uint8_t>>& frames) {
  for (const auto& f : frames) {
    if (Status st = peer_.send_frame(f); !st.ok()) return add_error("filter." + name, st);
  }
  const uint8_t last = tag_of(frames.back());
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + kFrameTimeout;
  bool got_last = false;
  while (!got_last && std::chrono::steady_clock::now() < deadline) {
    auto frame = driver_->receive();
    if (!frame.ok()) return add_error("filter." + name, frame.status());
    if (!*frame) continue;
    const uint8_t tag = tag_of(**frame);
    seen += fmt::format("{}{}", seen.empty() ? "" : " ", hex(tag));
    got_last = tag == last;
  }
  add("filter." + name, got_last ? seen : seen + " (the last frame never arrived)");
}

void NetBattery::receive_filter() {
  const MacAddress mac = driver_->mac();
  // Every mode off and an empty MAC table: own address and broadcast pass, nothing else.
  for (uint8_t cmd : {vn::kCtrlRxPromisc, vn::kCtrlRxAllmulti, vn::kCtrlRxAlluni,
                      vn::kCtrlRxNomulti, vn::kCtrlRxNouni, vn::kCtrlRxNobcast}) {
    (void)driver_->control(NetCtrlCommand{vn::kCtrlRx, cmd, {0}});
  }
  (void)driver_->set_mac_table({}, {});
  filter_case("strict", {frame_to(kOtherUnicast, 1), frame_to(kMulticast, 2),
                         frame_to(kBroadcast, 3), frame_to(mac, 4)});
  (void)driver_->set_rx_mode(vn::kCtrlRxAllmulti, true);
  filter_case("allmulti", {frame_to(kOtherUnicast, 5), frame_to(kMulticast, 6), frame_to(mac, 7)});
  (void)driver_->set_rx_mode(vn::kCtrlRxAllmulti, false);
  (void)driver_->set_rx_mode(vn::kCtrlRxNobcast, true);
  filter_case("nobcast", {frame_to(kBroadcast, 8), frame_to(mac, 9)});
  (void)driver_->set_rx_mode(vn::kCtrlRxNobcast, false);
  const std::array<MacAddress, 1> other = {kOtherUnicast};
  (void)driver_->set_mac_table(other, {});
  filter_case("mac_table", {frame_to(kOtherUnicast, 10), frame_to(mac, 11)});
  (void)driver_->set_mac_table({}, {});
  filter_case("vlan_7_absent", {frame_to(mac, 12, 7), frame_to(mac, 13)});
  (void)driver_->vlan_add(7);
  filter_case("vlan_7_added", {frame_to(mac, 14, 7), frame_to(mac, 15)});
  (void)driver_->set_rx_mode(vn::kCtrlRxPromisc, true);
  filter_case("promisc", {frame_to(kOtherUnicast, 16), frame_to(mac, 17)});
  // Nothing more follows: every frame sent came before the last one of its case.
  std::string after = "nothing";
  const auto quiet_until = std::chrono::steady_clock::now() + kQuietTimeout;
  while (after == "nothing" && std::chrono::steady_clock::now() < quiet_until) {
    auto extra = driver_->receive();
    if (!extra.ok() || *extra) after = extra.ok() ? "an unexpected frame" : "error";
  }
  add("filter.after", after);
}

void NetBattery::transmit() {
  for (size_t size : {size_t{60}, size_t{1514}}) {
    std::vector<uint8_t> frame = frame_to(kPeer, static_cast<uint8_t>(size));
    frame.resize(size, 0x5a);
    const std::string name = fmt::format("tx.{}", size);
    if (Status st = driver_->send(frame); !st.ok()) {
      add_error(name, st);
      continue;
    }
    auto got = peer_.receive_frame(kFrameTimeout);
    if (!got.ok()) {
      add_error(name, got.status());
      continue;
    }
    if (!*got) {
      add(name, "nothing on the link");
      continue;
    }
    add(name, **got == frame ? fmt::format("{} bytes, intact", (*got)->size())
                             : fmt::format("{} bytes, different", (*got)->size()));
  }
  auto reclaimed = driver_->reclaim_tx();
  add("tx.reclaimed", reclaimed.ok() ? std::to_string(*reclaimed) : "error");
}

void NetBattery::rx_filter_query() {
  // The reply without its "id" (each client numbers its commands its own way).
  auto answer = [&](const client::Json& arguments) -> std::string {
    auto reply = qmp_.execute("query-rx-filter", arguments);
    if (!reply.ok()) return "error: " + reply.status().to_string();
    reply->erase("id");
    return reply->dump();
  };
  add("query-rx-filter", answer({{"name", options_.nic_id}}));
  add("query-rx-filter.unknown", answer({{"name", "nosuchnic"}}));
}

std::vector<Observation> NetBattery::run() {
  identity();
  capabilities();
  if (!probe()) return observations_;
  transport();
  if (!start()) return observations_;
  auto mac = driver_->mac();
  add("start.mac", mac_text(mac));
  filter_case("default", {frame_to(mac, 0x80)});
  control_queue();
  receive_filter();
  transmit();
  rx_filter_query();
  return observations_;
}

}  // namespace

std::vector<Observation> run_net_battery(guest::GuestBus& bus, StreamPeer& peer,
                                         client::QmpClient& qmp, const NetBatteryOptions& options) {
  return NetBattery(bus, peer, qmp, options).run();
}

}  // namespace ferry::testing
