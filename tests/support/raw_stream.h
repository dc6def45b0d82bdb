// Raw unix-socket helpers for tests that play the far end of a `-netdev stream` link or
// poke a listening socket byte by byte: connect, read exactly n bytes, read one frame as
// QEMU frames them on a stream (be32 length, then the frame). Waits are generous (a busy
// machine); a false or empty result means nothing came in time.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace ferry::testing {

// A connected socket, or -1 (errno set).
inline int connect_unix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, path.c_str(), sizeof(un.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads exactly `n` bytes, waiting at most `timeout_ms` for each piece.
inline bool read_exact(int fd, uint8_t* out, size_t n, int timeout_ms) {
  while (n > 0) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    ssize_t got = ::read(fd, out, n);
    if (got <= 0) return false;
    out += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

// One frame from a stream link; empty when none came (or one longer than 64 KiB).
inline std::vector<uint8_t> read_stream_frame(int fd, int timeout_ms = 20000) {
  uint8_t len[4];
  if (!read_exact(fd, len, 4, timeout_ms)) return {};
  const uint32_t size = (uint32_t(len[0]) << 24) | (uint32_t(len[1]) << 16) |
                        (uint32_t(len[2]) << 8) | len[3];
  if (size > 65536) return {};
  std::vector<uint8_t> frame(size);
  if (!read_exact(fd, frame.data(), size, timeout_ms)) return {};
  return frame;
}

}  // namespace ferry::testing
