// `-guest net-verify`: a network workload over the guest's virtio-net driver that migrates
// with the VM, the network counterpart of `-guest verify`.
//
// What it does: finds the virtio-net-pci function (device=ID, or the first), places its
// BARs, brings the driver up (guest/virtio/net_driver.h; polled, no interrupts) and then, in
// steps that never wait: sends sequence-numbered workload frames (net_frame.h) to the peer
// MAC at `rate` frames per second (0: as fast as the TX ring takes them), `size` bytes
// each; receives the peer's and counts them (received, lost, duplicates, reordered,
// corrupted, round-trip percentiles from the echoed send times); and, given `ip`, answers
// ARP requests, ICMP echo requests and UDP datagrams to that address as a host would, so a
// Linux peer can ping it and talk to it. role=send or receive leaves one direction out
// (role=receive sends no data frames, so the peer measures no round trips). Data starts
// once the peer is heard from, because frames sent before the other end of a stream
// connects are dropped and would count as lost; a "hello" goes out every 100 ms until the
// peer is known to hear us (its hello says so, or its data arrives).
//
// The run ends after `count` frames, or at x-guest-finish: the program sends a "done" frame
// carrying how many it sent (again every 200 ms), keeps receiving until the peer's "done"
// arrives (frames the peer sent and never delivered are then counted lost), or 30 s of
// running time pass (status shows peer_done false), and finishes.
//
// State: net_verify_state.h, the "guest-net-verify" section. Guest memory: a fixed 2 MiB
// range the VM gives (rings and buffers, allocated afresh at each bring-up).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/qemu_opts.h"
#include "base/status.h"
#include "guest/dma_memory.h"
#include "guest/program.h"
#include "guest/programs/net_verify_state.h"
#include "guest/virtio/net_driver.h"

namespace ferry::guest {

inline constexpr std::string_view kNetVerifyOption = "-guest net-verify";
inline constexpr uint64_t kNetVerifyDmaBytes = 2ull << 20;
inline constexpr uint8_t kNetVerifyAnySlot = 0xff;

struct NetVerifyConfig {
  std::string device;                         // device=ID as given; the VM resolves it
  uint8_t pci_slot = kNetVerifyAnySlot;       // bus-0 slot; any: the first virtio-net
  uint8_t pci_function = 0;
  netverify::Role role = netverify::Role::kBoth;
  netverify::Mac peer{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  bool has_ip = false;
  netverify::Ipv4 ip{};
  uint32_t frame_size = 1514;                 // bytes of Ethernet frame, no FCS: 60..1514
  uint64_t rate = 1000;                       // data frames per second; 0: unlimited
  uint64_t count = 0;                         // data frames to send; 0: until x-guest-finish
  uint64_t bar_base = 0xe0000000;
  uint64_t dma_base = 0;
  uint64_t dma_size = 0;
  int64_t drain_timeout_ms = 30000;
};

OptSchema net_verify_schema();
Result<NetVerifyConfig> net_verify_config(const Opts& opts);
// "52:54:00:12:34:56" and "10.0.2.15"; errors name the text.
Result<netverify::Mac> parse_mac(std::string_view text);
Result<netverify::Ipv4> parse_ipv4(std::string_view text);
std::string format_mac(const netverify::Mac& mac);

class NetVerifyProgram final : public GuestProgram {
 public:
  static Result<std::unique_ptr<NetVerifyProgram>> create(const NetVerifyConfig& config);
  ~NetVerifyProgram() override;

  std::string_view name() const override { return "net-verify"; }
  Result<StepResult> step(GuestBus& bus) override;
  nlohmann::ordered_json status() const override;
  std::unique_ptr<vmstate::StateBinding> migration_state() override;
  void note_parked() override;
  void note_resumed() override;
  // The device lost its rings: the driver is brought up again at the next step.
  void note_reset() override;
  void request_finish() override { state_.finish_requested = true; }

  const netverify::NetVerifyState& state() const { return state_; }

 private:
  explicit NetVerifyProgram(const NetVerifyConfig& config);
  Status bring_up(GuestBus& bus);
  Result<StepResult> run_step();
  Status receive_some();
  Status take_frame(std::span<const uint8_t> frame);
  Status send_data_frames();
  Status send_frame(netverify::FrameKind kind, uint64_t seq, bool kick = true);
  void start_drain();
  void finish();
  int64_t running_ns() const;
  Status fail(Status status);

  NetVerifyConfig config_;
  netverify::NetVerifyState state_;
  Status error_;
  // Not migrated: rebuilt by bring_up (the driver before the memory it allocates from).
  std::unique_ptr<DmaMemory> dma_;
  std::unique_ptr<virtio::NetDriver> driver_;
};

}  // namespace ferry::guest
