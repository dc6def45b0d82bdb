// StreamWriter: buffered output of a migration stream onto a Channel. A ByteSink, so
// vmstate descriptions save straight into it. Small records accumulate in a 1 MiB buffer
// that leaves in one write. RAM pages are not copied: put_by_reference() queues the page
// itself, so one writev sends the buffered headers and the pages straight from guest RAM
// (about 1 MiB of pages per syscall). Data larger than the free space goes out with the
// queued bytes in one writev as well.
// Errors are sticky (ByteSink::status()); flush() reports them.
#pragma once

#include <sys/uio.h>

#include <memory>
#include <span>
#include <vector>

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

  // Appends `bytes` without copying them: they must stay mapped until the next flush
  // (guest RAM does). Their content is read when they are sent, so a page written
  // meanwhile travels as it is then; the dirty bitmap sends it again.
  void put_by_reference(std::span<const uint8_t> bytes);

  Status flush();
  Channel& channel() { return channel_; }

 private:
  void make_room(size_t n) override;
  void put_large(std::span<const uint8_t> bytes) override;
  // Sends the queued iovecs, the buffered bytes after them and `extra`, in that order.
  void send_queued(std::span<const uint8_t> extra = {});
  // Closes the buffer segment written since the last queued iovec.
  void close_segment();

  Channel& channel_;
  std::unique_ptr<uint8_t[]> storage_;
  std::vector<iovec> queued_;  // buffer segments and referenced bytes, in stream order
  size_t segment_start_ = 0;   // start in buf_ of the segment not in queued_ yet
  size_t referenced_ = 0;      // referenced bytes in queued_
};

}  // namespace ferry::migration
