// StreamReader: buffered input of a migration stream from a Channel, with hard bounds.
// Every read names what it was reading and where the stream ended:
//   "stream ends at offset 1234 while reading RAM page data (needed 4096 bytes, 17 left)".
//
// Sections carry no length, and vmstate loads from a ByteReader. So a section body is
// loaded through section_reader(): a ByteReader over the bytes buffered now whose source
// is this reader, so the description pulls more from the channel exactly when a field
// needs it (as QEMU's loader pulls from its QEMUFile), and never waits for bytes beyond
// the section. The bytes it used are then consumed. The buffer grows only as far as one
// section needs, and a section larger than the window limit is refused.
//
// Bulk data (RAM page payloads) need not pass through the buffer: read_into() copies
// what is already buffered, then reads the rest straight from the channel into the
// caller's memory, with the bytes that follow landing in the buffer in the same readv.
// A page thus costs one copy (socket -> guest RAM) instead of two.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/byte_reader.h"
#include "base/status.h"
#include "migration/channel.h"

namespace ferry::migration {

// Bytes from a stream shown in a message: printable ASCII as it is, anything else (and
// the quote and backslash) as \xNN, at most `limit` bytes, then "..." and the full count.
// Names read from a hostile stream are printed only through this.
std::string escaped_bytes(std::span<const uint8_t> bytes, size_t limit = 64);
inline std::string escaped_bytes(std::string_view text, size_t limit = 64) {
  return escaped_bytes(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                       limit);
}

class StreamReader : public ByteSource {
 public:
  static constexpr size_t kSectionWindow = 16 << 20;
  // The most one read asks the channel for (the buffer stays cache-sized).
  static constexpr size_t kReadChunk = 256 * 1024;

  explicit StreamReader(Channel& channel, size_t window = kSectionWindow);

  // Stream offset of the next unread byte.
  uint64_t offset() const { return base_ + begin_; }
  // Ensures `n` bytes are buffered, or fails naming `what`.
  Status need(size_t n, std::string_view what);

  Status read_u8(uint8_t& out, std::string_view what);
  Status read_be16(uint16_t& out, std::string_view what);
  Status read_be32(uint32_t& out, std::string_view what);
  Status read_be64(uint64_t& out, std::string_view what);
  Status read_bytes(std::span<uint8_t> out, std::string_view what);
  // Like read_bytes, but bytes not buffered yet go straight from the channel into `out`
  // (see above). `out` may be any size. On a cut stream, `out` holds the bytes that
  // arrived and the error names the offset where the stream ended.
  Status read_into(std::span<uint8_t> out, std::string_view what);
  // A view of the next `n` bytes, consumed; valid until the next call on this reader.
  Status take(size_t n, std::span<const uint8_t>& out, std::string_view what);

  // The next byte without consuming it; false at the end of the stream.
  Result<bool> peek_u8(uint8_t& out);
  // True when no byte is left (reads ahead if needed).
  Result<bool> at_end();

  // The bytes buffered but not consumed yet, for look-ahead only (reads nothing more).
  // Valid until the next call on this reader.
  std::span<const uint8_t> buffered_bytes() const { return {buf_.data() + begin_, buffered()}; }

  // Section loading (see above). The reader is valid until the next call on this
  // StreamReader; afterwards consume() what it read.
  ByteReader section_reader() {
    section_status_ = Status();
    return ByteReader(buffered_bytes(), this);
  }
  void consume(size_t n) { begin_ += n; }
  // Why the last section_reader() ran out: the window limit, a channel error, or the end
  // of the stream (OK).
  const Status& section_status() const { return section_status_; }
  // Time section readers spent waiting for the channel since the last call.
  int64_t take_wait_ns() { return std::exchange(wait_ns_, 0); }

  size_t window_limit() const { return limit_; }

  // ByteSource, for section_reader(): `total` counts from the first unconsumed byte.
  std::span<const uint8_t> grow_to(size_t total) override;

 private:
  // Reads more; returns false at the end of the stream.
  Result<bool> fill(size_t want);
  size_t buffered() const { return end_ - begin_; }
  Status ended(size_t needed, std::string_view what) const;
  Status ended_at(uint64_t offset, size_t needed, size_t left, std::string_view what) const;

  Channel& channel_;
  size_t limit_;
  std::vector<uint8_t> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
  uint64_t base_ = 0;  // stream offset of buf_[0]
  bool eof_ = false;
  Status section_status_;
  int64_t wait_ns_ = 0;
};

}  // namespace ferry::migration
