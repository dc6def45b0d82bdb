#include "net/datagram_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "net/fd_interest.h"
#include "net/frame_codec.h"

namespace ferry::net {

DatagramBackend::DatagramBackend(EventLoop& loop, std::string id, DatagramOptions options)
    : NetBackend(std::move(id), "socket"),
      loop_(loop),
      options_(std::move(options)),
      send_queue_(options_.send_queue_limit),
      buffer_(kMaxFrameSize) {}

Result<std::unique_ptr<DatagramBackend>> DatagramBackend::create(EventLoop& loop, std::string id,
                                                                 DatagramOptions options) {
  std::unique_ptr<DatagramBackend> backend(
      new DatagramBackend(loop, std::move(id), std::move(options)));
  FERRY_RETURN_IF_ERROR(backend->open_socket());
  backend->set_link(true);
  backend->update_watch();
  return backend;
}

DatagramBackend::~DatagramBackend() {
  if (fd_ < 0) return;
  if (watched_events_ != 0) loop_.unwatch_fd(fd_);
  close(fd_);
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
  fd_ = socket(bind_to.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Error(ErrorCode::kIo, "can't create datagram socket: {}", std::strerror(errno));
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd_, bind_to.get(), bind_to.length) != 0)
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
    if (setsockopt(fd_, IPPROTO_IP, IP_ADD_MEMBERSHIP, &request, sizeof(request)) != 0)
      return Error(ErrorCode::kIo, "setsockopt(IP_ADD_MEMBERSHIP): {}", std::strerror(errno));
    unsigned char loop = 1;
    if (setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop)) != 0)
      return Error(ErrorCode::kIo, "setsockopt(SOL_IP, IP_MULTICAST_LOOP): {}",
                   std::strerror(errno));
    if (options_.local &&
        setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_IF, &request.imr_interface,
                   sizeof(request.imr_interface)) != 0)
      return Error(ErrorCode::kIo, "setsockopt(IP_MULTICAST_IF): {}", std::strerror(errno));
  }
  auto bound = local_address(fd_);
  if (!bound.ok()) return bound.take_status();
  bound_ = *bound;
  set_info(multicast ? fmt::format("mcast={}:{}", options_.remote.host, options_.remote.port)
                     : fmt::format("udp={}:{}", options_.remote.host, options_.remote.port));
  return {};
}

void DatagramBackend::update_watch() {
  uint32_t wanted = 0;
  if (!reading_paused_) wanted |= EventLoop::kReadable;
  if (!send_queue_.empty()) wanted |= EventLoop::kWritable;
  Status st = set_fd_interest(loop_, fd_, wanted, watched_events_,
                              [this](uint32_t events) { on_ready(events); });
  if (!st.ok()) log(LogLevel::kError, "netdev {}: {}", id(), st.message());
}

void DatagramBackend::on_ready(uint32_t events) {
  if (events & EventLoop::kWritable) {
    int rc = send_queue_.send_datagrams(fd_, destination_.get(), destination_.length);
    if (rc < 0) log(LogLevel::kWarn, "netdev {}: sendto: {}", id(), std::strerror(-rc));
    if (busy_reported_ && !send_queue_.full()) {
      busy_reported_ = false;
      notify_send_ready();
    }
  }
  if (events & EventLoop::kReadable) read_datagrams();
  update_watch();
}

void DatagramBackend::read_datagrams() {
  // A bounded batch per wake-up, so a flood cannot starve the loop.
  for (int i = 0; i < 64; ++i) {
    if (!nic_can_receive()) {
      reading_paused_ = true;
      return;
    }
    ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), 0);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log(LogLevel::kWarn, "netdev {}: recv: {}", id(), std::strerror(errno));
      return;
    }
    if (n > 0) deliver(std::span<const uint8_t>(buffer_.data(), static_cast<size_t>(n)));
  }
}

void DatagramBackend::receive_ready() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  update_watch();
}

SendResult DatagramBackend::transmit(std::span<const iovec> frame) {
  if (send_queue_.full()) {
    busy_reported_ = true;
    return SendResult::kBusy;
  }
  if (!send_queue_.empty()) {
    send_queue_.push(frame);
    return SendResult::kSent;
  }
  msghdr message{};
  message.msg_name = const_cast<sockaddr*>(destination_.get());
  message.msg_namelen = destination_.length;
  message.msg_iov = const_cast<iovec*>(frame.data());
  message.msg_iovlen = frame.size();
  ssize_t sent = sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      send_queue_.push(frame);
      update_watch();
      return SendResult::kSent;
    }
    // No peer listening (ECONNREFUSED from an earlier datagram), no route: lost, as on a wire.
    return SendResult::kDropped;
  }
  return SendResult::kSent;
}

}  // namespace ferry::net
