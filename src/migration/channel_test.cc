#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
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

}  // namespace
}  // namespace ferry::migration
