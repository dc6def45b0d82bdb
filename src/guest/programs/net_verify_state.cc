#include "guest/programs/net_verify_state.h"

#include <string>

#include <fmt/format.h>

#include "vmstate/vmstate.h"

namespace ferry::guest::netverify {

namespace {

using vmstate::describe;
using vmstate::field;

constexpr auto kConfigDesc = describe<ConfigEcho>(
    "guest-net-verify-config", {.version = 1},
    field("role", &ConfigEcho::role),
    field("pci_slot", &ConfigEcho::pci_slot),
    field("pci_function", &ConfigEcho::pci_function),
    field("peer", &ConfigEcho::peer),
    field("ip", &ConfigEcho::ip),
    field("frame_size", &ConfigEcho::frame_size),
    field("rate", &ConfigEcho::rate),
    field("count", &ConfigEcho::count),
    field("bar_base", &ConfigEcho::bar_base),
    field("dma_base", &ConfigEcho::dma_base),
    field("dma_size", &ConfigEcho::dma_size));

constexpr auto kCountersDesc = describe<SequenceCounters>(
    "guest-net-verify-rx", {.version = 1},
    field("received", &SequenceCounters::received),
    field("lost", &SequenceCounters::lost),
    field("duplicates", &SequenceCounters::duplicates),
    field("reordered", &SequenceCounters::reordered),
    field("corrupted", &SequenceCounters::corrupted),
    field("next", &SequenceCounters::next),
    field("seen", &SequenceCounters::seen));

std::string config_differences(const ConfigEcho& source, const ConfigEcho& local) {
  std::string out;
  auto add = [&out](std::string_view name, auto from, auto here) {
    if (from == here) return;
    if (!out.empty()) out += ", ";
    out += fmt::format("{} differs", name);
  };
  add("role", source.role, local.role);
  add("device slot", source.pci_slot, local.pci_slot);
  add("device function", source.pci_function, local.pci_function);
  add("peer", source.peer, local.peer);
  add("ip", source.ip, local.ip);
  add("size", source.frame_size, local.frame_size);
  add("rate", source.rate, local.rate);
  add("count", source.count, local.count);
  add("BAR base", source.bar_base, local.bar_base);
  add("DMA base", source.dma_base, local.dma_base);
  add("DMA size", source.dma_size, local.dma_size);
  return out;
}

Status post_load(NetVerifyState& s, int) {
  if (!(s.config == s.local)) {
    return Error(ErrorCode::kFailedPrecondition,
                 "-guest net-verify options differ from the source's: {}",
                 config_differences(s.config, s.local));
  }
  return {};
}

constexpr auto kStateDesc = describe<NetVerifyState>(
    "guest-net-verify", {.version = 1, .post_load = &post_load},
    field("config", &NetVerifyState::config, kConfigDesc),
    field("phase", &NetVerifyState::phase)
        .validate([](Phase p) { return static_cast<uint8_t>(p) < kPhaseCount; }, "unknown phase"),
    field("paused_ns", &NetVerifyState::paused_ns),
    field("parked_at_wall_ns", &NetVerifyState::parked_at_wall_ns),
    field("finish_requested", &NetVerifyState::finish_requested),
    field("bringups", &NetVerifyState::bringups),
    field("mac", &NetVerifyState::mac),
    field("peer_heard", &NetVerifyState::peer_heard),
    field("peer_heard_us", &NetVerifyState::peer_heard_us),
    field("hellos_sent", &NetVerifyState::hellos_sent),
    field("next_hello_ns", &NetVerifyState::next_hello_ns),
    field("run_start_ns", &NetVerifyState::run_start_ns),
    field("sent", &NetVerifyState::sent),
    field("tx_full", &NetVerifyState::tx_full),
    field("done_sent", &NetVerifyState::done_sent),
    field("next_done_ns", &NetVerifyState::next_done_ns),
    field("drain_deadline_ns", &NetVerifyState::drain_deadline_ns),
    field("rx", &NetVerifyState::rx, kCountersDesc),
    field("other_frames", &NetVerifyState::other_frames),
    field("peer_done", &NetVerifyState::peer_done),
    field("peer_sent", &NetVerifyState::peer_sent),
    field("peer_tx_ns", &NetVerifyState::peer_tx_ns),
    field("peer_rx_wall_ns", &NetVerifyState::peer_rx_wall_ns),
    field("newest_echo_ns", &NetVerifyState::newest_echo_ns),
    field("rtt", &NetVerifyState::rtt),
    field("arp_answers", &NetVerifyState::arp_answers),
    field("icmp_answers", &NetVerifyState::icmp_answers),
    field("udp_answers", &NetVerifyState::udp_answers),
    field("answers_dropped", &NetVerifyState::answers_dropped));

}  // namespace

std::unique_ptr<vmstate::StateBinding> bind_state(NetVerifyState& state) {
  return vmstate::bind(kStateDesc, state);
}

}  // namespace ferry::guest::netverify
