// BufferChannel: an in-memory Channel. Reads come from a byte span given at construction
// (optionally a few bytes per read, to exercise every boundary); writes are collected.
// For tests and fuzzers that drive the stream code without descriptors.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "migration/channel.h"

namespace ferry::migration {

class BufferChannel final : public Channel {
 public:
  explicit BufferChannel(std::span<const uint8_t> input = {}, size_t max_read = SIZE_MAX)
      : input_(input), max_read_(max_read == 0 ? 1 : max_read) {}

  Result<size_t> read_some(std::span<uint8_t> out) override;
  Result<size_t> readv_some(std::span<const iovec> iov) override;
  Status write_all(std::span<const uint8_t> data) override;
  Status writev_all(std::span<iovec> iov) override;
  Status shutdown_write() override { return {}; }
  Status close() override { return {}; }
  const std::string& name() const override { return name_; }

  // Once the input is used up, reads fail with `error` instead of returning 0 (a
  // connection reset rather than an orderly end).
  void fail_reads_at_end(Status error) { at_end_ = std::move(error); }

  const std::vector<uint8_t>& written() const { return written_; }
  size_t writes() const { return writes_; }  // calls that reached this channel

 private:
  std::span<const uint8_t> input_;
  size_t max_read_;
  size_t read_pos_ = 0;
  Status at_end_;
  std::vector<uint8_t> written_;
  size_t writes_ = 0;
  std::string name_ = "buffer";
};

}  // namespace ferry::migration
