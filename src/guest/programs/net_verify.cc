#include "guest/programs/net_verify.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <optional>

#include <fmt/format.h>

#include "guest/pci.h"
#include "spec/virtio_net.h"

namespace ferry::guest {

using netverify::FrameCheck;
using netverify::FrameKind;
using netverify::Phase;
using netverify::Role;

namespace {

constexpr uint16_t kNetVirtioVendor = 0x1af4;
constexpr uint16_t kVirtioNetTransitional = 0x1000;
constexpr uint16_t kVirtioNetModern = 0x1041;
constexpr uint64_t kNetMmioWindowEnd = 0xfec00000;
constexpr unsigned kMaxReceivePerStep = 64;
constexpr unsigned kMaxSendPerStep = 64;
constexpr int64_t kNetNsPerMs = 1'000'000;
constexpr uint64_t kNetMaxRate = 1'000'000'000;
constexpr int64_t kDoneEveryNs = 200 * kNetNsPerMs;
constexpr int64_t kHelloEveryNs = 100 * kNetNsPerMs;
constexpr std::array<std::string_view, netverify::kPhaseCount> kNetPhaseNames = {
    "start", "run", "drain", "finished", "failed"};
constexpr std::array<std::string_view, 3> kRoleNames = {"both", "send", "receive"};

int64_t net_wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string given_text(const Opts& opts, std::string_view key) {
  std::string text;
  for (const Opts::Entry& e : opts.entries())
    if (e.key == key) text = e.text;
  return text;
}

Status bad_option(std::string_view key, std::string_view expects, std::string_view found) {
  return Error(ErrorCode::kInvalidArgument, "{}: Parameter '{}' expects {}, found '{}'",
               kNetVerifyOption, key, expects, found);
}

bool is_virtio_net(const PciFunction& fn) {
  return fn.vendor_id == kNetVirtioVendor &&
         (fn.device_id == kVirtioNetTransitional || fn.device_id == kVirtioNetModern);
}

}  // namespace

// ---- options ------------------------------------------------------------------------------------

Result<netverify::Mac> parse_mac(std::string_view text) {
  netverify::Mac mac{};
  auto bad = [&] {
    return Error(ErrorCode::kInvalidArgument, "'{}' is not a MAC address like 52:54:00:12:34:56",
                 text);
  };
  if (text.size() != 17) return bad();
  for (size_t i = 0; i < 6; ++i) {
    std::string_view part = text.substr(i * 3, 2);
    if (i < 5 && text[i * 3 + 2] != ':') return bad();
    auto [end, ec] = std::from_chars(part.data(), part.data() + 2, mac[i], 16);
    if (ec != std::errc{} || end != part.data() + 2) return bad();
  }
  return mac;
}

Result<netverify::Ipv4> parse_ipv4(std::string_view text) {
  netverify::Ipv4 ip{};
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (size_t i = 0; i < 4; ++i) {
    unsigned value = 256;
    auto [next, ec] = std::from_chars(p, end, value, 10);
    if (ec != std::errc{} || next == p || next - p > 3 || value > 255 ||
        (i < 3 && (next == end || *next != '.')) || (i == 3 && next != end))
      return Error(ErrorCode::kInvalidArgument, "'{}' is not an IPv4 address like 10.0.2.15",
                   text);
    ip[i] = static_cast<uint8_t>(value);
    p = next + 1;
  }
  return ip;
}

std::string format_mac(const netverify::Mac& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                     m[5]);
}

OptSchema net_verify_schema() {
  OptSchema s;
  s.option = std::string(kNetVerifyOption);
  s.implied_key = "program";
  s.properties = {
      {"program", OptType::kString, "net-verify", "the guest program", {"net-verify"}},
      {"device", OptType::kString, "", "id of the NIC (-device virtio-net-pci,id=ID)", {}},
      {"peer", OptType::kString, "ff:ff:ff:ff:ff:ff", "MAC address workload frames go to", {}},
      {"ip", OptType::kString, "", "IPv4 address to answer ARP, ping and UDP on (none: no answers)",
       {}},
      {"size", OptType::kNumber, "1514", "bytes per workload frame, no FCS (60..1514)", {}},
      {"rate", OptType::kNumber, "1000", "workload frames per second (0: as fast as possible)", {}},
      {"count", OptType::kNumber, "0", "workload frames to send (0: until x-guest-finish)", {}},
      {"role", OptType::kString, "both", "which directions run", {"both", "send", "receive"}},
  };
  return s;
}

Result<NetVerifyConfig> net_verify_config(const Opts& opts) {
  NetVerifyConfig c;
  c.device = opts.string("device").value_or("");
  if (opts.is_set("peer")) {
    std::string text = opts.string("peer").value_or("");
    auto mac = parse_mac(text);
    if (!mac.ok()) return bad_option("peer", "a MAC address like 52:54:00:12:34:56", text);
    c.peer = *mac;
  }
  if (opts.is_set("ip")) {
    std::string text = opts.string("ip").value_or("");
    auto ip = parse_ipv4(text);
    if (!ip.ok()) return bad_option("ip", "an IPv4 address like 10.0.2.15", text);
    c.ip = *ip;
    c.has_ip = true;
  }
  uint64_t size = opts.number("size").value_or(1514);
  if (size < netverify::kMinFrame || size > netverify::kMaxFrame)
    return bad_option("size", "a frame size from 60 to 1514", given_text(opts, "size"));
  c.frame_size = static_cast<uint32_t>(size);
  c.rate = opts.number("rate").value_or(1000);
  if (c.rate > kNetMaxRate)
    return bad_option("rate", "frames per second up to 1000000000 (0: unlimited)",
                      given_text(opts, "rate"));
  c.count = opts.number("count").value_or(0);
  std::string role = opts.string("role").value_or("both");
  auto at = std::find(kRoleNames.begin(), kRoleNames.end(), role);
  if (at == kRoleNames.end()) return bad_option("role", "both, send or receive", role);
  c.role = static_cast<Role>(at - kRoleNames.begin());
  return c;
}

// ---- the program --------------------------------------------------------------------------------

Result<std::unique_ptr<NetVerifyProgram>> NetVerifyProgram::create(const NetVerifyConfig& config) {
  if (config.frame_size < netverify::kMinFrame || config.frame_size > netverify::kMaxFrame)
    return bad_option("size", "a frame size from 60 to 1514", fmt::format("{}", config.frame_size));
  if (config.rate > kNetMaxRate)
    return bad_option("rate", "frames per second up to 1000000000 (0: unlimited)",
                      fmt::format("{}", config.rate));
  if (config.dma_base % DmaMemory::kPageSize != 0 || config.dma_size < kNetVerifyDmaBytes ||
      config.dma_base + config.dma_size < config.dma_base) {
    return Error(ErrorCode::kInvalidArgument,
                 "{}: the guest RAM range [0x{:x}, +0x{:x}) must be page-aligned and hold at least "
                 "0x{:x} bytes",
                 kNetVerifyOption, config.dma_base, config.dma_size, kNetVerifyDmaBytes);
  }
  return std::unique_ptr<NetVerifyProgram>(new NetVerifyProgram(config));
}

NetVerifyProgram::NetVerifyProgram(const NetVerifyConfig& config) : config_(config) {
  netverify::ConfigEcho echo;
  echo.role = static_cast<uint8_t>(config.role);
  echo.pci_slot = config.pci_slot;
  echo.pci_function = config.pci_function;
  echo.peer = config.peer;
  echo.ip = config.has_ip ? config.ip : netverify::Ipv4{};
  echo.frame_size = config.frame_size;
  echo.rate = config.rate;
  echo.count = config.count;
  echo.bar_base = config.bar_base;
  echo.dma_base = config.dma_base;
  echo.dma_size = config.dma_size;
  state_.config = echo;
  state_.local = echo;
}

NetVerifyProgram::~NetVerifyProgram() {
  // The VM is going away; it may hold the machine lock a device access would need.
  if (driver_) driver_->abandon();
}

std::unique_ptr<vmstate::StateBinding> NetVerifyProgram::migration_state() {
  return netverify::bind_state(state_);
}

int64_t NetVerifyProgram::running_ns() const { return net_wall_ns() - state_.paused_ns; }

void NetVerifyProgram::note_parked() { state_.parked_at_wall_ns = net_wall_ns(); }

void NetVerifyProgram::note_resumed() {
  if (state_.parked_at_wall_ns == 0) return;
  int64_t pause = net_wall_ns() - state_.parked_at_wall_ns;
  if (pause > 0) state_.paused_ns += pause;
  state_.parked_at_wall_ns = 0;
}

void NetVerifyProgram::note_reset() {
  // The device forgot its rings; the driver's objects describe rings that no longer exist.
  // Called with the machine lock held: the driver must not touch the device (it is reset
  // already), only give its memory back.
  if (driver_) driver_->abandon();
  driver_.reset();
  dma_.reset();
}

Status NetVerifyProgram::fail(Status status) {
  state_.phase = Phase::kFailed;
  error_ = status;
  return status;
}

Result<StepResult> NetVerifyProgram::step(GuestBus& bus) {
  if (state_.phase == Phase::kFailed) {
    if (!error_.ok()) return error_;
    return Error(ErrorCode::kFailedPrecondition, "net-verify: the program had failed on the source");
  }
  if (state_.phase == Phase::kFinished) return StepResult::kFinished;
  // Fresh, after a load (the driver's objects stayed on the source) or after a reset.
  if (!driver_) {
    Status up = bring_up(bus);
    if (!up.ok()) return fail(up.prepend_message("net-verify: "));
    return StepResult::kProgress;
  }
  auto result = run_step();
  if (!result.ok()) return fail(result.take_status().prepend_message("net-verify: "));
  return result;
}

Status NetVerifyProgram::bring_up(GuestBus& bus) {
  driver_.reset();
  dma_.reset();
  auto functions = enumerate_bus0(bus);
  if (!functions.ok()) return functions.take_status();
  std::optional<PciFunction> found;
  for (const PciFunction& fn : *functions) {
    bool wanted = config_.pci_slot == kNetVerifyAnySlot
                      ? is_virtio_net(fn)
                      : fn.slot == config_.pci_slot && fn.function == config_.pci_function;
    if (wanted) {
      found = fn;
      break;
    }
  }
  if (!found) {
    if (config_.pci_slot == kNetVerifyAnySlot)
      return Error(ErrorCode::kFailedPrecondition, "no virtio-net-pci function on PCI bus 0");
    return Error(ErrorCode::kFailedPrecondition, "no PCI function at 00:{:02x}.{}",
                 config_.pci_slot, config_.pci_function);
  }
  if (!is_virtio_net(*found)) {
    return Error(ErrorCode::kFailedPrecondition,
                 "PCI 00:{:02x}.{} is not a virtio-net function (ids {:04x}:{:04x})", found->slot,
                 found->function, found->vendor_id, found->device_id);
  }
  // VirtioPciDriver finds functions by ids and index: this one's index among its twins.
  virtio::VirtioPciDriver::Match match;
  match.device_id = found->device_id;
  for (const PciFunction& fn : *functions) {
    if (fn.slot == found->slot && fn.function == found->function) break;
    if (fn.vendor_id == found->vendor_id && fn.device_id == found->device_id) ++match.index;
  }
  auto dma = DmaMemory::create(config_.dma_base, config_.dma_base + config_.dma_size);
  if (!dma.ok()) return dma.take_status();
  dma_ = std::make_unique<DmaMemory>(std::move(dma).value());
  MmioWindow window(config_.bar_base, kNetMmioWindowEnd);
  auto pci = virtio::VirtioPciDriver::probe(bus, *dma_, window, match);
  if (!pci.ok()) return pci.take_status();
  virtio::NetDriver::Options options;
  auto driver = virtio::NetDriver::start(std::move(pci).value(), *dma_, options);
  if (!driver.ok()) return driver.take_status();
  driver_ = std::move(driver).value();
  state_.mac = driver_->mac();
  ++state_.bringups;
  if (state_.phase == Phase::kStart) state_.phase = Phase::kRun;
  return {};
}

Result<StepResult> NetVerifyProgram::run_step() {
  netverify::NetVerifyState& s = state_;
  uint64_t before = s.rx.received + s.rx.duplicates + s.rx.corrupted + s.other_frames +
                    s.arp_answers + s.icmp_answers + s.udp_answers + s.sent;
  FERRY_RETURN_IF_ERROR(receive_some());
  auto reclaimed = driver_->reclaim_tx();
  if (!reclaimed.ok()) return reclaimed.take_status();

  if (s.phase == Phase::kRun) {
    bool count_reached = config_.count != 0 && s.sent >= config_.count;
    if (s.finish_requested || count_reached) {
      start_drain();
    } else {
      int64_t now = running_ns();
      if (!s.peer_heard_us && now >= s.next_hello_ns && driver_->tx_free() > 0) {
        // seq 1: "I hear you".
        FERRY_RETURN_IF_ERROR(send_frame(FrameKind::kHello, s.peer_heard ? 1 : 0));
        ++s.hellos_sent;
        s.next_hello_ns = now + kHelloEveryNs;
      }
      if (s.peer_heard && config_.role != Role::kReceive)
        FERRY_RETURN_IF_ERROR(send_data_frames());
    }
  }
  if (s.phase == Phase::kDrain) {
    int64_t now = running_ns();
    if (now >= s.next_done_ns && driver_->tx_free() > 0) {
      FERRY_RETURN_IF_ERROR(send_frame(FrameKind::kDone, s.sent));
      ++s.done_sent;
      s.next_done_ns = now + kDoneEveryNs;
    }
    if ((s.peer_done && s.done_sent > 0) || now >= s.drain_deadline_ns) {
      finish();
      return StepResult::kFinished;
    }
  }
  uint64_t after = s.rx.received + s.rx.duplicates + s.rx.corrupted + s.other_frames +
                   s.arp_answers + s.icmp_answers + s.udp_answers + s.sent;
  return after != before || *reclaimed != 0 ? StepResult::kProgress : StepResult::kWaiting;
}

void NetVerifyProgram::start_drain() {
  state_.phase = Phase::kDrain;
  state_.next_done_ns = 0;
  state_.drain_deadline_ns = running_ns() + config_.drain_timeout_ms * kNetNsPerMs;
}

void NetVerifyProgram::finish() {
  netverify::NetVerifyState& s = state_;
  // Frames the peer sent after the last one that arrived never came.
  if (s.peer_done && s.peer_sent > s.rx.next) s.rx.lost += s.peer_sent - s.rx.next;
  s.phase = Phase::kFinished;
}

Status NetVerifyProgram::receive_some() {
  for (unsigned i = 0; i < kMaxReceivePerStep; ++i) {
    auto frame = driver_->receive();
    if (!frame.ok()) return frame.take_status();
    if (!*frame) return {};
    FERRY_RETURN_IF_ERROR(take_frame(**frame));
  }
  return {};
}

Status NetVerifyProgram::take_frame(std::span<const uint8_t> frame) {
  netverify::NetVerifyState& s = state_;
  netverify::FrameFields fields;
  switch (netverify::parse_frame(frame, fields)) {
    case FrameCheck::kCorrupt: ++s.rx.corrupted; return {};
    case FrameCheck::kOk: {
      int64_t now = net_wall_ns();
      if (!s.peer_heard) {
        s.peer_heard = true;
        s.run_start_ns = running_ns();
      }
      if (fields.kind == FrameKind::kHello) {
        if (fields.seq == 1) s.peer_heard_us = true;
        return {};
      }
      s.peer_heard_us = true;
      if (fields.kind == FrameKind::kDone) {
        s.peer_done = true;
        s.peer_sent = fields.seq;
        return {};
      }
      netverify::count_sequence(s.rx, fields.seq);
      s.peer_tx_ns = fields.tx_ns;
      s.peer_rx_wall_ns = now;
      // Each of our frames is echoed until a newer one reaches the peer: count it once.
      if (fields.echo_ns != 0 && fields.echo_ns > s.newest_echo_ns) {
        s.newest_echo_ns = fields.echo_ns;
        int64_t rtt = now - static_cast<int64_t>(fields.echo_ns) -
                      static_cast<int64_t>(fields.echo_hold_ns);
        if (rtt >= 0) ++s.rtt[verify::latency_bucket(static_cast<uint64_t>(rtt))];
      }
      return {};
    }
    case FrameCheck::kNotVerify: break;
  }
  if (config_.has_ip) {
    auto answer = netverify::answer_frame(frame, s.mac, config_.ip);
    if (answer) {
      if (driver_->tx_free() == 0) {
        auto taken = driver_->reclaim_tx();
        if (!taken.ok()) return taken.take_status();
      }
      if (driver_->tx_free() == 0) {
        ++s.answers_dropped;
        return {};
      }
      FERRY_RETURN_IF_ERROR(driver_->send(answer->frame));
      switch (answer->kind) {
        case netverify::AnswerKind::kArp: ++s.arp_answers; break;
        case netverify::AnswerKind::kIcmp: ++s.icmp_answers; break;
        case netverify::AnswerKind::kUdp: ++s.udp_answers; break;
      }
      return {};
    }
  }
  ++s.other_frames;
  return {};
}

Status NetVerifyProgram::send_data_frames() {
  netverify::NetVerifyState& s = state_;
  uint64_t due = UINT64_MAX;
  if (config_.rate != 0) {
    // Frames due since the run began at `rate` per second of running time (one at once).
    // (rate is at most kNetMaxRate, so neither product overflows)
    auto elapsed = static_cast<uint64_t>(std::max<int64_t>(running_ns() - s.run_start_ns, 0));
    due = elapsed / 1'000'000'000u * config_.rate +
          elapsed % 1'000'000'000u * config_.rate / 1'000'000'000u + 1;
  }
  if (config_.count != 0) due = std::min(due, config_.count);
  unsigned queued = 0;
  for (; queued < kMaxSendPerStep && s.sent < due; ++queued) {
    if (driver_->tx_free() == 0) {
      ++s.tx_full;
      break;
    }
    FERRY_RETURN_IF_ERROR(send_frame(FrameKind::kData, s.sent, /*kick=*/false));
    ++s.sent;
  }
  // One notification for the burst.
  return queued != 0 ? driver_->kick_tx() : Status{};
}

Status NetVerifyProgram::send_frame(FrameKind kind, uint64_t seq, bool kick) {
  netverify::FrameFields f;
  f.dst = config_.peer;
  f.src = state_.mac;
  f.kind = kind;
  f.seq = seq;
  int64_t now = net_wall_ns();
  f.tx_ns = static_cast<uint64_t>(now);
  if (state_.peer_tx_ns != 0) {
    f.echo_ns = state_.peer_tx_ns;
    f.echo_hold_ns = static_cast<uint64_t>(std::max<int64_t>(now - state_.peer_rx_wall_ns, 0));
  }
  return driver_->send(netverify::build_frame(f, config_.frame_size), 0, kick);
}

nlohmann::ordered_json NetVerifyProgram::status() const {
  const netverify::NetVerifyState& s = state_;
  nlohmann::ordered_json j;
  j["program"] = "net-verify";
  j["phase"] = kNetPhaseNames[std::min<size_t>(static_cast<size_t>(s.phase), kNetPhaseNames.size() - 1)];
  j["device"] = config_.device;
  j["mac"] = format_mac(s.mac);
  j["peer"] = format_mac(config_.peer);
  j["ip"] = config_.has_ip ? fmt::format("{}.{}.{}.{}", config_.ip[0], config_.ip[1],
                                         config_.ip[2], config_.ip[3])
                           : "";
  j["role"] = kRoleNames[static_cast<size_t>(config_.role)];
  j["size"] = config_.frame_size;
  j["rate"] = config_.rate;
  j["ops"] = s.sent + s.rx.received;  // what the shared test waits count as progress
  if (!error_.ok()) j["errors"] = error_.to_string();
  else if (s.phase == Phase::kFailed) j["errors"] = "the program had failed on the source";
  else j["errors"] = 0;
  j["bringups"] = s.bringups;
  int64_t elapsed = s.run_start_ns != 0 ? std::max<int64_t>(running_ns() - s.run_start_ns, 0) : 0;
  j["elapsed_ms"] = elapsed / kNetNsPerMs;
  j["peer_heard"] = s.peer_heard;
  j["peer_heard_us"] = s.peer_heard_us;
  j["tx"] = {{"sent", s.sent},
             {"tx_full", s.tx_full},
             {"hellos_sent", s.hellos_sent},
             {"done_sent", s.done_sent}};
  j["rx"] = {{"received", s.rx.received},
             {"lost", s.rx.lost},
             {"duplicates", s.rx.duplicates},
             {"reordered", s.rx.reordered},
             {"corrupted", s.rx.corrupted},
             {"highest_seq", s.rx.next == 0 ? int64_t{-1} : static_cast<int64_t>(s.rx.next - 1)},
             {"other_frames", s.other_frames},
             {"peer_done", s.peer_done},
             {"peer_sent", s.peer_sent}};
  j["rtt_ns"] = {{"p50", verify::latency_percentile(s.rtt, 0.50)},
                 {"p99", verify::latency_percentile(s.rtt, 0.99)},
                 {"p99.9", verify::latency_percentile(s.rtt, 0.999)}};
  j["answered"] = {{"arp", s.arp_answers},
                   {"icmp", s.icmp_answers},
                   {"udp", s.udp_answers},
                   {"dropped", s.answers_dropped}};
  return j;
}

}  // namespace ferry::guest
