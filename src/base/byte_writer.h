// Writes big-endian values into a buffer. ByteSink holds the buffer and the inline fast
// path; its subclasses decide what happens when the buffer is full: ByteWriter grows it
// in memory, FdWriter flushes it to a file descriptor. Errors while flushing are sticky
// and reported by status(), like a stream's error state, so writers of many small fields
// need not check each one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/byte_order.h"
#include "base/status.h"

namespace ferry {

class ByteSink {
 public:
  ByteSink(const ByteSink&) = delete;
  ByteSink& operator=(const ByteSink&) = delete;
  virtual ~ByteSink() = default;

  template <typename T>
    requires std::is_integral_v<T>
  void put(T value) {
    if (cap_ - len_ < sizeof(T)) [[unlikely]] make_room(sizeof(T));
    store_be<T>(buf_ + len_, value);
    len_ += sizeof(T);
  }
  void put_u8(uint8_t v) { put(v); }
  void put_be16(uint16_t v) { put(v); }
  void put_be32(uint32_t v) { put(v); }
  void put_be64(uint64_t v) { put(v); }
  void put_bytes(std::span<const uint8_t> bytes);
  void put_bytes(std::string_view s) {
    put_bytes(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }
  void put_zeros(size_t n);

  // Total bytes accepted so far, including any already flushed.
  uint64_t position() const { return flushed_ + len_; }
  // The first error met while flushing, or OK.
  const Status& status() const { return status_; }

 protected:
  ByteSink() = default;
  // Must leave at least `n` (<= 64) bytes free at buf_ + len_ (after an error has been
  // recorded, by discarding what is buffered).
  virtual void make_room(size_t n) = 0;
  // Accepts bytes that do not fit in the free space of the buffer.
  virtual void put_large(std::span<const uint8_t> bytes) = 0;

  uint8_t* buf_ = nullptr;
  size_t len_ = 0;
  size_t cap_ = 0;
  uint64_t flushed_ = 0;
  Status status_;
};

// Growable in-memory buffer.
class ByteWriter final : public ByteSink {
 public:
  explicit ByteWriter(size_t initial_capacity = 4096);

  std::span<const uint8_t> bytes() const { return {buf_, len_}; }
  size_t size() const { return len_; }
  void clear() { len_ = 0; }
  std::vector<uint8_t> to_vector() const { return {buf_, buf_ + len_}; }

 private:
  void make_room(size_t n) override;
  void put_large(std::span<const uint8_t> bytes) override;
  std::unique_ptr<uint8_t[]> storage_;
};

// Buffered writer onto a file descriptor it does not own. Large puts bypass the buffer.
class FdWriter final : public ByteSink {
 public:
  explicit FdWriter(int fd, size_t buffer_size = 256 * 1024);
  ~FdWriter() override;

  // Writes out everything buffered; returns status().
  Status flush();

 private:
  void make_room(size_t n) override;
  void put_large(std::span<const uint8_t> bytes) override;
  void write_all(const uint8_t* data, size_t n);

  int fd_;
  std::unique_ptr<uint8_t[]> storage_;
};

}  // namespace ferry
