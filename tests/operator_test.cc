// Black-box tests of ferry-vm under careless operators and hostile clients (issue 22): no
// input on any socket ends the process, termination signals end it cleanly as they end
// QEMU, and command-line mistakes get QEMU 7.2's messages. Each test drives ferry-vm as a
// process and checks it is still alive and answering QMP afterwards where it should be,
// or its exit status and message where it should end.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "support/nvme_rig.h"

namespace ferry::testing {
namespace {

namespace commands = guest::nvme::commands;
using guest::nvme::Transfer;

constexpr const char* kFerryVm = FERRY_VM_PATH;
constexpr Millis kDeadline(20000);  // generous: CI shares a 2-core box

// A ferry-vm with a QMP socket at a path the test knows (to check it disappears).
struct Vm {
  std::string qmp_path;
  std::optional<ChildProcess> process;
  std::optional<QmpClient> qmp;
};

std::unique_ptr<Vm> start_vm(std::vector<std::string> extra) {
  auto vm = std::make_unique<Vm>();
  std::string base = unique_base("op");
  vm->qmp_path = base + ".qmp";
  std::vector<std::string> argv = {kFerryVm, "-qmp",
                                   "unix:" + vm->qmp_path + ",server=on,wait=off"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto child = ChildProcess::spawn(argv, base + ".stderr");
  EXPECT_TRUE(child.ok()) << child.status().to_string();
  if (!child.ok()) return nullptr;
  vm->process.emplace(std::move(child).value());
  auto qmp = QmpClient::connect(vm->qmp_path, kDeadline);
  EXPECT_TRUE(qmp.ok()) << qmp.status().to_string() << "\n" << vm->process->stderr_text();
  if (!qmp.ok()) return nullptr;
  vm->qmp.emplace(std::move(qmp).value());
  return vm;
}

// The VM is up and answers QMP with its run state.
void expect_answers(QmpClient& qmp, ChildProcess& process) {
  auto reply = qmp.execute("query-status", Json::object(), kDeadline);
  ASSERT_TRUE(reply.ok()) << reply.status().to_string() << "\n" << process.stderr_text();
  EXPECT_TRUE((*reply)["return"].contains("status")) << reply->dump();
  EXPECT_TRUE(process.running());
}

// A raw QMP connection: bytes go out as written, replies come back as lines.
LineSocket raw_connection(const std::string& path, bool negotiate) {
  auto socket = connect_unix(path, kDeadline);
  EXPECT_TRUE(socket.ok()) << socket.status().to_string();
  if (!socket.ok()) return LineSocket();
  auto greeting = socket->read_line(kDeadline);
  EXPECT_TRUE(greeting.ok() && greeting->find("\"QMP\"") != std::string::npos);
  if (negotiate) {
    EXPECT_TRUE(socket->send("{\"execute\": \"qmp_capabilities\"}\n").ok());
    auto reply = socket->read_line(kDeadline);
    EXPECT_TRUE(reply.ok() && reply->find("\"return\"") != std::string::npos);
  }
  return std::move(socket).value();
}

// Sends one line of raw bytes and returns the reply, parsed without exceptions.
Json raw_request(LineSocket& socket, const std::string& line) {
  EXPECT_TRUE(socket.send(line + "\n").ok());
  for (;;) {
    auto reply = socket.read_line(kDeadline);
    EXPECT_TRUE(reply.ok()) << "no reply to " << line << ": " << reply.status().to_string();
    if (!reply.ok()) return Json();
    Json j = Json::parse(*reply, nullptr, false);
    if (!j.contains("event")) return j;
  }
}

std::pair<int, std::string> run_to_exit(std::vector<std::string> args) {
  args.insert(args.begin(), kFerryVm);
  auto child = ChildProcess::spawn(args, unique_base("op-cli") + ".stderr");
  if (!child.ok()) return {-1, child.status().to_string()};
  auto code = child->wait(kDeadline);
  return {code.value_or(-1), child->stderr_text()};
}

// ---- crash: numbers beyond a double ----------------------------------------------------------

// `1e999` alone, even before qmp_capabilities: an error reply, and the same connection and
// a new one are served afterwards (QEMU stays up too).
TEST(OperatorQmp, NumberBeyondADoubleBeforeNegotiationIsAnError) {
  auto vm = start_vm({"-S"});
  ASSERT_TRUE(vm);
  LineSocket raw = raw_connection(vm->qmp_path, /*negotiate=*/false);
  Json reply = raw_request(raw, "1e999");
  EXPECT_EQ(reply["error"]["class"], "GenericError") << reply.dump();
  reply = raw_request(raw, R"({"execute": "qmp_capabilities"})");
  EXPECT_TRUE(reply.contains("return")) << reply.dump();
  reply = raw_request(raw, R"({"execute": "query-status", "id": 7})");
  EXPECT_EQ(reply["return"]["status"], "prelaunch") << reply.dump();
  EXPECT_EQ(reply["id"], 7);
  expect_answers(*vm->qmp, *vm->process);
}

TEST(OperatorQmp, NumberBeyondADoubleAsIdIsAnError) {
  auto vm = start_vm({"-S"});
  ASSERT_TRUE(vm);
  LineSocket raw = raw_connection(vm->qmp_path, /*negotiate=*/true);
  Json reply = raw_request(raw, R"({"execute":"query-status","id":-1e999})");
  EXPECT_EQ(reply["error"]["class"], "GenericError") << reply.dump();
  reply = raw_request(raw, R"({"execute":"query-status","id":1})");
  EXPECT_EQ(reply["return"]["status"], "prelaunch") << reply.dump();
  expect_answers(*vm->qmp, *vm->process);
}

// Out-of-range typed arguments get QEMU 7.2's words (checked against QEMU by hand: the
// same requests give the same descs) and change nothing.
TEST(OperatorQmp, MigrateSetParametersRefusesOutOfRangeNumbers) {
  auto vm = start_vm({"-S"});
  ASSERT_TRUE(vm);
  LineSocket raw = raw_connection(vm->qmp_path, /*negotiate=*/true);
  Json reply = raw_request(
      raw, R"({"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1e999}})");
  EXPECT_EQ(reply["error"]["class"], "GenericError") << reply.dump();
  auto set = [&](const std::string& arguments) {
    auto r = vm->qmp->execute("migrate-set-parameters", Json::parse(arguments), kDeadline);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : Json();
  };
  Json before = (*vm->qmp->execute("query-migrate-parameters"))["return"];
  for (const char* value : {"1e300", "1.5", "18446744073709551616", "\"12\""}) {
    Json r = set(fmt::format(R"({{"max-bandwidth": {}}})", value));
    EXPECT_EQ(r["error"]["desc"], "Parameter 'max-bandwidth' expects uint64") << value;
    r = set(fmt::format(R"({{"downtime-limit": {}}})", value));
    EXPECT_EQ(r["error"]["desc"], "Parameter 'downtime-limit' expects uint64") << value;
  }
  for (const char* value : {"2000001", "-1"}) {
    Json r = set(fmt::format(R"({{"downtime-limit": {}}})", value));
    EXPECT_EQ(r["error"]["desc"],
              "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) "
              "ms")
        << value;
  }
  EXPECT_EQ((*vm->qmp->execute("query-migrate-parameters"))["return"], before);
  // In range, as QEMU: the largest uint64, and -1 taken modulo 2^64.
  EXPECT_TRUE(set(R"({"max-bandwidth": 18446744073709551615})").contains("return"));
  EXPECT_TRUE(set(R"({"max-bandwidth": -1, "downtime-limit": 2000000})").contains("return"));
  Json after = (*vm->qmp->execute("query-migrate-parameters"))["return"];
  EXPECT_EQ(after["max-bandwidth"], uint64_t{18446744073709551615u});
  EXPECT_EQ(after["downtime-limit"], 2000000);
  expect_answers(*vm->qmp, *vm->process);
}

// Whatever else a client sends: every line gets an answer, the VM stays up.
TEST(OperatorQmp, HostileLinesNeverEndTheProcess) {
  auto vm = start_vm({"-S"});
  ASSERT_TRUE(vm);
  LineSocket raw = raw_connection(vm->qmp_path, /*negotiate=*/true);
  const std::vector<std::string> lines = {
      "-1e999", "1E400", std::string(4096, '9') + "e9", R"({"execute": 1e999})",
      R"({"execute": "query-status", "arguments": {"a": [1e999]}})",
      R"({"execute": "qmp_capabilities", "arguments": {"enable": [1e999]}})",
      R"({"execute": "query-status", "id": {"nested": [-1e999, 1e-999]}})",
      R"({"execute": "migrate-set-capabilities", "arguments": {"capabilities": )"
      R"([{"capability": 1e300, "state": 1e300}]}})",
      R"({"execute": "migrate", "arguments": {"uri": 1e300}})",
      "\"\\ud800\"", R"({"execute": "\ud800"})", "{\"execute\": \"\xff\xfe\"}",
      R"({"execute": "query-status"} {"execute": 1e999})"};
  for (const std::string& line : lines) {
    EXPECT_TRUE(raw.send(line + "\n").ok());
  }
  // The last request of all gets its reply: everything before it was answered in order.
  Json reply = raw_request(raw, R"({"execute": "query-status", "id": "last"})");
  for (int i = 0; i < 32 && reply.is_object() && reply["id"] != "last"; ++i) {
    auto line = raw.read_line(kDeadline);
    ASSERT_TRUE(line.ok()) << line.status().to_string() << "\n" << vm->process->stderr_text();
    reply = Json::parse(*line, nullptr, false);
  }
  EXPECT_EQ(reply["id"], "last") << reply.dump();
  expect_answers(*vm->qmp, *vm->process);
}

// The qtest socket parses numbers too: out-of-range and malformed ones get FAIL/ERR.
TEST(OperatorQtest, MalformedNumbersGetFailAndTheVmCarriesOn) {
  auto vm = FerryVm::start(kFerryVm, {"-S", "-accel", "qtest"});
  ASSERT_TRUE(vm);
  for (const char* line :
       {"readb 99999999999999999999999", "readb -1", "readb 1e999", "writeq 0 0x1ffffffffffffffff",
        "outb 99999999999 1", "inl 0x10000", "read 0 99999999999999999999", "read 0 0",
        "write 0 4", "write 0 4 0x1", "write 0 4 zz", "b64write 0 4 !!!!", "memset 0 1",
        "clock_step -9223372036854775808", "clock_step 99999999999999999999",
        "clock_set -9223372036854775809", "clock_step 9223372036854775807",
        "clock_step 9223372036854775807", "irq_intercept_in", "", "x"}) {
    auto reply = vm->qtest().command(line);
    ASSERT_TRUE(reply.ok()) << line << ": " << reply.status().to_string() << "\n"
                            << vm->process().stderr_text();
  }
  auto reply = vm->qtest().command("endianness");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "OK little");
  expect_answers(vm->qmp(), vm->process());
}

// ---- termination signals ---------------------------------------------------------------------

// SIGTERM, SIGINT and SIGHUP as QEMU: SHUTDOWN {"guest": false, "reason": "host-signal"},
// exit status 0, the QMP and incoming-migration sockets removed, and QEMU's report naming
// the signal and its sender.
TEST(OperatorSignals, TerminationSignalsEndTheVmCleanly) {
  for (int signo : {SIGTERM, SIGINT, SIGHUP}) {
    SCOPED_TRACE(strsignal(signo));
    std::string incoming = unique_base("op-incoming") + ".sock";
    auto vm = start_vm({"-incoming", "unix:" + incoming});
    ASSERT_TRUE(vm);
    expect_answers(*vm->qmp, *vm->process);
    EXPECT_EQ(::access(incoming.c_str(), F_OK), 0) << "the VM listens for a migration";
    ASSERT_EQ(::kill(vm->process->pid(), signo), 0);
    auto event = vm->qmp->wait_event("SHUTDOWN", kDeadline);
    ASSERT_TRUE(event.ok()) << event.status().to_string() << "\n" << vm->process->stderr_text();
    EXPECT_EQ((*event)["data"], Json::parse(R"({"guest": false, "reason": "host-signal"})"));
    EXPECT_EQ(vm->process->wait(kDeadline), 0) << vm->process->stderr_text();
    EXPECT_NE(::access(vm->qmp_path.c_str(), F_OK), 0) << "the QMP socket is left behind";
    EXPECT_NE(::access(incoming.c_str(), F_OK), 0) << "the migration socket is left behind";
    EXPECT_NE(vm->process->stderr_text().find(
                  fmt::format("ferry-vm: terminating on signal {} from pid {}", signo, getpid())),
              std::string::npos)
        << vm->process->stderr_text();
  }
}

// A running VM with writes held at the block backend: SIGTERM waits for them (QEMU drains
// guest I/O before it exits), so their data is in the image afterwards. A signal taking its
// default action would end the process with the writes never issued.
TEST(OperatorSignals, SigtermDrainsGuestIoBeforeExit) {
  TempImage image(16 << 20);
  std::vector<std::string> args = drive_args("d0", image);
  args.insert(args.end(), {"-device", "nvme,serial=OPTEST,drive=d0"});
  auto rig = start_rig(kFerryVm, args);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(1, 16).ok());
  rig->vm->ok("x-blkdebug-inject", {{"drive", "d0"}, {"op", "write"}, {"delay-ms", 500}});
  constexpr int kWrites = 8;
  uint64_t buf = rig->alloc(kWrites * 4096);
  std::vector<std::vector<uint8_t>> data;
  std::mt19937_64 rng(22);
  for (int i = 0; i < kWrites; ++i) {
    std::vector<uint8_t> bytes(4096);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    rig->put(buf + 4096 * i, bytes);
    data.push_back(std::move(bytes));
    auto cid = rig->c().submit(1, commands::write(1, 64 * i, 8),
                               Transfer::prp(buf + 4096 * i, 4096), /*ring=*/false);
    ASSERT_TRUE(cid.ok()) << cid.status().to_string();
  }
  ASSERT_TRUE(rig->c().ring_sq(1).ok());
  // The controller fetches commands in a bottom half after the doorbell; a QMP round trip
  // after it means the writes reached the backend, where the delay holds them.
  EXPECT_TRUE(rig->vm_answers());
  ASSERT_EQ(::kill(rig->vm->process().pid(), SIGTERM), 0);
  auto event = rig->vm->qmp().wait_event("SHUTDOWN", kDeadline);
  ASSERT_TRUE(event.ok()) << event.status().to_string();
  EXPECT_EQ((*event)["data"]["reason"], "host-signal");
  EXPECT_EQ(rig->vm->process().wait(kDeadline), 0) << rig->vm->process().stderr_text();
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(image.read(uint64_t{64} * i * 512, 4096), data[i]) << "write " << i << " was lost";
  }
}

// ---- command line ----------------------------------------------------------------------------

constexpr const char* kSizeHint =
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
    "and exabytes, respectively.\n";

// QEMU 7.2 prints exactly this for "-m 1.5" (checked by running it); "-m 1.5M" is fine.
TEST(OperatorCommandLine, FractionalMemoryWithoutSuffixIsRefusedAsQemuDoes) {
  auto [code, err] = run_to_exit({"-m", "1.5", "-S"});
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err, std::string("ferry-vm: -m 1.5: Parameter 'size' expects a non-negative number "
                             "below 2^64\n") + kSizeHint);
  auto vm = start_vm({"-S", "-m", "1.5M"});
  ASSERT_TRUE(vm);
  expect_answers(*vm->qmp, *vm->process);
}

// "-qmp unix:PATH" without server=on connects to PATH and serves QMP there, as QEMU does.
TEST(OperatorCommandLine, QmpWithoutServerConnectsAsAClient) {
  std::string path = unique_base("op-qmp-listen") + ".sock";
  auto listener = UnixListener::listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();
  auto child = ChildProcess::spawn({kFerryVm, "-S", "-qmp", "unix:" + path},
                                   unique_base("op-client") + ".stderr");
  ASSERT_TRUE(child.ok());
  auto conn = listener->accept(kDeadline);
  ASSERT_TRUE(conn.ok()) << conn.status().to_string() << "\n" << child->stderr_text();
  auto greeting = conn->read_line(kDeadline);
  ASSERT_TRUE(greeting.ok());
  EXPECT_NE(greeting->find("\"QMP\""), std::string::npos) << *greeting;
  Json reply = raw_request(*conn, R"({"execute": "qmp_capabilities"})");
  EXPECT_TRUE(reply.contains("return")) << reply.dump();
  reply = raw_request(*conn, R"({"execute": "query-status"})");
  EXPECT_EQ(reply["return"]["status"], "prelaunch") << reply.dump();
  reply = raw_request(*conn, R"({"execute": "quit"})");
  EXPECT_TRUE(reply.contains("return")) << reply.dump();
  EXPECT_EQ(child->wait(kDeadline), 0) << child->stderr_text();

  // Nobody listening: QEMU's message, and no VM.
  std::string nobody = unique_base("op-qmp-nobody") + ".sock";
  auto [code, err] = run_to_exit({"-S", "-qmp", "unix:" + nobody});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find(fmt::format("-qmp unix:{}: Failed to connect to '{}': No such file or "
                                 "directory",
                                 nobody, nobody)),
            std::string::npos)
      << err;
  std::tie(code, err) = run_to_exit({"-S", "-qmp", "unix:" + nobody + ",server=off"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("Failed to connect to"), std::string::npos) << err;
}

// QEMU 7.2: "-object memory-backend-ram,id=m,size=1M: Duplicate ID 'm' for object".
TEST(OperatorCommandLine, DuplicateObjectIdIsQemusMessage) {
  auto [code, err] = run_to_exit({"-S", "-object", "memory-backend-memfd,id=m,size=1M", "-object",
                                  "memory-backend-memfd,id=m,size=2M", "-machine",
                                  "memory-backend=m"});
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err,
            "ferry-vm: -object memory-backend-memfd,id=m,size=2M: Duplicate ID 'm' for object\n");
}

TEST(OperatorCommandLine, BlkdebugErrorsNameTheOptionOnce) {
  for (const char* rule : {"drive=d0,op=sideways", "drive=d0,length=0", "drive=d0,delay-ms=x",
                           "drive=d0,bogus=1"}) {
    auto [code, err] = run_to_exit({"-S", "-blkdebug", rule});
    EXPECT_EQ(code, 1) << rule;
    EXPECT_NE(err.find("-blkdebug"), std::string::npos) << err;
    EXPECT_EQ(err.find("-blkdebug", err.find("-blkdebug") + 1), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace ferry::testing
