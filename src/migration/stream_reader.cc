#include "migration/stream_reader.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/byte_order.h"

namespace ferry::migration {

std::string escaped_bytes(std::span<const uint8_t> bytes, size_t limit) {
  std::string out;
  size_t shown = std::min(bytes.size(), limit);
  out.reserve(shown * 2);
  for (size_t i = 0; i < shown; ++i) {
    uint8_t b = bytes[i];
    if (b >= 0x20 && b < 0x7f && b != '\\' && b != '\'')
      out.push_back(static_cast<char>(b));
    else
      out += fmt::format("\\x{:02x}", b);
  }
  if (shown < bytes.size()) out += fmt::format("... ({} bytes)", bytes.size());
  return out;
}

StreamReader::StreamReader(Channel& channel, size_t window)
    : channel_(channel), limit_(std::max<size_t>(window, 8192)) {
  buf_.resize(std::min<size_t>(limit_, kReadChunk));
}

Status StreamReader::ended_at(uint64_t offset, size_t needed, size_t left,
                              std::string_view what) const {
  return Error(ErrorCode::kOutOfRange,
               "stream ends at offset {} while reading {} (needed {} byte{}, {} left)", offset,
               what, needed, needed == 1 ? "" : "s", left);
}

Status StreamReader::ended(size_t needed, std::string_view what) const {
  return ended_at(offset() + buffered(), needed, buffered(), what);
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

Status StreamReader::read_into(std::span<uint8_t> out, std::string_view what) {
  const uint64_t start = offset();
  const size_t n = out.size();
  size_t got = std::min(n, buffered());
  if (got > 0) std::memcpy(out.data(), buf_.data() + begin_, got);
  begin_ += got;
  if (got == n) return {};
  // The buffer is drained: restart it at its front, then read the rest of `out` directly,
  // letting whatever follows it in the stream fill the buffer in the same call.
  base_ += end_;
  begin_ = end_ = 0;
  while (got < n) {
    if (eof_) return ended_at(start + got, n, got, what);
    iovec iov[2] = {{out.data() + got, n - got},
                    {buf_.data(), std::min(buf_.size(), kReadChunk)}};
    Result<size_t> r = channel_.readv_some(iov);
    if (!r.ok())
      return Status(r.status()).prepend_message(
          fmt::format("reading migration stream at offset {}", start + got));
    if (*r == 0) {
      eof_ = true;
      continue;
    }
    size_t direct = std::min(*r, n - got);
    got += direct;
    base_ += direct;  // buf_[0] now holds the byte after the direct part
    end_ = *r - direct;
  }
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

std::span<const uint8_t> StreamReader::grow_to(size_t total) {
  if (total > limit_) {
    section_status_ = Error(ErrorCode::kOutOfRange,
                            "the section does not fit in the {}-byte load window", limit_);
    return buffered_bytes();
  }
  auto start = std::chrono::steady_clock::now();
  while (buffered() < total) {
    Result<bool> more = fill(total);
    if (!more.ok()) {
      section_status_ = more.take_status();
      break;
    }
    if (!*more) break;  // the end of the stream: the loader reports what it missed
  }
  wait_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
  return buffered_bytes();
}

}  // namespace ferry::migration
