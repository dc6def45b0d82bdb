// QMP set_link, announce-self and the announce-* migration parameters on a ferry-vm with
// -device virtio-net-pci, seen from outside: the test drives the device over qtest as a
// guest driver would, and is the stream netdev's peer (QEMU's framing: be32 length +
// frame), so it sees exactly what leaves the NIC.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "support/ferry_vm.h"
#include "support/vm_waits.h"
#include "support/raw_stream.h"

namespace ferry::testing {
namespace {

const std::string kFerryVm = FERRY_VM_PATH;

constexpr int kSlot = 4;
constexpr uint64_t kBar4 = 0xe0000000;  // common 0x0, ISR 0x1000, device 0x2000, notify 0x3000
constexpr uint64_t kBar1 = 0xe1000000;  // MSI-X table
constexpr uint32_t kConfigMsiData = 0x4242;
constexpr uint32_t kFStatus = 1u << 16;
constexpr uint32_t kFCtrlVq = 1u << 17;
constexpr uint32_t kFGuestAnnounce = 1u << 21;
constexpr std::array<uint8_t, 6> kMac{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
constexpr const char* kMacText = "52:54:00:ab:cd:ef";

// QEMU's announce frame for `mac`: broadcast RARP request-reverse, padded to 60 bytes.
std::vector<uint8_t> expected_rarp(const std::array<uint8_t, 6>& mac) {
  std::vector<uint8_t> f(6, 0xff);
  f.insert(f.end(), mac.begin(), mac.end());
  for (uint8_t b : {0x80, 0x35, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03}) f.push_back(b);
  f.insert(f.end(), mac.begin(), mac.end());
  f.insert(f.end(), 4, 0);
  f.insert(f.end(), mac.begin(), mac.end());
  f.insert(f.end(), 4, 0);
  f.resize(60, 0);
  return f;
}

struct Ring {
  uint16_t index;
  uint64_t desc, avail, used;
  uint16_t size = 256;
};
const Ring kRx{0, 0x1100000, 0x1101000, 0x1102000};
const Ring kTx{1, 0x1110000, 0x1111000, 0x1112000};
const Ring kCtrl{2, 0x1130000, 0x1131000, 0x1132000, 64};

// A modern virtio-net driver over qtest: VERSION_1 + `features`, split rings, the
// configuration interrupt on MSI-X vector 0 (intercepted as MSI data kConfigMsiData).
class Driver {
 public:
  explicit Driver(FerryVm& vm) : vm_(vm) {}

  void bring_up(uint32_t features) {
    auto intercepted = vm_.qtest().command("irq_intercept_in msi");
    ASSERT_TRUE(intercepted.ok() && intercepted->rfind("OK", 0) == 0)
        << (intercepted.ok() ? *intercepted : intercepted.status().to_string());
    vm_.config_write(kSlot, 0x14, static_cast<uint32_t>(kBar1), 32);
    vm_.config_write(kSlot, 0x20, static_cast<uint32_t>(kBar4), 32);
    vm_.config_write(kSlot, 0x24, 0, 32);
    vm_.config_write(kSlot, 0x04, 0x0006, 16);  // memory + bus master
    const uint32_t msix = vm_.find_capability(kSlot, 0x11);
    ASSERT_NE(msix, 0u);
    vm_.config_write(kSlot, msix + 2, 0x8000, 16);  // MSI-X enable
    vm_.mem_write(32, kBar1 + 0, 0xfee00000);
    vm_.mem_write(32, kBar1 + 4, 0);
    vm_.mem_write(32, kBar1 + 8, kConfigMsiData);
    vm_.mem_write(32, kBar1 + 12, 0);  // unmasked
    common(0x14, 1, 8);
    common(0x14, 3, 8);
    common(0x08, 0, 32);
    common(0x0c, features, 32);
    common(0x08, 1, 32);
    common(0x0c, 1, 32);  // VERSION_1
    common(0x14, 0xb, 8);
    ASSERT_EQ(vm_.mem(8, kBar4 + 0x14), 0xbu);
    common(0x10, 0, 16);  // config vector 0
    ASSERT_EQ(vm_.mem(16, kBar4 + 0x10), 0u);
    for (const Ring& r : {kRx, kTx, kCtrl}) {
      common(0x16, r.index, 16);
      common(0x18, r.size, 16);
      common(0x1a, 0xffff, 16);  // no queue interrupts: the test polls used rings
      common(0x20, r.desc, 32);
      common(0x24, 0, 32);
      common(0x28, r.avail, 32);
      common(0x2c, 0, 32);
      common(0x30, r.used, 32);
      common(0x34, 0, 32);
      common(0x1c, 1, 16);
    }
    common(0x14, 0xf, 8);
  }

  uint16_t link_status() { return static_cast<uint16_t>(vm_.mem(16, kBar4 + 0x2000 + 6)); }
  uint8_t read_isr() { return static_cast<uint8_t>(vm_.mem(8, kBar4 + 0x1000)); }

  // Counts configuration interrupts (MSI messages with kConfigMsiData) seen so far.
  size_t config_interrupts() {
    const std::string raise = "raise " + std::to_string(kConfigMsiData);
    return static_cast<size_t>(
        std::count(vm_.qtest().irqs().begin(), vm_.qtest().irqs().end(), raise));
  }
  // Waits (generously) until more than `seen` configuration interrupts arrived.
  bool wait_config_interrupt(size_t seen) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (config_interrupts() <= seen) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      auto got = vm_.qtest().wait_irq(Millis(1000));
      if (!got.ok()) return false;
    }
    return true;
  }

  // The guest sends `frame` (behind a zeroed 12-byte header) from TX slot `slot`.
  void send(const std::vector<uint8_t>& frame, uint16_t slot) {
    const uint64_t buffer = 0x1200000 + slot * 0x1000u;
    for (size_t i = 0; i < 12; ++i) vm_.mem_write(8, buffer + i, 0);
    for (size_t i = 0; i < frame.size(); ++i) vm_.mem_write(8, buffer + 12 + i, frame[i]);
    vm_.mem_write(64, kTx.desc + 16 * slot, buffer);
    vm_.mem_write(32, kTx.desc + 16 * slot + 8, static_cast<uint32_t>(12 + frame.size()));
    vm_.mem_write(16, kTx.desc + 16 * slot + 12, 0);
    vm_.mem_write(16, kTx.avail + 4 + 2 * slot, slot);
    vm_.mem_write(16, kTx.avail + 2, slot + 1u);
    vm_.mem_write(16, kBar4 + 0x3000 + kTx.index * 4, kTx.index);
  }
  bool wait_tx_used(uint16_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (vm_.mem(16, kTx.used + 2) != count)
      if (std::chrono::steady_clock::now() > deadline) return false;
    return true;
  }

 private:
  void common(uint32_t reg, uint64_t value, unsigned bits) { vm_.mem_write(bits, kBar4 + reg, value); }
  FerryVm& vm_;
};

std::vector<uint8_t> marker_frame(uint8_t tag) {
  std::vector<uint8_t> frame(60);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(tag + i);
  return frame;
}

// A VM with one virtio-net-pci (id nic0, MAC kMacText) on stream netdev n0, and the test
// connected as the netdev's peer.
struct NetVm {
  std::unique_ptr<FerryVm> vm;
  int peer = -1;
  NetVm() = default;
  NetVm(NetVm&& other) noexcept : vm(std::move(other.vm)), peer(std::exchange(other.peer, -1)) {}
  NetVm& operator=(NetVm&&) = delete;
  ~NetVm() {
    if (peer >= 0) close(peer);
  }
};

NetVm start_net_vm(std::vector<std::string> extra = {}) {
  NetVm out;
  const std::string path = unique_base("vnet") + ".sock";
  std::vector<std::string> args = {"-m", "64M", "-netdev",
                                   "stream,id=n0,server=on,addr.type=unix,addr.path=" + path,
                                   "-device",
                                   std::string("virtio-net-pci,netdev=n0,addr=4,id=nic0,mac=") +
                                       kMacText};
  args.insert(args.end(), extra.begin(), extra.end());
  out.vm = FerryVm::start(kFerryVm, args);
  if (!out.vm) return out;
  out.peer = connect_unix(path);
  EXPECT_GE(out.peer, 0) << std::strerror(errno);
  auto connected = out.vm->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000));
  EXPECT_TRUE(connected.ok()) << connected.status().to_string();
  return out;
}

std::string error_of(FerryVm& vm, const std::string& cmd, const Json& args) {
  auto reply = vm.qmp().execute(cmd, args);
  if (!reply.ok()) return "no reply: " + reply.status().to_string();
  if (!reply->contains("error")) return "no error: " + reply->dump();
  return (*reply)["error"]["desc"].get<std::string>();
}

TEST(VirtioNetLinkAnnounce, SetLinkChangesStatusRaisesConfigInterruptAndDropsTxWhileDown) {
  NetVm n = start_net_vm();
  ASSERT_TRUE(n.vm && n.peer >= 0);
  FerryVm& vm = *n.vm;
  Driver driver(vm);
  ASSERT_NO_FATAL_FAILURE(driver.bring_up(kFStatus));
  EXPECT_EQ(driver.link_status(), 1u);  // LINK_UP
  (void)driver.read_isr();              // start from a clear ISR

  size_t seen = driver.config_interrupts();
  vm.ok("set_link", Json{{"name", "nic0"}, {"up", false}});
  EXPECT_EQ(driver.link_status(), 0u);
  ASSERT_TRUE(driver.wait_config_interrupt(seen)) << "no configuration interrupt on link down";
  EXPECT_EQ(driver.read_isr() & 2u, 2u);  // the config-change bit

  // While down, the guest's frame is taken and used (length 0) but never sent.
  driver.send(marker_frame(0x10), 0);
  ASSERT_TRUE(driver.wait_tx_used(1));
  EXPECT_EQ(vm.mem(32, kTx.used + 8), 0u);  // used length 0

  seen = driver.config_interrupts();
  vm.ok("set_link", Json{{"name", "nic0"}, {"up", true}});
  EXPECT_EQ(driver.link_status(), 1u);
  ASSERT_TRUE(driver.wait_config_interrupt(seen)) << "no configuration interrupt on link up";
  // Setting the state it already has changes nothing (no interrupt expected, none checked).
  vm.ok("set_link", Json{{"name", "nic0"}, {"up", true}});

  // Up again: the next frame is the first the peer sees (the one sent while down is gone).
  driver.send(marker_frame(0x80), 1);
  EXPECT_EQ(read_stream_frame(n.peer), marker_frame(0x80));
  ASSERT_TRUE(driver.wait_tx_used(2));

  // By the netdev's name: its NIC peer follows, as in QEMU.
  seen = driver.config_interrupts();
  vm.ok("set_link", Json{{"name", "n0"}, {"up", false}});
  EXPECT_EQ(driver.link_status(), 0u);
  ASSERT_TRUE(driver.wait_config_interrupt(seen));
  vm.ok("set_link", Json{{"name", "n0"}, {"up", true}});
  EXPECT_EQ(driver.link_status(), 1u);

  EXPECT_EQ(error_of(vm, "set_link", Json{{"name", "nope"}, {"up", false}}),
            "Device 'nope' not found");
  auto unknown = vm.qmp().execute("set_link", Json{{"name", "nope"}, {"up", false}});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ((*unknown)["error"]["class"], "DeviceNotFound");  // QEMU 7.2's class
  EXPECT_EQ(error_of(vm, "set_link", Json{{"name", "nic0"}}), "Parameter 'up' is missing");
}

TEST(VirtioNetLinkAnnounce, AnnounceSelfSendsRarpRoundsAndAsksTheGuest) {
  NetVm n = start_net_vm();
  ASSERT_TRUE(n.vm && n.peer >= 0);
  FerryVm& vm = *n.vm;
  Driver driver(vm);
  ASSERT_NO_FATAL_FAILURE(driver.bring_up(kFStatus | kFCtrlVq | kFGuestAnnounce));
  EXPECT_EQ(driver.link_status(), 1u);

  const size_t seen = driver.config_interrupts();
  vm.ok("announce-self", Json{{"initial", 0}, {"max", 0}, {"rounds", 3}, {"step", 1}});
  for (int round = 0; round < 3; ++round)
    EXPECT_EQ(read_stream_frame(n.peer), expected_rarp(kMac)) << "round " << round;
  // The guest was asked too: ANNOUNCE beside LINK_UP, with a configuration interrupt.
  EXPECT_EQ(driver.link_status(), 3u);
  EXPECT_TRUE(driver.wait_config_interrupt(seen));
  // Exactly three: the guest's next frame is the next thing on the wire.
  driver.send(marker_frame(0x20), 0);
  EXPECT_EQ(read_stream_frame(n.peer), marker_frame(0x20));

  // interfaces= names NICs: another name sends nothing, this one's sends one round.
  vm.ok("announce-self", Json{{"initial", 0}, {"max", 0}, {"rounds", 2}, {"step", 1},
                              {"interfaces", Json::array({"nic9"})}, {"id", "other"}});
  vm.ok("announce-self", Json{{"initial", 0}, {"max", 0}, {"rounds", 1}, {"step", 1},
                              {"interfaces", Json::array({"nic0"})}});
  EXPECT_EQ(read_stream_frame(n.peer), expected_rarp(kMac));
  driver.send(marker_frame(0x30), 1);
  EXPECT_EQ(read_stream_frame(n.peer), marker_frame(0x30));

  // Link down: the announcement is dropped like any frame (one round: it goes out within
  // the command, so no later round can race the link coming back).
  vm.ok("set_link", Json{{"name", "nic0"}, {"up", false}});
  vm.ok("announce-self", Json{{"initial", 0}, {"max", 0}, {"rounds", 1}, {"step", 1}});
  vm.ok("set_link", Json{{"name", "nic0"}, {"up", true}});
  driver.send(marker_frame(0x40), 2);
  EXPECT_EQ(read_stream_frame(n.peer), marker_frame(0x40));

  EXPECT_EQ(error_of(vm, "announce-self", Json::object()), "Parameter 'initial' is missing");
  EXPECT_EQ(error_of(vm, "announce-self",
                     Json{{"initial", 0}, {"max", 0}, {"rounds", 1}, {"step", 1}, {"x", 1}}),
            "Parameter 'x' is unexpected");
  EXPECT_EQ(error_of(vm, "announce-self",
                     Json{{"initial", 0}, {"max", 0}, {"rounds", -1}, {"step", 1}}),
            "Parameter 'rounds' expects a value of 0 or more, found -1");
}

// A stopped VM's announcement waits, as in QEMU (its net queue holds the frames), and goes
// out when the VM runs.
TEST(VirtioNetLinkAnnounce, AnnounceSelfWhileStoppedGoesOutAtCont) {
  NetVm n = start_net_vm({"-S"});
  ASSERT_TRUE(n.vm && n.peer >= 0);
  FerryVm& vm = *n.vm;
  // One round: it is decided inside the command, so once the reply is here a sent frame
  // would already be in the socket.
  vm.ok("announce-self", Json{{"initial", 0}, {"max", 0}, {"rounds", 1}, {"step", 1}});
  pollfd p{n.peer, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "a stopped VM sent its announcement";
  vm.ok("cont");
  EXPECT_EQ(read_stream_frame(n.peer), expected_rarp(kMac));
}

// QEMU's default schedule: rounds at 0, 50, 200, 450 and 800 ms. Timers never fire early,
// so the last frame comes at least ~800 ms after the first (minus the first's own delay).
TEST(VirtioNetLinkAnnounce, AnnounceSelfFollowsQemusDefaultSchedule) {
  NetVm n = start_net_vm();
  ASSERT_TRUE(n.vm && n.peer >= 0);
  FerryVm& vm = *n.vm;
  vm.ok("announce-self", Json{{"initial", 50}, {"max", 550}, {"rounds", 5}, {"step", 100}});
  std::vector<double> at_ms;
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < 5; ++round) {
    ASSERT_EQ(read_stream_frame(n.peer), expected_rarp(kMac)) << "round " << round;
    at_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::string times;
  for (double t : at_ms) times += std::to_string(static_cast<int>(t)) + " ";
  RecordProperty("arrival_ms", times);
  EXPECT_GE(at_ms[4] - at_ms[0], 700.0) << times;
  EXPECT_GE(at_ms[2] - at_ms[1], 100.0) << times;  // 150 ms apart on QEMU's schedule
}

TEST(VirtioNetLinkAnnounce, AnnounceParametersRoundTripWithQemusRangeChecks) {
  auto vm = FerryVm::start(kFerryVm, {"-S"});
  ASSERT_TRUE(vm);
  Json params = vm->ok("query-migrate-parameters");
  EXPECT_EQ(params["announce-initial"], 50);
  EXPECT_EQ(params["announce-max"], 550);
  EXPECT_EQ(params["announce-rounds"], 5);
  EXPECT_EQ(params["announce-step"], 100);
  vm->ok("migrate-set-parameters", Json{{"announce-initial", 100000}, {"announce-max", 100000},
                                        {"announce-rounds", 1000}, {"announce-step", 10000}});
  params = vm->ok("query-migrate-parameters");
  EXPECT_EQ(params["announce-initial"], 100000);
  EXPECT_EQ(params["announce-max"], 100000);
  EXPECT_EQ(params["announce-rounds"], 1000);
  EXPECT_EQ(params["announce-step"], 10000);

  struct Bad {
    Json args;
    std::string message;
  };
  const Bad bad[] = {
      {{{"announce-initial", 100001}}, "Parameter 'announce_initial' expects a value between 0 and 100000"},
      {{{"announce-max", 100001}}, "Parameter 'announce_max' expects a value between 0 and 100000"},
      {{{"announce-rounds", 1001}}, "Parameter 'announce_rounds' expects a value between 0 and 1000"},
      {{{"announce-rounds", -1}}, "Parameter 'announce_rounds' expects a value between 0 and 1000"},
      {{{"announce-step", 0}}, "Parameter 'announce_step' expects a value between 0 and 10000"},
      {{{"announce-step", 10001}}, "Parameter 'announce_step' expects a value between 0 and 10000"},
      {{{"announce-initial", "x"}}, "Parameter 'announce-initial' expects uint64"},
      {{{"announce-rounds", 1.5}}, "Parameter 'announce-rounds' expects uint64"},
      // QEMU checks downtime-limit before the announce members.
      {{{"announce-rounds", 1001}, {"downtime-limit", 3000000}},
       "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms"},
  };
  for (const Bad& b : bad) EXPECT_EQ(error_of(*vm, "migrate-set-parameters", b.args), b.message) << b.args.dump();
  // A refused request changes nothing, not even its valid members.
  EXPECT_NE(error_of(*vm, "migrate-set-parameters", Json{{"announce-max", 7}, {"announce-step", 0}}), "");
  EXPECT_EQ(vm->ok("query-migrate-parameters")["announce-max"], 100000);
}

// The destination announces every NIC once the incoming migration completed, with its own
// announce-* parameters. Needs virtio-net's migration description: while the device
// blocks migration, the test skips.
TEST(VirtioNetLinkAnnounce, AnnouncesAfterAnIncomingMigration) {
  const std::string sock = unique_base("vnet-mig") + ".sock";
  NetVm dst = start_net_vm({"-incoming", "unix:" + sock});
  ASSERT_TRUE(dst.vm && dst.peer >= 0);
  dst.vm->ok("migrate-set-parameters", Json{{"announce-initial", 1}, {"announce-max", 1},
                                            {"announce-rounds", 3}, {"announce-step", 1}});
  const std::string src_path = unique_base("vnet-src") + ".sock";
  auto src = FerryVm::start(
      kFerryVm, {"-m", "64M", "-netdev", "stream,id=n0,server=on,addr.type=unix,addr.path=" + src_path,
                 "-device", std::string("virtio-net-pci,netdev=n0,addr=4,id=nic0,mac=") + kMacText});
  ASSERT_TRUE(src);
  auto reply = src->qmp().execute("migrate", Json{{"uri", "unix:" + sock}});
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  if (reply->contains("error")) {
    const std::string desc = (*reply)["error"]["desc"].get<std::string>();
    if (desc.find("migration of virtio-net is not implemented yet") != std::string::npos)
      GTEST_SKIP() << "virtio-net still blocks migration: " << desc;
    FAIL() << desc;
  }
  ASSERT_EQ(wait_migration_end(*src)["status"], "completed");
  for (int round = 0; round < 3; ++round)
    EXPECT_EQ(read_stream_frame(dst.peer), expected_rarp(kMac)) << "round " << round;
  EXPECT_EQ(dst.vm->ok("query-status")["status"], "running");
}

}  // namespace
}  // namespace ferry::testing
