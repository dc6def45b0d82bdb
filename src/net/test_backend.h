// A netdev whose network is the test, for NIC unit tests: it records every frame the NIC
// sends, offers frames that wait while the NIC cannot receive (delivered as soon as it
// says it can), and can play a busy backend (send refused until unblock()).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "net/net_backend.h"

namespace ferry::net::testing {

class FakeBackend final : public NetBackend {
 public:
  FakeBackend() : NetBackend("n0", "hubport") {}

  SendResult transmit(std::span<const iovec> frame) override {
    if (busy) return SendResult::kBusy;
    std::vector<uint8_t> bytes;
    for (const iovec& piece : frame) {
      const auto* p = static_cast<const uint8_t*>(piece.iov_base);
      bytes.insert(bytes.end(), p, p + piece.iov_len);
    }
    sent.push_back(std::move(bytes));
    return SendResult::kSent;
  }
  void receive_ready() override {
    ++ready_calls;
    pump();
  }
  void offer(std::vector<uint8_t> frame) {
    waiting.push_back(std::move(frame));
    pump();
  }
  void pump() {
    while (!waiting.empty() && nic_can_receive()) {
      std::vector<uint8_t> frame = std::move(waiting.front());
      waiting.pop_front();
      deliver(frame);
    }
  }
  void unblock() {
    busy = false;
    notify_send_ready();
  }

  bool busy = false;
  int ready_calls = 0;
  std::deque<std::vector<uint8_t>> waiting;
  std::vector<std::vector<uint8_t>> sent;
};

}  // namespace ferry::net::testing
