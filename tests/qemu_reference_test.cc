// The harness drives QEMU 7.2 too (qemu-system-x86_64 -M q35 -accel tcg -S with -qtest),
// so device behaviour can be compared with QEMU's. These tests pin the QEMU replies the
// harness relies on; they are skipped where QEMU is not installed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <optional>

#include "client/child_process.h"
#include "client/qmp_client.h"
#include "client/qtest_client.h"

namespace ferry::testing {

using namespace ::ferry::client;  // the clients live in tools/client
namespace {

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";

class QemuReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kQemu, X_OK) != 0) GTEST_SKIP() << kQemu << " is not installed";
    std::string base = fmt::format("/tmp/ferry-qemu-ref-{}", ::getpid());
    qmp_path_ = base + ".qmp";
    auto listener = UnixListener::listen(base + ".qtest");
    ASSERT_TRUE(listener.ok()) << listener.status().to_string();
    auto qemu = ChildProcess::spawn({kQemu, "-M", "q35", "-accel", "tcg", "-S", "-display", "none",
                                     "-nodefaults", "-qmp", "unix:" + qmp_path_ + ",server=on,wait=off",
                                     "-qtest", "unix:" + base + ".qtest"},
                                    base + ".stderr");
    ASSERT_TRUE(qemu.ok()) << qemu.status().to_string();
    qemu_.emplace(std::move(qemu).value());
    auto conn = listener->accept(Millis(30000));
    ASSERT_TRUE(conn.ok()) << conn.status().to_string() << "\n" << qemu_->stderr_text();
    qtest_.emplace(std::move(conn).value());
  }

  std::string qmp_path_;
  std::optional<ChildProcess> qemu_;
  std::optional<QtestClient> qtest_;
};

TEST_F(QemuReference, PciConfigThroughPortsAndQtestReplyFormats) {
  ASSERT_TRUE(qtest_->out(32, 0xcf8, 0x80000000).ok());  // bus 0, device 0, function 0
  auto id = qtest_->in(32, 0xcfc);
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  EXPECT_EQ(*id, 0x29c08086u);  // Q35 host bridge: Intel 0x8086, device 0x29c0
  auto reply = qtest_->command("readl 0x0");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "OK 0x0000000000000000");  // 64-bit wide value field for every width
  reply = qtest_->command("bogus 1");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "FAIL Unknown command 'bogus'");
}

TEST_F(QemuReference, QmpNegotiationStatusAndErrors) {
  auto qmp = QmpClient::connect(qmp_path_, Millis(30000));
  ASSERT_TRUE(qmp.ok()) << qmp.status().to_string();
  EXPECT_EQ(qmp->greeting()["QMP"]["version"]["qemu"]["major"], 7);
  auto status = qmp->execute("query-status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["return"]["status"], "prelaunch");
  EXPECT_EQ((*status)["return"]["running"], false);
  auto missing = qmp->execute("no-such-command");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ((*missing)["error"]["class"], "CommandNotFound");
  EXPECT_EQ((*missing)["error"]["desc"], "The command no-such-command has not been found");
}

}  // namespace
}  // namespace ferry::testing
