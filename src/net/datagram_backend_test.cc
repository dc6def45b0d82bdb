#include "net/datagram_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include <gtest/gtest.h>

#include "net/test_nic.h"

namespace ferry::net {
namespace {

using namespace std::chrono_literals;
using testing::numbered_frame;
using testing::send_bytes;
using testing::TestNic;


// A UDP socket on 127.0.0.1 standing in for the other end.
struct UdpPeer {
  UdpPeer() {
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof(in));
    socklen_t length = sizeof(in);
    getsockname(fd, reinterpret_cast<sockaddr*>(&in), &length);
    port = ntohs(in.sin_port);
  }
  ~UdpPeer() { close(fd); }
  void send_to(uint16_t to, const std::vector<uint8_t>& frame) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in.sin_port = htons(to);
    ASSERT_EQ(sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&in),
                     sizeof(in)),
              static_cast<ssize_t>(frame.size()));
  }
  std::vector<uint8_t> receive(EventLoop& loop) {
    std::vector<uint8_t> buffer(70000);
    ssize_t n = -1;
    Status st = loop.run_until(
        [&] {
          n = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
          return n >= 0;
        },
        testing::kDeadline);
    EXPECT_TRUE(st.ok()) << st.to_string();
    buffer.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return buffer;
  }
  int fd;
  uint16_t port;
};

class DatagramBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
  }
  std::unique_ptr<EventLoop> loop_;
};

TEST_F(DatagramBackendTest, UdpCarriesOneFramePerDatagramBothWays) {
  UdpPeer peer;
  DatagramOptions options;
  options.remote = {SocketAddress::Type::kInet, "127.0.0.1", std::to_string(peer.port), {}};
  options.local = SocketAddress{SocketAddress::Type::kInet, "127.0.0.1", "0", {}};
  auto backend = DatagramBackend::create(*loop_, "u0", options);
  ASSERT_TRUE(backend.ok()) << backend.status().to_string();
  TestNic nic;
  (*backend)->attach(&nic);
  EXPECT_TRUE((*backend)->link_up());
  uint16_t bound = static_cast<uint16_t>(std::stoi((*backend)->bound_address().port));

  EXPECT_EQ(send_bytes(**backend, numbered_frame(1, 1514)), SendResult::kSent);
  EXPECT_EQ(peer.receive(*loop_), numbered_frame(1, 1514));

  for (uint32_t i = 0; i < 3; ++i) peer.send_to(bound, numbered_frame(10 + i, 60 + i));
  ASSERT_TRUE(loop_->run_until([&] { return nic.frames.size() == 3; }, testing::kDeadline).ok());
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(nic.frames[i], numbered_frame(10 + i, 60 + i));
}

TEST_F(DatagramBackendTest, DatagramsWaitInTheSocketWhileTheNicSaysNo) {
  UdpPeer peer;
  DatagramOptions options;
  options.remote = {SocketAddress::Type::kInet, "127.0.0.1", std::to_string(peer.port), {}};
  options.local = SocketAddress{SocketAddress::Type::kInet, "127.0.0.1", "0", {}};
  auto backend = DatagramBackend::create(*loop_, "u0", options);
  ASSERT_TRUE(backend.ok());
  TestNic nic;
  nic.accepting = false;
  (*backend)->attach(&nic);
  uint16_t bound = static_cast<uint16_t>(std::stoi((*backend)->bound_address().port));
  for (uint32_t i = 0; i < 20; ++i) peer.send_to(bound, numbered_frame(i, 100));
  ASSERT_TRUE(loop_->run_until([&] { return nic.asked > 0; }, testing::kDeadline).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(loop_->run_once(std::chrono::milliseconds(0)).ok());
  EXPECT_TRUE(nic.frames.empty());
  nic.accepting = true;
  (*backend)->receive_ready();
  ASSERT_TRUE(loop_->run_until([&] { return nic.frames.size() == 20; }, testing::kDeadline).ok());
  for (uint32_t i = 0; i < 20; ++i) EXPECT_EQ(nic.frames[i], numbered_frame(i, 100));
}

TEST_F(DatagramBackendTest, MulticastGroupMustBeMulticast) {
  DatagramOptions options;
  options.mode = DatagramOptions::Mode::kMulticast;
  options.remote = {SocketAddress::Type::kInet, "127.0.0.1", "5000", {}};
  auto backend = DatagramBackend::create(*loop_, "m0", options);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().message(),
            "specified mcastaddr 127.0.0.1 (0x7f000001) does not contain a multicast address");
}

TEST_F(DatagramBackendTest, MulticastPortsOnOneHostHearEachOther) {
  DatagramOptions options;
  options.mode = DatagramOptions::Mode::kMulticast;
  options.remote = {SocketAddress::Type::kInet, "239.255.42.99", "0", {}};
  // A free port: bind a UDP socket to find one, then let both ports share it.
  UdpPeer probe;
  options.remote.port = std::to_string(probe.port);
  options.local = SocketAddress{SocketAddress::Type::kInet, "127.0.0.1", "0", {}};
  auto a = DatagramBackend::create(*loop_, "a", options);
  if (!a.ok()) GTEST_SKIP() << "no multicast here: " << a.status().to_string();
  auto b = DatagramBackend::create(*loop_, "b", options);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  TestNic nic_a, nic_b;
  (*a)->attach(&nic_a);
  (*b)->attach(&nic_b);
  EXPECT_EQ(send_bytes(**a, numbered_frame(5, 90)), SendResult::kSent);
  Status st = loop_->run_until([&] { return !nic_b.frames.empty(); }, testing::kDeadline);
  if (!st.ok()) GTEST_SKIP() << "multicast loopback does not reach this host's sockets";
  EXPECT_EQ(nic_b.frames[0], numbered_frame(5, 90));
}

}  // namespace
}  // namespace ferry::net
