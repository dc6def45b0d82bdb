#include "net/hub.h"

#include <algorithm>

#include <fmt/format.h>

namespace ferry::net {

Hub& Hubs::get(uint32_t id) {
  auto& hub = hubs_[id];
  if (!hub) hub = std::make_unique<Hub>(id);
  return *hub;
}

HubPort::HubPort(std::string id, Hub& hub) : NetBackend(std::move(id), "hubport"), hub_(hub) {
  hub_.ports_.push_back(this);
  set_link(true);
  set_info(fmt::format("hub {}", hub.id()));
}

HubPort::~HubPort() { std::erase(hub_.ports_, this); }

SendResult HubPort::transmit(std::span<const iovec> frame) {
  std::vector<uint8_t> bytes;
  bytes.reserve(frame_size(frame));
  for (const iovec& piece : frame) {
    const auto* data = static_cast<const uint8_t*>(piece.iov_base);
    bytes.insert(bytes.end(), data, data + piece.iov_len);
  }
  for (HubPort* port : hub_.ports_)
    if (port != this) port->offer(bytes);
  return SendResult::kSent;
}

void HubPort::offer(const std::vector<uint8_t>& frame) {
  if (nic() == nullptr) return;
  if (queue_.size() >= kQueueLimit) return;
  queue_.push_back(frame);
  receive_ready();
}

void HubPort::receive_ready() {
  if (delivering_) return;
  delivering_ = true;
  while (!queue_.empty() && nic_can_receive()) {
    std::vector<uint8_t> frame = std::move(queue_.front());
    queue_.pop_front();
    deliver(frame);
  }
  delivering_ = false;
}

}  // namespace ferry::net
