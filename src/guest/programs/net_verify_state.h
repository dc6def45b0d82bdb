// Everything `-guest net-verify` remembers between two steps, as plain data: the options
// that shape it, where the workload is, the sequence numbers it sent and received, every
// counter and the round-trip histogram. This is exactly what the "guest-net-verify" section
// migrates (net_verify_state.cc describes it), so the counts go on across a migration.
// The driver's own ring state is not part of it: after a load (or a system_reset) the
// program resets the device and brings its driver up again, and frames the rings held then
// are counted as lost by the receiving side.
//
// Times are ns of std::chrono::steady_clock (CLOCK_MONOTONIC, one clock for every process
// on the host); "running time" is that clock minus every pause the VM reported.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "base/status.h"
#include "guest/programs/latency_histogram.h"
#include "guest/programs/net_frame.h"
#include "vmstate/binding.h"

namespace ferry::guest::netverify {

enum class Role : uint8_t { kBoth, kSend, kReceive };

enum class Phase : uint8_t {
  kStart,     // the driver has never been brought up
  kRun,       // sending (unless role=receive) and receiving
  kDrain,     // no more data frames: "done" sent, waiting for the peer's
  kFinished,
  kFailed,
};
inline constexpr uint8_t kPhaseCount = static_cast<uint8_t>(Phase::kFailed) + 1;

// The options that shape the state; a destination refuses a source whose echo differs.
struct ConfigEcho {
  uint8_t role = 0;
  uint8_t pci_slot = 0;
  uint8_t pci_function = 0;
  Mac peer{};
  Ipv4 ip{};
  uint32_t frame_size = 0;
  uint64_t rate = 0;
  uint64_t count = 0;
  uint64_t bar_base = 0;
  uint64_t dma_base = 0;
  uint64_t dma_size = 0;
  bool operator==(const ConfigEcho&) const = default;
};

struct NetVerifyState {
  ConfigEcho config;  // saved; on load, the source's (checked against `local`)
  Phase phase = Phase::kStart;
  int64_t paused_ns = 0;
  int64_t parked_at_wall_ns = 0;  // when the vCPU last parked (0: running)
  bool finish_requested = false;
  uint32_t bringups = 0;          // driver bring-ups (more than 1: after a reset or a load)
  Mac mac{};                      // the device's, as the driver read it
  // Data goes out once the peer is heard from; hellos (net_frame.h) go out until the peer is
  // known to hear us (its hello says so, or its data or done arrives): a hello sent before
  // the stream connected is gone, and a peer that never hears us never starts.
  bool peer_heard = false;
  bool peer_heard_us = false;
  uint64_t hellos_sent = 0;
  int64_t next_hello_ns = 0;      // running time
  // Sending.
  int64_t run_start_ns = 0;       // running time data began (the rate's origin)
  uint64_t sent = 0;              // data frames handed to the device
  uint64_t tx_full = 0;           // times a frame was due but every TX slot was busy
  uint64_t done_sent = 0;         // "done" frames sent
  int64_t next_done_ns = 0;       // running time of the next "done" while draining
  int64_t drain_deadline_ns = 0;  // running time the drain gives up waiting for the peer
  // Receiving: the peer's data frames.
  SequenceCounters rx;
  uint64_t other_frames = 0;      // neither workload frames nor answered
  bool peer_done = false;
  uint64_t peer_sent = 0;         // from the peer's "done"
  // Echo: the peer's newest send time and when it arrived (wall ns), for our next frame.
  uint64_t peer_tx_ns = 0;
  int64_t peer_rx_wall_ns = 0;
  uint64_t newest_echo_ns = 0;    // our newest send time the peer echoed (stale ones skipped)
  verify::LatencyHistogram rtt{};
  // The minimal IPv4 host.
  uint64_t arp_answers = 0;
  uint64_t icmp_answers = 0;
  uint64_t udp_answers = 0;
  uint64_t answers_dropped = 0;   // no TX slot was free for the answer

  // ---- not migrated ----
  ConfigEcho local;
};

// The "guest-net-verify" description (version 1) bound to `state`. Its post_load refuses a
// source configured differently and an unknown phase.
std::unique_ptr<vmstate::StateBinding> bind_state(NetVerifyState& state);

}  // namespace ferry::guest::netverify
