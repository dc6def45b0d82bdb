// The guest virtio-net driver and its battery (support/virtio_net_battery.h) against QEMU
// 7.2's virtio-net-pci and against Ferry's, each with a stream netdev whose far end is
// this test, with every difference printed as a table; and a Ferry NIC and a QEMU NIC
// exchanging frames on one stream link. The QEMU run also pins facts the
// virtio specification and QEMU's documented defaults fix, so the battery itself is known
// to observe the right things. Every difference must be listed here with its reason;
// docs/virtio-net-qemu-differences.md explains each one.
#include <gtest/gtest.h>

#include <map>

#include "client/qmp_client.h"
#include "client/qtest_bus.h"
#include "guest/dma_memory.h"
#include "guest/pci.h"
#include "guest/virtio/net_driver.h"
#include "guest/virtio/virtio_pci_driver.h"
#include "support/ferry_vm.h"
#include "support/qemu_vm.h"
#include "support/stream_peer.h"
#include "support/virtio_net_battery.h"

namespace ferry::testing {
namespace {

constexpr uint64_t kRamBytes = 256 << 20;

std::vector<std::string> nic_options(const std::string& socket_path) {
  return {"-m", "256M", "-netdev",
          "stream,id=n0,server=on,addr.type=unix,addr.path=" + socket_path, "-device",
          "virtio-net-pci,netdev=n0,addr=4,id=nic0,mac=52:54:00:12:34:56"};
}

std::string table(const std::vector<Observation>& observations) {
  std::string out;
  for (const Observation& o : observations) out += fmt::format("  {:<32} {}\n", o.name, o.value);
  return out;
}

std::vector<Observation> run_on_qemu() {
  const std::string socket_path = unique_base("qemu-nic") + ".sock";
  std::vector<std::string> options = nic_options(socket_path);
  options.back() += ",romfile=";  // no option ROM: nothing here would run it (see the docs)
  auto vm = QemuVm::start(options, QemuVm::Cpus::kHalted);
  EXPECT_TRUE(vm.ok()) << vm.status().to_string();
  if (!vm.ok()) return {};
  auto peer = StreamPeer::connect(socket_path, client::Millis(30000));
  EXPECT_TRUE(peer.ok()) << peer.status().to_string();
  auto qmp = client::QmpClient::connect((*vm)->qmp_path(), client::Millis(30000));
  EXPECT_TRUE(qmp.ok()) << qmp.status().to_string();
  if (!peer.ok() || !qmp.ok()) return {};
  client::QtestBus bus((*vm)->qtest());
  return run_net_battery(bus, *peer, *qmp, {.ram_bytes = kRamBytes});
}

std::vector<Observation> run_on_ferry() {
  const std::string socket_path = unique_base("ferry-nic") + ".sock";
  auto vm = FerryVm::start(FERRY_VM_PATH, nic_options(socket_path));
  EXPECT_NE(vm, nullptr);
  if (vm == nullptr) return {};
  auto peer = StreamPeer::connect(socket_path, client::Millis(30000));
  EXPECT_TRUE(peer.ok()) << peer.status().to_string();
  if (!peer.ok()) return {};
  client::QtestBus bus(vm->qtest());
  return run_net_battery(bus, *peer, vm->qmp(), {.ram_bytes = kRamBytes});
}

// What the battery must see on QEMU: the transitional virtio-net identity, the virtio 1.x
// capability layout QEMU uses, and the receive filter as the virtio specification and
// QEMU's documented RX modes define it.
const std::map<std::string, std::string>& qemu_facts() {
  static const std::map<std::string, std::string> kExpected = {
      {"pci.vendor", "0x1af4"},
      {"pci.device", "0x1000"},
      {"pci.class", "0x20000"},
      {"pci.subsystem_vendor", "0x1af4"},
      {"pci.subsystem", "0x1"},
      {"start.mac", "52:54:00:12:34:56"},
      {"start.link_up", "yes"},
      {"start.mergeable", "yes"},
      {"filter.default", "0x80"},
      {"filter.strict", "0x3 0x4"},
      {"filter.allmulti", "0x6 0x7"},
      {"filter.nobcast", "0x9"},
      {"filter.mac_table", "0xa 0xb"},
      {"filter.vlan_7_absent", "0xd"},
      {"filter.vlan_7_added", "0xe 0xf"},
      {"filter.promisc", "0x10 0x11"},
      {"filter.after", "nothing"},
      {"tx.60", "60 bytes, intact"},
      {"tx.1514", "1514 bytes, intact"},
      {"ctrl.rx.promisc.off", "ok"},
      {"ctrl.mac.addr_set", "ok"},
      {"mac.addr_set.config", "0x12005452"},  // 52:54:00:12 as a little-endian word
      {"ctrl.vlan.add_5", "ok"},
      {"ctrl.vlan.add_4096", "err"},
      {"ctrl.class.unknown_0x7f", "err"},
  };
  return kExpected;
}

// Differences that are known and justified. Each entry names its section in
// docs/virtio-net-qemu-differences.md; anything else that differs fails the test.
const std::map<std::string, std::string>& known_differences() {
  static const std::map<std::string, std::string> kKnown = {};
  return kKnown;
}

TEST(VirtioNetQemuDiff, QemuAnswersAsTheSpecificationSays) {
  if (!qemu_installed()) GTEST_SKIP() << kQemuBinary << " is not installed";
  std::vector<Observation> observations = run_on_qemu();
  ASSERT_FALSE(observations.empty());
  std::cout << "QEMU 7.2 observations:\n" << table(observations);
  for (const auto& [name, value] : qemu_facts()) {
    EXPECT_EQ(find_observation(observations, name), value) << name;
  }
}

TEST(VirtioNetQemuDiff, FerryAnswersLikeQemu) {
  if (!qemu_installed()) GTEST_SKIP() << kQemuBinary << " is not installed";
  std::vector<Observation> qemu = run_on_qemu();
  ASSERT_FALSE(qemu.empty());
  std::vector<Observation> ferry = run_on_ferry();
  ASSERT_FALSE(ferry.empty());
  std::cout << "Ferry observations:\n" << table(ferry);

  std::map<std::string, std::string> qemu_values, ferry_values;
  for (const Observation& o : qemu) qemu_values[o.name] = o.value;
  for (const Observation& o : ferry) ferry_values[o.name] = o.value;
  std::map<std::string, bool> names;
  for (const auto& [name, value] : qemu_values) names[name] = true;
  for (const auto& [name, value] : ferry_values) names[name] = true;

  std::string unexplained;
  std::string explained;
  for (const auto& [name, unused] : names) {
    const std::string q = find_observation(qemu, name);
    const std::string f = find_observation(ferry, name);
    auto known = known_differences().find(name);
    if (q == f) {
      EXPECT_EQ(known, known_differences().end())
          << name << " no longer differs (" << q << "): remove it from the table and the docs";
      continue;
    }
    const std::string line = fmt::format("  {}\n    qemu:  {}\n    ferry: {}\n", name, q, f);
    if (known != known_differences().end()) {
      explained += line + "    why:   " + known->second + "\n";
    } else {
      unexplained += line;
    }
  }
  std::cout << "Known differences:\n" << explained;
  EXPECT_TRUE(unexplained.empty()) << "Unexplained differences:\n" << unexplained;
}

// ---- a Ferry NIC and a QEMU NIC on one link ---------------------------------------------------

// The guest driver of one VM's NIC over qtest (DMA memory from 16 MiB, as the battery's).
struct NicGuest {
  explicit NicGuest(QtestClient& qtest) : bus(qtest) {}
  Status start() {
    auto dma = guest::DmaMemory::create(16 << 20, kRamBytes);
    if (!dma.ok()) return dma.take_status();
    memory.emplace(std::move(*dma));
    guest::MmioWindow window = guest::MmioWindow::standard();
    auto pci = guest::virtio::VirtioPciDriver::probe(bus, *memory, window, {.device_id = 0x1000});
    if (!pci.ok()) return pci.take_status();
    auto started = guest::virtio::NetDriver::start(std::move(*pci), *memory, {.mergeable = true});
    if (!started.ok()) return started.take_status();
    driver = std::move(*started);
    return {};
  }
  // The next frame, waiting generously; empty when none came.
  std::vector<uint8_t> receive() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto frame = driver->receive();
      if (!frame.ok() || *frame) return frame.ok() ? std::move(**frame) : std::vector<uint8_t>{};
    }
    return {};
  }
  client::QtestBus bus;
  std::optional<guest::DmaMemory> memory;
  std::unique_ptr<guest::virtio::NetDriver> driver;
};

std::vector<uint8_t> numbered_frame(const guest::virtio::MacAddress& to,
                                    const guest::virtio::MacAddress& from, uint16_t n,
                                    size_t size) {
  std::vector<uint8_t> f(to.begin(), to.end());
  f.insert(f.end(), from.begin(), from.end());
  f.insert(f.end(), {0x88, 0xb5, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)});
  while (f.size() < size) f.push_back(static_cast<uint8_t>(f.size() * 7 + n));
  return f;
}

// QEMU 7.2's stream server and Ferry's stream client join the two NICs; each guest driver
// sends numbered frames of 60 to 1,514 bytes to the other: all arrive, intact, in order.
TEST(VirtioNetQemuDiff, FramesCrossBetweenAFerryNicAndAQemuNicBothWays) {
  if (!qemu_installed()) GTEST_SKIP() << kQemuBinary << " is not installed";
  const std::string link = unique_base("nic-link") + ".sock";
  // Ferry first: its client retries every second, so it connects once QEMU listens, after
  // the test is on its QMP socket to hear NETDEV_STREAM_CONNECTED.
  auto ferry = FerryVm::start(
      FERRY_VM_PATH,
      {"-m", "256M", "-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + link,
       "-device", "virtio-net-pci,netdev=n0,addr=4,id=nic0,mac=52:54:00:00:00:02"});
  ASSERT_NE(ferry, nullptr);
  auto qemu = QemuVm::start(
      {"-m", "256M", "-netdev", "stream,id=n0,server=on,addr.type=unix,addr.path=" + link,
       "-device", "virtio-net-pci,netdev=n0,addr=4,id=nic0,mac=52:54:00:00:00:01,romfile="},
      QemuVm::Cpus::kHalted);
  ASSERT_TRUE(qemu.ok()) << qemu.status().to_string();
  auto connected = ferry->qmp().wait_event("NETDEV_STREAM_CONNECTED", client::Millis(30000));
  ASSERT_TRUE(connected.ok()) << connected.status().to_string();

  NicGuest q((*qemu)->qtest()), f(ferry->qtest());
  ASSERT_TRUE(q.start().ok());
  ASSERT_TRUE(f.start().ok());
  struct Direction {
    const char* name;
    NicGuest& from;
    NicGuest& to;
  };
  for (const Direction& d : {Direction{"ferry -> qemu", f, q}, Direction{"qemu -> ferry", q, f}}) {
    std::vector<std::vector<uint8_t>> sent;
    for (uint16_t n = 0; n < 16; ++n) {
      const size_t size = n == 15 ? 1514 : 60 + 97 * n;
      sent.push_back(numbered_frame(d.to.driver->mac(), d.from.driver->mac(), n, size));
      ASSERT_TRUE(d.from.driver->send(sent.back()).ok()) << d.name << " frame " << n;
      (void)d.from.driver->reclaim_tx();
    }
    for (uint16_t n = 0; n < 16; ++n) {
      EXPECT_EQ(d.to.receive(), sent[n]) << d.name << " frame " << n;
    }
  }
}

}  // namespace
}  // namespace ferry::testing
