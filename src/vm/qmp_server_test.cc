#include "vm/qmp_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <thread>

#include <fmt/format.h>

namespace ferry::vm {
namespace {

using std::chrono::milliseconds;

// A QMP client on a real unix socket; the server runs on the same thread, so every wait
// steps the loop.
class Client {
 public:
  Client(EventLoop& loop, const std::string& path) : loop_(loop) {
    auto fd = unix_connect(path);
    EXPECT_TRUE(fd.ok()) << fd.status().to_string();
    if (fd.ok()) fd_ = std::move(fd).value();
  }

  void send_raw(std::string_view text) {
    ASSERT_EQ(::send(fd_.get(), text.data(), text.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(text.size()));
  }

  // The next line, without "\r\n".
  std::string line() {
    Status s = loop_.run_until(
        [&] {
          pump();
          return buffer_.find("\r\n") != std::string::npos;
        },
        milliseconds(5000));
    EXPECT_TRUE(s.ok()) << s.to_string() << " (buffer: '" << buffer_ << "')";
    size_t end = buffer_.find("\r\n");
    if (end == std::string::npos) return "<nothing>";
    std::string out = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    return out;
  }

  Json message() {
    std::string text = line();
    Json j = Json::parse(text, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << text;
    return j;
  }

  Json execute(std::string_view request) {
    send_raw(std::string(request) + "\n");
    return message();
  }

  // Greeting and negotiation.
  void negotiate() {
    Json greeting = message();
    EXPECT_TRUE(greeting.contains("QMP")) << greeting.dump();
    EXPECT_EQ(execute(R"({"execute": "qmp_capabilities"})"), Json::parse(R"({"return": {}})"));
  }

  // True if nothing more arrives while the loop is polled a few times.
  bool quiet() {
    for (int i = 0; i < 5; ++i) {
      EXPECT_TRUE(loop_.run_once(milliseconds(1)).ok());
      pump();
    }
    return buffer_.empty();
  }

  void close() { fd_.reset(); }

 private:
  void pump() {
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT)) > 0) buffer_.append(buf, n);
  }

  EventLoop& loop_;
  UniqueFd fd_;
  std::string buffer_;
};

class QmpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = EventLoop::create();
    ASSERT_TRUE(l.ok());
    loop = std::move(l).value();
    path = "/tmp/ferry_qmp_test_" + std::to_string(getpid()) + ".sock";
    auto s =
        QmpServer::listen(*loop, "unix:" + path,
                          QmpVersion{.major = 7, .minor = 2, .micro = 1, .package = "ferry 0.1"});
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server = std::move(s).value();
    ASSERT_TRUE(server
                    ->add_command("migrate",
                                  [this](const Json& arguments) -> Result<Json> {
                                    QmpArgs args(arguments);
                                    auto uri = args.string("uri");
                                    if (!uri.ok()) return uri.take_status();
                                    auto detach = args.optional_boolean("detach");
                                    if (!detach.ok()) return detach.take_status();
                                    FERRY_RETURN_IF_ERROR(args.finish());
                                    last_uri = *uri;
                                    return Json();
                                  })
                    .ok());
    ASSERT_TRUE(server
                    ->add_command("stop",
                                  [this](const Json&) -> Result<Json> {
                                    server->emit_event("STOP");
                                    return Json::object();
                                  })
                    .ok());
    ASSERT_TRUE(server
                    ->add_command("fail",
                                  [](const Json&) -> Result<Json> {
                                    return Error(ErrorCode::kFailedPrecondition, "device is busy");
                                  })
                    .ok());
  }

  std::unique_ptr<EventLoop> loop;
  std::string path;
  std::unique_ptr<QmpServer> server;
  std::string last_uri;
};

TEST_F(QmpServerTest, GreetingHasQemusShape) {
  Client c(*loop, path);
  EXPECT_EQ(c.line(), R"({"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 7}, )"
                      R"("package": "ferry 0.1"}, "capabilities": []}})");
}

TEST_F(QmpServerTest, NegotiationComesFirst) {
  Client c(*loop, path);
  c.message();
  EXPECT_EQ(c.execute(R"({"execute": "query-version", "id": 1})"),
            Json::parse(R"({"error": {"class": "CommandNotFound", "desc":
                "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1})"));
  EXPECT_EQ(c.execute(R"({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}})"),
            Json::parse(R"({"error": {"class": "GenericError",
                "desc": "Capability 'oob' not available"}})"));
  EXPECT_EQ(c.execute(R"({"execute": "qmp_capabilities"})"), Json::parse(R"({"return": {}})"));
  EXPECT_EQ(c.execute(R"({"execute": "qmp_capabilities"})"),
            Json::parse(R"({"error": {"class": "CommandNotFound", "desc":
                "Capabilities negotiation is already complete, command ignored"}})"));
}

TEST_F(QmpServerTest, IdIsEchoedAsGiven) {
  Client c(*loop, path);
  c.negotiate();
  c.send_raw(R"({"execute": "query-version", "id": {"seq": [1, "a"]}})"
             "\n");
  EXPECT_EQ(c.line(),
            R"({"return": {"qemu": {"micro": 1, "minor": 2, "major": 7}, "package": "ferry 0.1"}, )"
            R"("id": {"seq": [1, "a"]}})");
  Json r = c.execute(R"({"id": "x7", "execute": "migrate", "arguments": {"uri": "unix:/m"}})");
  EXPECT_EQ(r, Json::parse(R"({"return": {}, "id": "x7"})"));
  EXPECT_EQ(last_uri, "unix:/m");
}

TEST_F(QmpServerTest, QueryCommandsListsEverything) {
  Client c(*loop, path);
  c.negotiate();
  Json r = c.execute(R"({"execute": "query-commands"})");
  Json expected = Json::parse(R"({"return": [{"name": "fail"}, {"name": "migrate"},
      {"name": "qmp_capabilities"}, {"name": "query-commands"}, {"name": "query-version"},
      {"name": "stop"}]})");
  EXPECT_EQ(r, expected);
  EXPECT_FALSE(
      server->add_command("migrate", [](const Json&) -> Result<Json> { return Json(); }).ok());
}

TEST_F(QmpServerTest, UnknownCommandAndHandlerErrors) {
  Client c(*loop, path);
  c.negotiate();
  EXPECT_EQ(c.execute(R"({"execute": "foo", "id": 3})"),
            Json::parse(R"({"error": {"class": "CommandNotFound",
                "desc": "The command foo has not been found"}, "id": 3})"));
  EXPECT_EQ(c.execute(R"({"execute": "fail"})"),
            Json::parse(R"({"error": {"class": "GenericError", "desc": "device is busy"}})"));
}

TEST_F(QmpServerTest, AHandlerMayNameQemusErrorClass) {
  ASSERT_TRUE(server
                  ->add_command("find", QmpClassedHandler([](const Json& arguments,
                                                             std::string& error_class)
                                                              -> Result<Json> {
                    if (arguments.contains("known")) return Json::object();
                    error_class = "DeviceNotFound";
                    return Error(ErrorCode::kInvalidArgument, "Device 'x' not found");
                  }))
                  .ok());
  Client c(*loop, path);
  c.negotiate();
  EXPECT_EQ(c.execute(R"({"execute": "find", "id": 4})"),
            Json::parse(R"({"error": {"class": "DeviceNotFound",
                "desc": "Device 'x' not found"}, "id": 4})"));
  EXPECT_EQ(c.execute(R"({"execute": "find", "arguments": {"known": 1}})"),
            Json::parse(R"({"return": {}})"));
}

TEST_F(QmpServerTest, ArgumentErrorsUseQemusWording) {
  Client c(*loop, path);
  c.negotiate();
  auto desc = [&](std::string_view request) {
    Json r = c.execute(request);
    EXPECT_EQ(r["error"]["class"], "GenericError") << r.dump();
    return r["error"]["desc"].get<std::string>();
  };
  EXPECT_EQ(desc(R"({"execute": "migrate", "arguments": {"uri": 5}})"),
            "Invalid parameter type for 'uri', expected: string");
  EXPECT_EQ(desc(R"({"execute": "migrate"})"), "Parameter 'uri' is missing");
  EXPECT_EQ(desc(R"({"execute": "migrate", "arguments": {"uri": "x", "detach": "yes"}})"),
            "Invalid parameter type for 'detach', expected: boolean");
  EXPECT_EQ(desc(R"({"execute": "migrate", "arguments": {"uri": "x", "speed": 1}})"),
            "Parameter 'speed' is unexpected");
  EXPECT_EQ(desc(R"({"execute": "migrate", "arguments": [1]})"),
            "QMP input member 'arguments' must be an object");
  EXPECT_EQ(desc(R"({"execute": 7})"), "QMP input member 'execute' must be a string");
  EXPECT_EQ(desc(R"({"exec-oob": "stop"})"), "QMP input member 'exec-oob' is unexpected");
  EXPECT_EQ(desc(R"({"id": 1})"), "QMP input lacks member 'execute'");
  EXPECT_EQ(desc(R"([1, 2])"), "QMP input must be a JSON object");
  EXPECT_EQ(desc(R"(42)"), "QMP input must be a JSON object");
  EXPECT_EQ(desc(R"({"execute": "query-version", "arguments": {"verbose": true}})"),
            "Parameter 'verbose' is unexpected");
}

TEST_F(QmpServerTest, MalformedJsonGetsAnErrorAndTheClientCarriesOn) {
  Client c(*loop, path);
  c.negotiate();
  Json r = c.execute(R"({"execute": qmp})");
  EXPECT_EQ(r["error"]["class"], "GenericError");
  EXPECT_EQ(r["error"]["desc"].get<std::string>().rfind("JSON parse error, ", 0), 0u) << r.dump();
  // An unterminated string: the newline ends it with an error.
  r = c.execute(R"({"execute": "query-vers)");
  EXPECT_EQ(r["error"]["desc"], "JSON parse error, control character in string");
  r = c.execute("}");
  EXPECT_EQ(r["error"]["desc"], "JSON parse error, unexpected '}'");
  r = c.execute("nonsense");
  EXPECT_EQ(r["error"]["desc"].get<std::string>().rfind("JSON parse error, ", 0), 0u) << r.dump();
  std::string deep(JsonStream::kMaxDepth + 1, '[');
  r = c.execute(deep);
  EXPECT_EQ(r["error"]["desc"], "JSON parse error, nesting too deep");
  EXPECT_TRUE(c.quiet());
  // Still in command mode and serving.
  EXPECT_EQ(c.execute(R"({"execute": "migrate", "arguments": {"uri": "ok"}, "id": 9})"),
            Json::parse(R"({"return": {}, "id": 9})"));
}

// nlohmann raises out_of_range, not parse_error, for a number beyond a double: once that
// escaped and aborted the process. Every place a number can sit gets an error reply.
TEST_F(QmpServerTest, NumbersBeyondADoubleGetAnErrorAndTheServerCarriesOn) {
  Client c(*loop, path);
  EXPECT_TRUE(c.message().contains("QMP"));
  Json r = c.execute("1e999");  // before negotiation, alone on its line
  EXPECT_EQ(r["error"]["class"], "GenericError") << r.dump();
  EXPECT_EQ(r["error"]["desc"], "JSON parse error, number overflow parsing '1e999'") << r.dump();
  EXPECT_EQ(c.execute(R"({"execute": "qmp_capabilities"})"), Json::parse(R"({"return": {}})"));
  for (const char* request :
       {R"({"execute": "migrate", "id": -1e999})",
        R"({"execute": "migrate", "arguments": {"uri": "x", "detach": 1e999}})",
        R"([1, {"a": [-1E+400]}])", "123456789012345678901234567890e999"}) {
    r = c.execute(request);
    EXPECT_EQ(r["error"]["desc"].get<std::string>().rfind("JSON parse error, number overflow", 0),
              0u)
        << request << " -> " << r.dump();
  }
  EXPECT_TRUE(c.quiet());
  EXPECT_EQ(c.execute(R"({"execute": "migrate", "arguments": {"uri": "ok"}, "id": 1})"),
            Json::parse(R"({"return": {}, "id": 1})"));
  Client other(*loop, path);
  other.negotiate();
}

TEST_F(QmpServerTest, IntegerArgumentsOutOfRangeUseQemusWording) {
  ASSERT_TRUE(server
                  ->add_command("set-speed",
                                [](const Json& arguments) -> Result<Json> {
                                  QmpArgs args(arguments);
                                  auto speed = args.optional_uint64("speed");
                                  if (!speed.ok()) return speed.take_status();
                                  auto delta = args.optional_integer("delta");
                                  if (!delta.ok()) return delta.take_status();
                                  FERRY_RETURN_IF_ERROR(args.finish());
                                  Json out = Json::object();
                                  if (*speed) out["speed"] = **speed;
                                  if (*delta) out["delta"] = **delta;
                                  return out;
                                })
                  .ok());
  Client c(*loop, path);
  c.negotiate();
  auto call = [&](std::string_view arguments) {
    return c.execute(fmt::format(R"({{"execute": "set-speed", "arguments": {}}})", arguments));
  };
  for (const char* bad : {"1e300", "1.5", "1.0", "18446744073709551616", "\"12\"", "true", "[]"}) {
    Json r = call(fmt::format(R"({{"speed": {}}})", bad));
    EXPECT_EQ(r["error"]["desc"], "Parameter 'speed' expects uint64") << bad << " -> " << r.dump();
  }
  EXPECT_EQ(call(R"({"speed": 18446744073709551615})")["return"]["speed"],
            uint64_t{18446744073709551615u});
  // QEMU takes a negative value modulo 2^64 (its visitor's backward compatibility).
  EXPECT_EQ(call(R"({"speed": -1})")["return"]["speed"], uint64_t{18446744073709551615u});
  for (const char* bad : {"9223372036854775808", "1e300", "0.5"}) {
    Json r = call(fmt::format(R"({{"delta": {}}})", bad));
    EXPECT_EQ(r["error"]["desc"], "Invalid parameter type for 'delta', expected: integer")
        << bad << " -> " << r.dump();
  }
  EXPECT_EQ(call(R"({"delta": -9223372036854775808})")["return"]["delta"], INT64_MIN);
}

// A handler that reads JSON it did not check would throw out of the library; the client
// gets an error instead and the server keeps serving.
TEST_F(QmpServerTest, LibraryExceptionInAHandlerIsAnErrorReply) {
  ASSERT_TRUE(server
                  ->add_command("careless",
                                [](const Json& arguments) -> Result<Json> {
                                  return Json(arguments.at("missing").get<int>());
                                })
                  .ok());
  Client c(*loop, path);
  c.negotiate();
  Json r = c.execute(R"({"execute": "careless", "id": 3})");
  EXPECT_EQ(r["error"]["class"], "GenericError") << r.dump();
  EXPECT_EQ(r["id"], 3);
  EXPECT_EQ(r["error"]["desc"].get<std::string>().rfind("Internal error in careless: ", 0), 0u)
      << r.dump();
  EXPECT_EQ(c.execute(R"({"execute": "migrate", "arguments": {"uri": "ok"}})"),
            Json::parse(R"({"return": {}})"));
}

TEST_F(QmpServerTest, RequestsSplitAcrossReadsAndLinesOrSharingALine) {
  Client c(*loop, path);
  c.negotiate();
  c.send_raw(R"({"execute": "migr)");
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  c.send_raw("ate\",\n \"arguments\": {\"uri\": \"a\"},\n\"id\": 1}");
  EXPECT_EQ(c.message(), Json::parse(R"({"return": {}, "id": 1})"));
  c.send_raw(R"({"execute": "migrate", "arguments": {"uri": "b\"}"}, "id": 2}{"execute":)"
             R"("migrate", "arguments": {"uri": "c"}, "id": 3})"
             "\n");
  EXPECT_EQ(c.message(), Json::parse(R"({"return": {}, "id": 2})"));
  EXPECT_EQ(c.message(), Json::parse(R"({"return": {}, "id": 3})"));
  EXPECT_EQ(last_uri, "c");
}

TEST_F(QmpServerTest, EventsCarryTimestampsAndReachNegotiatedClientsOnly) {
  Client a(*loop, path);
  a.negotiate();
  Client b(*loop, path);
  b.message();  // greeting only: still negotiating
  ASSERT_TRUE(
      loop->run_until([&] { return server->client_count() == 2; }, milliseconds(5000)).ok());

  server->emit_event("MIGRATION", Json::parse(R"({"status": "setup"})"));
  Json e = a.message();
  EXPECT_EQ(e["event"], "MIGRATION");
  EXPECT_EQ(e["data"], Json::parse(R"({"status": "setup"})"));
  ASSERT_TRUE(e["timestamp"]["seconds"].is_number_integer());
  ASSERT_TRUE(e["timestamp"]["microseconds"].is_number_integer());
  EXPECT_GT(e["timestamp"]["seconds"].get<int64_t>(), 1'600'000'000);  // wall clock
  EXPECT_LT(e["timestamp"]["microseconds"].get<int64_t>(), 1'000'000);
  EXPECT_TRUE(b.quiet());

  // An event emitted by a handler comes before that command's reply; no data member.
  a.send_raw(R"({"execute": "stop", "id": 5})"
             "\n");
  Json stop = a.message();
  EXPECT_EQ(stop["event"], "STOP");
  EXPECT_FALSE(stop.contains("data"));
  EXPECT_EQ(a.message(), Json::parse(R"({"return": {}, "id": 5})"));
}

TEST_F(QmpServerTest, ClientsInTurnAndAtOnce) {
  {
    Client first(*loop, path);
    first.negotiate();
    first.close();
  }
  ASSERT_TRUE(
      loop->run_until([&] { return server->client_count() == 0; }, milliseconds(5000)).ok());
  Client second(*loop, path);
  second.negotiate();
  Client third(*loop, path);
  third.negotiate();
  EXPECT_EQ(second.execute(R"({"execute": "migrate", "arguments": {"uri": "2"}, "id": 2})"),
            Json::parse(R"({"return": {}, "id": 2})"));
  EXPECT_EQ(third.execute(R"({"execute": "migrate", "arguments": {"uri": "3"}, "id": 3})"),
            Json::parse(R"({"return": {}, "id": 3})"));
}

TEST_F(QmpServerTest, DisconnectMidRequestIsHarmless) {
  {
    Client c(*loop, path);
    c.negotiate();
    c.send_raw(R"({"execute": "migrate", "argu)");
    ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  }
  ASSERT_TRUE(
      loop->run_until([&] { return server->client_count() == 0; }, milliseconds(5000)).ok());
  EXPECT_EQ(last_uri, "");
  server->emit_event("RESUME");  // nobody left to tell
  Client again(*loop, path);
  again.negotiate();
}

TEST_F(QmpServerTest, ServerRemovesItsSocketFile) {
  server.reset();
  EXPECT_NE(access(path.c_str(), F_OK), 0);
}

TEST(QmpServer, RefusesNonUnixAddresses) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  auto s = QmpServer::listen(**loop, "tcp:127.0.0.1:4444");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("tcp:127.0.0.1:4444"), std::string_view::npos);
}

// -qmp without server=on: the VM connects to a socket someone else listens on and serves
// QMP there, greeting first, as QEMU does.
TEST(QmpServerClientMode, ServesQmpOnTheConnectionItMakes) {
  auto l = EventLoop::create();
  ASSERT_TRUE(l.ok());
  EventLoop& loop = **l;
  std::string path = "/tmp/ferry_qmp_client_" + std::to_string(getpid()) + ".sock";
  auto listener = unix_listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();
  auto s = QmpServer::connect(loop, "unix:" + path);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ((*s)->client_count(), 1u);
  int fd = accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(fd, 0);
  UniqueFd peer(fd);
  // The test is the listening side here, so it reads the server's lines off the accepted fd.
  std::string got;
  ASSERT_TRUE(loop.run_until(
                      [&] {
                        char buf[4096];
                        ssize_t n = recv(peer.get(), buf, sizeof(buf), MSG_DONTWAIT);
                        if (n > 0) got.append(buf, n);
                        return got.find("\r\n") != std::string::npos;
                      },
                      milliseconds(5000))
                  .ok());
  EXPECT_EQ(got.rfind(R"({"QMP": {"version": )", 0), 0u) << got;
  std::string request = "{\"execute\": \"qmp_capabilities\"}\n";
  ASSERT_EQ(::send(peer.get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  got.clear();
  ASSERT_TRUE(loop.run_until(
                      [&] {
                        char buf[4096];
                        ssize_t n = recv(peer.get(), buf, sizeof(buf), MSG_DONTWAIT);
                        if (n > 0) got.append(buf, n);
                        return got.find("\r\n") != std::string::npos;
                      },
                      milliseconds(5000))
                  .ok());
  EXPECT_EQ(got, "{\"return\": {}}\r\n");
  s->reset();
  EXPECT_EQ(access(path.c_str(), F_OK), 0) << "the socket is the listener's to remove";
  ::unlink(path.c_str());
}

TEST(QmpServerClientMode, NoListenerIsQemusError) {
  auto l = EventLoop::create();
  ASSERT_TRUE(l.ok());
  std::string path = "/tmp/ferry_qmp_nobody_" + std::to_string(getpid()) + ".sock";
  auto s = QmpServer::connect(**l, "unix:" + path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(),
            fmt::format("Failed to connect to '{}': No such file or directory", path));
}

TEST(QmpJsonText, SpacesLikeQemu) {
  EXPECT_EQ(qmp_json_text(Json::parse(R"({"a":1,"b":[true,null,"x"],"c":{}, "d":[]})")),
            R"({"a": 1, "b": [true, null, "x"], "c": {}, "d": []})");
}

TEST(QmpServerThreads, EventsPostedFromAnotherThreadThroughTheLoop) {
  auto l = EventLoop::create();
  ASSERT_TRUE(l.ok());
  EventLoop& loop = **l;
  std::string path = "/tmp/ferry_qmp_thread_" + std::to_string(getpid()) + ".sock";
  auto s = QmpServer::listen(loop, path);
  ASSERT_TRUE(s.ok());
  QmpServer& server = **s;
  Client c(loop, path);
  c.negotiate();
  std::thread other([&] {
    loop.schedule([&] { server.emit_event("BLOCK_IO_ERROR", Json::parse(R"({"device": "d0"})")); });
  });
  Json e = c.message();
  other.join();
  EXPECT_EQ(e["event"], "BLOCK_IO_ERROR");
  EXPECT_EQ(e["data"]["device"], "d0");
}

}  // namespace
}  // namespace ferry::vm
