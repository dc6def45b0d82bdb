// Channels: the byte pipes a migration stream travels over, made from QEMU-style URIs.
//
//   tcp:HOST:PORT   (IPv4, a name, or IPv6 in brackets: tcp:[::1]:4444)
//   unix:PATH
//   file:PATH       outgoing writes (creates/truncates) the file, incoming reads it
//   fd:N            an inherited descriptor; the channel takes ownership of it. A socket
//                   is used both ways (it carries the return path), as QEMU does
//   exec:CMD        run through /bin/sh -c; outgoing writes the command's stdin,
//                   incoming reads its stdout
//
// Channels are fd-based and block the calling thread, but never beyond interrupt(): the
// descriptor is non-blocking and a wait polls it together with a wake-up eventfd, so a
// cancel ends a write to a peer that stopped reading on any transport (a pipe as well as a
// socket). Socket writes use MSG_NOSIGNAL; a process writing to pipes (exec:, fd:) should
// ignore SIGPIPE so that a vanished reader becomes an error.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ferry::migration {

class Channel {
 public:
  virtual ~Channel() = default;
  // Reads at least one byte, or returns 0 at the end of the stream.
  virtual Result<size_t> read_some(std::span<uint8_t> out) = 0;
  // Scatter read: fills the iovecs in order with at least one byte, or returns 0 at the
  // end of the stream. The default reads into the first non-empty iovec only.
  virtual Result<size_t> readv_some(std::span<const iovec> iov);
  virtual Status write_all(std::span<const uint8_t> data) = 0;
  // Writes every byte of every iovec (the array may be modified).
  virtual Status writev_all(std::span<iovec> iov) = 0;
  // Half-close: the peer's reads see the end of the stream; reading here still works.
  virtual Status shutdown_write() = 0;
  // Closes the channel. For exec: waits for the command and reports its exit status; after
  // interrupt() (or when interrupted while waiting) it does not wait but ends the command
  // (SIGTERM, then SIGKILL, as QEMU's command channel does), so a command that never exits
  // cannot hold the VM process.
  virtual Status close() = 0;
  // Makes a read, write or close blocked in another thread return with an error, and later
  // ones fail. Safe to call concurrently with reads, writes and (FdChannel's) close();
  // other channels may need callers to serialise it against close().
  virtual void interrupt() {}
  // "tcp:127.0.0.1:4444", "exec:cat > x", ... for error messages.
  virtual const std::string& name() const = 0;
  // Whether bytes can also travel back on this channel (a socket): the migration return
  // path. Pipes and files carry one direction only.
  virtual bool bidirectional() const { return false; }
};

// A channel over one descriptor it owns.
class FdChannel final : public Channel {
 public:
  // `child` is the exec: command's pid, reaped by close().
  FdChannel(int fd, std::string name, bool is_socket, pid_t child = -1);
  ~FdChannel() override;

  Result<size_t> read_some(std::span<uint8_t> out) override;
  Result<size_t> readv_some(std::span<const iovec> iov) override;
  Status write_all(std::span<const uint8_t> data) override;
  Status writev_all(std::span<iovec> iov) override;
  Status shutdown_write() override;
  void interrupt() override;
  Status close() override;
  const std::string& name() const override { return name_; }
  bool bidirectional() const override { return is_socket_; }
  int fd() const { return fd_; }

 private:
  // Waits until fd_ is ready for `events`; an error once interrupt() was called.
  Status wait_ready(short events, std::string_view what);
  Status interrupted_error(std::string_view what) const;
  // exec: the command's exit status, waited for unless interrupted.
  Status reap_child();
  // Ends the command without waiting long for it (SIGTERM, then SIGKILL).
  void end_child(pid_t child, int pidfd);

  std::mutex fd_mutex_;  // close() against interrupt()'s shutdown of fd_
  int fd_;
  int wake_ = -1;  // eventfd: readable once interrupt() was called; lives as long as this
  std::atomic<bool> interrupted_{false};
  std::string name_;
  bool is_socket_;
  pid_t child_;
};

struct ChannelUri {
  enum class Kind { kTcp, kUnix, kFile, kFd, kExec };
  Kind kind = Kind::kTcp;
  std::string host;     // tcp, without brackets
  uint16_t port = 0;    // tcp
  std::string path;     // unix, file
  int fd = -1;          // fd
  std::string command;  // exec
};

// Errors name the URI and the part that is wrong.
Result<ChannelUri> parse_channel_uri(std::string_view uri);

// Opening an outgoing channel in two steps, so that the main loop never waits for a peer
// (a TCP connect to a listener whose backlog is full retries SYNs for over two minutes):
// start() parses the URI and does only what cannot block (fd: is adopted; a file: open and
// a unix: connect are tried once without waiting, so a missing socket or an unwritable
// path is an error at once); finish(), on the migration thread, does the rest (resolving
// and connecting tcp:, waiting for room in a full unix: backlog or for the reader of a
// FIFO, spawning exec:) until it is done or interrupt() is called from another thread.
class OutgoingConnector {
 public:
  static Result<std::unique_ptr<OutgoingConnector>> start(std::string_view uri);
  // A channel that is open already (tests, in-memory channels).
  explicit OutgoingConnector(std::unique_ptr<Channel> ready);
  ~OutgoingConnector();
  OutgoingConnector(const OutgoingConnector&) = delete;
  OutgoingConnector& operator=(const OutgoingConnector&) = delete;

  // Once only.
  Result<std::unique_ptr<Channel>> finish();
  // Thread-safe: finish() returns an error at once, now or when it is called.
  void interrupt();
  const std::string& uri() const { return uri_; }

 private:
  OutgoingConnector(ChannelUri parsed, std::string uri);
  Result<int> connect_tcp();
  Result<int> connect_unix();
  // file: without waiting: the descriptor, or -1 for a FIFO that has no reader yet.
  Result<int> open_file();
  // Polls `fd` for `events` and the wake-up eventfd; false when interrupted. A negative
  // `fd` just waits `timeout_ms` for the wake-up.
  bool wait(int fd, short events, int timeout_ms);

  ChannelUri parsed_;
  std::string uri_;
  std::unique_ptr<Channel> ready_;
  int pending_unix_ = -1;  // unix: socket whose connect found the backlog full
  int wake_ = -1;
  std::atomic<bool> interrupted_{false};
};

// start() and finish() in one call, for callers that may block.
Result<std::unique_ptr<Channel>> connect_outgoing(std::string_view uri);

// The incoming side: listening sockets accept one connection per accept(); file:, fd:
// and exec: give their one channel on the first accept().
class Listener {
 public:
  virtual ~Listener() = default;
  virtual Result<std::unique_ptr<Channel>> accept() = 0;
  // Makes an accept() blocked in another thread return with an error.
  virtual void interrupt() {}
  // The address actually bound ("tcp:127.0.0.1:40123" when port 0 was asked for).
  virtual std::string uri() const = 0;
};

Result<std::unique_ptr<Listener>> listen_incoming(std::string_view uri);

// Whether the destination can answer on this channel (the migration return path): sockets
// can (tcp:, unix:, and fd: when the descriptor is a socket); file:, exec: and fd: on a
// pipe or file end at EOF. Both sides decide with this one test.
bool has_return_path(const Channel& channel);

}  // namespace ferry::migration
