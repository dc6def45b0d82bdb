#include "net/netdev_config.h"

#include <gtest/gtest.h>

namespace ferry::net {
namespace {

std::string error_of(std::string_view text) {
  auto parsed = parse_netdev(text);
  return parsed.ok() ? "(accepted)" : std::string(parsed.status().message());
}

TEST(NetdevConfig, StreamServerUnixAndClientInet) {
  auto server = parse_netdev("stream,id=n0,server=on,addr.type=unix,addr.path=/tmp/n.sock");
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  ASSERT_TRUE(*server);
  EXPECT_EQ((*server)->id, "n0");
  EXPECT_EQ((*server)->type, "stream");
  const auto& s = std::get<StreamOptions>((*server)->options);
  EXPECT_TRUE(s.server);
  EXPECT_EQ(s.address.uri(), "unix:/tmp/n.sock");
  EXPECT_EQ(s.reconnect_ms, 0u);

  auto client = parse_netdev("stream,id=n1,addr.type=inet,addr.host=127.0.0.1,addr.port=5555");
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  const auto& c = std::get<StreamOptions>((*client)->options);
  EXPECT_FALSE(c.server);
  EXPECT_EQ(c.address.uri(), "tcp:127.0.0.1:5555");
  EXPECT_EQ(c.reconnect_ms, kDefaultReconnectSeconds * 1000);

  auto no_retry =
      parse_netdev("stream,id=n1,server=off,addr.type=unix,addr.path=/p,reconnect=0");
  ASSERT_TRUE(no_retry.ok());
  EXPECT_EQ(std::get<StreamOptions>((*no_retry)->options).reconnect_ms, 0u);
}

TEST(NetdevConfig, QemusMessagesForBadStreamOptions) {
  EXPECT_EQ(error_of("stream,id=n0"), "-netdev stream,id=n0: Parameter 'addr' is missing");
  EXPECT_EQ(error_of("foo,id=n0"), "-netdev foo,id=n0: Parameter 'type' does not accept value 'foo'");
  EXPECT_EQ(error_of("stream,id=n0,server=on,addr.type=unix"),
            "-netdev stream,id=n0,server=on,addr.type=unix: Parameter 'addr.path' is missing");
  EXPECT_EQ(error_of("stream,id=n0,addr.type=inet,addr.host=127.0.0.1"),
            "-netdev stream,id=n0,addr.type=inet,addr.host=127.0.0.1: Parameter 'addr.port' is "
            "missing");
  EXPECT_EQ(error_of("stream,id=n0,addr.type=foo"),
            "-netdev stream,id=n0,addr.type=foo: Parameter 'type' does not accept value 'foo'");
  EXPECT_EQ(error_of("stream,addr.type=unix,addr.path=/x"),
            "-netdev stream,addr.type=unix,addr.path=/x: Parameter 'id' is missing");
  EXPECT_EQ(error_of("stream,id=n0,addr.type=unix,addr.path=/x,bogus=1"),
            "-netdev stream,id=n0,addr.type=unix,addr.path=/x,bogus=1: Parameter 'bogus' is "
            "unexpected");
  EXPECT_EQ(error_of("stream,id=n0,addr.type=unix,addr.path=/x,listen=:1"),
            "-netdev stream,id=n0,addr.type=unix,addr.path=/x,listen=:1: Parameter 'listen' is "
            "unexpected");
  EXPECT_EQ(error_of("stream,id=n0,server=on,addr.type=unix,addr.path=/x,reconnect=1"),
            "-netdev stream,id=n0,server=on,addr.type=unix,addr.path=/x,reconnect=1: "
            "'reconnect' option is incompatible with socket in server mode");
  EXPECT_EQ(error_of("stream,id=n0,addr.type=unix,addr.path=/x,addr.host=h"),
            "-netdev stream,id=n0,addr.type=unix,addr.path=/x,addr.host=h: Parameter "
            "'addr.host' is unexpected");
}

TEST(NetdevConfig, SocketModes) {
  EXPECT_EQ(error_of("socket,id=s0"),
            "-netdev socket,id=s0: exactly one of listen=, connect=, mcast= or udp= is required");
  EXPECT_EQ(error_of("socket,id=s0,listen=127.0.0.1:1,connect=127.0.0.1:2"),
            "-netdev socket,id=s0,listen=127.0.0.1:1,connect=127.0.0.1:2: exactly one of "
            "listen=, connect=, mcast= or udp= is required");
  EXPECT_EQ(error_of("socket,id=s0,udp=127.0.0.1:5000"),
            "-netdev socket,id=s0,udp=127.0.0.1:5000: localaddr= is mandatory with udp=");
  EXPECT_EQ(error_of("socket,id=s0,connect=foo"),
            "-netdev socket,id=s0,connect=foo: host address 'foo' doesn't contain ':' "
            "separating host from port");

  auto listen = parse_netdev("socket,id=s0,listen=:5000");
  ASSERT_TRUE(listen.ok()) << listen.status().to_string();
  const auto& l = std::get<StreamOptions>((*listen)->options);
  EXPECT_TRUE(l.server);
  EXPECT_EQ(l.address.port, "5000");
  EXPECT_EQ(l.address.host, "");

  auto connect = parse_netdev("socket,id=s0,connect=127.0.0.1:5000");
  ASSERT_TRUE(connect.ok());
  EXPECT_EQ(std::get<StreamOptions>((*connect)->options).reconnect_ms, 0u)
      << "QEMU's socket never reconnects";

  auto udp = parse_netdev("socket,id=s0,udp=127.0.0.1:5000,localaddr=127.0.0.1:5001");
  ASSERT_TRUE(udp.ok());
  const auto& u = std::get<DatagramOptions>((*udp)->options);
  EXPECT_EQ(u.mode, DatagramOptions::Mode::kUdp);
  EXPECT_EQ(u.local->port, "5001");

  auto mcast = parse_netdev("socket,id=s0,mcast=230.0.0.1:1234,localaddr=127.0.0.1");
  ASSERT_TRUE(mcast.ok()) << mcast.status().to_string();
  EXPECT_EQ(std::get<DatagramOptions>((*mcast)->options).mode, DatagramOptions::Mode::kMulticast);
}

TEST(NetdevConfig, HubportAndHelp) {
  EXPECT_EQ(error_of("hubport,id=h0"), "-netdev hubport,id=h0: Parameter 'hubid' is missing");
  auto hub = parse_netdev("hubport,id=h0,hubid=3");
  ASSERT_TRUE(hub.ok());
  EXPECT_EQ(std::get<HubportOptions>((*hub)->options).hubid, 3u);
  auto help = parse_netdev("help");
  ASSERT_TRUE(help.ok());
  EXPECT_FALSE(*help);
  EXPECT_EQ(netdev_help(), "Available netdev backend types:\nsocket\nstream\nhubport\n");
}

}  // namespace
}  // namespace ferry::net
