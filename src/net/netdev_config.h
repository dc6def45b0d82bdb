// `-netdev TYPE,id=ID,...` as QEMU 7.2 takes it, parsed into what builds the backend, with
// QEMU's messages ("Parameter 'addr' is missing", "Parameter 'type' does not accept value
// 'foo'", "Parameter 'x' is unexpected", "exactly one of listen=, connect=, mcast= or udp= is
// required"), each after the option as written ("-netdev stream,id=n0: ...").
//
// Types: stream (server=on|off, addr.type=inet|unix, addr.host, addr.port, addr.path, and
// QEMU 8.0's reconnect=SECONDS for a client: Ferry's default is 1, so a peer that restarts,
// or a server a migrated VM's source leaves, is reached again; reconnect=0 is 7.2's
// behaviour), socket (listen=, connect=, mcast=[,localaddr=], udp=,localaddr=), hubport
// (hubid=).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "base/event_loop.h"
#include "base/status.h"
#include "net/datagram_backend.h"
#include "net/hub.h"
#include "net/net_backend.h"
#include "net/stream_backend.h"

namespace ferry::net {

// Ferry's reconnect delay for a stream client when reconnect= is not given.
inline constexpr uint32_t kDefaultReconnectSeconds = 1;

struct HubportOptions {
  uint32_t hubid = 0;
};

struct NetdevConfig {
  std::string text;  // the option as written, for messages
  std::string id;
  std::string type;  // QEMU's type name
  std::variant<StreamOptions, DatagramOptions, HubportOptions> options;
};

// What `-netdev help` prints: the types Ferry builds, in QEMU's order and format.
std::string netdev_help();

// Parses one -netdev value. `help`/`?` as the type is not an error: the result is
// nullopt and the caller prints netdev_help().
Result<std::optional<NetdevConfig>> parse_netdev(std::string_view text);

// Builds the backend; errors start "-netdev TEXT:". `events` hears stream connections.
Result<std::unique_ptr<NetBackend>> create_netdev(EventLoop& loop, const NetdevConfig& config,
                                                  NetEvents* events, Hubs& hubs);

}  // namespace ferry::net
