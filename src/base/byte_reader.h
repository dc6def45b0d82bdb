// Reads big-endian values from a byte span with hard bounds: no read ever goes past the
// end. The fast `get_*` calls return false at the end of input; `truncated()` then builds
// the error. The `read_*` calls return a Status directly for code off the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "base/byte_order.h"
#include "base/status.h"

namespace ferry {

// "input ends early at offset 178: needed 2 bytes, 1 left"
Status truncated_input(size_t offset, size_t remaining, size_t needed);

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }
  bool at_end() const { return pos_ == bytes_.size(); }

  template <typename T>
    requires std::is_integral_v<T>
  bool get(T& out) {
    if (remaining() < sizeof(T)) [[unlikely]] return false;
    out = load_be<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return true;
  }
  bool get_u8(uint8_t& out) { return get(out); }
  bool get_be16(uint16_t& out) { return get(out); }
  bool get_be32(uint32_t& out) { return get(out); }
  bool get_be64(uint64_t& out) { return get(out); }

  // Copies `out.size()` bytes.
  bool get_bytes(std::span<uint8_t> out) {
    if (remaining() < out.size()) [[unlikely]] return false;
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + pos_, out.size());
    pos_ += out.size();
    return true;
  }
  // Returns a view of the next `n` bytes and consumes them.
  bool take(size_t n, std::span<const uint8_t>& out) {
    if (remaining() < n) [[unlikely]] return false;
    out = bytes_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool skip(size_t n) {
    if (remaining() < n) [[unlikely]] return false;
    pos_ += n;
    return true;
  }

  // Looks ahead without consuming; false if fewer than `ahead + 1` bytes remain.
  bool peek_u8(size_t ahead, uint8_t& out) const {
    if (remaining() <= ahead) return false;
    out = bytes_[pos_ + ahead];
    return true;
  }
  std::span<const uint8_t> peek(size_t ahead, size_t n) const {
    if (remaining() < ahead || remaining() - ahead < n) return {};
    return bytes_.subspan(pos_ + ahead, n);
  }

  // The error for a read of `needed` bytes that did not fit. Everything here is inline and
  // the error is built from values, so a reader kept in a local never escapes and its
  // position can live in a register through a whole unrolled load.
  Status truncated(size_t needed) const { return truncated_input(pos_, remaining(), needed); }

  template <typename T>
    requires std::is_integral_v<T>
  Status read(T& out) {
    return get(out) ? Status() : truncated(sizeof(T));
  }
  Status read_bytes(std::span<uint8_t> out) {
    return get_bytes(out) ? Status() : truncated(out.size());
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

}  // namespace ferry
