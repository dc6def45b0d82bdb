// StreamReader: buffered input of a migration stream from a Channel, with hard bounds.
// Every read names what it was reading and where the stream ended:
//   "stream ends at offset 1234 while reading RAM page data (needed 4096 bytes, 17 left)".
//
// Sections carry no length, and vmstate loads from a ByteReader over a span. So a
// section body is loaded from a window: the buffered bytes are topped up until they
// hold kSectionWindow bytes or the stream has ended, the description loads from that
// span, and the bytes it used are consumed. A section larger than the window is refused.
// Consequence for senders: after the last record (vmdesc), the writer must end or
// half-close the stream (Channel::shutdown_write), or the destination waits for more.
//
// Bulk data (RAM page payloads) need not pass through the buffer: read_into() copies
// what is already buffered, then reads the rest straight from the channel into the
// caller's memory, with the bytes that follow landing in the buffer in the same readv.
// A page thus costs one copy (socket -> guest RAM) instead of two.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/byte_reader.h"
#include "base/status.h"
#include "migration/channel.h"

namespace ferry::migration {

class StreamReader {
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

  // Section loading (see above): the buffered window, filled as far as the rules allow.
  Result<std::span<const uint8_t>> window();
  void consume(size_t n) { begin_ += n; }

  size_t window_limit() const { return limit_; }

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
};

}  // namespace ferry::migration
