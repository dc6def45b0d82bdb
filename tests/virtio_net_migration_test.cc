// virtio-net-pci migrating between two ferry-vm processes, driven from outside as QEMU's
// qtests drive a NIC: a guest driver over qtest (rings in guest RAM, BAR4 registers), a
// stream netdev whose peer is this test on each side.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/ferry_vm.h"
#include "support/run_command.h"
#include "support/raw_stream.h"

namespace ferry::testing {
namespace {

const std::string kFerryVm = FERRY_VM_PATH;
const std::string kFerry = FERRY_PATH;
constexpr uint64_t kBar = 0xe0000000;

std::vector<std::string> nic_args(const std::string& socket_path, const std::string& extra = "") {
  return {"-m", "64M", "-netdev", "stream,id=n0,server=on,addr.type=unix,addr.path=" + socket_path,
          "-device", "virtio-net-pci,netdev=n0,addr=4,id=nic0" + extra};
}

// query-migrate until the migration ends (generous deadline: a busy machine).
Json wait_migration_end(FerryVm& vm) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  Json info;
  while (std::chrono::steady_clock::now() < deadline) {
    info = vm.ok("query-migrate");
    const std::string status = info.value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") return info;
    auto ev = vm.qmp().wait_event("MIGRATION", Millis(200));
    (void)ev;
  }
  return info;
}

struct Ring {
  uint16_t index;
  uint64_t desc, avail, used;
  uint16_t size = 256;
};
const Ring kRx{0, 0x1100000, 0x1101000, 0x1102000};
const Ring kTx{1, 0x1110000, 0x1111000, 0x1112000};
const Ring kCtrl{2, 0x1130000, 0x1131000, 0x1132000, 64};

// The guest's driver: its state is in guest RAM and the device, so after a migration it
// carries on against the destination by switching `vm`.
struct QtestNicDriver {
  FerryVm* vm;
  uint16_t rx_posted = 0;
  uint16_t tx_posted = 0;
  bool packed = false;  // RING_PACKED negotiated: descriptors carry AVAIL/USED flags
  // Low feature word: MRG_RXBUF, CTRL_VQ, CTRL_RX by default.
  uint32_t features_low = (1u << 15) | (1u << 17) | (1u << 18);
  uint16_t ctrl_posted = 0;

  void common(uint32_t reg, uint64_t value, unsigned bits) { vm->mem_write(bits, kBar + reg, value); }
  void bring_up() {
    vm->config_write(4, 0x20, static_cast<uint32_t>(kBar), 32);
    vm->config_write(4, 0x24, 0, 32);
    vm->config_write(4, 0x04, 0x0006, 16);  // memory + bus master
    common(0x14, 1, 8);
    common(0x14, 3, 8);
    common(0x08, 0, 32);
    common(0x0c, features_low, 32);
    common(0x08, 1, 32);
    common(0x0c, packed ? 5 : 1, 32);  // VERSION_1 (32) [+ RING_PACKED (34)]
    common(0x14, 0xb, 8);
    ASSERT_EQ(vm->mem(8, kBar + 0x14), 0xbu);
    for (const Ring& r : {kRx, kTx, kCtrl}) {
      common(0x16, r.index, 16);
      common(0x18, r.size, 16);
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
  void post(const Ring& r, uint16_t slot, uint64_t buffer, uint32_t len, bool writable) {
    if (packed) {
      // Driver wrap counter 1 on the first lap: AVAIL set, USED clear; flags written last.
      vm->mem_write(64, r.desc + 16 * slot, buffer);
      vm->mem_write(32, r.desc + 16 * slot + 8, len);
      vm->mem_write(16, r.desc + 16 * slot + 12, slot);
      vm->mem_write(16, r.desc + 16 * slot + 14, (1u << 7) | (writable ? 2u : 0u));
      return;
    }
    vm->mem_write(64, r.desc + 16 * slot, buffer);
    vm->mem_write(32, r.desc + 16 * slot + 8, len);
    vm->mem_write(16, r.desc + 16 * slot + 12, writable ? 2 : 0);
    vm->mem_write(16, r.avail + 4 + 2 * slot, slot);
    vm->mem_write(16, r.avail + 2, slot + 1u);
  }
  void kick(const Ring& r) { vm->mem_write(16, kBar + 0x3000 + r.index * 4, r.index); }
  uint64_t rx_buffer(uint16_t slot) const { return 0x1200000 + 0x1000ull * slot; }
  void post_rx(uint16_t count) {
    for (uint16_t i = 0; i < count; ++i, ++rx_posted)
      post(kRx, rx_posted, rx_buffer(rx_posted), 2048, true);
    kick(kRx);
  }
  // A TX chain: 12-byte header + frame, made available; kicked when `notify`.
  void send(const std::vector<uint8_t>& frame, bool notify = true) {
    const uint64_t at = 0x1300000 + 0x1000ull * tx_posted;
    for (size_t i = 0; i < 12; ++i) vm->mem_write(8, at + i, 0);
    for (size_t i = 0; i < frame.size(); ++i) vm->mem_write(8, at + 12 + i, frame[i]);
    post(kTx, tx_posted, at, static_cast<uint32_t>(12 + frame.size()), false);
    ++tx_posted;
    if (notify) kick(kTx);
  }
  // Split: used->idx reaches `count`; packed: descriptor count-1 carries USED (first lap).
  // A control command (split rings): class, command, data; returns the ack byte.
  uint8_t control(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data) {
    const uint64_t at = 0x1400000 + 0x100ull * ctrl_posted;
    vm->mem_write(8, at, cls);
    vm->mem_write(8, at + 1, cmd);
    for (size_t i = 0; i < data.size(); ++i) vm->mem_write(8, at + 0x10 + i, data[i]);
    vm->mem_write(8, at + 0x80, 0xee);
    const uint64_t chain[3][3] = {{at, 2, 1}, {at + 0x10, data.size(), 1}, {at + 0x80, 1, 2}};
    const uint16_t first = static_cast<uint16_t>(3 * ctrl_posted);
    for (uint16_t k = 0; k < 3; ++k) {
      vm->mem_write(64, kCtrl.desc + 16 * (first + k), chain[k][0]);
      vm->mem_write(32, kCtrl.desc + 16 * (first + k) + 8, chain[k][1]);
      vm->mem_write(16, kCtrl.desc + 16 * (first + k) + 12, chain[k][2]);
      vm->mem_write(16, kCtrl.desc + 16 * (first + k) + 14, first + k + 1u);
    }
    vm->mem_write(16, kCtrl.avail + 4 + 2 * ctrl_posted, first);
    ++ctrl_posted;
    vm->mem_write(16, kCtrl.avail + 2, ctrl_posted);
    kick(kCtrl);
    if (!wait_used(kCtrl, ctrl_posted)) return 0xff;
    return static_cast<uint8_t>(vm->mem(8, at + 0x80));
  }
  bool wait_used(const Ring& r, uint16_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    auto done = [&] {
      if (!packed) return vm->mem(16, r.used + 2) == count;
      return (vm->mem(16, r.desc + 16 * (count - 1u) + 14) & 0x8080) == 0x8080;
    };
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
    }
    return true;
  }
};

std::vector<uint8_t> frame(uint8_t tag) {
  std::vector<uint8_t> f = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00};
  while (f.size() < 64) f.push_back(static_cast<uint8_t>(tag + f.size()));
  return f;
}

void peer_send(int fd, const std::vector<uint8_t>& f) {
  std::vector<uint8_t> wire = {0, 0, 0, static_cast<uint8_t>(f.size())};
  wire.insert(wire.end(), f.begin(), f.end());
  ASSERT_EQ(::write(fd, wire.data(), wire.size()), static_cast<ssize_t>(wire.size()));
}

// The next frame on the link that is not a destination's RARP announcement (ethertype
// 0x8035: the rounds after an incoming migration go out when it first runs, before or
// between the frames these tests look at; virtio_net_link_announce_test checks them).
std::vector<uint8_t> peer_receive(int fd) {
  for (;;) {
    std::vector<uint8_t> f = read_stream_frame(fd);
    if (f.empty()) return {};
    const bool announcement = f.size() >= 14 && f[12] == 0x80 && f[13] == 0x35;
    if (!announcement) return f;
  }
}

// A source and a destination, each with its own stream socket and peer.
struct Pair {
  std::string src_path = unique_base("vnm-src") + ".sock";
  std::string dst_path = unique_base("vnm-dst") + ".sock";
  std::string migration = unique_base("vnm") + ".sock";
  std::unique_ptr<FerryVm> src;
  std::unique_ptr<FerryVm> dst;

  std::string extra;  // more -device virtio-net-pci properties, the same on both sides

  void start(bool src_stopped = false) {
    std::vector<std::string> args = nic_args(src_path, extra);
    if (src_stopped) args.insert(args.begin(), "-S");
    src = FerryVm::start(kFerryVm, args);
    ASSERT_TRUE(src);
  }
  Json migrate() {
    std::vector<std::string> args = nic_args(dst_path, extra);
    args.insert(args.end(), {"-incoming", "unix:" + migration});
    dst = FerryVm::start(kFerryVm, args);
    EXPECT_TRUE(dst);
    if (!dst) return Json();
    src->ok("migrate", Json{{"uri", "unix:" + migration}});
    Json result = wait_migration_end(*src);
    EXPECT_EQ(result["status"], "completed") << result.dump() << "\n"
                                             << dst->process().stderr_text();
    return result;
  }
  std::string dst_status() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::string status;
    while (std::chrono::steady_clock::now() < deadline) {
      status = dst->ok("query-status")["status"];
      if (status != "inmigrate") break;
      (void)dst->qmp().wait_event("RESUME", Millis(200));
    }
    return status;
  }
};

TEST(VirtioNetMigration, IdleNicMigratesAndTheDestinationRuns) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  p.migrate();
  EXPECT_EQ(p.dst_status(), "running") << p.dst->process().stderr_text();
  EXPECT_EQ(p.src->ok("query-status")["status"], "postmigrate");
  EXPECT_EQ(p.dst->config_read(4, 0x02, 16), 0x1000u);
}

// A driver with RX buffers posted and frames flowing migrates; on the destination the next
// frame lands in the next buffer the driver posted on the source, and TX carries on.
TEST(VirtioNetMigration, TrafficContinuesOnTheDestination) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  const int peer = connect_unix(p.src_path);
  ASSERT_GE(peer, 0);
  ASSERT_TRUE(p.src->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000)).ok());
  QtestNicDriver driver{p.src.get()};
  ASSERT_NO_FATAL_FAILURE(driver.bring_up());
  driver.post_rx(4);
  peer_send(peer, frame(1));
  ASSERT_TRUE(driver.wait_used(kRx, 1));
  driver.send(frame(2));
  EXPECT_EQ(peer_receive(peer), frame(2));
  ASSERT_TRUE(driver.wait_used(kTx, 1));

  p.migrate();
  ASSERT_EQ(p.dst_status(), "running") << p.dst->process().stderr_text();
  close(peer);
  driver.vm = p.dst.get();
  const int peer2 = connect_unix(p.dst_path);
  ASSERT_GE(peer2, 0);
  peer_send(peer2, frame(3));
  ASSERT_TRUE(driver.wait_used(kRx, 2)) << p.dst->process().stderr_text();
  EXPECT_EQ(p.dst->mem(32, kRx.used + 4 + 8), 1u);  // the second buffer (id 1)
  EXPECT_EQ(p.dst->mem(32, kRx.used + 4 + 8 + 4), 76u);
  for (size_t i = 0; i < 64; ++i)
    ASSERT_EQ(p.dst->mem(8, driver.rx_buffer(1) + 12 + i), frame(3)[i]) << i;
  driver.send(frame(4));
  EXPECT_EQ(peer_receive(peer2), frame(4));
  ASSERT_TRUE(driver.wait_used(kTx, 2));
  close(peer2);
}

// Ethernet frame to `dst`, VLAN-tagged with `vid` unless it is 0.
std::vector<uint8_t> frame_to(std::vector<uint8_t> dst, uint16_t vid, uint8_t tag) {
  std::vector<uint8_t> f = dst;
  f.insert(f.end(), {0x02, 0, 0, 0, 0, 1});
  if (vid != 0) f.insert(f.end(), {0x81, 0x00, static_cast<uint8_t>(vid >> 8), static_cast<uint8_t>(vid)});
  f.insert(f.end(), {0x08, 0x00});
  while (f.size() < 64) f.push_back(static_cast<uint8_t>(tag + f.size()));
  return f;
}

// The receive filter survives: promiscuous off and VLAN 100 in the table on the source; on
// the destination a frame to another address and one on VLAN 200 are dropped, the VLAN 100
// frame and one to the NIC's address land in the first two buffers, in order. (QEMU 7.2
// empties the VLAN table on load, so it would drop the VLAN 100 frame.)
TEST(VirtioNetMigration, FilterModesAndVlansSurvive) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  QtestNicDriver driver{p.src.get()};
  driver.features_low |= 1u << 19;  // CTRL_VLAN
  ASSERT_NO_FATAL_FAILURE(driver.bring_up());
  ASSERT_EQ(driver.control(0, 0, {0}), 0);      // RX PROMISC off
  ASSERT_EQ(driver.control(2, 0, {100, 0}), 0);  // VLAN ADD 100
  driver.post_rx(2);

  p.migrate();
  ASSERT_EQ(p.dst_status(), "running") << p.dst->process().stderr_text();
  driver.vm = p.dst.get();
  const int peer = connect_unix(p.dst_path);
  ASSERT_GE(peer, 0);
  const std::vector<uint8_t> nic = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  peer_send(peer, frame_to({0x02, 0, 0, 0, 0, 0x99}, 0, 1));  // another unicast address
  peer_send(peer, frame_to(nic, 200, 2));                     // a VLAN not in the table
  peer_send(peer, frame_to(nic, 100, 3));
  peer_send(peer, frame_to(nic, 0, 4));
  ASSERT_TRUE(driver.wait_used(kRx, 2)) << p.dst->process().stderr_text();
  const std::vector<uint8_t> want[2] = {frame_to(nic, 100, 3), frame_to(nic, 0, 4)};
  for (uint16_t b = 0; b < 2; ++b)
    for (size_t i = 0; i < 64; ++i)
      ASSERT_EQ(p.dst->mem(8, driver.rx_buffer(b) + 12 + i), want[b][i]) << "buffer " << b << " byte " << i;
  close(peer);
}

// packed=on: the packed rings' indices and wrap counters travel in
// virtio/packed_virtqueues; the destination uses the next descriptors.
TEST(VirtioNetMigration, PackedRingsContinueOnTheDestination) {
  Pair p;
  p.extra = ",packed=on";
  ASSERT_NO_FATAL_FAILURE(p.start());
  const int peer = connect_unix(p.src_path);
  ASSERT_GE(peer, 0);
  ASSERT_TRUE(p.src->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000)).ok());
  QtestNicDriver driver{p.src.get()};
  driver.packed = true;
  ASSERT_NO_FATAL_FAILURE(driver.bring_up());
  driver.post_rx(1);
  peer_send(peer, frame(6));
  ASSERT_TRUE(driver.wait_used(kRx, 1)) << p.src->process().stderr_text();
  EXPECT_EQ(p.src->mem(32, kRx.desc + 8), 76u);  // used length: header + frame
  driver.send(frame(7));
  EXPECT_EQ(peer_receive(peer), frame(7));
  ASSERT_TRUE(driver.wait_used(kTx, 1));

  p.migrate();
  ASSERT_EQ(p.dst_status(), "running") << p.dst->process().stderr_text();
  close(peer);
  driver.vm = p.dst.get();
  const int peer2 = connect_unix(p.dst_path);
  ASSERT_GE(peer2, 0);
  driver.post_rx(1);
  peer_send(peer2, frame(8));
  ASSERT_TRUE(driver.wait_used(kRx, 2)) << p.dst->process().stderr_text();
  EXPECT_EQ(p.dst->mem(16, kRx.desc + 16 + 12), 1u);  // buffer id 1
  EXPECT_EQ(p.dst->mem(32, kRx.desc + 16 + 8), 76u);
  for (size_t i = 0; i < 64; ++i)
    ASSERT_EQ(p.dst->mem(8, driver.rx_buffer(1) + 12 + i), frame(8)[i]) << i;
  driver.send(frame(9));
  EXPECT_EQ(peer_receive(peer2), frame(9));
  ASSERT_TRUE(driver.wait_used(kTx, 2));
  close(peer2);
}

// A frame the driver queued while the VM was stopped is not sent by the source; it is
// still available in the ring the destination loads, and goes out when it runs.
TEST(VirtioNetMigration, TxQueuedWhileStoppedIsSentByTheDestination) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  const int peer = connect_unix(p.src_path);
  ASSERT_GE(peer, 0);
  ASSERT_TRUE(p.src->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000)).ok());
  QtestNicDriver driver{p.src.get()};
  ASSERT_NO_FATAL_FAILURE(driver.bring_up());
  driver.post_rx(2);
  p.src->ok("stop");
  driver.send(frame(5));
  p.src->ok("query-status");  // a main-loop round trip after the kick
  EXPECT_EQ(p.src->mem(16, kTx.used + 2), 0u) << "a stopped VM sent a frame";

  p.migrate();
  // The source was paused: the destination waits for cont (QEMU's global state).
  EXPECT_EQ(p.dst_status(), "paused");
  const int peer2 = connect_unix(p.dst_path);
  ASSERT_GE(peer2, 0);
  ASSERT_TRUE(p.dst->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000)).ok());
  p.dst->ok("cont");
  EXPECT_EQ(peer_receive(peer2), frame(5)) << p.dst->process().stderr_text();
  driver.vm = p.dst.get();
  ASSERT_TRUE(driver.wait_used(kTx, 1));
  close(peer);
  close(peer2);
}

// A destination that cannot take the driver's features (mrg_rxbuf=off there) refuses the
// load in QEMU's words; the migration fails and the source runs on.
TEST(VirtioNetMigration, RefusedLoadLeavesTheSourceRunning) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  QtestNicDriver driver{p.src.get()};
  ASSERT_NO_FATAL_FAILURE(driver.bring_up());  // negotiates MRG_RXBUF
  std::vector<std::string> args = nic_args(p.dst_path, ",mrg_rxbuf=off");
  args.insert(args.end(), {"-incoming", "unix:" + p.migration});
  p.dst = FerryVm::start(kFerryVm, args);
  ASSERT_TRUE(p.dst);
  p.src->ok("migrate", Json{{"uri", "unix:" + p.migration}});
  Json result = wait_migration_end(*p.src);
  EXPECT_EQ(result["status"], "failed") << result.dump();
  EXPECT_EQ(p.src->ok("query-status")["status"], "running");
  (void)p.dst->process().wait(std::chrono::milliseconds(20000));
  const std::string err = p.dst->process().stderr_text();
  EXPECT_NE(err.find("unsupported. Allowed features: 0x"), std::string::npos) << err;
  EXPECT_NE(err.find("virtio-net at 0000:00:04.0"), std::string::npos) << err;
}

// The section is QEMU's: named after the PCI address, with virtio's subsections inside;
// `ferry analyze` accounts for every byte and shows the nested fields (packed=on, so the
// packed subsection is there too).
TEST(VirtioNetMigration, MigrateToFileCarriesQemusSectionName) {
  Pair p;
  p.extra = ",packed=on";
  ASSERT_NO_FATAL_FAILURE(p.start(true));
  const std::string out = unique_base("vnm") + ".stream";
  p.src->ok("migrate", Json{{"uri", "file:" + out}});
  Json result = wait_migration_end(*p.src);
  ASSERT_EQ(result["status"], "completed") << result.dump();
  FILE* f = fopen(out.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::string bytes;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
  fclose(f);
  EXPECT_NE(bytes.find("0000:00:04.0/virtio-net"), std::string::npos);
  EXPECT_NE(bytes.find("virtio/extra_state"), std::string::npos);
  CommandResult analyzed = run_command(kFerry + " analyze " + out + " 2>/dev/null");
  unlink(out.c_str());
  ASSERT_EQ(analyzed.exit_code, 0) << analyzed.out.substr(0, 2000);
  Json state = Json::parse(analyzed.out, nullptr, false);
  ASSERT_TRUE(state.is_object());
  bool found = false;
  for (auto& [key, section] : state.items()) {
    if (key.find("/virtio-net (") == std::string::npos) continue;
    found = true;
    const Json& virtio = section["virtio"];
    EXPECT_EQ(virtio["virtio-net-device"]["mac"]["mac"], "52 54 00 12 34 56") << virtio.dump();
    EXPECT_TRUE(virtio.contains("virtio/packed_virtqueues")) << virtio.dump().substr(0, 500);
    EXPECT_EQ(virtio["queues"]["num_queues"], "0x00000003");
  }
  EXPECT_TRUE(found) << analyzed.out.substr(0, 2000);
}

}  // namespace
}  // namespace ferry::testing
