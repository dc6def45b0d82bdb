// The tap backend in a network namespace of the test's own (as `unshare -rn`): frames
// written to the tap appear on the interface, frames sent on the interface reach the NIC,
// and reading stops while the NIC says no. Skipped, with the reason, where no namespace or
// tap can be made.
#include "net/tap_backend.h"

#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "net/test_nic.h"

namespace ferry::net {
namespace {

constexpr uint16_t kTestEthertype = 0x88b5;  // IEEE local experimental

std::vector<uint8_t> test_frame(uint8_t number) {
  std::vector<uint8_t> frame(60, number);
  std::memset(frame.data(), 0xff, 6);                          // broadcast
  const uint8_t source[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::memcpy(frame.data() + 6, source, 6);
  frame[12] = kTestEthertype >> 8;
  frame[13] = kTestEthertype & 0xff;
  return frame;
}

bool is_test_frame(const std::vector<uint8_t>& frame) {
  return frame.size() >= 14 && frame[12] == (kTestEthertype >> 8) &&
         frame[13] == (kTestEthertype & 0xff);
}

bool write_file(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// A network namespace for this process: directly as root, else inside a user namespace.
std::string enter_own_network_namespace() {
  if (unshare(CLONE_NEWNET) == 0) return {};
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
    return fmt::format("skip: cannot make a network namespace: {}", std::strerror(errno));
  write_file("/proc/self/setgroups", "deny");
  if (!write_file("/proc/self/uid_map", fmt::format("0 {} 1", uid)) ||
      !write_file("/proc/self/gid_map", fmt::format("0 {} 1", gid)))
    return "skip: cannot map the user namespace's root";
  return {};
}

// The test body, in a child process inside its own namespace. Returns "" on success,
// "skip: ..." or the failure.
std::string run_in_namespace() {
  if (std::string err = enter_own_network_namespace(); !err.empty()) return err;
  auto loop = EventLoop::create();
  if (!loop.ok()) return loop.status().to_string();
  auto tap = TapBackend::create(**loop, "t0", {.ifname = "ferrytap0"});
  if (!tap.ok()) return "skip: " + tap.status().to_string();
  if ((*tap)->ifname() != "ferrytap0") return "ifname " + (*tap)->ifname();
  testing::TestNic nic;
  (*tap)->attach(&nic);

  int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq up{};
  std::strncpy(up.ifr_name, "ferrytap0", IFNAMSIZ - 1);
  if (ioctl(ctl, SIOCGIFFLAGS, &up) != 0) return fmt::format("SIOCGIFFLAGS: {}", strerror(errno));
  up.ifr_flags |= IFF_UP;
  if (ioctl(ctl, SIOCSIFFLAGS, &up) != 0) return fmt::format("SIOCSIFFLAGS: {}", strerror(errno));
  close(ctl);
  int packet = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kTestEthertype));
  if (packet < 0) return fmt::format("skip: AF_PACKET: {}", strerror(errno));
  sockaddr_ll link{};
  link.sll_family = AF_PACKET;
  link.sll_protocol = htons(kTestEthertype);
  link.sll_ifindex = static_cast<int>(if_nametoindex("ferrytap0"));
  if (bind(packet, reinterpret_cast<sockaddr*>(&link), sizeof(link)) != 0)
    return fmt::format("bind AF_PACKET: {}", strerror(errno));

  // Backend -> interface.
  std::vector<uint8_t> out = test_frame(1);
  if (testing::send_bytes(**tap, out) != SendResult::kSent) return "send refused";
  pollfd p{packet, POLLIN, 0};
  if (poll(&p, 1, 20000) != 1) return "the frame written to the tap never reached the interface";
  std::vector<uint8_t> got(2048);
  ssize_t n = recv(packet, got.data(), got.size(), 0);
  got.resize(n > 0 ? static_cast<size_t>(n) : 0);
  if (got != out) return "the interface got another frame";

  // Interface -> NIC, held while the NIC says no, then all in order.
  nic.accepting = false;
  for (uint8_t i = 10; i < 15; ++i) {
    std::vector<uint8_t> frame = test_frame(i);
    if (sendto(packet, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&link),
               sizeof(link)) != static_cast<ssize_t>(frame.size()))
      return fmt::format("sendto: {}", strerror(errno));
  }
  Status st = (*loop)->run_until([&] { return nic.asked > 0; }, testing::kDeadline);
  if (!st.ok()) return "the backend never asked the NIC: " + st.to_string();
  for (int i = 0; i < 20; ++i) (void)(*loop)->run_once(std::chrono::milliseconds(0));
  if (!nic.frames.empty()) return "frames delivered while the NIC said no";
  nic.accepting = true;
  (*tap)->receive_ready();
  std::vector<std::vector<uint8_t>> ours;
  st = (*loop)->run_until(
      [&] {
        ours.clear();
        for (const auto& frame : nic.frames)
          if (is_test_frame(frame)) ours.push_back(frame);
        return ours.size() >= 5;
      },
      testing::kDeadline);
  if (!st.ok()) return fmt::format("the NIC got {} of 5 frames", ours.size());
  for (uint8_t i = 0; i < 5; ++i)
    if (ours[i] != test_frame(static_cast<uint8_t>(10 + i))) return fmt::format("frame {} differs", i);
  close(packet);
  return {};
}

TEST(TapBackend, ExchangesFramesWithItsInterfaceInAnOwnNamespace) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    std::string result = run_in_namespace();
    if (!result.empty()) (void)!write(pipe_fds[1], result.data(), result.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string result;
  char buf[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) result.append(buf, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  if (result.starts_with("skip: ")) GTEST_SKIP() << result.substr(6);
  EXPECT_EQ(result, "");
}

}  // namespace
}  // namespace ferry::net
