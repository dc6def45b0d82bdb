// The far end of a `-netdev stream` link, played by a test: frames go out and come in as
// QEMU frames them on a stream (a be32 length, then the frame, no vnet header).
#pragma once

#include <poll.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "client/line_socket.h"

namespace ferry::testing {

class StreamPeer {
 public:
  // Connects to a netdev listening on `path` (server=on), retrying while the VM starts.
  static Result<StreamPeer> connect(const std::string& path, client::Millis timeout) {
    auto socket = client::connect_unix(path, timeout);
    if (!socket.ok()) return socket.take_status();
    return StreamPeer(std::move(*socket));
  }

  Status send_frame(std::span<const uint8_t> frame) {
    std::vector<uint8_t> bytes = {static_cast<uint8_t>(frame.size() >> 24),
                                  static_cast<uint8_t>(frame.size() >> 16),
                                  static_cast<uint8_t>(frame.size() >> 8),
                                  static_cast<uint8_t>(frame.size())};
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    for (size_t done = 0; done < bytes.size();) {
      ssize_t n = ::write(socket_.fd(), bytes.data() + done, bytes.size() - done);
      if (n <= 0) return Error(ErrorCode::kIo, "stream peer: write failed");
      done += static_cast<size_t>(n);
    }
    return {};
  }

  // The next frame, or nothing when none starts within `timeout` (generous: the VM may be
  // slow on a busy machine; the caller decides what silence means).
  Result<std::optional<std::vector<uint8_t>>> receive_frame(client::Millis timeout) {
    uint8_t length[4];
    auto got = read_exact(length, timeout);
    if (!got.ok()) return got.take_status();
    if (!*got) return std::optional<std::vector<uint8_t>>();
    const size_t size = (size_t{length[0]} << 24) | (size_t{length[1]} << 16) |
                        (size_t{length[2]} << 8) | length[3];
    std::vector<uint8_t> frame(size);
    got = read_exact(frame, timeout);
    if (!got.ok()) return got.take_status();
    if (!*got) return Error(ErrorCode::kIo, "stream peer: a frame of {} bytes stopped short", size);
    return std::optional<std::vector<uint8_t>>(std::move(frame));
  }

 private:
  explicit StreamPeer(client::LineSocket socket) : socket_(std::move(socket)) {}

  // false: nothing arrived in time (before the first byte only).
  Result<bool> read_exact(std::span<uint8_t> out, client::Millis timeout) {
    size_t done = 0;
    while (done < out.size()) {
      pollfd p{socket_.fd(), POLLIN, 0};
      int ready = poll(&p, 1, static_cast<int>(timeout.count()));
      if (ready == 0 && done == 0) return false;
      if (ready != 1) return Error(ErrorCode::kIo, "stream peer: timed out inside a frame");
      ssize_t n = ::read(socket_.fd(), out.data() + done, out.size() - done);
      if (n <= 0) return Error(ErrorCode::kIo, "stream peer: the VM closed the link");
      done += static_cast<size_t>(n);
    }
    return true;
  }

  client::LineSocket socket_;
};

}  // namespace ferry::testing
