// The io_uring engine: one ring per backend. Steps become SQEs as requests are enqueued
// and reach the kernel in one io_uring_submit per loop iteration (flush); the kernel
// signals completions through an eventfd registered with the ring, which the loop
// watches. The number of operations in the kernel is capped at the completion queue
// size so completions can never overflow; the rest wait in a queue (no allocation).
#include <liburing.h>

#include <linux/falloc.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "block/io_engine.h"

namespace ferry::block {
namespace {

class IoUringEngine final : public IoEngine {
 public:
  IoUringEngine(EventLoop& loop, FileContext& file, DoneCallback done)
      : loop_(loop), file_(file), done_(std::move(done)) {}

  ~IoUringEngine() override {
    if (notifier_) loop_.unwatch_fd(notifier_->fd());
    if (ring_ready_) io_uring_queue_exit(&ring_);
  }

  Status init(unsigned entries, int* setup_errno) {
    int err = io_uring_queue_init(entries, &ring_, 0);
    if (err < 0) {
      *setup_errno = -err;
      return Error(ErrorCode::kIo, "io_uring_queue_init failed: {}", std::strerror(-err));
    }
    ring_ready_ = true;
    capacity_ = ring_.cq.ring_entries;
    auto notifier = EventNotifier::create();
    if (!notifier.ok()) return notifier.take_status();
    notifier_ = std::move(notifier).value();
    err = io_uring_register_eventfd(&ring_, notifier_->fd());
    if (err < 0) {
      *setup_errno = -err;
      return Error(ErrorCode::kIo, "io_uring_register_eventfd failed: {}", std::strerror(-err));
    }
    return loop_.watch_notifier(*notifier_, [this] { reap(); });
  }

  std::string_view name() const override { return "io_uring"; }

  void enqueue(IoTask& task) override {
    ++active_;
    if (in_kernel_ >= capacity_ || !waiting_.empty()) {
      waiting_.push(&task);
      return;
    }
    issue(task);
  }

  void flush() override {
    if (unsubmitted_ == 0) return;
    int ret = io_uring_submit(&ring_);
    if (ret >= 0) {
      unsubmitted_ = 0;
    } else if (ret != -EAGAIN && ret != -EBUSY && ret != -EINTR) {
      // The SQEs stay queued; the next flush tries again.
      log(LogLevel::kError, "block: io_uring_submit failed: {}", std::strerror(-ret));
    }
  }

  void submit_and_reap() override {
    // Completions posted during our own submission are reaped right here, so the eventfd
    // (which would wake the loop for nothing) is off meanwhile; whatever lands while it
    // is off is picked up by the second reap, after it is on again.
    io_uring_cq_eventfd_toggle(&ring_, false);
    flush();
    reap();
    io_uring_cq_eventfd_toggle(&ring_, true);
    reap();
  }

  void reap() override {
    io_uring_cqe* cqe = nullptr;
    // One CQE at a time, marked seen before the callback: a handler that drains (and so
    // reaps re-entrantly) never sees the same completion twice.
    while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
      auto* task = static_cast<IoTask*>(io_uring_cqe_get_data(cqe));
      long res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      --in_kernel_;
      if (task->step_error != 0) {
        res = task->step_error;
        task->step_error = 0;
      }
      int result = 0;
      if (apply_step_result(*task, res, file_, &result) == StepOutcome::kAgain) {
        issue(*task);
      } else {
        --active_;
        done_(*task, result);
      }
    }
    while (!waiting_.empty() && in_kernel_ < capacity_) {
      if (!issue(*waiting_.pop())) break;
    }
    flush();
  }

  void wait(int64_t timeout_ns) override {
    flush();
    if (io_uring_cq_ready(&ring_) > 0 || in_kernel_ == 0) return;
    io_uring_cqe* cqe = nullptr;
    if (timeout_ns < 0) {
      io_uring_wait_cqe(&ring_, &cqe);
    } else {
      __kernel_timespec ts{};
      ts.tv_sec = timeout_ns / 1'000'000'000;
      ts.tv_nsec = timeout_ns % 1'000'000'000;
      io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    }
  }

  size_t active() const override { return active_; }

 private:
  // Turns the task's current step into an SQE (queued, not yet submitted). Returns
  // false when no SQE could be had (the task then waits for the next reap).
  bool issue(IoTask& task) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // the submission queue is full: push it to the kernel first
      flush();
      sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) {
        waiting_.push(&task);
        return false;
      }
    }
    int fd = file_.fd;
    auto pos = static_cast<off_t>(task.pos);
    switch (task.step) {
      // One buffer (the common case: a 4 KiB block) goes as a plain read/write, which
      // spares the kernel importing an iovec array.
      case IoStep::kReadv:
        if (vec_count_for_syscall(task) == 1)
          io_uring_prep_read(sqe, fd, task.vec[0].iov_base,
                             static_cast<unsigned>(task.vec[0].iov_len), task.pos);
        else
          io_uring_prep_readv(sqe, fd, task.vec, vec_count_for_syscall(task), task.pos);
        break;
      case IoStep::kWritev:
        if (vec_count_for_syscall(task) == 1)
          io_uring_prep_write(sqe, fd, task.vec[0].iov_base,
                              static_cast<unsigned>(task.vec[0].iov_len), task.pos);
        else
          io_uring_prep_writev(sqe, fd, task.vec, vec_count_for_syscall(task), task.pos);
        break;
      case IoStep::kWriteZeros:
        task.step_error = prepare_zero_chunk(task, file_);
        if (task.step_error != 0) {
          io_uring_prep_nop(sqe);
        } else {
          io_uring_prep_writev(sqe, fd, task.vec, 1, task.pos);
        }
        break;
      case IoStep::kFlush: io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC); break;
      case IoStep::kPunchHole:
        io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos,
                                static_cast<off_t>(task.remaining));
        break;
      case IoStep::kZeroRange:
        io_uring_prep_fallocate(sqe, fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, pos,
                                static_cast<off_t>(task.remaining));
        break;
    }
    io_uring_sqe_set_data(sqe, &task);
    ++in_kernel_;
    ++unsubmitted_;
    return true;
  }

  EventLoop& loop_;
  FileContext& file_;
  DoneCallback done_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::unique_ptr<EventNotifier> notifier_;
  size_t capacity_ = 0;     // completion queue entries
  size_t in_kernel_ = 0;    // SQEs prepared or submitted, completion not yet reaped
  size_t unsubmitted_ = 0;  // SQEs prepared since the last io_uring_submit
  size_t active_ = 0;
  TaskQueue waiting_;  // over capacity
};

}  // namespace

Result<std::unique_ptr<IoEngine>> create_io_uring_engine(EventLoop& loop, FileContext& file,
                                                         DoneCallback done, unsigned entries,
                                                         int* setup_errno) {
  *setup_errno = 0;
  auto engine = std::make_unique<IoUringEngine>(loop, file, std::move(done));
  FERRY_RETURN_IF_ERROR(engine->init(entries, setup_errno));
  return std::unique_ptr<IoEngine>(std::move(engine));
}

}  // namespace ferry::block
