// -device virtio-net-pci in ferry-vm, seen from outside as QEMU's qtests see it: the
// property listing, the PCI identity through config space, and QEMU's refusals.
#include <string>

#include <gtest/gtest.h>

#include "support/ferry_vm.h"
#include "support/run_command.h"

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

}  // namespace
}  // namespace ferry::testing
