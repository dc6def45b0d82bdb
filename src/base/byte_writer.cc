#include "base/byte_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ferry {

void ByteSink::put_bytes(std::span<const uint8_t> bytes) {
  if (cap_ - len_ < bytes.size()) {
    put_large(bytes);
    return;
  }
  if (!bytes.empty()) std::memcpy(buf_ + len_, bytes.data(), bytes.size());
  len_ += bytes.size();
}

void ByteSink::put_zeros(size_t n) {
  static constexpr uint8_t kZeros[1024] = {};
  while (n > 0) {
    size_t chunk = std::min(n, sizeof kZeros);
    put_bytes(std::span(kZeros, chunk));
    n -= chunk;
  }
}

ByteWriter::ByteWriter(size_t initial_capacity)
    : storage_(std::make_unique_for_overwrite<uint8_t[]>(std::max<size_t>(initial_capacity, 64))) {
  buf_ = storage_.get();
  cap_ = std::max<size_t>(initial_capacity, 64);
}

void ByteWriter::make_room(size_t n) {
  size_t want = std::max(cap_ * 2, len_ + n);
  auto bigger = std::make_unique_for_overwrite<uint8_t[]>(want);
  if (len_) std::memcpy(bigger.get(), buf_, len_);
  storage_ = std::move(bigger);
  buf_ = storage_.get();
  cap_ = want;
}

void ByteWriter::put_large(std::span<const uint8_t> bytes) {
  make_room(bytes.size());
  std::memcpy(buf_ + len_, bytes.data(), bytes.size());
  len_ += bytes.size();
}

FdWriter::FdWriter(int fd, size_t buffer_size)
    : fd_(fd), storage_(std::make_unique_for_overwrite<uint8_t[]>(std::max<size_t>(buffer_size, 64))) {
  buf_ = storage_.get();
  cap_ = std::max<size_t>(buffer_size, 64);
}

FdWriter::~FdWriter() { (void)flush(); }

void FdWriter::write_all(const uint8_t* data, size_t n) {
  while (n > 0 && status_.ok()) {
    ssize_t w = ::write(fd_, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      status_ = Error(ErrorCode::kIo, "write to fd {} failed after {} bytes: {}", fd_,
                      flushed_, std::strerror(errno));
      return;
    }
    data += w;
    n -= static_cast<size_t>(w);
    flushed_ += static_cast<uint64_t>(w);
  }
}

void FdWriter::make_room(size_t /*n*/) {
  // cap_ >= 64 >= n, so an empty buffer always has room. After an error the buffered
  // bytes are discarded; the caller learns of the failure from status().
  write_all(buf_, len_);
  len_ = 0;
}

void FdWriter::put_large(std::span<const uint8_t> bytes) {
  write_all(buf_, len_);
  len_ = 0;
  if (bytes.size() >= cap_) {
    write_all(bytes.data(), bytes.size());  // too big to be worth a copy
  } else {
    std::memcpy(buf_, bytes.data(), bytes.size());
    len_ = bytes.size();
  }
}

Status FdWriter::flush() {
  write_all(buf_, len_);
  len_ = 0;
  return status_;
}

}  // namespace ferry
