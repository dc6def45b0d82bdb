// virtio-net-pci's allowlist (virtio_net_allowlist.h): every property of the schema and
// every netdev type Ferry builds has a row; blocking and unclassified ones give a reason
// naming the device, the item and why; and creating the device registers those reasons as
// migration blockers next to its section.
#include "hw/virtio/net/virtio_net_allowlist.h"

#include <gtest/gtest.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "base/qemu_opts.h"
#include "hw/core/device_type.h"
#include "hw/pci/test_fakes.h"
#include "hw/virtio/net/virtio_net_type.h"
#include "memory/address_space.h"
#include "net/netdev_config.h"

namespace ferry::virtio::net {
namespace {

using K = NetMigrationItemKind;

Opts options(std::string_view text) {
  auto opts = parse_opts(virtio_net_pci_schema(), text);
  EXPECT_TRUE(opts.ok()) << opts.status().to_string();
  return opts.ok() ? std::move(opts).value() : Opts{};
}

TEST(VirtioNetAllowlistTest, EverySchemaPropertyHasARow) {
  for (const auto& property : virtio_net_pci_schema().properties)
    EXPECT_NE(find_net_migration_item(K::kProperty, property.name), nullptr)
        << "virtio-net-pci property '" << property.name << "' has no allowlist row";
}

TEST(VirtioNetAllowlistTest, EveryNetdevTypeHasARow) {
  // netdev_help(): a heading, then one type a line.
  std::istringstream lines(::ferry::net::netdev_help());
  std::string line;
  std::getline(lines, line);
  int types = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    ++types;
    EXPECT_NE(find_net_migration_item(K::kNetdevBackend, line), nullptr)
        << "netdev type '" << line << "' has no allowlist row";
    EXPECT_TRUE(netdev_backend_blockers(line, "x").empty()) << line;
  }
  EXPECT_EQ(types, 4);
}

TEST(VirtioNetAllowlistTest, EveryRowHasAReasonAndNoRowIsTwice) {
  const auto rows = net_migration_allowlist();
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_FALSE(rows[i].note.empty()) << rows[i].name;
    for (size_t j = i + 1; j < rows.size(); ++j)
      EXPECT_FALSE(rows[i].kind == rows[j].kind && rows[i].name == rows[j].name) << rows[i].name;
  }
}

TEST(VirtioNetAllowlistTest, MigratableConfigurationHasNoBlockers) {
  const Opts opts = options(
      "virtio-net-pci,id=nic0,netdev=n0,addr=03.0,mac=52:54:00:00:00:01,mq=on,rss=on,"
      "packed=on,vectors=10,host_mtu=9000,speed=1000,duplex=full,rx_queue_size=1024,"
      "guest_announce=off,queue_reset=off");
  EXPECT_TRUE(net_property_blockers(opts, "virtio-net-pci at 0000:00:03.0").empty());
}

TEST(VirtioNetAllowlistTest, BlockingPropertiesSayWhy) {
  const std::vector<std::string> reasons = net_property_blockers(
      options("virtio-net-pci,netdev=n0,failover=on,iommu_platform=on"),
      "virtio-net-pci at 0000:00:03.0");
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons[0],
            "virtio-net-pci at 0000:00:03.0: virtio-net-pci property 'failover' blocks migration "
            "(failover pairing (unplugging the primary device before migration) is not "
            "implemented)");
  EXPECT_NE(reasons[1].find("virtio-net-pci property 'iommu_platform' blocks migration (ACCESS_"),
            std::string::npos)
      << reasons[1];
}

TEST(VirtioNetAllowlistTest, APropertyWithoutARowBlocks) {
  // A property the schema gains without a row: parsed against a schema that has it.
  OptSchema grown = virtio_net_pci_schema();
  grown.properties.push_back({.name = "x-new-knob"});
  auto opts = parse_opts(grown, "virtio-net-pci,x-new-knob=1");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  const std::vector<std::string> reasons = net_property_blockers(*opts, "nic");
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0],
            "nic: virtio-net-pci property 'x-new-knob' is not classified as migratable");
}

TEST(VirtioNetAllowlistTest, ABackendTypeWithoutARowBlocks) {
  EXPECT_EQ(netdev_backend_blockers("vhost-user", "virtio-net-pci at 0000:00:03.0"),
            std::vector<std::string>{"virtio-net-pci at 0000:00:03.0: netdev backend "
                                     "'vhost-user' is not classified as migratable"});
}

// ---- through the device type: the blockers reach the machine's migration state ----------

class TypedBackend final : public ::ferry::net::NetBackend {
 public:
  explicit TypedBackend(std::string_view type) : NetBackend("n0", type) {}
  ::ferry::net::SendResult transmit(std::span<const iovec>) override {
    return ::ferry::net::SendResult::kSent;
  }
  void receive_ready() override {}
};

class FakeHost final : public hw::Backends,
                       public hw::MigrationRegistrar,
                       public hw::DeviceSlot,
                       public hw::DeviceEvents,
                       public hw::NicRegistrar {
 public:
  explicit FakeHost(std::string_view backend_type) : backend(backend_type) {}
  Result<block::BlockBackend*> claim_drive(const hw::DeviceOptions&, std::string_view) override {
    return Error(ErrorCode::kInvalidArgument, "no drives here");
  }
  Result<::ferry::net::NetBackend*> claim_netdev(const hw::DeviceOptions&, std::string_view,
                                                  std::string_view) override {
    return &backend;
  }
  Status add_pci_section(pci::PciDevice&, std::unique_ptr<vmstate::StateBinding> state) override {
    sections.push_back(std::string(state->vmsd_name()));
    return {};
  }
  Status add_blocker(std::string reason) override {
    blockers.push_back(std::move(reason));
    return {};
  }
  Result<pci::PciDevice*> plug_pci(const hw::DeviceOptions& device,
                                   std::unique_ptr<pci::PciDevice> function) override {
    return machine.bus.add(std::move(function), device.addr);
  }
  pci::PciDevice* parent() override { return nullptr; }
  void emit(std::string_view, const nlohmann::ordered_json&) override {}
  std::string add_nic(const hw::DeviceOptions&, hw::Nic&, ::ferry::net::NetBackend*) override {
    return "nic0";
  }

  TypedBackend backend;
  pci::test::Machine machine;
  std::vector<std::string> sections;
  std::vector<std::string> blockers;
};

std::vector<std::string> blockers_of(std::string_view device, std::string_view backend_type) {
  auto loop = EventLoop::create();
  EXPECT_TRUE(loop.ok());
  MonotonicClock clock;
  memory::AddressSpace memory;
  FakeHost host(backend_type);
  hw::DeviceContext context{**loop, clock, memory, host, host, host, host, host};
  Opts opts = options(device);
  hw::DeviceOptions dev{"virtio-net-pci", "", opts.string("addr").value_or(""), std::move(opts)};
  Status st = virtio_net_pci_type().create(context, dev);
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(host.sections, std::vector<std::string>{"virtio-net"});
  return host.blockers;
}

TEST(VirtioNetAllowlistTest, CreatedDeviceRegistersItsBlockers) {
  EXPECT_TRUE(blockers_of("virtio-net-pci,netdev=n0,addr=03.0", "stream").empty());
  EXPECT_EQ(blockers_of("virtio-net-pci,netdev=n0,addr=03.0,failover=on", "tap"),
            std::vector<std::string>{
                "virtio-net-pci at 0000:00:03.0: virtio-net-pci property 'failover' blocks "
                "migration (failover pairing (unplugging the primary device before migration) "
                "is not implemented)"});
  EXPECT_EQ(blockers_of("virtio-net-pci,netdev=n0,addr=03.0", "l2tpv3"),
            std::vector<std::string>{"virtio-net-pci at 0000:00:03.0: netdev backend 'l2tpv3' "
                                     "is not classified as migratable"});
}

}  // namespace
}  // namespace ferry::virtio::net
