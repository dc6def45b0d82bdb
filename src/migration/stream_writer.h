// StreamWriter: buffered output of a migration stream onto a Channel. A ByteSink, so
// vmstate descriptions save straight into it. Small records accumulate in a 1 MiB buffer
// that leaves in one write; RAM pages are copied into that buffer as they are tested
// for zero (reserve/commit), so a full pass costs one syscall per 256 pages. Data larger
// than the free space goes out with the buffered bytes in one writev.
// Errors are sticky (ByteSink::status()); flush() reports them.
#pragma once

#include <memory>
#include <span>

#include "base/byte_writer.h"
#include "migration/channel.h"

namespace ferry::migration {

class StreamWriter final : public ByteSink {
 public:
  static constexpr size_t kDefaultBuffer = 1 << 20;
  explicit StreamWriter(Channel& channel, size_t buffer_size = kDefaultBuffer);
  ~StreamWriter() override;

  // A place for `n` (<= buffer size) bytes to be written directly; commit() keeps `used`
  // of them (0 abandons the reservation).
  uint8_t* reserve(size_t n);
  void commit(size_t used) { len_ += used; }

  Status flush();
  Channel& channel() { return channel_; }

 private:
  void make_room(size_t n) override;
  void put_large(std::span<const uint8_t> bytes) override;
  void send(std::span<iovec> iov);

  Channel& channel_;
  std::unique_ptr<uint8_t[]> storage_;
};

}  // namespace ferry::migration
