#include "net/datagram_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>


namespace ferry::net {

DatagramBackend::DatagramBackend(EventLoop& loop, std::string id, DatagramOptions options)
    : MessageFdBackend(loop, std::move(id), "socket", options.send_queue_limit),
      options_(std::move(options)) {}

Result<std::unique_ptr<DatagramBackend>> DatagramBackend::create(EventLoop& loop, std::string id,
                                                                 DatagramOptions options) {
  std::unique_ptr<DatagramBackend> backend(
      new DatagramBackend(loop, std::move(id), std::move(options)));
  FERRY_RETURN_IF_ERROR(backend->open_socket());
  backend->start();
  return backend;
}

Status DatagramBackend::open_socket() {
  auto remote = resolve(options_.remote, SOCK_DGRAM);
  if (!remote.ok()) return remote.take_status();
  destination_ = *remote;
  bool multicast = options_.mode == DatagramOptions::Mode::kMulticast;
  ResolvedAddress bind_to;
  in_addr group{};
  if (multicast) {
    if (destination_.family() != AF_INET)
      return Error(ErrorCode::kInvalidArgument, "specified mcastaddr {} is not an IPv4 address",
                   options_.remote.host);
    group = reinterpret_cast<const sockaddr_in*>(destination_.get())->sin_addr;
    if (!IN_MULTICAST(ntohl(group.s_addr)))
      return Error(ErrorCode::kInvalidArgument,
                   "specified mcastaddr {} (0x{:08x}) does not contain a multicast address",
                   options_.remote.host, ntohl(group.s_addr));
    bind_to = destination_;  // QEMU binds the group address and port
  } else {
    auto local = resolve(*options_.local, SOCK_DGRAM);
    if (!local.ok()) return local.take_status();
    bind_to = *local;
  }
  adopt_fd(socket(bind_to.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const int socket_fd = fd();
  if (socket_fd < 0)
    return Error(ErrorCode::kIo, "can't create datagram socket: {}", std::strerror(errno));
  int one = 1;
  setsockopt(socket_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(socket_fd, bind_to.get(), bind_to.length) != 0)
    return Error(ErrorCode::kIo, "can't bind ip={} to socket: {}",
                 multicast ? options_.remote.host : options_.local->host, std::strerror(errno));
  if (multicast) {
    ip_mreq request{};
    request.imr_multiaddr = group;
    request.imr_interface.s_addr = htonl(INADDR_ANY);
    if (options_.local) {
      if (inet_pton(AF_INET, options_.local->host.c_str(), &request.imr_interface) != 1)
        return Error(ErrorCode::kInvalidArgument, "localaddr '{}' is not an IPv4 address",
                     options_.local->host);
    }
    if (setsockopt(socket_fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &request, sizeof(request)) != 0)
      return Error(ErrorCode::kIo, "setsockopt(IP_ADD_MEMBERSHIP): {}", std::strerror(errno));
    unsigned char loop = 1;
    if (setsockopt(socket_fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop)) != 0)
      return Error(ErrorCode::kIo, "setsockopt(SOL_IP, IP_MULTICAST_LOOP): {}",
                   std::strerror(errno));
    if (options_.local &&
        setsockopt(socket_fd, IPPROTO_IP, IP_MULTICAST_IF, &request.imr_interface,
                   sizeof(request.imr_interface)) != 0)
      return Error(ErrorCode::kIo, "setsockopt(IP_MULTICAST_IF): {}", std::strerror(errno));
  }
  auto bound = local_address(socket_fd);
  if (!bound.ok()) return bound.take_status();
  bound_ = *bound;
  set_info(multicast ? fmt::format("mcast={}:{}", options_.remote.host, options_.remote.port)
                     : fmt::format("udp={}:{}", options_.remote.host, options_.remote.port));
  return {};
}

ssize_t DatagramBackend::send_frame(std::span<const iovec> frame) {
  msghdr message{};
  message.msg_name = const_cast<sockaddr*>(destination_.get());
  message.msg_namelen = destination_.length;
  message.msg_iov = const_cast<iovec*>(frame.data());
  message.msg_iovlen = frame.size();
  return sendmsg(fd(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
}

int DatagramBackend::flush_queue(SendQueue& queue) {
  return queue.send_datagrams(fd(), destination_.get(), destination_.length);
}

ssize_t DatagramBackend::receive_frame(std::span<uint8_t> buffer) {
  return recv(fd(), buffer.data(), buffer.size(), 0);
}

}  // namespace ferry::net
