#include "net/stream_backend.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include "net/test_nic.h"

namespace ferry::net {
namespace {

using namespace std::chrono_literals;
using testing::numbered_frame;
using testing::send_bytes;
using testing::TestNic;


struct RecordedEvents final : NetEvents {
  void connected(std::string_view id, const SocketAddress& address) override {
    log.push_back(std::string(id) + " connected " + address.uri());
    addresses.push_back(address);
  }
  void disconnected(std::string_view id) override {
    log.push_back(std::string(id) + " disconnected");
  }
  int count(std::string_view what) const {
    int n = 0;
    for (const auto& line : log) n += line.find(what) != std::string::npos ? 1 : 0;
    return n;
  }
  std::vector<std::string> log;
  std::vector<SocketAddress> addresses;
};

class StreamBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    char pattern[] = "/tmp/ferry-net-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void run_until(const std::function<bool()>& done) {
    Status st = loop_->run_until(done, testing::kDeadline);
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  // Runs whatever is ready now, a few times over, without waiting.
  void run_ready() {
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(loop_->run_once(0ms).ok());
  }

  SocketAddress unix_address(const std::string& name) {
    return {SocketAddress::Type::kUnix, {}, {}, dir_ + "/" + name};
  }
  std::unique_ptr<StreamBackend> make(StreamOptions options, std::string_view type = "stream") {
    auto backend = StreamBackend::create(*loop_, "n0", type, std::move(options), &events_);
    EXPECT_TRUE(backend.ok()) << backend.status().to_string();
    return backend.ok() ? std::move(backend).value() : nullptr;
  }

  std::unique_ptr<EventLoop> loop_;
  std::string dir_;
  RecordedEvents events_;
};

// A peer speaking the framing by hand over a blocking socket.
class RawPeer {
 public:
  static RawPeer connect_unix(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof(un.sun_path) - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)), 0) << strerror(errno);
    return RawPeer(fd);
  }
  explicit RawPeer(int fd) : fd_(fd) {}
  RawPeer(RawPeer&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  RawPeer& operator=(RawPeer&&) = delete;
  ~RawPeer() { close_now(); }
  void close_now() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

  void write_all(const std::vector<uint8_t>& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << strerror(errno);
      done += static_cast<size_t>(n);
    }
  }
  static std::vector<uint8_t> framed(const std::vector<uint8_t>& frame) {
    auto prefix = frame_length_prefix(static_cast<uint32_t>(frame.size()));
    std::vector<uint8_t> out(prefix.begin(), prefix.end());
    out.insert(out.end(), frame.begin(), frame.end());
    return out;
  }
  void send_frame(const std::vector<uint8_t>& frame) { write_all(framed(frame)); }
  // Tries once without blocking; false when the socket is full.
  bool try_send_frame(const std::vector<uint8_t>& frame) {
    std::vector<uint8_t> bytes = framed(frame);
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return false;
    // Finish a partial write, so the stream stays framed.
    if (static_cast<size_t>(n) < bytes.size())
      write_all(std::vector<uint8_t>(bytes.begin() + n, bytes.end()));
    return true;
  }
  // Reads one frame, the loop running meanwhile (the backend writes from the loop).
  std::vector<uint8_t> read_frame(EventLoop& loop) {
    std::vector<uint8_t> out;
    Status st = loop.run_until(
        [&] {
          while (true) {
            std::span<const uint8_t> input(pending_.data() + pending_start_,
                                           pending_.size() - pending_start_);
            auto frame = decoder_.next(input);
            pending_start_ = pending_.size() - input.size();
            if (frame.ok() && *frame) {
              out.assign((*frame)->begin(), (*frame)->end());
              return true;
            }
            pending_.resize(64 * 1024);
            pending_start_ = 0;
            ssize_t n = recv(fd_, pending_.data(), pending_.size(), MSG_DONTWAIT);
            pending_.resize(n > 0 ? static_cast<size_t>(n) : 0);
            if (n <= 0) return false;
          }
        },
        testing::kDeadline);
    EXPECT_TRUE(st.ok()) << st.to_string();
    return out;
  }

 private:
  int fd_;
  FrameDecoder decoder_;
  std::vector<uint8_t> pending_;
  size_t pending_start_ = 0;
};

TEST_F(StreamBackendTest, ServerExchangesFramesWithAClientInOrder) {
  auto server = make({.address = unix_address("s"), .server = true});
  ASSERT_TRUE(server);
  TestNic nic;
  server->attach(&nic);
  EXPECT_FALSE(server->link_up());
  EXPECT_EQ(server->info(), "listening");
  // Without a peer a frame is dropped, as QEMU does.
  EXPECT_EQ(send_bytes(*server, numbered_frame(0, 60)), SendResult::kDropped);

  RawPeer peer = RawPeer::connect_unix(dir_ + "/s");
  run_until([&] { return server->link_up(); });
  // A unix server names its own path in the event, as QEMU does.
  ASSERT_EQ(events_.log, (std::vector<std::string>{"n0 connected unix:" + dir_ + "/s"}));
  EXPECT_EQ(nic.links, (std::vector<bool>{true}));

  for (uint32_t i = 0; i < 10; ++i) peer.send_frame(numbered_frame(i, 60 + i * 100));
  run_until([&] { return nic.frames.size() == 10; });
  for (uint32_t i = 0; i < 10; ++i) EXPECT_EQ(nic.frames[i], numbered_frame(i, 60 + i * 100));

  for (uint32_t i = 0; i < 3; ++i)
    EXPECT_EQ(send_bytes(*server, numbered_frame(100 + i, 1514)), SendResult::kSent);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(peer.read_frame(*loop_), numbered_frame(100 + i, 1514));

  peer.close_now();
  run_until([&] { return !server->link_up(); });
  EXPECT_EQ(events_.count("disconnected"), 1);
  EXPECT_EQ(server->info(), "listening");
}

TEST_F(StreamBackendTest, NicSayingNoLeavesFramesInTheSocketAndNoneAreLost) {
  auto server = make({.address = unix_address("s"), .server = true});
  ASSERT_TRUE(server);
  TestNic nic;
  nic.accepting = false;
  server->attach(&nic);
  RawPeer peer = RawPeer::connect_unix(dir_ + "/s");
  run_until([&] { return server->link_up(); });

  // The peer writes until the socket is full: the backend, told no, stops reading, so the
  // kernel's buffers fill and the peer's writes stop succeeding.
  uint32_t written = 0;
  int full_in_a_row = 0;
  while (full_in_a_row < 3) {
    if (peer.try_send_frame(numbered_frame(written, 1000))) {
      ++written;
      full_in_a_row = 0;
    } else {
      ++full_in_a_row;
      run_ready();
    }
    ASSERT_LT(written, 100000u) << "the backend kept reading while the NIC said no";
  }
  run_ready();
  EXPECT_TRUE(nic.frames.empty());
  EXPECT_GT(nic.asked, 0);
  EXPECT_GT(written, 10u);

  nic.accepting = true;
  server->receive_ready();
  run_until([&] { return nic.frames.size() == written; });
  for (uint32_t i = 0; i < written; ++i) ASSERT_EQ(nic.frames[i], numbered_frame(i, 1000)) << i;
}

TEST_F(StreamBackendTest, FramesSentBeforeThePeerLeftArriveAfterReadingResumes) {
  auto server = make({.address = unix_address("s"), .server = true});
  ASSERT_TRUE(server);
  TestNic nic;
  nic.accepting = false;
  server->attach(&nic);
  {
    RawPeer peer = RawPeer::connect_unix(dir_ + "/s");
    run_until([&] { return server->link_up(); });
    for (uint32_t i = 0; i < 5; ++i) peer.send_frame(numbered_frame(i, 200));
    run_until([&] { return nic.asked > 0; });
  }
  run_ready();
  EXPECT_TRUE(server->link_up()) << "the hang-up is only seen once the frames before it are read";
  nic.accepting = true;
  server->receive_ready();
  run_until([&] { return !server->link_up(); });
  ASSERT_EQ(nic.frames.size(), 5u);
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ(nic.frames[i], numbered_frame(i, 200));
}

TEST_F(StreamBackendTest, ServerAcceptsTheNextClientOnlyAfterTheFirstLeaves) {
  auto server = make({.address = unix_address("s"), .server = true});
  ASSERT_TRUE(server);
  TestNic nic;
  server->attach(&nic);
  RawPeer first = RawPeer::connect_unix(dir_ + "/s");
  run_until([&] { return server->link_up(); });
  // The second connects (the kernel queues it) and sends; nothing of it is read yet.
  RawPeer second = RawPeer::connect_unix(dir_ + "/s");
  second.send_frame(numbered_frame(2, 100));
  first.send_frame(numbered_frame(1, 100));
  run_until([&] { return nic.frames.size() == 1; });
  run_ready();
  EXPECT_EQ(nic.frames.size(), 1u);
  EXPECT_EQ(events_.count(" connected "), 1);

  first.close_now();
  run_until([&] { return nic.frames.size() == 2; });
  EXPECT_EQ(nic.frames[0], numbered_frame(1, 100));
  EXPECT_EQ(nic.frames[1], numbered_frame(2, 100));
  EXPECT_EQ(events_.log,
            (std::vector<std::string>{"n0 connected unix:" + dir_ + "/s", "n0 disconnected",
                                      "n0 connected unix:" + dir_ + "/s"}));
  EXPECT_EQ(send_bytes(*server, numbered_frame(3, 100)), SendResult::kSent);
  EXPECT_EQ(second.read_frame(*loop_), numbered_frame(3, 100));
}

TEST_F(StreamBackendTest, ClientReconnectsAfterThePeerCloses) {
  auto listener = listen_stream(unix_address("peer"));
  ASSERT_TRUE(listener.ok());
  int listen_fd = *listener;
  auto client = make({.address = unix_address("peer"), .server = false, .reconnect_ms = 20});
  ASSERT_TRUE(client);
  TestNic nic;
  client->attach(&nic);
  auto accept_one = [&] {
    int fd = -1;
    run_until([&] {
      fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      return fd >= 0;
    });
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return RawPeer(fd);
  };
  {
    RawPeer peer = accept_one();
    run_until([&] { return client->link_up(); });
    peer.send_frame(numbered_frame(1, 80));
    run_until([&] { return nic.frames.size() == 1; });
  }
  run_until([&] { return !client->link_up(); });
  RawPeer again = accept_one();
  run_until([&] { return client->link_up(); });
  EXPECT_EQ(events_.count(" connected "), 2);
  EXPECT_EQ(events_.count("disconnected"), 1);
  ASSERT_EQ(send_bytes(*client, numbered_frame(2, 80)), SendResult::kSent);
  EXPECT_EQ(again.read_frame(*loop_), numbered_frame(2, 80));
  close(listen_fd);
}

TEST_F(StreamBackendTest, ClientWithoutReconnectStaysDown) {
  auto listener = listen_stream(unix_address("peer"));
  ASSERT_TRUE(listener.ok());
  auto client = make({.address = unix_address("peer"), .server = false, .reconnect_ms = 0});
  ASSERT_TRUE(client);
  int fd = -1;
  run_until([&] {
    fd = accept4(*listener, nullptr, nullptr, SOCK_CLOEXEC);
    return fd >= 0;
  });
  run_until([&] { return client->link_up(); });
  close(fd);
  run_until([&] { return !client->link_up(); });
  run_ready();
  EXPECT_LT(accept4(*listener, nullptr, nullptr, SOCK_CLOEXEC), 0);
  EXPECT_EQ(client->info(), "disconnected");
  close(*listener);
}

TEST_F(StreamBackendTest, ClientRetriesUntilTheServerAppears) {
  auto client = make({.address = unix_address("later"), .server = false, .reconnect_ms = 10});
  ASSERT_TRUE(client);
  run_until([&] { return !client->last_error().empty(); });
  EXPECT_FALSE(client->link_up());
  auto server = StreamBackend::create(*loop_, "srv", "stream",
                                      {.address = unix_address("later"), .server = true}, nullptr);
  ASSERT_TRUE(server.ok());
  run_until([&] { return client->link_up() && (*server)->link_up(); });
}

TEST_F(StreamBackendTest, OversizedFrameEndsTheConnectionWithQemusMessage) {
  auto server = make({.address = unix_address("s"), .server = true});
  ASSERT_TRUE(server);
  TestNic nic;
  server->attach(&nic);
  RawPeer peer = RawPeer::connect_unix(dir_ + "/s");
  run_until([&] { return server->link_up(); });
  peer.send_frame(numbered_frame(1, 100));
  auto prefix = frame_length_prefix(kMaxFrameSize + 1);
  peer.write_all(std::vector<uint8_t>(prefix.begin(), prefix.end()));
  run_until([&] { return !server->link_up(); });
  EXPECT_EQ(nic.frames.size(), 1u);
  EXPECT_NE(server->last_error().find(
                "serious error: oversized packet received,connection terminated."),
            std::string::npos)
      << server->last_error();
  EXPECT_EQ(events_.count("disconnected"), 1);
  // It listens again.
  RawPeer next = RawPeer::connect_unix(dir_ + "/s");
  run_until([&] { return server->link_up(); });
}

TEST_F(StreamBackendTest, FullSendQueueAnswersBusyThenSendReadyWhenThePeerReads) {
  auto server = make({.address = unix_address("s"), .server = true, .send_queue_limit = 200000});
  ASSERT_TRUE(server);
  TestNic nic;
  server->attach(&nic);
  RawPeer peer = RawPeer::connect_unix(dir_ + "/s");
  run_until([&] { return server->link_up(); });
  uint32_t sent = 0;
  while (send_bytes(*server, numbered_frame(sent, 60000)) == SendResult::kSent) {
    ++sent;
    ASSERT_LT(sent, 10000u) << "the queue never filled";
  }
  EXPECT_GE(server->queued_bytes(), 200000u);
  EXPECT_EQ(nic.send_ready_calls, 0);
  for (uint32_t i = 0; i < sent; ++i) ASSERT_EQ(peer.read_frame(*loop_), numbered_frame(i, 60000));
  EXPECT_EQ(nic.send_ready_calls, 1);
  EXPECT_EQ(send_bytes(*server, numbered_frame(sent, 60)), SendResult::kSent);
  EXPECT_EQ(peer.read_frame(*loop_), numbered_frame(sent, 60));
}

TEST_F(StreamBackendTest, InetServerNamesTheClientAndSocketTypeHasNoEvents) {
  SocketAddress any{SocketAddress::Type::kInet, "127.0.0.1", "0", {}};
  auto server = make({.address = any, .server = true});
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->listening_address());
  SocketAddress port = *server->listening_address();
  EXPECT_NE(port.port, "0");
  // socket,connect= : same framing, no events.
  auto client = StreamBackend::create(*loop_, "c0", "socket",
                                      {.address = port, .server = false}, nullptr);
  ASSERT_TRUE(client.ok());
  TestNic server_nic, client_nic;
  server->attach(&server_nic);
  (*client)->attach(&client_nic);
  run_until([&] { return server->link_up() && (*client)->link_up(); });
  ASSERT_EQ(events_.addresses.size(), 1u);
  EXPECT_EQ(events_.addresses[0].type, SocketAddress::Type::kInet);
  EXPECT_EQ(events_.addresses[0].host, "127.0.0.1");
  EXPECT_NE(events_.addresses[0].port, port.port) << "an inet server names the client";
  EXPECT_EQ(send_bytes(**client, numbered_frame(1, 70)), SendResult::kSent);
  EXPECT_EQ(send_bytes(*server, numbered_frame(2, 70)), SendResult::kSent);
  run_until([&] { return server_nic.frames.size() == 1 && client_nic.frames.size() == 1; });
  EXPECT_EQ(server_nic.frames[0], numbered_frame(1, 70));
  EXPECT_EQ(client_nic.frames[0], numbered_frame(2, 70));
}

TEST_F(StreamBackendTest, ListeningOnAMissingDirectoryNamesThePath) {
  auto backend = StreamBackend::create(
      *loop_, "n0", "stream", {.address = unix_address("no/such/dir"), .server = true}, nullptr);
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.status().message().find("no/such/dir"), std::string::npos);
}

}  // namespace
}  // namespace ferry::net
