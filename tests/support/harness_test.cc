// The test harness itself: QMP and qtest clients against scripted in-process peers, and
// child-process lifetime.
#include <gtest/gtest.h>

#include <thread>

#include "client/child_process.h"
#include "client/qmp_client.h"
#include "client/qtest_client.h"

namespace ferry::testing {

using namespace ::ferry::client;  // the clients live in tools/client
namespace {

std::string temp_path(const char* name) {
  return fmt::format("/tmp/ferry-harness-{}-{}", ::getpid(), name);
}

TEST(Harness, QmpClientNegotiatesMatchesIdsAndKeepsEvents) {
  std::string path = temp_path("qmp");
  auto listener = UnixListener::listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();
  std::thread server([&] {
    auto conn = listener->accept(Millis(5000));
    ASSERT_TRUE(conn.ok());
    (void)conn->send(R"({"QMP": {"version": {}, "capabilities": []}})" "\n");
    auto caps = conn->read_line(Millis(5000));
    ASSERT_TRUE(caps.ok());
    Json req = Json::parse(*caps);
    EXPECT_EQ(req["execute"], "qmp_capabilities");
    (void)conn->send(Json{{"return", Json::object()}, {"id", req["id"]}}.dump() + "\n");
    auto cmd = conn->read_line(Millis(5000));
    ASSERT_TRUE(cmd.ok());
    req = Json::parse(*cmd);
    // An event arrives before the reply; the client must keep it.
    (void)conn->send(R"({"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}})" "\n");
    (void)conn->send(Json{{"return", {{"status", "paused"}}}, {"id", req["id"]}}.dump() + "\n");
  });
  auto qmp = QmpClient::connect(path, Millis(5000));
  ASSERT_TRUE(qmp.ok()) << qmp.status().to_string();
  auto reply = qmp->execute("query-status");
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ((*reply)["return"]["status"], "paused");
  auto stop = qmp->wait_event("STOP", Millis(100));
  ASSERT_TRUE(stop.ok());
  EXPECT_EQ((*stop)["timestamp"]["microseconds"], 2);
  EXPECT_FALSE(qmp->wait_event("RESUME", Millis(50)).ok());
  server.join();
}

TEST(Harness, QtestClientParsesRepliesAndSetsIrqsAside) {
  std::string path = temp_path("qtest");
  auto listener = UnixListener::listen(path);
  ASSERT_TRUE(listener.ok());
  std::thread vm([&] {
    auto conn = connect_unix(path, Millis(5000));
    ASSERT_TRUE(conn.ok());
    auto line = conn->read_line(Millis(5000));
    ASSERT_TRUE(line.ok());
    EXPECT_EQ(*line, "readl 0x1000");
    (void)conn->send("IRQ raise 5\nOK 0x00000000deadbeef\n");
    line = conn->read_line(Millis(5000));
    EXPECT_EQ(*line, "outw 0xcf8 0x12");
    (void)conn->send("FAIL bad port\n");
  });
  auto conn = listener->accept(Millis(5000));
  ASSERT_TRUE(conn.ok());
  QtestClient qtest(std::move(conn).value());
  auto value = qtest.read(32, 0x1000);
  ASSERT_TRUE(value.ok()) << value.status().to_string();
  EXPECT_EQ(*value, 0xdeadbeefu);
  ASSERT_EQ(qtest.irqs().size(), 1u);
  EXPECT_EQ(qtest.irqs().front(), "raise 5");
  Status out = qtest.out(16, 0xcf8, 0x12);
  EXPECT_FALSE(out.ok());
  EXPECT_NE(out.message().find("FAIL bad port"), std::string_view::npos);
  vm.join();
}

TEST(Harness, ChildProcessReportsExitAndIsKilledOnTeardown) {
  auto quick = ChildProcess::spawn({"/bin/sh", "-c", "echo oops >&2; exit 3"}, temp_path("err1"));
  ASSERT_TRUE(quick.ok());
  EXPECT_EQ(quick->wait(Millis(5000)), 3);
  EXPECT_EQ(quick->stderr_text(), "oops\n");
  pid_t pid;
  {
    auto slow = ChildProcess::spawn({"/bin/sleep", "100"}, temp_path("err2"));
    ASSERT_TRUE(slow.ok());
    pid = slow->pid();
    EXPECT_TRUE(slow->running());
  }
  EXPECT_NE(::kill(pid, 0), 0);  // gone once the owner went away
}

}  // namespace
}  // namespace ferry::testing
