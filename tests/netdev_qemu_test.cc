// Ferry's stream backends against QEMU 7.2's: QEMU runs two `-netdev stream` servers joined
// by a hub (no NIC needed: a hubport with netdev= relays frames between them), and two
// Ferry stream clients exchange frames through it. So the framing, the largest frame and
// the oversize refusal are checked against QEMU itself, in both directions.
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "net/stream_backend.h"
#include "net/test_nic.h"
#include "support/ferry_vm.h"

namespace ferry::testing {
namespace {

using net::testing::numbered_frame;
using net::testing::send_bytes;
using net::testing::TestNic;

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";

class NetdevQemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kQemu, X_OK) != 0) GTEST_SKIP() << kQemu << " is not installed";
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    std::string base = unique_base("qemu-net");
    path_a_ = base + ".a.sock";
    path_b_ = base + ".b.sock";
    auto qemu = ChildProcess::spawn(
        {kQemu, "-M", "none", "-nodefaults", "-display", "none", "-netdev",
         "stream,id=a,server=on,addr.type=unix,addr.path=" + path_a_, "-netdev",
         "stream,id=b,server=on,addr.type=unix,addr.path=" + path_b_, "-netdev",
         "hubport,id=pa,hubid=0,netdev=a", "-netdev", "hubport,id=pb,hubid=0,netdev=b"},
        base + ".stderr");
    ASSERT_TRUE(qemu.ok()) << qemu.status().to_string();
    qemu_.emplace(std::move(qemu).value());
    // The clients retry until QEMU listens.
    a_ = client("fa", path_a_);
    b_ = client("fb", path_b_);
    ASSERT_TRUE(a_ && b_);
    a_->attach(&nic_a_);
    b_->attach(&nic_b_);
    Status st = loop_->run_until([&] { return a_->link_up() && b_->link_up(); },
                                 net::testing::kDeadline);
    ASSERT_TRUE(st.ok()) << st.to_string() << "\n" << qemu_->stderr_text();
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    qemu_.reset();
    ::unlink(path_a_.c_str());
    ::unlink(path_b_.c_str());
  }

  std::unique_ptr<net::StreamBackend> client(std::string id, const std::string& path) {
    net::StreamOptions options;
    options.address = {net::SocketAddress::Type::kUnix, {}, {}, path};
    options.reconnect_ms = 50;
    auto backend = net::StreamBackend::create(*loop_, std::move(id), "stream", options, nullptr);
    EXPECT_TRUE(backend.ok()) << backend.status().to_string();
    return backend.ok() ? std::move(backend).value() : nullptr;
  }

  std::unique_ptr<EventLoop> loop_;
  std::string path_a_, path_b_;
  std::optional<ChildProcess> qemu_;
  std::unique_ptr<net::StreamBackend> a_, b_;
  TestNic nic_a_, nic_b_;
};

TEST_F(NetdevQemuTest, FramesCrossQemusStreamNetdevsBothWaysInOrder) {
  // QEMU may accept before its hub relays: the first frames are retried until one arrives.
  std::vector<uint8_t> probe = numbered_frame(0, 60);
  Status st = loop_->run_until(
      [&] {
        if (nic_b_.frames.empty()) send_bytes(*a_, probe);
        return !nic_b_.frames.empty();
      },
      net::testing::kDeadline);
  ASSERT_TRUE(st.ok()) << st.to_string();
  nic_b_.frames.clear();
  std::vector<size_t> sizes = {60, 1514, 9000, 65535, net::kMaxFrameSize};
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(send_bytes(*a_, numbered_frame(static_cast<uint32_t>(1 + i), sizes[i])),
              net::SendResult::kSent);
    ASSERT_EQ(send_bytes(*b_, numbered_frame(static_cast<uint32_t>(100 + i), sizes[i])),
              net::SendResult::kSent);
  }
  st = loop_->run_until(
      [&] {
        // Probes that were in flight may still arrive first; drop them.
        while (!nic_b_.frames.empty() && nic_b_.frames.front() == probe)
          nic_b_.frames.erase(nic_b_.frames.begin());
        return nic_a_.frames.size() >= sizes.size() && nic_b_.frames.size() >= sizes.size();
      },
      net::testing::kDeadline);
  ASSERT_TRUE(st.ok()) << st.to_string() << " a got " << nic_a_.frames.size() << ", b got "
                       << nic_b_.frames.size();
  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(nic_b_.frames[i], numbered_frame(static_cast<uint32_t>(1 + i), sizes[i])) << i;
    EXPECT_EQ(nic_a_.frames[i], numbered_frame(static_cast<uint32_t>(100 + i), sizes[i])) << i;
  }
}

TEST_F(NetdevQemuTest, QemuRefusesAFrameOverTheSameLimitFerryDoes) {
  ASSERT_EQ(send_bytes(*a_, numbered_frame(1, net::kMaxFrameSize + 1)), net::SendResult::kSent);
  // QEMU cuts the connection; Ferry's client sees it go and connects again.
  Status st = loop_->run_until([&] { return !a_->link_up(); }, net::testing::kDeadline);
  ASSERT_TRUE(st.ok()) << st.to_string();
  st = loop_->run_until(
      [&] {
        return qemu_->stderr_text().find(
                   net::kOversizedMessage) != 
               std::string::npos;
      },
      net::testing::kDeadline);
  EXPECT_TRUE(st.ok()) << qemu_->stderr_text();
  st = loop_->run_until([&] { return a_->link_up(); }, net::testing::kDeadline);
  EXPECT_TRUE(st.ok()) << st.to_string();
}

}  // namespace
}  // namespace ferry::testing
