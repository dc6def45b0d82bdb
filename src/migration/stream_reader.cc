#include "migration/stream_reader.h"

#include <algorithm>
#include <cstring>

#include "base/byte_order.h"

namespace ferry::migration {

StreamReader::StreamReader(Channel& channel, size_t window)
    : channel_(channel), limit_(std::max<size_t>(window, 8192)) {
  buf_.resize(std::min<size_t>(limit_, 256 * 1024));
}

Status StreamReader::ended(size_t needed, std::string_view what) const {
  return Error(ErrorCode::kOutOfRange,
               "stream ends at offset {} while reading {} (needed {} byte{}, {} left)",
               offset() + buffered(), what, needed, needed == 1 ? "" : "s", buffered());
}

Result<bool> StreamReader::fill(size_t want) {
  want = std::min(want, limit_);
  if (eof_) return false;
  if (begin_ > 0 && buf_.size() - begin_ < want) {
    // Slide the unread bytes to the front.
    std::memmove(buf_.data(), buf_.data() + begin_, buffered());
    base_ += begin_;
    end_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() < want) buf_.resize(std::max(want, std::min(limit_, buf_.size() * 2)));
  Result<size_t> n = channel_.read_some(std::span(buf_.data() + end_, buf_.size() - end_));
  if (!n.ok())
    return Status(n.status()).prepend_message(
        fmt::format("reading migration stream at offset {}", base_ + end_));
  if (*n == 0) {
    eof_ = true;
    return false;
  }
  end_ += *n;
  return true;
}

Status StreamReader::need(size_t n, std::string_view what) {
  if (n > limit_)
    return Error(ErrorCode::kOutOfRange, "{} at offset {} needs {} bytes, more than the {}-byte "
                 "read window", what, offset(), n, limit_);
  while (buffered() < n) {
    Result<bool> more = fill(n);
    if (!more.ok()) return more.take_status();
    if (!*more) return ended(n, what);
  }
  return {};
}

Status StreamReader::read_u8(uint8_t& out, std::string_view what) {
  FERRY_RETURN_IF_ERROR(need(1, what));
  out = buf_[begin_++];
  return {};
}

Status StreamReader::read_be16(uint16_t& out, std::string_view what) {
  FERRY_RETURN_IF_ERROR(need(2, what));
  out = load_be<uint16_t>(&buf_[begin_]);
  begin_ += 2;
  return {};
}

Status StreamReader::read_be32(uint32_t& out, std::string_view what) {
  FERRY_RETURN_IF_ERROR(need(4, what));
  out = load_be<uint32_t>(&buf_[begin_]);
  begin_ += 4;
  return {};
}

Status StreamReader::read_be64(uint64_t& out, std::string_view what) {
  FERRY_RETURN_IF_ERROR(need(8, what));
  out = load_be<uint64_t>(&buf_[begin_]);
  begin_ += 8;
  return {};
}

Status StreamReader::read_bytes(std::span<uint8_t> out, std::string_view what) {
  std::span<const uint8_t> view;
  FERRY_RETURN_IF_ERROR(take(out.size(), view, what));
  if (!out.empty()) std::memcpy(out.data(), view.data(), out.size());
  return {};
}

Status StreamReader::take(size_t n, std::span<const uint8_t>& out, std::string_view what) {
  FERRY_RETURN_IF_ERROR(need(n, what));
  out = std::span<const uint8_t>(buf_.data() + begin_, n);
  begin_ += n;
  return {};
}

Result<bool> StreamReader::peek_u8(uint8_t& out) {
  if (buffered() == 0) {
    Result<bool> more = fill(1);
    if (!more.ok()) return more.take_status();
    if (!*more) return false;
  }
  out = buf_[begin_];
  return true;
}

Result<bool> StreamReader::at_end() {
  uint8_t ignored;
  Result<bool> got = peek_u8(ignored);
  if (!got.ok()) return got.take_status();
  return !*got;
}

Result<std::span<const uint8_t>> StreamReader::window() {
  while (buffered() < limit_) {
    Result<bool> more = fill(limit_);
    if (!more.ok()) return more.take_status();
    if (!*more) break;
  }
  return std::span<const uint8_t>(buf_.data() + begin_, buffered());
}

}  // namespace ferry::migration
