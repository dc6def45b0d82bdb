#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "migration/channel.h"
#include "migration/stream_reader.h"
#include "migration/stream_writer.h"

namespace ferry::migration {
namespace {

std::string error_of(std::string_view uri) {
  auto r = parse_channel_uri(uri);
  return r.ok() ? "" : r.status().to_string();
}

TEST(ChannelUri, ParsesEveryTransport) {
  auto tcp = parse_channel_uri("tcp:127.0.0.1:4444");
  ASSERT_TRUE(tcp.ok());
  EXPECT_EQ(tcp->host, "127.0.0.1");
  EXPECT_EQ(tcp->port, 4444);
  auto v6 = parse_channel_uri("tcp:[::1]:80");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 80);
  EXPECT_EQ(parse_channel_uri("unix:/tmp/x")->path, "/tmp/x");
  EXPECT_EQ(parse_channel_uri("file:/tmp/y")->kind, ChannelUri::Kind::kFile);
  EXPECT_EQ(parse_channel_uri("fd:7")->fd, 7);
  EXPECT_EQ(parse_channel_uri("exec:cat > /dev/null")->command, "cat > /dev/null");
}

TEST(ChannelUri, ErrorsNameTheUriAndThePart) {
  EXPECT_NE(error_of("tcp:host:99999").find("port '99999'"), std::string::npos);
  EXPECT_NE(error_of("tcp:host:99999").find("'tcp:host:99999'"), std::string::npos);
  EXPECT_NE(error_of("tcp:::1:80").find("brackets"), std::string::npos);
  EXPECT_NE(error_of("tcp:[::1:80").find("']'"), std::string::npos);
  EXPECT_NE(error_of("rdma:1.2.3.4:5").find("transport 'rdma'"), std::string::npos);
  EXPECT_NE(error_of("fd:seven").find("'seven'"), std::string::npos);
  EXPECT_NE(error_of("unix:").find("empty path"), std::string::npos);
  EXPECT_NE(error_of("nocolon").find("TRANSPORT:ADDRESS"), std::string::npos);
  EXPECT_FALSE(connect_outgoing("fd:987654").ok());
}

std::vector<uint8_t> pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + i / 7);
  return v;
}

// Sends `data` through the StreamWriter on one side and reads it back on the other.
void round_trip(Channel& out, Channel& in) {
  auto data = pattern(3 << 20);
  std::vector<uint8_t> got;
  std::thread reader([&] {
    StreamReader r(in);
    while (true) {
      uint8_t b;
      auto more = r.peek_u8(b);
      ASSERT_TRUE(more.ok());
      if (!*more) break;
      std::span<const uint8_t> chunk;
      size_t n = 1;
      while (n < 4096 && r.need(n + 1, "x").ok()) ++n;  // whatever is buffered, up to 4K
      ASSERT_TRUE(r.take(n, chunk, "chunk").ok());
      got.insert(got.end(), chunk.begin(), chunk.end());
    }
  });
  {
    StreamWriter w(out);
    w.put_be32(0x5145564d);
    w.put_bytes(std::span(data).subspan(4, 100));  // small, buffered
    w.put_bytes(std::span(data).subspan(104));     // large, one writev with the buffer
    ASSERT_TRUE(w.flush().ok());
  }
  ASSERT_TRUE(out.shutdown_write().ok());
  reader.join();
  ASSERT_EQ(got.size(), data.size());
  EXPECT_EQ(got[0], 0x51);
  EXPECT_TRUE(std::equal(got.begin() + 4, got.end(), data.begin() + 4));
}

TEST(Channel, TcpIpv4Loopback) {
  auto listener = listen_incoming("tcp:127.0.0.1:0");
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();
  std::string uri = (*listener)->uri();
  EXPECT_EQ(uri.rfind("tcp:127.0.0.1:", 0), 0u) << uri;
  auto out = connect_outgoing(uri);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto in = (*listener)->accept();
  ASSERT_TRUE(in.ok());
  round_trip(**out, **in);
}

TEST(Channel, TcpIpv6Loopback) {
  auto listener = listen_incoming("tcp:[::1]:0");
  if (!listener.ok()) GTEST_SKIP() << "no IPv6 loopback: " << listener.status().to_string();
  std::string uri = (*listener)->uri();
  EXPECT_EQ(uri.rfind("tcp:[::1]:", 0), 0u) << uri;
  auto out = connect_outgoing(uri);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto in = (*listener)->accept();
  ASSERT_TRUE(in.ok());
  round_trip(**out, **in);
}

TEST(Channel, UnixSocket) {
  std::string path = "/tmp/ferry_chan_" + std::to_string(::getpid()) + ".sock";
  auto listener = listen_incoming("unix:" + path);
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();
  auto out = connect_outgoing("unix:" + path);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto in = (*listener)->accept();
  ASSERT_TRUE(in.ok());
  round_trip(**out, **in);
  listener->reset();
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // removed with the listener
}

TEST(Channel, FileWritesThenReads) {
  std::string path = "/tmp/ferry_chan_" + std::to_string(::getpid()) + ".bin";
  auto data = pattern(100000);
  {
    auto out = connect_outgoing("file:" + path);
    ASSERT_TRUE(out.ok());
    ASSERT_TRUE((*out)->write_all(data).ok());
    ASSERT_TRUE((*out)->close().ok());
  }
  auto listener = listen_incoming("file:" + path);
  ASSERT_TRUE(listener.ok());
  auto in = (*listener)->accept();
  ASSERT_TRUE(in.ok());
  EXPECT_FALSE((*listener)->accept().ok());  // one channel only
  StreamReader r(**in);
  std::vector<uint8_t> got(data.size());
  ASSERT_TRUE(r.read_bytes(got, "file").ok());
  EXPECT_EQ(got, data);
  auto end = r.at_end();
  ASSERT_TRUE(end.ok() && *end);
  uint8_t b;
  Status st = r.read_u8(b, "one more byte");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("stream ends at offset 100000 while reading one more byte"),
            std::string::npos)
      << st.to_string();
  ::unlink(path.c_str());
  EXPECT_FALSE(listen_incoming("file:/nonexistent/ferry").ok());
}

TEST(Channel, FdOverSocketpairAndPipe) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  auto out = connect_outgoing("fd:" + std::to_string(sv[0]));
  auto listener = listen_incoming("fd:" + std::to_string(sv[1]));
  ASSERT_TRUE(out.ok() && listener.ok());
  auto in = (*listener)->accept();
  ASSERT_TRUE(in.ok());
  // A socket descriptor is used both ways, as QEMU does: it carries the return path.
  EXPECT_TRUE(has_return_path(**out));
  EXPECT_TRUE(has_return_path(**in));
  round_trip(**out, **in);
  const std::string answer = "loaded\n";
  ASSERT_TRUE((*in)->write_all({reinterpret_cast<const uint8_t*>(answer.data()), answer.size()})
                  .ok());
  ASSERT_TRUE((*in)->shutdown_write().ok());
  std::string back;
  for (;;) {
    uint8_t buf[16];
    auto n = (*out)->read_some(buf);
    ASSERT_TRUE(n.ok()) << n.status().to_string();
    if (*n == 0) break;
    back.append(reinterpret_cast<const char*>(buf), *n);
  }
  EXPECT_EQ(back, answer);

  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  auto pout = connect_outgoing("fd:" + std::to_string(p[1]));
  auto plisten = listen_incoming("fd:" + std::to_string(p[0]));
  ASSERT_TRUE(pout.ok() && plisten.ok());
  auto pin = (*plisten)->accept();
  ASSERT_TRUE(pin.ok());
  EXPECT_FALSE(has_return_path(**pout));  // a pipe carries one direction
  EXPECT_FALSE(has_return_path(**pin));
  round_trip(**pout, **pin);
}

TEST(Channel, ReturnPathOnSocketsOnly) {
  auto tcp = listen_incoming("tcp:127.0.0.1:0");
  ASSERT_TRUE(tcp.ok());
  auto tcp_out = connect_outgoing((*tcp)->uri());
  ASSERT_TRUE(tcp_out.ok());
  EXPECT_TRUE(has_return_path(**tcp_out));
  auto tcp_in = (*tcp)->accept();
  ASSERT_TRUE(tcp_in.ok());
  EXPECT_TRUE(has_return_path(**tcp_in));

  std::string path = "/tmp/ferry_chan_rp_" + std::to_string(::getpid());
  auto unix_listener = listen_incoming("unix:" + path + ".sock");
  ASSERT_TRUE(unix_listener.ok());
  auto unix_out = connect_outgoing("unix:" + path + ".sock");
  ASSERT_TRUE(unix_out.ok());
  EXPECT_TRUE(has_return_path(**unix_out));

  auto file_out = connect_outgoing("file:" + path + ".bin");
  ASSERT_TRUE(file_out.ok());
  EXPECT_FALSE(has_return_path(**file_out));
  ASSERT_TRUE((*file_out)->close().ok());
  auto file_in = listen_incoming("file:" + path + ".bin");
  ASSERT_TRUE(file_in.ok());
  auto file_channel = (*file_in)->accept();
  ASSERT_TRUE(file_channel.ok());
  EXPECT_FALSE(has_return_path(**file_channel));
  ::unlink((path + ".bin").c_str());

  auto exec_out = connect_outgoing("exec:cat > /dev/null");
  ASSERT_TRUE(exec_out.ok());
  EXPECT_FALSE(has_return_path(**exec_out));
  EXPECT_TRUE((*exec_out)->close().ok());
}

TEST(Channel, ExecCatIntoAFileAndOutOfIt) {
  std::string path = "/tmp/ferry_exec_" + std::to_string(::getpid()) + ".bin";
  auto data = pattern(200000);
  {
    auto out = connect_outgoing("exec:cat > " + path);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    ASSERT_TRUE((*out)->write_all(data).ok());
    ASSERT_TRUE((*out)->close().ok());  // waits for cat
  }
  auto listener = listen_incoming("exec:cat " + path);
  ASSERT_TRUE(listener.ok());
  auto in = (*listener)->accept();
  ASSERT_TRUE(in.ok());
  StreamReader r(**in);
  std::vector<uint8_t> got(data.size());
  ASSERT_TRUE(r.read_bytes(got, "exec").ok());
  EXPECT_EQ(got, data);
  EXPECT_TRUE((*in)->close().ok());
  ::unlink(path.c_str());

  auto failing = connect_outgoing("exec:exit 3");
  ASSERT_TRUE(failing.ok());
  Status st = (*failing)->close();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("exited with status 3"), std::string::npos) << st.to_string();
}


TEST(Channel, ReadvFillsIovecsInOrder) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  FdChannel out(sv[0], "a", true), in(sv[1], "b", true);
  std::vector<uint8_t> data(10);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i + 1);
  ASSERT_TRUE(out.write_all(data).ok());
  ASSERT_TRUE(out.shutdown_write().ok());
  uint8_t first[4] = {}, second[16] = {};
  iovec iov[2] = {{first, sizeof first}, {second, sizeof second}};
  auto n = in.readv_some(iov);
  ASSERT_TRUE(n.ok()) << n.status().to_string();
  ASSERT_EQ(*n, 10u);
  EXPECT_EQ(std::vector<uint8_t>(first, first + 4),
            std::vector<uint8_t>(data.begin(), data.begin() + 4));
  EXPECT_EQ(std::vector<uint8_t>(second, second + 6),
            std::vector<uint8_t>(data.begin() + 4, data.end()));
  auto eof = in.readv_some(iov);
  ASSERT_TRUE(eof.ok());
  EXPECT_EQ(*eof, 0u);
}

// ---- cancelling what waits on a peer ----

using std::chrono::milliseconds;

// Runs `work` on a thread, interrupts with `interrupt` once `work` is under way, and
// returns how `work` ended; fails the test if it does not end within 10 s of the interrupt.
template <typename Work, typename Interrupt>
Status interrupted(Work work, Interrupt interrupt) {
  std::promise<Status> result;
  auto done = result.get_future();
  std::thread t([&] { result.set_value(work()); });
  // Nothing tells when the thread blocks: it may be interrupted before, which must end it
  // just the same (a later call fails at once).
  EXPECT_EQ(done.wait_for(milliseconds(100)), std::future_status::timeout) << "did not block";
  interrupt();
  bool ended = done.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  EXPECT_TRUE(ended) << "interrupt() did not end the wait";
  if (!ended) std::abort();  // the thread would block forever
  t.join();
  return done.get();
}

TEST(ChannelInterrupt, EndsAWriteToAPipeNobodyReads) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  FdChannel out(p[1], "pipe", false);
  std::vector<uint8_t> data(1 << 20, 0x5a);  // more than the pipe holds
  Status st = interrupted([&] { return out.write_all(data); }, [&] { out.interrupt(); });
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("interrupted"), std::string::npos) << st.to_string();
  EXPECT_FALSE(out.write_all(data).ok()) << "later writes fail too";
  ::close(p[0]);
}

TEST(ChannelInterrupt, EndsAReadOnASilentPipe) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  FdChannel in(p[0], "pipe", false);
  uint8_t buf[16];
  Status st = interrupted([&] { return in.read_some(buf).status(); }, [&] { in.interrupt(); });
  EXPECT_FALSE(st.ok());
  ::close(p[1]);
}

// A TCP listener with a backlog of 0 and its queue full: a connect's SYN is dropped and
// retried for minutes.
struct FullTcpListener {
  int fd = -1;
  std::vector<int> clients;
  std::string uri;
  FullTcpListener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), len), 0);
    EXPECT_EQ(::listen(fd, 0), 0);
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
    uri = "tcp:127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
    for (int i = 0; i < 3; ++i) {
      int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (i > 0 ? SOCK_NONBLOCK : 0), 0);
      int rc = ::connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
      if (i == 0) {
        EXPECT_EQ(rc, 0);
      }
      clients.push_back(c);
    }
  }
  ~FullTcpListener() {
    for (int c : clients) ::close(c);
    ::close(fd);
  }
};

TEST(OutgoingConnector, StartNeverWaitsAndInterruptEndsATcpConnect) {
  FullTcpListener listener;
  auto start = std::chrono::steady_clock::now();
  auto connector = OutgoingConnector::start(listener.uri);
  ASSERT_TRUE(connector.ok()) << connector.status().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  Status st = interrupted([&] { return (*connector)->finish().status(); },
                          [&] { (*connector)->interrupt(); });
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("interrupted"), std::string::npos) << st.to_string();
}

TEST(OutgoingConnector, UnixConnectWaitsForRoomInTheBacklog) {
  std::string path = "/tmp/ferry_full_" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 0), 0);
  std::vector<int> clients;
  for (int i = 0; i < 64; ++i) {
    int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (::connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      EXPECT_EQ(errno, EAGAIN);
      ::close(c);
      break;
    }
    clients.push_back(c);
  }
  // The queue is full: start() does not wait, finish() connects once there is room.
  auto connector = OutgoingConnector::start("unix:" + path);
  ASSERT_TRUE(connector.ok()) << connector.status().to_string();
  auto pending = std::async(std::launch::async, [&] { return (*connector)->finish(); });
  EXPECT_EQ(pending.wait_for(milliseconds(200)), std::future_status::timeout);
  for (size_t i = 0; i < clients.size(); ++i) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(c, 0);
    ::close(c);
  }
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto channel = pending.get();
  ASSERT_TRUE(channel.ok()) << channel.status().to_string();
  EXPECT_TRUE((*channel)->bidirectional());
  for (int c : clients) ::close(c);
  ::close(fd);
  ::unlink(path.c_str());

  // A missing socket is an error at once, from start().
  auto missing = OutgoingConnector::start("unix:" + path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().to_string().find("connect"), std::string::npos);
}

TEST(OutgoingConnector, FileOnAFifoWaitsForItsReaderOrAnInterrupt) {
  std::string path = "/tmp/ferry_fifo_" + std::to_string(::getpid());
  ::unlink(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto waiting = OutgoingConnector::start("file:" + path);
  ASSERT_TRUE(waiting.ok()) << waiting.status().to_string();
  Status st = interrupted([&] { return (*waiting)->finish().status(); },
                          [&] { (*waiting)->interrupt(); });
  EXPECT_FALSE(st.ok());

  auto connector = OutgoingConnector::start("file:" + path);
  ASSERT_TRUE(connector.ok());
  auto pending = std::async(std::launch::async, [&] { return (*connector)->finish(); });
  int reader = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto channel = pending.get();
  ASSERT_TRUE(channel.ok()) << channel.status().to_string();
  uint8_t byte = 7;
  EXPECT_TRUE((*channel)->write_all({&byte, 1}).ok());
  ::close(reader);
  ::unlink(path.c_str());
}

// -incoming file:FIFO: listening (on the main loop) never waits for a writer; accept(), on
// the incoming thread, waits until a writer has sent bytes, or until interrupt().
TEST(IncomingFifo, ListeningNeverWaitsForAWriterAndAcceptWaitsUntilOneSends) {
  std::string path = "/tmp/ferry_in_fifo_" + std::to_string(::getpid());
  ::unlink(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto listening = std::async(std::launch::async, [&] { return listen_incoming("file:" + path); });
  bool returned = listening.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  if (!returned) {  // the old code waits in open(): a writer releases it, and the test fails
    int rescue = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (rescue >= 0) ::close(rescue);
  }
  ASSERT_TRUE(returned) << "listen_incoming waited for a writer";
  auto listener = listening.get();
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();
  Status st = interrupted([&] { return (*listener)->accept().status(); },
                          [&] { (*listener)->interrupt(); });
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("waiting for a writer"), std::string::npos) << st.to_string();

  auto again = listen_incoming("file:" + path);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  auto pending = std::async(std::launch::async, [&] { return (*again)->accept(); });
  int writer = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);  // the listener is a reader already
  ASSERT_GE(writer, 0);
  ASSERT_EQ(::write(writer, "QEVM", 4), 4);
  ::close(writer);
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto channel = pending.get();
  ASSERT_TRUE(channel.ok()) << channel.status().to_string();
  uint8_t got[8] = {};
  auto n = (*channel)->read_some(got);
  ASSERT_TRUE(n.ok()) << n.status().to_string();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(got), *n), "QEVM");
  auto end = (*channel)->read_some(got);
  ASSERT_TRUE(end.ok()) << end.status().to_string();
  EXPECT_EQ(*end, 0u) << "the writer closed: the stream ends";
  ::unlink(path.c_str());
}

TEST(OutgoingConnector, InterruptEndsAWriteToAnExecCommandAndEndsTheCommand) {
  std::string pid_file = "/tmp/ferry_exec_pid_" + std::to_string(::getpid());
  auto channel = connect_outgoing("exec:echo $$ > " + pid_file + "; exec sleep 60");
  ASSERT_TRUE(channel.ok()) << channel.status().to_string();
  std::vector<uint8_t> data(1 << 20, 0x5a);
  Status st = interrupted([&] { return (*channel)->write_all(data); },
                          [&] { (*channel)->interrupt(); });
  EXPECT_FALSE(st.ok());
  pid_t pid = 0;
  for (int i = 0; i < 2000 && pid <= 0; ++i) {
    std::ifstream in(pid_file);
    if (!(in >> pid)) std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_GT(pid, 0);
  auto start = std::chrono::steady_clock::now();
  Status closed = (*channel)->close();  // does not wait for sleep 60
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(closed.ok());
  EXPECT_NE(::kill(pid, 0), 0) << "the command was left running";
  if (::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
  ::unlink(pid_file.c_str());
}

}  // namespace
}  // namespace ferry::migration
