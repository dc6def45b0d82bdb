// -netdev in ferry-vm, driven from outside as QEMU's netdev-socket qtest does: the types
// `-netdev help` lists, QEMU's messages for bad options, and the QMP events of a stream
// netdev as peers come and go. (No NIC exists yet to carry frames; the unit tests in
// src/net/ exchange frames with the backends directly.)
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "support/ferry_vm.h"
#include "support/run_command.h"
#include "support/raw_stream.h"

namespace ferry::testing {
namespace {

const std::string kFerryVm = FERRY_VM_PATH;

int listen_unix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, path.c_str(), sizeof(un.sun_path) - 1);
  ::unlink(path.c_str());
  if (bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)) != 0 || listen(fd, 4) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Accepts one connection, waiting at most `timeout_ms` (generous: the VM connects when the
// scheduler lets it).
int accept_within(int listen_fd, int timeout_ms) {
  pollfd p{listen_fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return -1;
  return accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
}

CommandResult run_vm(const std::string& args) {
  return run_command(kFerryVm + " " + args + " 2>&1");
}

TEST(Netdev, HelpListsTheTypesAsQemuDoes) {
  for (const char* help : {"help", "?"}) {
    CommandResult r = run_vm(std::string("-netdev '") + help + "'");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "Available netdev backend types:\nsocket\nstream\nhubport\ntap\n");
  }
}

TEST(Netdev, BadOptionsAreRefusedInQemusWords) {
  struct Case {
    std::string args;
    std::string message;
  } cases[] = {
      {"-netdev stream,id=n0", "-netdev stream,id=n0: Parameter 'addr' is missing"},
      {"-netdev foo,id=n0", "-netdev foo,id=n0: Parameter 'type' does not accept value 'foo'"},
      {"-netdev hubport,id=h0,hubid=0 -netdev hubport,id=h0,hubid=1",
       "-netdev hubport,id=h0,hubid=1: Duplicate ID 'h0' for netdev"},
      {"-netdev stream,id=n0,server=on,addr.type=unix",
       "-netdev stream,id=n0,server=on,addr.type=unix: Parameter 'addr.path' is missing"},
      {"-netdev stream,id=n0,addr.type=unix,addr.path=/x,bogus=1",
       "Parameter 'bogus' is unexpected"},
      {"-netdev socket,id=s0", "exactly one of listen=, connect=, mcast= or udp= is required"},
      {"-netdev stream,id=n0,server=on,addr.type=unix,addr.path=/nonexistent-dir/n.sock",
       "/nonexistent-dir/n.sock"},
  };
  for (const Case& c : cases) {
    CommandResult r = run_vm(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
  }
}

TEST(Netdev, StreamServerReportsEachClientAsItComesAndGoes) {
  std::string path = unique_base("netdev") + ".sock";
  auto vm = FerryVm::start(
      kFerryVm, {"-S", "-netdev", "stream,id=n0,server=on,addr.type=unix,addr.path=" + path});
  ASSERT_TRUE(vm);
  Json expected_connected = {{"netdev-id", "n0"}, {"addr", {{"type", "unix"}, {"path", path}}}};
  for (int round = 0; round < 2; ++round) {
    int fd = connect_unix(path);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    auto connected = vm->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000));
    ASSERT_TRUE(connected.ok()) << connected.status().to_string();
    EXPECT_EQ((*connected)["data"], expected_connected) << connected->dump();
    close(fd);
    auto disconnected = vm->qmp().wait_event("NETDEV_STREAM_DISCONNECTED", Millis(20000));
    ASSERT_TRUE(disconnected.ok()) << disconnected.status().to_string();
    EXPECT_EQ((*disconnected)["data"], Json({{"netdev-id", "n0"}}));
  }
  // No NIC claimed it: QEMU's warning.
  EXPECT_NE(vm->process().stderr_text().find("netdev n0 has no peer"), std::string::npos)
      << vm->process().stderr_text();
}

TEST(Netdev, StreamClientConnectsAgainAfterThePeerCloses) {
  std::string path = unique_base("peer") + ".sock";
  int listen_fd = listen_unix(path);
  ASSERT_GE(listen_fd, 0) << std::strerror(errno);
  auto vm = FerryVm::start(
      kFerryVm, {"-S", "-netdev", "stream,id=n1,addr.type=unix,addr.path=" + path + ",reconnect=1"});
  ASSERT_TRUE(vm);
  int first = accept_within(listen_fd, 20000);
  ASSERT_GE(first, 0);
  close(first);
  auto disconnected = vm->qmp().wait_event("NETDEV_STREAM_DISCONNECTED", Millis(20000));
  ASSERT_TRUE(disconnected.ok()) << disconnected.status().to_string();
  EXPECT_EQ((*disconnected)["data"], Json({{"netdev-id", "n1"}}));
  // The first connection's event came before QMP was there or is queued: set it aside, so
  // the one awaited below is the reconnection's.
  (void)vm->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(0));
  int second = accept_within(listen_fd, 20000);
  ASSERT_GE(second, 0) << "the client did not connect again";
  auto connected = vm->qmp().wait_event("NETDEV_STREAM_CONNECTED", Millis(20000));
  ASSERT_TRUE(connected.ok()) << connected.status().to_string();
  EXPECT_EQ((*connected)["data"],
            Json({{"netdev-id", "n1"}, {"addr", {{"type", "unix"}, {"path", path}}}}));
  close(second);
  close(listen_fd);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace ferry::testing
