// Reads big-endian values from a byte span with hard bounds: no read ever goes past the
// end. The fast `get_*` calls return false at the end of input; `truncated()` then builds
// the error. The `read_*` calls return a Status directly for code off the hot path.
//
// Input that arrives while it is read (a migration stream's device sections, which carry
// no length) comes with a ByteSource: when a read runs short, the reader asks it for more
// and only fails once the source has nothing left. Without a source (the common case)
// that branch folds away.
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

// More input for a ByteReader (see above).
class ByteSource {
 public:
  // The reader's whole input, from its first byte, grown to at least `total` bytes if the
  // source can (it blocks until they arrive); shorter only at the end of the input or on
  // an error, which the source keeps for its owner to report. Bytes already returned keep
  // their offsets but may move: views into the previous span are invalid afterwards.
  virtual std::span<const uint8_t> grow_to(size_t total) = 0;

 protected:
  ~ByteSource() = default;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes, ByteSource* source = nullptr)
      : bytes_(bytes), source_(source) {}

  size_t offset() const { return pos_; }
  // Bytes available now (a source may still add more).
  size_t remaining() const { return bytes_.size() - pos_; }
  bool at_end() const { return pos_ == bytes_.size(); }

  template <typename T>
    requires std::is_integral_v<T>
  [[gnu::always_inline]] bool get(T& out) {
    if (!has(sizeof(T))) [[unlikely]] return false;
    out = load_be<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return true;
  }
  [[gnu::always_inline]] bool get_u8(uint8_t& out) { return get(out); }
  [[gnu::always_inline]] bool get_be16(uint16_t& out) { return get(out); }
  [[gnu::always_inline]] bool get_be32(uint32_t& out) { return get(out); }
  [[gnu::always_inline]] bool get_be64(uint64_t& out) { return get(out); }

  // Copies `out.size()` bytes.
  [[gnu::always_inline]] bool get_bytes(std::span<uint8_t> out) {
    if (!has(out.size())) [[unlikely]] return false;
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + pos_, out.size());
    pos_ += out.size();
    return true;
  }
  // Returns a view of the next `n` bytes and consumes them.
  // (With a source, the view is valid until the next read.)
  [[gnu::always_inline]] bool take(size_t n, std::span<const uint8_t>& out) {
    if (!has(n)) [[unlikely]] return false;
    out = bytes_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  [[gnu::always_inline]] bool skip(size_t n) {
    if (!has(n)) [[unlikely]] return false;
    pos_ += n;
    return true;
  }

  // Looks ahead without consuming; false if fewer than `ahead + 1` bytes remain.
  [[gnu::always_inline]] bool peek_u8(size_t ahead, uint8_t& out) {
    if (ahead == SIZE_MAX || !has(ahead + 1)) return false;
    out = bytes_[pos_ + ahead];
    return true;
  }
  // A view of `n` bytes `ahead` of the position (valid until the next read), or empty.
  [[gnu::always_inline]] std::span<const uint8_t> peek(size_t ahead, size_t n) {
    if (n > SIZE_MAX - ahead || !has(ahead + n)) return {};
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
  // True when `n` more bytes are there, asking the source for them if needed. The rare
  // path is a static function given values only: the reader itself never escapes, so a
  // local reader's position stays in a register through an unrolled load.
  [[gnu::always_inline]] bool has(size_t n) {
    if (remaining() >= n) [[likely]] return true;
    if (source_ == nullptr) return false;
    bytes_ = pull(*source_, bytes_, pos_, n);
    return remaining() >= n;
  }
  [[gnu::cold, gnu::noinline]] static std::span<const uint8_t> pull(ByteSource& source, std::span<const uint8_t> now,
                                       size_t pos, size_t n);

  std::span<const uint8_t> bytes_;
  ByteSource* source_ = nullptr;
  size_t pos_ = 0;
};

}  // namespace ferry
