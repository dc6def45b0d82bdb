#include "net/net_backend.h"

namespace ferry::net {

void NetBackend::attach(NicPort* nic) {
  nic_ = nic;
  if (nic_) receive_ready();
}

void NetBackend::deliver(std::span<const uint8_t> frame) {
  // A netdev whose link set_link took down sends nothing on (QEMU drops at the sender).
  if (nic_ && !link_down_) nic_->receive(frame);
}

void NetBackend::set_link(bool up) {
  if (up == link_up_) return;
  link_up_ = up;
  if (nic_) nic_->link_changed(up);
}

void NetBackend::notify_send_ready() {
  if (nic_) nic_->send_ready();
}

size_t frame_size(std::span<const iovec> frame) {
  size_t total = 0;
  for (const iovec& piece : frame) total += piece.iov_len;
  return total;
}

}  // namespace ferry::net
