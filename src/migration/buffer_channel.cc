#include "migration/buffer_channel.h"

#include <algorithm>
#include <cstring>

#include "memory/guest_memory.h"

namespace ferry::migration {

Result<size_t> BufferChannel::read_some(std::span<uint8_t> out) {
  if (read_pos_ == input_.size() && !at_end_.ok() && !out.empty()) return at_end_;
  size_t n = std::min({out.size(), input_.size() - read_pos_, max_read_});
  if (n) std::memcpy(out.data(), input_.data() + read_pos_, n);
  read_pos_ += n;
  return n;
}

// Spans iovecs (at most max_read bytes in all), as readv does.
Result<size_t> BufferChannel::readv_some(std::span<const iovec> iov) {
  if (read_pos_ == input_.size() && !at_end_.ok()) return at_end_;
  size_t total = 0;
  for (const iovec& v : iov) {
    size_t n = std::min({v.iov_len, input_.size() - read_pos_, max_read_ - total});
    if (n) std::memcpy(v.iov_base, input_.data() + read_pos_, n);
    read_pos_ += n;
    total += n;
    if (n < v.iov_len) break;
  }
  return total;
}

Status BufferChannel::write_all(std::span<const uint8_t> data) {
  ++writes_;
  written_.insert(written_.end(), data.begin(), data.end());
  return {};
}

// iovecs may point into guest RAM that a guest thread is writing (StreamWriter sends
// pages by reference): read them as the kernel would, racing but without UB.
Status BufferChannel::writev_all(std::span<iovec> iov) {
  ++writes_;
  for (const iovec& v : iov) {
    size_t at = written_.size();
    written_.resize(at + v.iov_len);
    memory::guest_read(written_.data() + at, static_cast<const uint8_t*>(v.iov_base), v.iov_len);
  }
  return {};
}

}  // namespace ferry::migration
