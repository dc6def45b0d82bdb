#include "migration/stream_writer.h"

#include <algorithm>
#include <cstring>

namespace ferry::migration {
namespace {

// Limits on what waits for one writev: references up to the buffer size, and few enough
// iovecs for one syscall (IOV_MAX is 1024).
constexpr size_t kMaxQueuedIovecs = 1000;

// Referenced guest pages are read by the kernel while a guest may be writing them. That
// race is intended (the dirty bitmap sends the page again) and is no C++ data race, but
// ThreadSanitizer checks the buffers of sendmsg/writev as reads of this thread: tell it
// these reads are meant, for the duration of the call.
#if defined(__SANITIZE_THREAD__)
#define FERRY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FERRY_TSAN 1
#endif
#endif

#ifdef FERRY_TSAN
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
struct IgnoreRacyReads {
  explicit IgnoreRacyReads(bool on) : on_(on) {
    if (on_) AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  }
  ~IgnoreRacyReads() {
    if (on_) AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  }
  bool on_;
};
#else
struct IgnoreRacyReads {
  explicit IgnoreRacyReads(bool) {}
};
#endif

}  // namespace

StreamWriter::StreamWriter(Channel& channel, size_t buffer_size) : channel_(channel) {
  // Room for the largest record reserved at once: a page with its header and name.
  cap_ = std::max<size_t>(buffer_size, 64 * 1024);
  storage_ = std::make_unique_for_overwrite<uint8_t[]>(cap_);
  buf_ = storage_.get();
  queued_.reserve(kMaxQueuedIovecs + 2);
}

StreamWriter::~StreamWriter() { (void)flush(); }

void StreamWriter::close_segment() {
  if (len_ > segment_start_) queued_.push_back({buf_ + segment_start_, len_ - segment_start_});
  segment_start_ = len_;
}

void StreamWriter::send_queued(std::span<const uint8_t> extra) {
  close_segment();
  // Referenced bytes were counted in flushed_ when queued; buffered ones count now.
  uint64_t total = 0;
  for (const iovec& v : queued_) total += v.iov_len;
  uint64_t first = flushed_ + len_ - total;  // stream offset of the first queued byte
  if (!extra.empty()) queued_.push_back({const_cast<uint8_t*>(extra.data()), extra.size()});
  // After an error, bytes are dropped but still counted (position() stays consistent);
  // status() tells.
  if (status_.ok() && !queued_.empty()) {
    IgnoreRacyReads racy_guest_pages(referenced_ > 0);
    Status st = channel_.writev_all(queued_);
    if (!st.ok())
      status_ = std::move(
          st.prepend_message(fmt::format("migration stream write at offset {}", first)));
  }
  flushed_ += len_ + extra.size();
  len_ = 0;
  segment_start_ = 0;
  referenced_ = 0;
  queued_.clear();
}

void StreamWriter::put_by_reference(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  close_segment();
  queued_.push_back({const_cast<uint8_t*>(bytes.data()), bytes.size()});
  flushed_ += bytes.size();
  referenced_ += bytes.size();
  if (referenced_ >= cap_ || queued_.size() >= kMaxQueuedIovecs) send_queued();
}

void StreamWriter::make_room(size_t /*n*/) { send_queued(); }

void StreamWriter::put_large(std::span<const uint8_t> bytes) { send_queued(bytes); }

uint8_t* StreamWriter::reserve(size_t n) {
  if (cap_ - len_ < n) make_room(n);
  return buf_ + len_;
}

Status StreamWriter::flush() {
  if (len_ > 0 || !queued_.empty()) send_queued();
  return status_;
}

}  // namespace ferry::migration
