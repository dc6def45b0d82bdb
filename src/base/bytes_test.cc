#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>

#include <csignal>

#include <cstdio>
#include <vector>

#include "base/byte_order.h"
#include "base/byte_reader.h"
#include "base/byte_writer.h"

namespace ferry {
namespace {

TEST(ByteOrder, LittleAndBigEndianOnUnalignedBytes) {
  std::array<uint8_t, 11> b{};
  store_le(b.data() + 1, uint64_t{0x0102030405060708});
  EXPECT_EQ(b[1], 0x08);
  EXPECT_EQ(b[8], 0x01);
  EXPECT_EQ(load_le<uint64_t>(b.data() + 1), 0x0102030405060708u);
  EXPECT_EQ(load_le<uint32_t>(b.data() + 1), 0x05060708u);
  EXPECT_EQ(load_le<uint16_t>(b.data() + 3), 0x0506u);
  EXPECT_EQ(load_be<uint16_t>(b.data() + 3), 0x0605u);
  store_le(b.data() + 9, int16_t{-2});
  EXPECT_EQ(load_le<int16_t>(b.data() + 9), -2);
  EXPECT_EQ(b[9], 0xfe);

  // Run-time widths: only `size` bytes are touched.
  std::array<uint8_t, 8> r{};
  r.fill(0xee);
  store_le(r, 2, 0xaabbccdd, 3);
  EXPECT_EQ(r, (std::array<uint8_t, 8>{0xee, 0xee, 0xdd, 0xcc, 0xbb, 0xee, 0xee, 0xee}));
  EXPECT_EQ(load_le(r, 2, 3), 0xbbccddu);
  EXPECT_EQ(load_le(r, 2, 1), 0xddu);
  EXPECT_EQ(load_le(r, 0, 8), 0xeeeeeebbccddeeeeu);
}

TEST(ByteWriter, WritesBigEndianAndGrows) {
  ByteWriter w(64);
  w.put_u8(0x01);
  w.put_be16(0x0203);
  w.put_be32(0x04050607);
  w.put_be64(0x08090a0b0c0d0e0fULL);
  w.put(int32_t{-2});
  std::vector<uint8_t> expected = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                   0xff, 0xff, 0xff, 0xfe};
  EXPECT_EQ(w.to_vector(), expected);
  for (int i = 0; i < 1000; i++) w.put_be32(static_cast<uint32_t>(i));
  EXPECT_EQ(w.size(), expected.size() + 4000);
  EXPECT_EQ(w.position(), w.size());
  std::vector<uint8_t> big(10000, 0xaa);
  w.put_bytes(big);
  EXPECT_EQ(w.size(), expected.size() + 4000 + 10000);
  EXPECT_EQ(w.bytes().back(), 0xaa);
}

TEST(ByteReader, ReadsAndRefusesToPassTheEnd) {
  const uint8_t data[] = {0x12, 0x34, 0x56, 0x78, 0x9a};
  ByteReader r(data);
  uint32_t v = 0;
  ASSERT_TRUE(r.get_be32(v));
  EXPECT_EQ(v, 0x12345678u);
  uint16_t w = 0;
  EXPECT_FALSE(r.get_be16(w));
  EXPECT_EQ(r.offset(), 4u);  // a failed read consumes nothing
  Status s = r.read(w);
  EXPECT_EQ(s.code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(s.message(), "input ends early at offset 4: needed 2 bytes, 1 left");
  uint8_t b = 0;
  ASSERT_TRUE(r.peek_u8(0, b));
  EXPECT_EQ(b, 0x9a);
  EXPECT_FALSE(r.peek_u8(1, b));
  EXPECT_TRUE(r.peek(0, 2).empty());
  EXPECT_FALSE(r.skip(2));
  EXPECT_TRUE(r.skip(1));
  EXPECT_TRUE(r.at_end());
}

// A source that hands out its input a few bytes at a time, from a buffer that moves.
class TrickleSource final : public ByteSource {
 public:
  TrickleSource(std::vector<uint8_t> all, size_t step) : all_(std::move(all)), step_(step) {}
  std::span<const uint8_t> grow_to(size_t total) override {
    ++calls;
    while (shown_.size() < total && shown_.size() < all_.size()) {
      size_t n = std::min(step_, all_.size() - shown_.size());
      std::vector<uint8_t> moved(shown_);  // a new buffer each time: old views die
      moved.insert(moved.end(), all_.begin() + static_cast<long>(shown_.size()),
                   all_.begin() + static_cast<long>(shown_.size() + n));
      shown_ = std::move(moved);
    }
    return shown_;
  }
  std::span<const uint8_t> start() { return {}; }
  int calls = 0;

 private:
  std::vector<uint8_t> all_;
  size_t step_;
  std::vector<uint8_t> shown_;
};

TEST(ByteReader, PullsMoreFromItsSourceOnlyWhenARecordNeedsIt) {
  TrickleSource source({0x00, 0x00, 0x00, 0x01, 0xaa, 0xbb, 0x05, 0x02, 0xcc, 0xdd, 0xee}, 3);
  ByteReader r(source.start(), &source);
  uint32_t v = 0;
  ASSERT_TRUE(r.get_be32(v));
  EXPECT_EQ(v, 1u);
  uint8_t b = 0;
  ASSERT_TRUE(r.peek_u8(1, b));
  EXPECT_EQ(b, 0xbb);
  EXPECT_TRUE(r.skip(2));
  auto view = r.peek(1, 2);
  ASSERT_EQ(view.size(), 2u);
  EXPECT_EQ(view[0], 0x02);
  EXPECT_TRUE(r.skip(2));
  std::array<uint8_t, 3> tail{};
  ASSERT_TRUE(r.get_bytes(tail));
  EXPECT_EQ(tail[2], 0xee);
  int calls = source.calls;
  EXPECT_FALSE(r.get_u8(b));  // the source has nothing more: an ordinary end of input
  EXPECT_GT(source.calls, calls);
  EXPECT_EQ(r.truncated(1).message(), "input ends early at offset 11: needed 1 byte, 0 left");
  EXPECT_TRUE(r.peek(SIZE_MAX, 2).empty());  // no overflow in the look-ahead arithmetic
  EXPECT_FALSE(r.peek_u8(SIZE_MAX, b));
}

TEST(ByteReader, SignedValuesRoundTrip) {
  ByteWriter w;
  w.put(int64_t{-5});
  w.put(int16_t{-300});
  ByteReader r(w.bytes());
  int64_t a = 0;
  int16_t b = 0;
  ASSERT_TRUE(r.get(a));
  ASSERT_TRUE(r.get(b));
  EXPECT_EQ(a, -5);
  EXPECT_EQ(b, -300);
}

TEST(FdWriter, BuffersAndFlushesToAFile) {
  char path[] = "/tmp/ferry-fdwriter-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  {
    FdWriter w(fd, 64);
    for (uint32_t i = 0; i < 100; i++) w.put_be32(i);  // crosses the buffer many times
    std::vector<uint8_t> big(1000, 0x5a);
    w.put_bytes(big);  // bypasses the buffer
    w.put_u8(0x77);
    EXPECT_EQ(w.position(), 400u + 1000u + 1u);
    ASSERT_TRUE(w.flush().ok());
  }
  std::vector<uint8_t> back(2000);
  ssize_t n = pread(fd, back.data(), back.size(), 0);
  ASSERT_EQ(n, 1401);
  ByteReader r(std::span(back.data(), static_cast<size_t>(n)));
  for (uint32_t i = 0; i < 100; i++) {
    uint32_t v = 0;
    ASSERT_TRUE(r.get_be32(v));
    ASSERT_EQ(v, i);
  }
  EXPECT_EQ(back[400], 0x5a);
  EXPECT_EQ(back[1399], 0x5a);
  EXPECT_EQ(back[1400], 0x77);
  close(fd);
}

TEST(FdWriter, WriteErrorIsStickyAndNamed) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);  // nobody reads: writes fail with EPIPE
  signal(SIGPIPE, SIG_IGN);
  FdWriter w(fds[1], 64);
  for (int i = 0; i < 100; i++) w.put_be64(1);
  Status s = w.flush();
  EXPECT_EQ(s.code(), ErrorCode::kIo);
  EXPECT_NE(s.message().find("Broken pipe"), std::string_view::npos) << s.to_string();
  close(fds[1]);
}

}  // namespace
}  // namespace ferry
