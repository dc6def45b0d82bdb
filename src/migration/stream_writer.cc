#include "migration/stream_writer.h"

#include <algorithm>
#include <cstring>

namespace ferry::migration {

StreamWriter::StreamWriter(Channel& channel, size_t buffer_size) : channel_(channel) {
  // Room for the largest record reserved at once: a page with its header and name.
  cap_ = std::max<size_t>(buffer_size, 64 * 1024);
  storage_ = std::make_unique_for_overwrite<uint8_t[]>(cap_);
  buf_ = storage_.get();
}

StreamWriter::~StreamWriter() { (void)flush(); }

void StreamWriter::send(std::span<iovec> iov) {
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  // After an error, bytes are dropped but still counted (position() stays consistent);
  // status() tells.
  if (status_.ok()) {
    Status st = channel_.writev_all(iov);
    if (!st.ok())
      status_ = std::move(st.prepend_message(
          fmt::format("migration stream write at offset {}", flushed_)));
  }
  flushed_ += total;
}

void StreamWriter::make_room(size_t /*n*/) {
  iovec iov{buf_, len_};
  send(std::span(&iov, 1));
  len_ = 0;
}

void StreamWriter::put_large(std::span<const uint8_t> bytes) {
  iovec iov[2] = {{buf_, len_}, {const_cast<uint8_t*>(bytes.data()), bytes.size()}};
  send(iov);
  len_ = 0;
}

uint8_t* StreamWriter::reserve(size_t n) {
  if (cap_ - len_ < n) make_room(n);
  return buf_ + len_;
}

Status StreamWriter::flush() {
  if (len_ > 0) make_room(0);
  return status_;
}

}  // namespace ferry::migration
