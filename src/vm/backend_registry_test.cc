// The registry's netdevs: created from -netdev, claimed once by one NIC with QEMU's
// messages, and their connections turned into QEMU's QMP event data.
#include "vm/backend_registry.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

namespace ferry::vm {
namespace {

using namespace std::chrono_literals;

net::NetdevConfig netdev(std::string_view text) {
  auto parsed = net::parse_netdev(text);
  EXPECT_TRUE(parsed.ok() && *parsed) << (parsed.ok() ? "help" : parsed.status().to_string());
  return std::move(**parsed);
}

hw::DeviceOptions nic(std::string id) {
  hw::DeviceOptions options;
  options.driver = "virtio-net-pci";
  options.id = std::move(id);
  return options;
}

class RegistryNetdevTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
  }
  std::unique_ptr<EventLoop> loop_;
};

TEST_F(RegistryNetdevTest, NicClaimsItsNetdevOnceWithQemusMessages) {
  BackendRegistry registry(*loop_, false);
  ASSERT_TRUE(registry
                  .open_netdevs({netdev("hubport,id=h0,hubid=0"), netdev("hubport,id=h1,hubid=0")},
                                nullptr)
                  .ok());
  auto missing = registry.claim_netdev(nic("nic0"), "x", "virtio-net-device");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "-device virtio-net-pci: Property 'virtio-net-device.netdev' can't find value 'x'");
  auto claimed = registry.claim_netdev(nic("nic0"), "h0", "virtio-net-device");
  ASSERT_TRUE(claimed.ok());
  EXPECT_EQ(*claimed, registry.find_netdev("h0"));
  EXPECT_EQ((*claimed)->type(), "hubport");
  auto again = registry.claim_netdev(nic("nic1"), "h0", "virtio-net-device");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().message(),
            "-device virtio-net-pci: Property 'virtio-net-device.netdev' can't take value 'h0', "
            "it's in use");
  EXPECT_TRUE(registry.claim_netdev(nic("nic1"), "h1", "virtio-net-device").ok());
}

TEST_F(RegistryNetdevTest, DuplicateIdIsRefused) {
  BackendRegistry registry(*loop_, false);
  Status st = registry.open_netdevs(
      {netdev("hubport,id=h0,hubid=0"), netdev("hubport,id=h0,hubid=1")}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "-netdev hubport,id=h0,hubid=1: Duplicate ID 'h0' for netdev");
}

TEST_F(RegistryNetdevTest, StreamConnectionsBecomeQemusEvents) {
  char pattern[] = "/tmp/ferry-reg-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  std::string path = std::string(pattern) + "/n.sock";
  std::vector<std::pair<std::string, Json>> events;
  {
    BackendRegistry registry(*loop_, false);
    ASSERT_TRUE(registry
                    .open_netdevs({netdev("stream,id=n0,server=on,addr.type=unix,addr.path=" +
                                          path)},
                                  [&](std::string_view name, const Json& data) {
                                    events.emplace_back(std::string(name), data);
                                  })
                    .ok());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof(un.sun_path) - 1);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)), 0);
    ASSERT_TRUE(loop_->run_until([&] { return events.size() == 1; }, 20s).ok());
    close(fd);
    ASSERT_TRUE(loop_->run_until([&] { return events.size() == 2; }, 20s).ok());
  }
  EXPECT_EQ(events[0].first, "NETDEV_STREAM_CONNECTED");
  EXPECT_EQ(events[0].second.dump(),
            Json({{"netdev-id", "n0"}, {"addr", {{"type", "unix"}, {"path", path}}}}).dump());
  EXPECT_EQ(events[1].first, "NETDEV_STREAM_DISCONNECTED");
  EXPECT_EQ(events[1].second.dump(), R"({"netdev-id":"n0"})");
  std::filesystem::remove_all(pattern);
}

TEST(SocketAddressJson, InetCarriesTheFamilyAsQemuShowsIt) {
  net::SocketAddress inet{net::SocketAddress::Type::kInet, "127.0.0.1", "37084", {}, 4};
  EXPECT_EQ(socket_address_json(inet).dump(),
            R"({"type":"inet","host":"127.0.0.1","port":"37084","ipv4":true})");
}

}  // namespace
}  // namespace ferry::vm
