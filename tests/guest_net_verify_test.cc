// `-guest net-verify` in ferry-vm, from outside: two VMs joined by `-netdev stream` over a
// unix socket exchange sequence-numbered frames through their virtio-net-pci devices and
// guest drivers, and must see every frame once, in order, intact; and the test itself,
// speaking the stream netdev's framing (be32 length + frame) as a Linux host behind QEMU
// would, gets ARP, ping and UDP answers from the guest byte for byte.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/ferry_vm.h"

namespace ferry::testing {
namespace {

using Clock = std::chrono::steady_clock;
const std::string kFerryVm = FERRY_VM_PATH;

std::vector<std::string> net_vm(const std::string& netdev, const std::string& mac,
                                const std::string& guest) {
  return {"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,id=nic0,mac=" + mac, "-guest",
          guest};
}

Json status(FerryVm& vm) { return vm.ok("query-guest")["status"]; }

// Until both have received more than `n` of the other's frames (one generous deadline: a
// busy machine is slow, not stuck).
void wait_received(FerryVm& a, FerryVm& b, int64_t n) {
  auto until = Clock::now() + std::chrono::seconds(90);
  while (Clock::now() < until) {
    if (status(a)["rx"].value("received", int64_t{0}) > n &&
        status(b)["rx"].value("received", int64_t{0}) > n)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "frames do not flow: " << status(a).dump() << "\n" << status(b).dump();
}

Json wait_end(FerryVm& vm) {
  Json g;
  for (auto until = Clock::now() + std::chrono::seconds(90); Clock::now() < until;) {
    g = vm.ok("query-guest");
    std::string state = g.value("state", "");
    if (state == "finished" || state == "failed") return g;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "the program did not end: " << g.dump();
  return g;
}

// A is the stream server, B the client. `client_first`: B starts (and its guest says hello
// into a stream not connected yet, where frames are dropped) before A exists; B's netdev
// connects when A listens.
void exchange_without_loss(bool client_first) {
  const std::string sock = unique_base("netverify") + ".sock";
  auto start_a = [&] {
    return FerryVm::start(
        kFerryVm, net_vm("stream,id=n0,server=on,addr.type=unix,addr.path=" + sock,
                         "52:54:00:00:00:01",
                         "net-verify,device=nic0,peer=52:54:00:00:00:02,rate=5000,size=1514"));
  };
  auto start_b = [&] {
    return FerryVm::start(
        kFerryVm, net_vm("stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
                         "52:54:00:00:00:02",
                         "net-verify,device=nic0,peer=52:54:00:00:00:01,rate=5000,size=1514"));
  };
  std::unique_ptr<FerryVm> a, b;
  if (client_first) {
    b = start_b();
    ASSERT_TRUE(b);
    // B's guest has said hello into the unconnected stream at least once.
    for (auto until = Clock::now() + std::chrono::seconds(60);
         Clock::now() < until && status(*b)["tx"].value("hellos_sent", 0) < 1;)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_GE(status(*b)["tx"].value("hellos_sent", 0), 1) << status(*b).dump();
    a = start_a();
    ASSERT_TRUE(a);
  } else {
    a = start_a();
    ASSERT_TRUE(a);
    b = start_b();
    ASSERT_TRUE(b);
  }
  wait_received(*a, *b, 3000);
  a->ok("x-guest-finish");
  b->ok("x-guest-finish");
  Json end_a = wait_end(*a);
  Json end_b = wait_end(*b);
  ASSERT_EQ(end_a.value("state", ""), "finished") << end_a.dump();
  ASSERT_EQ(end_b.value("state", ""), "finished") << end_b.dump();
  struct Side {
    const char* name;
    Json me;
    Json peer;
  } sides[] = {{"a", end_a["status"], end_b["status"]}, {"b", end_b["status"], end_a["status"]}};
  for (const Side& s : sides) {
    const Json& rx = s.me["rx"];
    SCOPED_TRACE(std::string(s.name) + ": " + s.me.dump());
    EXPECT_EQ(s.me["errors"], 0);
    EXPECT_TRUE(rx["peer_done"].get<bool>());
    EXPECT_GT(rx["received"].get<int64_t>(), 3000);
    EXPECT_EQ(rx["received"], s.peer["tx"]["sent"]);
    EXPECT_EQ(rx["peer_sent"], s.peer["tx"]["sent"]);
    EXPECT_EQ(rx["lost"], 0);
    EXPECT_EQ(rx["duplicates"], 0);
    EXPECT_EQ(rx["reordered"], 0);
    EXPECT_EQ(rx["corrupted"], 0);
    EXPECT_EQ(rx["other_frames"], 0);
    // Round trips were measured (both directions carry echoes).
    EXPECT_GT(s.me["rtt_ns"]["p50"].get<int64_t>(), 0);
  }
}

TEST(GuestNetVerify, TwoVmsOverAStreamSocketLoseNothing) { exchange_without_loss(false); }

TEST(GuestNetVerify, ClientStartedFirstStillLosesNothing) { exchange_without_loss(true); }

// system_reset puts B's NIC back at its plug-in state under the running program: the program
// brings its driver up again and the exchange goes on. Frames the rings held at the reset may
// be lost (counted so); none may be duplicated, reordered or corrupted. (QMP system_reset runs
// with the machine lock held, where the old driver must not touch the device.)
TEST(GuestNetVerify, SystemResetBringsTheDriverUpAgain) {
  const std::string sock = unique_base("netverify-reset") + ".sock";
  auto a = FerryVm::start(
      kFerryVm, net_vm("stream,id=n0,server=on,addr.type=unix,addr.path=" + sock,
                       "52:54:00:00:00:01",
                       "net-verify,device=nic0,peer=52:54:00:00:00:02,rate=5000,size=512"));
  ASSERT_TRUE(a);
  auto b = FerryVm::start(
      kFerryVm, net_vm("stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
                       "52:54:00:00:00:02",
                       "net-verify,device=nic0,peer=52:54:00:00:00:01,rate=5000,size=512"));
  ASSERT_TRUE(b);
  wait_received(*a, *b, 1000);
  b->ok("system_reset");
  // Up again, and frames flow both ways after it.
  Json s;
  for (auto until = Clock::now() + std::chrono::seconds(60); Clock::now() < until;) {
    s = status(*b);
    if (s.value("bringups", 0) == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(s.value("bringups", 0), 2) << s.dump();
  int64_t b_after = s["rx"].value("received", int64_t{0});
  int64_t a_after = status(*a)["rx"].value("received", int64_t{0});
  wait_received(*a, *b, std::max(a_after, b_after) + 1000);
  a->ok("x-guest-finish");
  b->ok("x-guest-finish");
  for (FerryVm* vm : {a.get(), b.get()}) {
    Json end = wait_end(*vm);
    ASSERT_EQ(end.value("state", ""), "finished") << end.dump();
    const Json& rx = end["status"]["rx"];
    EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
    EXPECT_TRUE(rx["peer_done"].get<bool>()) << end.dump();
    EXPECT_EQ(rx["duplicates"], 0) << end.dump();
    EXPECT_EQ(rx["reordered"], 0) << end.dump();
    EXPECT_EQ(rx["corrupted"], 0) << end.dump();
  }
}

// A listening unix socket speaking the stream netdev's framing, the test's end of the wire.
class StreamPeer {
 public:
  explicit StreamPeer(const std::string& path) : path_(path) {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_fd_, 1), 0);
  }
  ~StreamPeer() {
    if (fd_ >= 0) ::close(fd_);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    ::unlink(path_.c_str());
  }

  bool accept(std::chrono::seconds timeout) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count() * 1000)) != 1) return false;
    fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    return fd_ >= 0;
  }

  void send(const std::vector<uint8_t>& frame) {
    std::vector<uint8_t> out(4 + frame.size());
    uint32_t be = htonl(static_cast<uint32_t>(frame.size()));
    std::memcpy(out.data(), &be, 4);
    std::memcpy(out.data() + 4, frame.data(), frame.size());
    ASSERT_EQ(::write(fd_, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  }

  // The next frame that is not the workload's (hellos go out until a workload peer answers,
  // which this peer never does), or nothing by the deadline.
  std::optional<std::vector<uint8_t>> receive_answer(std::chrono::seconds timeout) {
    auto until = Clock::now() + timeout;
    for (;;) {
      auto frame = receive_frame(until);
      if (!frame) return std::nullopt;
      if (frame->size() >= 14 && (*frame)[12] == 0x88 && (*frame)[13] == 0xb5) continue;
      return frame;
    }
  }

 private:
  bool read_exact(uint8_t* p, size_t n, Clock::time_point until) {
    while (n > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) != 1) continue;
      ssize_t got = ::read(fd_, p, n);
      if (got <= 0) return false;
      p += got;
      n -= static_cast<size_t>(got);
    }
    return true;
  }
  std::optional<std::vector<uint8_t>> receive_frame(Clock::time_point until) {
    uint8_t header[4];
    if (!read_exact(header, 4, until)) return std::nullopt;
    uint32_t length = uint32_t{header[0]} << 24 | uint32_t{header[1]} << 16 |
                      uint32_t{header[2]} << 8 | header[3];
    if (length > 65536) return std::nullopt;
    std::vector<uint8_t> frame(length);
    if (!read_exact(frame.data(), length, until)) return std::nullopt;
    return frame;
  }

  std::string path_;
  int listen_fd_ = -1;
  int fd_ = -1;
};

TEST(GuestNetVerify, AnswersArpPingAndUdpLikeAHost) {
  const std::string sock = unique_base("netverify-host") + ".sock";
  StreamPeer peer(sock);
  auto vm = FerryVm::start(
      kFerryVm, net_vm("stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
                       "52:54:00:12:34:56",
                       "net-verify,device=nic0,peer=52:54:00:ab:cd:ef,ip=10.0.2.15,role=receive"));
  ASSERT_TRUE(vm);
  ASSERT_TRUE(peer.accept(std::chrono::seconds(30)));

  // Who has 10.0.2.15? Tell 10.0.2.2 — as Linux sends it, padded to 60 bytes by the wire.
  std::vector<uint8_t> arp = {
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x08, 0x06,
      0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef,
      0x0a, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x0f};
  arp.resize(60, 0);
  const std::vector<uint8_t> arp_reply = {
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
      0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
      0x0a, 0x00, 0x02, 0x0f, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x0a, 0x00, 0x02, 0x02};
  peer.send(arp);
  auto answer = peer.receive_answer(std::chrono::seconds(60));
  ASSERT_TRUE(answer.has_value()) << status(*vm).dump();
  EXPECT_EQ(*answer, arp_reply);

  // ping: echo request id 0x1234 seq 1, 16 bytes 00..0f.
  const std::vector<uint8_t> ping = {
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x08, 0x00,
      0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x06, 0x7b, 0x0a, 0x00,
      0x02, 0x02, 0x0a, 0x00, 0x02, 0x0f, 0x08, 0x00, 0xad, 0x8a, 0x12, 0x34, 0x00, 0x01,
      0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
      0x0e, 0x0f};
  const std::vector<uint8_t> pong = {
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00,
      0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x06, 0x7b, 0x0a, 0x00,
      0x02, 0x0f, 0x0a, 0x00, 0x02, 0x02, 0x00, 0x00, 0xb5, 0x8a, 0x12, 0x34, 0x00, 0x01,
      0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
      0x0e, 0x0f};
  peer.send(ping);
  answer = peer.receive_answer(std::chrono::seconds(60));
  ASSERT_TRUE(answer.has_value()) << status(*vm).dump();
  EXPECT_EQ(*answer, pong);

  // UDP 10.0.2.2:40000 -> 10.0.2.15:7 "hello", echoed with addresses and ports swapped.
  const std::vector<uint8_t> udp = {
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x08, 0x00,
      0x45, 0x00, 0x00, 0x21, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x06, 0x76, 0x0a, 0x00,
      0x02, 0x02, 0x0a, 0x00, 0x02, 0x0f, 0x9c, 0x40, 0x00, 0x07, 0x00, 0x0d, 0x07, 0xaa,
      0x68, 0x65, 0x6c, 0x6c, 0x6f};
  const std::vector<uint8_t> udp_reply = {
      0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00,
      0x45, 0x00, 0x00, 0x21, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x06, 0x76, 0x0a, 0x00,
      0x02, 0x0f, 0x0a, 0x00, 0x02, 0x02, 0x00, 0x07, 0x9c, 0x40, 0x00, 0x0d, 0x07, 0xaa,
      0x68, 0x65, 0x6c, 0x6c, 0x6f};
  peer.send(udp);
  answer = peer.receive_answer(std::chrono::seconds(60));
  ASSERT_TRUE(answer.has_value()) << status(*vm).dump();
  EXPECT_EQ(*answer, udp_reply);

  // query-guest shows a copy the vCPU publishes between steps: wait for one after the answers.
  Json s;
  for (auto until = Clock::now() + std::chrono::seconds(60); Clock::now() < until;) {
    s = status(*vm);
    if (s["answered"].value("udp", 0) != 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(s["answered"]["arp"], 1) << s.dump();
  EXPECT_EQ(s["answered"]["icmp"], 1) << s.dump();
  EXPECT_EQ(s["answered"]["udp"], 1) << s.dump();
  EXPECT_EQ(s["errors"], 0) << s.dump();
}

TEST(GuestNetVerify, BadOptionsAreRefusedByName) {
  struct Case {
    std::string guest;
    std::string message;
  } cases[] = {
      {"net-verify,peer=zz", "Parameter 'peer' expects a MAC address"},
      {"net-verify,ip=10.0.2", "Parameter 'ip' expects an IPv4 address like 10.0.2.15, found '10.0.2'"},
      {"net-verify,size=59", "Parameter 'size' expects a frame size from 60 to 1514, found '59'"},
      {"net-verify,role=both2", "role"},
      {"net-verify,device=nope", "device 'nope' is not a -device id"},
  };
  for (const Case& c : cases) {
    std::string log = unique_base("netverify-bad") + ".stderr";
    auto child = ChildProcess::spawn(
        {kFerryVm, "-netdev", "socket,id=n0,udp=127.0.0.1:1,localaddr=127.0.0.1:0", "-device",
         "virtio-net-pci,netdev=n0", "-guest", c.guest},
        log);
    ASSERT_TRUE(child.ok()) << child.status().to_string();
    EXPECT_EQ(child->wait(std::chrono::milliseconds(10000)), 1) << c.guest;
    EXPECT_NE(child->stderr_text().find(c.message), std::string::npos)
        << c.guest << ": " << child->stderr_text();
  }
}

}  // namespace
}  // namespace ferry::testing
