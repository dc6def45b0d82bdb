// -device virtio-net-pci in ferry-vm, seen from outside as QEMU's qtests see it: the
// property listing, the PCI identity through config space, and QEMU's refusals.
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

CommandResult run_vm(const std::string& args) {
  return run_command(kFerryVm + " " + args + " 2>&1");
}

TEST(VirtioNetBlackbox, HelpListsQemusPropertiesWithTheirTypesAndDefaults) {
  CommandResult r = run_vm("-device virtio-net-pci,help");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("virtio-net-pci options:\n", 0), 0u) << r.out;
  for (const char* line :
       {"  addr=<int32>           - Slot and optional function number, example: 06.0 or 06 (default: -1)\n",
        "  mac=<str>              - Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56\n",
        "  mq=<bool>              - on/off (default: false)\n",
        "  mrg_rxbuf=<bool>       - on/off (default: true)\n",
        "  netdev=<str>           - ID of a netdev to use as a backend\n",
        "  packed=<bool>          - on/off (default: false)\n",
        "  event_idx=<bool>       - on/off (default: true)\n",
        "  indirect_desc=<bool>   - on/off (default: true)\n",
        "  ctrl_vq=<bool>         - on/off (default: true)\n",
        "  guest_announce=<bool>  - on/off (default: true)\n",
        "  rx_queue_size=<uint16> -  (default: 256)\n",
        "  vectors=<uint32>       -  (default: 4294967295)\n"}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
  }
}

TEST(VirtioNetBlackbox, DeviceHelpListsItUnderNetworkDevices) {
  CommandResult r = run_vm("-device help");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  const size_t heading = r.out.find("Network devices:\n");
  ASSERT_NE(heading, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("name \"virtio-net-pci\", bus PCI", heading), std::string::npos) << r.out;
}

TEST(VirtioNetBlackbox, PresentsQemusPciIdentity) {
  const std::string path = unique_base("vnet") + ".sock";
  auto vm = FerryVm::start(kFerryVm, {"-S", "-netdev",
                                      "stream,id=n0,server=on,addr.type=unix,addr.path=" + path,
                                      "-device", "virtio-net-pci,netdev=n0,addr=4"});
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->config_read(4, 0x00, 16), 0x1af4u);
  EXPECT_EQ(vm->config_read(4, 0x02, 16), 0x1000u);
  EXPECT_EQ(vm->config_read(4, 0x08, 32) >> 8, 0x020000u);
  EXPECT_EQ(vm->config_read(4, 0x2c, 16), 0x1af4u);
  EXPECT_EQ(vm->config_read(4, 0x2e, 16), 0x0001u);
  EXPECT_EQ(vm->config_read(4, 0x3d, 8), 1u);  // INTx pin A
  // The netdev has its NIC: no "has no peer" warning.
  EXPECT_EQ(vm->process().stderr_text().find("has no peer"), std::string::npos)
      << vm->process().stderr_text();
}

TEST(VirtioNetBlackbox, BadValuesAreRefusedInQemusWords) {
  struct Case {
    std::string args;
    std::string message;
  } cases[] = {
      {"-device virtio-net-pci,netdev=nope",
       "-device virtio-net-pci: Property 'virtio-net-device.netdev' can't find value 'nope'"},
      {"-device virtio-net-pci,mac=zz",
       "Property 'virtio-net-device.mac' doesn't take value 'zz'"},
      {"-device virtio-net-pci,rx_queue_size=100",
       "Invalid rx_queue_size (= 100), must be a power of 2 between 256 and 1024."},
  };
  for (const Case& c : cases) {
    CommandResult r = run_vm(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
  }
}

// A guest driver over qtest: BAR4 at 0xe0000000, split rings in RAM, VERSION_1 + MRG_RXBUF,
// a frame each way through a stream netdev whose peer is this test.
TEST(VirtioNetBlackbox, FramesFlowBothWaysThroughAStreamNetdev) {
  const std::string path = unique_base("vnet") + ".sock";
  auto vm = FerryVm::start(kFerryVm, {"-m", "64M", "-netdev",
                                      "stream,id=n0,server=on,addr.type=unix,addr.path=" + path,
                                      "-device", "virtio-net-pci,netdev=n0,addr=4,id=nic0"});
  ASSERT_TRUE(vm);
  const int peer = connect_unix(path);
  ASSERT_GE(peer, 0) << std::strerror(errno);
  auto connected = vm->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000));
  ASSERT_TRUE(connected.ok()) << connected.status().to_string();

  constexpr uint64_t kBar = 0xe0000000;
  vm->config_write(4, 0x20, static_cast<uint32_t>(kBar), 32);
  vm->config_write(4, 0x24, 0, 32);
  vm->config_write(4, 0x04, 0x0006, 16);  // memory + bus master
  auto common = [&](uint32_t reg, uint64_t value, unsigned bits) {
    vm->mem_write(bits, kBar + reg, value);
  };
  common(0x14, 1, 8);
  common(0x14, 3, 8);
  common(0x08, 0, 32);
  common(0x0c, (1u << 15) | (1u << 17) | (1u << 18), 32);  // MRG_RXBUF, CTRL_VQ, CTRL_RX
  common(0x08, 1, 32);
  common(0x0c, 1, 32);  // VERSION_1
  common(0x14, 0xb, 8);
  ASSERT_EQ(vm->mem(8, kBar + 0x14), 0xbu);
  struct Ring {
    uint16_t index;
    uint64_t desc, avail, used;
    uint16_t size = 256;
  };
  const Ring rx{0, 0x1100000, 0x1101000, 0x1102000};
  const Ring tx{1, 0x1110000, 0x1111000, 0x1112000};
  const Ring ctrl{2, 0x1130000, 0x1131000, 0x1132000, 64};
  for (const Ring& r : {rx, tx, ctrl}) {
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
  // Chain `slot` (one descriptor) made available as the slot-th entry.
  auto post = [&](const Ring& r, uint64_t buffer, uint32_t len, bool writable, uint16_t slot = 0) {
    vm->mem_write(64, r.desc + 16 * slot, buffer);
    vm->mem_write(32, r.desc + 16 * slot + 8, len);
    vm->mem_write(16, r.desc + 16 * slot + 12, writable ? 2 : 0);
    vm->mem_write(16, r.avail + 4 + 2 * slot, slot);
    vm->mem_write(16, r.avail + 2, slot + 1u);
    vm->mem_write(16, kBar + 0x3000 + r.index * 4, r.index);
  };
  auto wait_used = [&](const Ring& r, uint16_t count = 1) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (vm->mem(16, r.used + 2) != count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
    }
    return true;
  };

  // TX: header + 60-byte frame; the peer gets be32 60 and the frame alone.
  std::vector<uint8_t> frame(60);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(0xa0 + i);
  for (size_t i = 0; i < 12; ++i) vm->mem_write(8, 0x1200000 + i, 0);
  for (size_t i = 0; i < frame.size(); ++i) vm->mem_write(8, 0x120000c + i, frame[i]);
  post(tx, 0x1200000, 72, false);
  uint8_t got[64];
  ASSERT_TRUE(read_exact(peer, got, 64, 20000))
      << "status " << vm->mem(8, kBar + 0x14) << " tx used " << vm->mem(16, tx.used + 2)
      << " run " << vm->ok("query-status").dump() << "\n"
      << vm->process().stderr_text();
  EXPECT_EQ(std::vector<uint8_t>(got, got + 4), (std::vector<uint8_t>{0, 0, 0, 60}));
  EXPECT_EQ(std::vector<uint8_t>(got + 4, got + 64), frame);
  ASSERT_TRUE(wait_used(tx));
  EXPECT_EQ(vm->mem(32, tx.used + 8), 0u);  // id 0, len 0
  EXPECT_EQ(vm->mem(32, tx.used + 4), 0u);

  // RX: the peer sends first, the buffer comes later: the frame waits, then arrives.
  std::vector<uint8_t> incoming = {0, 0, 0, 64, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  while (incoming.size() < 68) incoming.push_back(static_cast<uint8_t>(incoming.size()));
  ASSERT_EQ(::write(peer, incoming.data(), incoming.size()), 68);
  post(rx, 0x1210000, 2048, true);
  ASSERT_TRUE(wait_used(rx));
  EXPECT_EQ(vm->mem(32, rx.used + 8), 76u);
  EXPECT_EQ(vm->mem(16, 0x1210000 + 10), 1u);  // num_buffers
  for (size_t i = 0; i < 64; ++i)
    ASSERT_EQ(vm->mem(8, 0x121000c + i), incoming[4 + i]) << i;

  // ctrl: RX PROMISC off, acked OK, and QMP hears NIC_RX_FILTER_CHANGED.
  vm->mem_write(8, 0x1240000, 0);      // class RX
  vm->mem_write(8, 0x1240001, 0);      // PROMISC
  vm->mem_write(8, 0x1240010, 0);      // off
  vm->mem_write(8, 0x1240020, 0xee);   // ack
  const uint64_t chain[3][3] = {{0x1240000, 2, 1}, {0x1240010, 1, 1}, {0x1240020, 1, 2}};
  for (uint16_t k = 0; k < 3; ++k) {
    vm->mem_write(64, ctrl.desc + 16 * k, chain[k][0]);
    vm->mem_write(32, ctrl.desc + 16 * k + 8, chain[k][1]);
    vm->mem_write(16, ctrl.desc + 16 * k + 12, chain[k][2]);
    vm->mem_write(16, ctrl.desc + 16 * k + 14, k + 1u);
  }
  vm->mem_write(16, ctrl.avail + 4, 0);
  vm->mem_write(16, ctrl.avail + 2, 1);
  vm->mem_write(16, kBar + 0x3000 + ctrl.index * 4, ctrl.index);
  ASSERT_TRUE(wait_used(ctrl));
  EXPECT_EQ(vm->mem(8, 0x1240020), 0u);
  auto changed = vm->qmp().wait_event("NIC_RX_FILTER_CHANGED", Millis(20000));
  ASSERT_TRUE(changed.ok()) << changed.status().to_string();
  EXPECT_EQ((*changed)["data"],
            Json({{"name", "nic0"}, {"path", "/machine/peripheral/nic0/virtio-backend"}}));

  // Stopped: no RX processing (the frame waits with the backend or the device); cont
  // delivers it.
  vm->ok("stop");
  incoming[4 + 6] = 0x77;
  ASSERT_EQ(::write(peer, incoming.data(), incoming.size()), 68);
  post(rx, 0x1220000, 2048, true, 1);
  vm->ok("query-status");  // one main-loop round trip after the kick
  EXPECT_EQ(vm->mem(16, rx.used + 2), 1u) << "a stopped VM received a frame";
  vm->ok("cont");
  ASSERT_TRUE(wait_used(rx, 2));
  EXPECT_EQ(vm->mem(8, 0x122000c + 6), 0x77u);
  close(peer);
}

}  // namespace
}  // namespace ferry::testing
