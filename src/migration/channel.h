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
// Channels are blocking and fd-based. Socket writes use MSG_NOSIGNAL; a process writing
// to pipes (exec:, fd:) should ignore SIGPIPE so that a vanished reader becomes an error.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
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
  // Closes the channel (for exec:, waits for the command and reports its exit status).
  virtual Status close() = 0;
  // Makes a read or write blocked in another thread return with an error, and later ones
  // fail (shutdown of a socket; nothing for pipes and files). Safe to call concurrently with
  // reads and writes, not with close(): callers serialise it against close().
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
  int fd_;
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
