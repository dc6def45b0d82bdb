// Where a network backend's socket listens or connects: QEMU's SocketAddress (inet or
// unix), as `-netdev stream,addr.type=...` and `socket,listen=host:port` name it, and the
// non-blocking socket calls over it that never wait on the main loop.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ferry::net {

struct SocketAddress {
  enum class Type { kInet, kUnix };
  Type type = Type::kInet;
  std::string host;  // inet
  std::string port;  // inet: as QEMU's SocketAddress carries it, a string
  std::string path;  // unix
  // An inet address the kernel reported: 4 or 6 (QEMU's event then says "ipv4": true or
  // "ipv6": true); 0 for one written on a command line.
  int ip_version = 0;

  std::string_view type_name() const { return type == Type::kInet ? "inet" : "unix"; }
  // QEMU's socket_uri(): "tcp:127.0.0.1:5000", "unix:/run/n.sock".
  std::string uri() const;
};

// `host:port` as -netdev socket's listen=/connect=/udp= take it; errors in QEMU's words
// ("host address 'foo' doesn't contain ':' separating host from port").
Result<SocketAddress> parse_host_port(std::string_view text);

// A resolved socket address.
struct ResolvedAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Resolves once (a numeric host or one /etc/hosts names: done at start-up, not on the loop's
// hot path). An empty inet host means any address.
Result<ResolvedAddress> resolve(const SocketAddress& address, int socktype);

// The address a connected or bound socket has at this end or at the peer's.
Result<SocketAddress> local_address(int fd);
Result<SocketAddress> peer_address(int fd);

// A non-blocking, close-on-exec stream socket listening at `address` (SO_REUSEADDR for
// inet). Errors name the address.
Result<int> listen_stream(const SocketAddress& address);

// Starts a non-blocking connect: returns the socket and whether it is already connected
// (else the caller waits for it to become writable and calls finish_connect).
struct PendingConnect {
  int fd = -1;
  bool connected = false;
};
Result<PendingConnect> start_connect(const ResolvedAddress& address, int socktype);
// The outcome of a connect that became writable: OK, or the error (SO_ERROR).
Status finish_connect(int fd);

}  // namespace ferry::net
