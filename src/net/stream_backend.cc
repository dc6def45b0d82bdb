#include "net/stream_backend.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace ferry::net {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
}

StreamBackend::StreamBackend(EventLoop& loop, std::string id, std::string_view type,
                             StreamOptions options, NetEvents* events)
    : NetBackend(std::move(id), type),
      loop_(loop),
      options_(std::move(options)),
      events_(events),
      send_queue_(options_.send_queue_limit) {}

Result<std::unique_ptr<StreamBackend>> StreamBackend::create(EventLoop& loop, std::string id,
                                                             std::string_view type,
                                                             StreamOptions options,
                                                             NetEvents* events) {
  std::unique_ptr<StreamBackend> backend(
      new StreamBackend(loop, std::move(id), type, std::move(options), events));
  if (backend->options_.server) {
    FERRY_RETURN_IF_ERROR(backend->start_listening());
  } else {
    auto resolved = resolve(backend->options_.address, SOCK_STREAM);
    if (!resolved.ok()) return resolved.take_status();
    backend->resolved_ = *resolved;
    backend->set_info("connecting");
    // From the loop, as QEMU's connect is asynchronous: a connection made at once is then
    // reported after start-up, when the machine's QMP is there to hear it.
    loop.schedule([alive = std::weak_ptr<bool>(backend->alive_), raw = backend.get()] {
      if (!alive.expired()) raw->connect_now();
    });
  }
  return backend;
}

StreamBackend::~StreamBackend() {
  if (reconnect_timer_) loop_.cancel_timer(*reconnect_timer_);
  for (int fd : {conn_fd_, connecting_fd_, listen_fd_}) {
    if (fd < 0) continue;
    loop_.unwatch_fd(fd);
    close(fd);
  }
  // The socket file is ours: a later VM may listen at the same path.
  if (listen_fd_ >= 0 && listening_ && listening_->type == SocketAddress::Type::kUnix)
    unlink(listening_->path.c_str());
}

Status StreamBackend::start_listening() {
  auto fd = listen_stream(options_.address);
  if (!fd.ok()) return fd.take_status();
  listen_fd_ = *fd;
  auto bound = local_address(listen_fd_);
  if (!bound.ok()) return bound.take_status();
  listening_ = *bound;
  set_info("listening");
  watch_listener(true);
  return {};
}

void StreamBackend::watch_listener(bool on) {
  if (on == listener_watched_) return;
  listener_watched_ = on;
  if (!on) {
    loop_.unwatch_fd(listen_fd_);
    return;
  }
  Status st = loop_.watch_fd(listen_fd_, EventLoop::kReadable,
                             [this](uint32_t) { on_listener_ready(); });
  if (!st.ok()) log(LogLevel::kError, "netdev {}: cannot watch the listening socket: {}", id(),
                    st.message());
}

void StreamBackend::on_listener_ready() {
  int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      log(LogLevel::kWarn, "netdev {}: accept: {}", id(), std::strerror(errno));
    return;
  }
  // One client at a time: the next waits in the backlog until this one leaves.
  watch_listener(false);
  connection_up(fd);
}

void StreamBackend::connect_now() {
  auto pending = start_connect(*resolved_, SOCK_STREAM);
  if (!pending.ok()) {
    last_error_ = std::string(pending.status().message());
    set_info("error: " + last_error_);
    arm_reconnect();
    return;
  }
  if (pending->connected) {
    connection_up(pending->fd);
    return;
  }
  connecting_fd_ = pending->fd;
  Status st = loop_.watch_fd(connecting_fd_, EventLoop::kWritable,
                             [this](uint32_t events) { on_connect_ready(events); });
  if (!st.ok()) {
    close(connecting_fd_);
    connecting_fd_ = -1;
    last_error_ = std::string(st.message());
    arm_reconnect();
  }
}

void StreamBackend::on_connect_ready(uint32_t) {
  int fd = connecting_fd_;
  loop_.unwatch_fd(fd);
  connecting_fd_ = -1;
  Status st = finish_connect(fd);
  if (!st.ok()) {
    close(fd);
    last_error_ = std::string(st.message());
    set_info("error: " + last_error_);
    arm_reconnect();
    return;
  }
  connection_up(fd);
}

void StreamBackend::arm_reconnect() {
  if (options_.server || options_.reconnect_ms == 0 || reconnect_timer_) return;
  set_info("connecting");
  int64_t deadline = clock_.now_ns() + int64_t{options_.reconnect_ms} * 1'000'000;
  reconnect_timer_ = loop_.add_timer(clock_, deadline, [this] {
    reconnect_timer_.reset();
    connect_now();
  });
}

void StreamBackend::connection_up(int fd) {
  conn_fd_ = fd;
  decoder_.reset();
  read_buffer_.resize(kReadChunk);
  read_start_ = read_end_ = 0;
  peer_hung_up_ = false;
  reading_paused_ = false;
  // QEMU names a unix server's connection by its own path, any other by the peer.
  bool local = options_.server && options_.address.type == SocketAddress::Type::kUnix;
  auto address = local ? local_address(fd) : peer_address(fd);
  SocketAddress named = address.ok() ? *address : options_.address;
  set_info(named.uri());
  update_watch();
  set_link(true);
  if (events_) events_->connected(id(), named);
}

void StreamBackend::connection_down(std::string reason) {
  if (conn_fd_ < 0) return;
  if (fd_watched_) loop_.unwatch_fd(conn_fd_);
  fd_watched_ = false;
  watched_events_ = 0;
  close(conn_fd_);
  conn_fd_ = -1;
  send_queue_.clear();
  decoder_.reset();
  read_start_ = read_end_ = 0;
  reading_paused_ = false;
  peer_hung_up_ = false;
  last_error_ = std::move(reason);
  set_link(false);
  if (events_) events_->disconnected(id());
  if (busy_reported_) {
    // The queued frames went with the connection; the NIC may send (and drop) again.
    busy_reported_ = false;
    notify_send_ready();
  }
  if (options_.server) {
    set_info("listening");
    watch_listener(true);
  } else {
    set_info("disconnected");
    arm_reconnect();
  }
}

void StreamBackend::update_watch() {
  if (conn_fd_ < 0) return;
  uint32_t wanted = 0;
  if (!reading_paused_ && !peer_hung_up_) wanted |= EventLoop::kReadable;
  if (!send_queue_.empty()) wanted |= EventLoop::kWritable;
  // Paused after a hang-up: an fd watched for nothing would still report the hang-up at
  // every loop iteration; leave it unwatched until reading resumes.
  if (wanted == 0 && peer_hung_up_) {
    if (fd_watched_) loop_.unwatch_fd(conn_fd_);
    fd_watched_ = false;
    return;
  }
  if (fd_watched_ && wanted == watched_events_) return;
  Status st = fd_watched_ ? loop_.modify_fd(conn_fd_, wanted)
                          : loop_.watch_fd(conn_fd_, wanted,
                                           [this](uint32_t events) { on_connection_ready(events); });
  if (!st.ok()) {
    connection_down(std::string(st.message()));
    return;
  }
  fd_watched_ = true;
  watched_events_ = wanted;
}

void StreamBackend::on_connection_ready(uint32_t events) {
  if (events & EventLoop::kError) {
    int err = 0;
    socklen_t length = sizeof(err);
    getsockopt(conn_fd_, SOL_SOCKET, SO_ERROR, &err, &length);
    connection_down(fmt::format("connection error: {}", std::strerror(err != 0 ? err : EIO)));
    return;
  }
  if (events & EventLoop::kWritable) {
    flush_send_queue();
    if (conn_fd_ < 0) return;
  }
  if (events & (EventLoop::kReadable | EventLoop::kHangup)) {
    if (reading_paused_) {
      if (events & EventLoop::kHangup) peer_hung_up_ = true;
    } else {
      read_socket();
      if (conn_fd_ < 0) return;
    }
  }
  update_watch();
}

bool StreamBackend::deliver_pending() {
  delivering_ = true;
  bool more = true;
  while (conn_fd_ >= 0 && read_start_ < read_end_) {
    if (!nic_can_receive()) {
      reading_paused_ = true;
      more = false;
      break;
    }
    std::span<const uint8_t> input(read_buffer_.data() + read_start_, read_end_ - read_start_);
    auto frame = decoder_.next(input);
    read_start_ = read_end_ - input.size();
    if (!frame.ok()) {
      std::string message = fmt::format("netdev {}: {}", id(), frame.status().message());
      log(LogLevel::kError, "{}", message);
      delivering_ = false;
      connection_down(std::move(message));
      return false;
    }
    if (*frame) deliver(**frame);
  }
  delivering_ = false;
  if (read_start_ == read_end_) read_start_ = read_end_ = 0;
  return more && conn_fd_ >= 0;
}

void StreamBackend::read_socket() {
  if (!deliver_pending()) return;
  // One read per wake-up: the loop is level-triggered, so a busy peer cannot starve it.
  ssize_t n = recv(conn_fd_, read_buffer_.data(), read_buffer_.size(), 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    connection_down(fmt::format("read error: {}", std::strerror(errno)));
    return;
  }
  if (n == 0) {
    connection_down("the peer closed the connection");
    return;
  }
  read_start_ = 0;
  read_end_ = static_cast<size_t>(n);
  deliver_pending();
}

void StreamBackend::receive_ready() {
  if (delivering_ || conn_fd_ < 0 || !reading_paused_) return;
  reading_paused_ = false;
  peer_hung_up_ = false;  // resume reading: what the peer sent before leaving comes first
  deliver_pending();
  update_watch();
}

void StreamBackend::flush_send_queue() {
  int rc = send_queue_.write_stream(conn_fd_);
  if (rc < 0) {
    connection_down(fmt::format("write error: {}", std::strerror(-rc)));
    return;
  }
  if (busy_reported_ && !send_queue_.full()) {
    busy_reported_ = false;
    notify_send_ready();
  }
}

SendResult StreamBackend::transmit(std::span<const iovec> frame) {
  if (conn_fd_ < 0) return SendResult::kDropped;
  if (send_queue_.full()) {
    busy_reported_ = true;
    return SendResult::kBusy;
  }
  size_t length = frame_size(frame);
  auto prefix = frame_length_prefix(static_cast<uint32_t>(length));
  std::vector<iovec> pieces;
  pieces.reserve(frame.size() + 1);
  pieces.push_back({prefix.data(), prefix.size()});
  pieces.insert(pieces.end(), frame.begin(), frame.end());
  if (!send_queue_.empty()) {
    send_queue_.push(pieces);  // behind what waits, in order
    return SendResult::kSent;
  }
  msghdr message{};
  message.msg_iov = pieces.data();
  message.msg_iovlen = pieces.size();
  ssize_t written = sendmsg(conn_fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (written < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      connection_down(fmt::format("write error: {}", std::strerror(errno)));
      return SendResult::kDropped;
    }
    written = 0;
  }
  if (static_cast<size_t>(written) < length + prefix.size()) {
    send_queue_.push(pieces, static_cast<size_t>(written));
    update_watch();
  }
  return SendResult::kSent;
}

}  // namespace ferry::net
