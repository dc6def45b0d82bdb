#include "net/frame_codec.h"

#include <algorithm>

#include "base/byte_order.h"

namespace ferry::net {

std::array<uint8_t, 4> frame_length_prefix(uint32_t length) {
  std::array<uint8_t, 4> prefix;
  store_be<uint32_t>(prefix.data(), length);
  return prefix;
}

void FrameDecoder::reset() {
  header_have_ = 0;
  frame_length_ = 0;
  in_body_ = false;
  failed_ = false;
  frame_.clear();
}

Result<std::optional<std::span<const uint8_t>>> FrameDecoder::next(
    std::span<const uint8_t>& input) {
  if (failed_)
    return Error(ErrorCode::kFailedPrecondition, "frame decoder used after an oversized frame");
  while (!input.empty()) {
    if (!in_body_) {
      size_t take = std::min(input.size(), header_.size() - header_have_);
      std::copy_n(input.begin(), take, header_.begin() + header_have_);
      header_have_ += take;
      input = input.subspan(take);
      if (header_have_ < header_.size()) return std::optional<std::span<const uint8_t>>();
      header_have_ = 0;
      frame_length_ = load_be<uint32_t>(header_.data());
      if (frame_length_ > kMaxFrameSize) {
        failed_ = true;
        return Error(ErrorCode::kCorrupt, "{} (frame length {}, at most {})", kOversizedMessage,
                     frame_length_, kMaxFrameSize);
      }
      if (frame_length_ == 0) continue;
      in_body_ = true;
      frame_.clear();
      frame_.reserve(frame_length_);
    }
    size_t take = std::min(input.size(), size_t{frame_length_} - frame_.size());
    frame_.insert(frame_.end(), input.begin(), input.begin() + take);
    input = input.subspan(take);
    if (frame_.size() == frame_length_) {
      in_body_ = false;
      return std::optional<std::span<const uint8_t>>(std::span<const uint8_t>(frame_));
    }
  }
  return std::optional<std::span<const uint8_t>>();
}

}  // namespace ferry::net
