#include "migration/buffer_channel.h"

#include <algorithm>
#include <cstring>

namespace ferry::migration {

Result<size_t> BufferChannel::read_some(std::span<uint8_t> out) {
  size_t n = std::min({out.size(), input_.size() - read_pos_, max_read_});
  if (n) std::memcpy(out.data(), input_.data() + read_pos_, n);
  read_pos_ += n;
  return n;
}

Status BufferChannel::write_all(std::span<const uint8_t> data) {
  ++writes_;
  written_.insert(written_.end(), data.begin(), data.end());
  return {};
}

Status BufferChannel::writev_all(std::span<iovec> iov) {
  ++writes_;
  for (const iovec& v : iov) {
    auto* p = static_cast<const uint8_t*>(v.iov_base);
    written_.insert(written_.end(), p, p + v.iov_len);
  }
  return {};
}

}  // namespace ferry::migration
