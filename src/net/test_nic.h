// A NIC for the backend tests: takes frames while `accepting`, records what it got.
#pragma once

#include <chrono>
#include <span>
#include <vector>

#include "net/net_backend.h"

namespace ferry::net::testing {

// Generous: a test creates the condition it waits for; only the scheduler decides how soon.
inline constexpr std::chrono::seconds kDeadline{20};

class TestNic final : public NicPort {
 public:
  bool can_receive() override {
    ++asked;
    return accepting;
  }
  void receive(std::span<const uint8_t> frame) override {
    frames.emplace_back(frame.begin(), frame.end());
  }
  void send_ready() override { ++send_ready_calls; }
  void link_changed(bool up) override { links.push_back(up); }

  bool accepting = true;
  int asked = 0;
  int send_ready_calls = 0;
  std::vector<std::vector<uint8_t>> frames;
  std::vector<bool> links;
};

// A frame whose bytes say which frame it is.
inline std::vector<uint8_t> numbered_frame(uint32_t number, size_t size) {
  std::vector<uint8_t> frame(size);
  for (size_t i = 0; i < size; ++i) frame[i] = static_cast<uint8_t>(number * 7 + i);
  if (size >= 4) {
    frame[0] = static_cast<uint8_t>(number >> 24);
    frame[1] = static_cast<uint8_t>(number >> 16);
    frame[2] = static_cast<uint8_t>(number >> 8);
    frame[3] = static_cast<uint8_t>(number);
  }
  return frame;
}

inline SendResult send_bytes(NetBackend& backend, const std::vector<uint8_t>& frame) {
  iovec piece{const_cast<uint8_t*>(frame.data()), frame.size()};
  return backend.send(std::span<const iovec>(&piece, 1));
}

}  // namespace ferry::net::testing
