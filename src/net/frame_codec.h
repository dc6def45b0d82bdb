// The byte-stream framing QEMU's `-netdev stream` and `-netdev socket,listen|connect` use:
// each Ethernet frame is sent as a be32 length followed by the frame (no vnet header, no
// FCS). A peer announcing a frame longer than QEMU's NET_BUFSIZE is refused as QEMU does
// (the connection ends).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ferry::net {

// QEMU's NET_BUFSIZE (4096 + 65536): the largest frame a stream peer may send.
inline constexpr size_t kMaxFrameSize = 4096 + 65536;

// QEMU 7.2's words when a peer's length exceeds kMaxFrameSize, as it prints them (no space
// after the comma); Ferry adds the figures.
inline constexpr std::string_view kOversizedMessage =
    "serious error: oversized packet received,connection terminated.";

// The 4-byte prefix of a frame of `length` bytes.
std::array<uint8_t, 4> frame_length_prefix(uint32_t length);

// Reassembles frames from a byte stream cut anywhere.
class FrameDecoder {
 public:
  // Consumes bytes from the front of `input` until one frame is complete (returned; the
  // view stays valid until the next call) or `input` is empty (nullopt). A zero-length
  // frame carries nothing a NIC could use and is skipped. An oversized length is an
  // error (kCorrupt, QEMU's message); the decoder is then spent until reset().
  Result<std::optional<std::span<const uint8_t>>> next(std::span<const uint8_t>& input);
  // Forgets a partial frame (a new connection starts clean).
  void reset();
  // True when part of a length or frame has been consumed.
  bool mid_frame() const { return header_have_ > 0 || in_body_; }

 private:
  std::array<uint8_t, 4> header_{};
  size_t header_have_ = 0;
  uint32_t frame_length_ = 0;
  bool in_body_ = false;
  bool failed_ = false;
  std::vector<uint8_t> frame_;
};

}  // namespace ferry::net
