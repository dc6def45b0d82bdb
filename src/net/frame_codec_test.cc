#include "net/frame_codec.h"

#include <gtest/gtest.h>

#include "net/test_nic.h"

namespace ferry::net {
namespace {

std::vector<uint8_t> encode(const std::vector<std::vector<uint8_t>>& frames) {
  std::vector<uint8_t> out;
  for (const auto& frame : frames) {
    auto prefix = frame_length_prefix(static_cast<uint32_t>(frame.size()));
    out.insert(out.end(), prefix.begin(), prefix.end());
    out.insert(out.end(), frame.begin(), frame.end());
  }
  return out;
}

// Feeds `bytes` in pieces cut at `cuts` and returns the frames decoded.
std::vector<std::vector<uint8_t>> decode_in_pieces(const std::vector<uint8_t>& bytes,
                                                   const std::vector<size_t>& cuts) {
  FrameDecoder decoder;
  std::vector<std::vector<uint8_t>> out;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (size_t end : ends) {
    std::span<const uint8_t> input(bytes.data() + start, end - start);
    while (!input.empty()) {
      auto frame = decoder.next(input);
      EXPECT_TRUE(frame.ok()) << frame.status().to_string();
      if (!frame.ok()) return out;
      if (*frame) out.emplace_back((*frame)->begin(), (*frame)->end());
    }
    start = end;
  }
  EXPECT_FALSE(decoder.mid_frame());
  return out;
}

TEST(FrameCodec, PrefixIsBigEndianLength) {
  auto prefix = frame_length_prefix(0x01020304);
  EXPECT_EQ(prefix, (std::array<uint8_t, 4>{1, 2, 3, 4}));
}

TEST(FrameCodec, DecodesFramesSplitAtEveryByteBoundary) {
  std::vector<std::vector<uint8_t>> frames = {testing::numbered_frame(1, 60),
                                              testing::numbered_frame(2, 1),
                                              testing::numbered_frame(3, 1514)};
  std::vector<uint8_t> bytes = encode(frames);
  for (size_t cut = 0; cut <= bytes.size(); ++cut)
    ASSERT_EQ(decode_in_pieces(bytes, {cut}), frames) << "cut at " << cut;
  for (size_t a = 0; a < 80; ++a)
    for (size_t b = a; b < 80; ++b) ASSERT_EQ(decode_in_pieces(bytes, {a, b}), frames);
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < bytes.size(); ++i) every_byte.push_back(i);
  EXPECT_EQ(decode_in_pieces(bytes, every_byte), frames);
}

TEST(FrameCodec, LargestFrameAcceptedAndZeroLengthSkipped) {
  std::vector<uint8_t> largest = testing::numbered_frame(9, kMaxFrameSize);
  std::vector<uint8_t> bytes = encode({{}, largest, {}});
  EXPECT_EQ(decode_in_pieces(bytes, {5, 4096}), (std::vector<std::vector<uint8_t>>{largest}));
}

TEST(FrameCodec, OversizedFrameRefusedWithQemuMessage) {
  FrameDecoder decoder;
  auto prefix = frame_length_prefix(kMaxFrameSize + 1);
  std::span<const uint8_t> input(prefix);
  auto frame = decoder.next(input);
  ASSERT_FALSE(frame.ok());
  EXPECT_EQ(frame.status().code(), ErrorCode::kCorrupt);
  EXPECT_NE(frame.status().message().find(
                "serious error: oversized packet received,connection terminated."),
            std::string::npos);
  EXPECT_NE(frame.status().message().find("69633"), std::string::npos);
  EXPECT_NE(frame.status().message().find("69632"), std::string::npos);
  // Spent until reset: a new connection starts clean.
  std::span<const uint8_t> more(prefix);
  EXPECT_FALSE(decoder.next(more).ok());
  decoder.reset();
  std::vector<uint8_t> good = encode({{1, 2, 3}});
  std::span<const uint8_t> again(good);
  auto decoded = decoder.next(again);
  ASSERT_TRUE(decoded.ok());
  ASSERT_TRUE(*decoded);
  EXPECT_EQ((*decoded)->size(), 3u);
}

}  // namespace
}  // namespace ferry::net
