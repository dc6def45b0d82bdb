#include "block/block_backend.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "base/log.h"
#include "block/io_engine.h"
#include "block/io_task.h"

namespace ferry::block {
namespace {

constexpr size_t kZeroBufferSize = 256 * 1024;
constexpr uint32_t kBounceAlignment = 4096;  // covers every O_DIRECT memory alignment

bool writes(BlockOp op) {
  return op == BlockOp::kWrite || op == BlockOp::kDiscard || op == BlockOp::kWriteZeroes;
}

bool is_aligned(const IoTask& task, uint32_t alignment) {
  if (task.offset % alignment != 0 || task.length % alignment != 0) return false;
  return std::all_of(task.iov.begin(), task.iov.end(), [alignment](const iovec& v) {
    return reinterpret_cast<uintptr_t>(v.iov_base) % alignment == 0 && v.iov_len % alignment == 0;
  });
}

// Copies between the submitter's buffers and a flat buffer.
void copy_to_iov(const std::vector<iovec>& iov, const uint8_t* from) {
  for (const iovec& v : iov) {
    std::memcpy(v.iov_base, from, v.iov_len);
    from += v.iov_len;
  }
}
void copy_from_iov(const std::vector<iovec>& iov, uint8_t* to) {
  for (const iovec& v : iov) {
    std::memcpy(to, v.iov_base, v.iov_len);
    to += v.iov_len;
  }
}

void sleep_ns(int64_t ns) {
  if (ns <= 0) return;
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// The smallest O_DIRECT transfer the file accepts: a read of 512, else 4096 bytes from a
// buffer aligned to exactly that much.
Result<uint32_t> probe_direct_alignment(int fd, const std::string& file) {
  AlignedBytes probe = allocate_aligned(8192, 16384);
  if (!probe) return Error(ErrorCode::kIo, "cannot allocate an O_DIRECT probe buffer");
  for (uint32_t alignment : {512u, 4096u}) {
    uint8_t* buf = probe.get() + alignment;  // aligned to `alignment`, not to more
    if (pread(fd, buf, alignment, 0) >= 0) return alignment;
    if (errno != EINVAL) {
      return Error(ErrorCode::kIo, "cannot read '{}' with O_DIRECT: {}", file,
                   std::strerror(errno));
    }
  }
  return Error(ErrorCode::kIo,
               "'{}': no O_DIRECT alignment up to 4096 works (use cache=writeback)", file);
}

}  // namespace

BlockBackend::BlockBackend(EventLoop& loop, DriveConfig config)
    : loop_(loop), config_(std::move(config)) {}

Result<std::unique_ptr<BlockBackend>> BlockBackend::open(EventLoop& loop,
                                                         const DriveConfig& config) {
  return open(loop, config, BackendTuning{}, Activation::kActive);
}

Result<std::unique_ptr<BlockBackend>> BlockBackend::open(EventLoop& loop,
                                                         const DriveConfig& config,
                                                         const BackendTuning& tuning,
                                                         Activation activation) {
  std::unique_ptr<BlockBackend> backend(new BlockBackend(loop, config));
  Status status = backend->init(tuning, activation);
  if (!status.ok()) return status;
  return backend;
}

Status BlockBackend::init(const BackendTuning& tuning, Activation activation) {
  const std::string& id = config_.id;
  if (config_.file.empty()) {
    return Error(ErrorCode::kInvalidArgument, "-drive id={}: no file given", id);
  }
  if (config_.format != "raw") {
    return Error(ErrorCode::kInvalidArgument, "-drive id={}: format '{}' is not supported "
                 "(only raw)", id, config_.format);
  }
  bool direct = config_.cache != CacheMode::kWriteback;
  int flags = (config_.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (direct) flags |= O_DIRECT;
  if (config_.cache == CacheMode::kDirectsync) flags |= O_DSYNC;
  fd_ = ::open(config_.file.c_str(), flags);
  if (fd_ < 0) {
    int err = errno;
    if (direct && err == EINVAL) {
      return Error(ErrorCode::kIo,
                   "-drive id={}: file '{}' does not support O_DIRECT (cache={}): {}; use "
                   "cache=writeback or put the image on another file system",
                   id, config_.file, cache_mode_name(config_.cache), std::strerror(err));
    }
    return Error(ErrorCode::kIo, "-drive id={}: cannot open '{}'{}: {}", id, config_.file,
                 config_.read_only ? " read-only" : "", std::strerror(err));
  }

  struct stat st {};
  if (fstat(fd_, &st) != 0) {
    return Error(ErrorCode::kIo, "-drive id={}: cannot stat '{}': {}", id, config_.file,
                 std::strerror(errno));
  }
  if (S_ISREG(st.st_mode)) {
    size_ = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd_, BLKGETSIZE64, &size_) != 0) {
      return Error(ErrorCode::kIo, "-drive id={}: cannot get the size of '{}': {}", id,
                   config_.file, std::strerror(errno));
    }
  } else {
    return Error(ErrorCode::kInvalidArgument,
                 "-drive id={}: '{}' is neither a regular file nor a block device", id,
                 config_.file);
  }

  lock_ = std::make_unique<FileLock>(fd_, config_.file);
  if (activation == Activation::kActive) {
    Status locked = activate();
    if (!locked.ok()) return locked.prepend_message(fmt::format("-drive id={}", id));
  }

  if (direct) {
    auto alignment = probe_direct_alignment(fd_, config_.file);
    if (!alignment.ok()) {
      Status status = alignment.take_status();
      status.prepend_message(fmt::format("-drive id={}", id));
      return status;
    }
    alignment_ = *alignment;
    if (size_ % alignment_ != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "-drive id={}: size of '{}' ({} bytes) is not a multiple of its O_DIRECT "
                   "alignment {} (cache={})",
                   id, config_.file, size_, alignment_, cache_mode_name(config_.cache));
    }
  }

  file_ = std::make_unique<FileContext>();
  file_->fd = fd_;
  file_->alignment = alignment_;
  file_->zero_buffer = allocate_aligned(kBounceAlignment, kZeroBufferSize);
  if (!file_->zero_buffer) return Error(ErrorCode::kIo, "cannot allocate the zero buffer");
  std::memset(file_->zero_buffer.get(), 0, kZeroBufferSize);
  file_->zero_buffer_size = kZeroBufferSize;

  auto kick = EventNotifier::create();
  if (!kick.ok()) return kick.take_status();
  kick_ = std::move(kick).value();
  FERRY_RETURN_IF_ERROR(loop_.watch_notifier(*kick_, [this] { on_kick(); }));

  DoneCallback done = [this](IoTask& task, int result) { on_engine_done(task, result); };
  if (config_.aio == AioMode::kIoUring) {
    int setup_errno = tuning.simulate_io_uring_error;
    Status why = setup_errno != 0
                     ? Error(ErrorCode::kIo, "io_uring setup failed: {} (simulated)",
                             std::strerror(setup_errno))
                     : Status::Ok();
    if (setup_errno == 0) {
      auto engine = create_io_uring_engine(loop_, *file_, done, tuning.ring_entries, &setup_errno);
      if (engine.ok()) {
        engine_ = std::move(engine).value();
      } else {
        why = engine.take_status();
      }
    }
    if (!engine_) {
      bool unavailable = setup_errno == ENOSYS || setup_errno == EPERM || setup_errno == EACCES;
      if (config_.aio_given || !unavailable) {
        why.prepend_message(fmt::format("-drive id={}: aio=io_uring is not available", id));
        return why;
      }
      log(LogLevel::kWarn, "-drive id={}: io_uring is not available ({}); using aio=threads",
          id, std::strerror(setup_errno));
    }
  }
  if (!engine_) {
    auto engine = create_thread_pool_engine(loop_, *file_, done, tuning.worker_threads);
    if (!engine.ok()) return engine.take_status();
    engine_ = std::move(engine).value();
  }
  return Status::Ok();
}

BlockBackend::~BlockBackend() {
  self_.reset();  // a kick still scheduled finds nothing
  destroying_ = true;
  if (engine_) {
    Status status = wait_all(/*destroying=*/true);
    if (!status.ok()) {
      log(LogLevel::kError, "-drive id={}: {}", config_.id, status.to_string());
    }
  }
  engine_.reset();  // joins workers / closes the ring before the fd goes
  if (kick_) loop_.unwatch_fd(kick_->fd());
  if (fd_ >= 0) ::close(fd_);
}

std::string_view BlockBackend::engine_name() const {
  return engine_ ? engine_->name() : std::string_view("none");
}

Status BlockBackend::activate() {
  if (active_) return {};
  FERRY_RETURN_IF_ERROR(
      lock_->acquire(FileLock::device_held(config_.read_only), FileLock::kDeviceShared));
  active_ = true;
  return {};
}

Status BlockBackend::inactivate() {
  if (!active_) return {};
  // Nothing of ours may reach the image once another process can take the lock.
  auto drained = drain();
  if (!drained.ok()) return drained.take_status();
  lock_->release();
  active_ = false;
  return {};
}

void BlockBackend::set_completion_handler(CompletionHandler handler) {
  handler_ = std::move(handler);
}

void BlockBackend::report_error(BlockOp op, ErrorAction action, int error) {
  // The status is set before anyone hears of the stop, so that query-block never shows
  // "ok" after a BLOCK_IO_ERROR with action stop (QEMU's order).
  if (action == ErrorAction::kStop && io_status_ == IoStatus::kOk)
    io_status_ = error == ENOSPC ? IoStatus::kNoSpace : IoStatus::kFailed;
  if (io_error_listener_)
    io_error_listener_(*this, IoErrorReport{.op = op, .is_read = op == BlockOp::kRead,
                                            .action = action, .error = error});
}

IoTask& BlockBackend::acquire_task() {
  if (free_tasks_ == nullptr) {
    tasks_.push_back(std::make_unique<IoTask>());
    return *tasks_.back();
  }
  IoTask* task = free_tasks_;
  free_tasks_ = task->next;
  task->next = nullptr;
  return *task;
}

void BlockBackend::release_task(IoTask& task) {
  task.iov.clear();
  task.bounce.reset();
  task.read_modify_write = false;
  task.needs_rmw = false;
  task.tracked = false;
  task.injected_error = 0;
  task.held_delay_ns = 0;
  task.deadline_ns = 0;
  task.timer = 0;
  task.step_error = 0;
  task.engine_result = 0;
  task.next = free_tasks_;
  free_tasks_ = &task;
}

void BlockBackend::submit(BlockRequest request) {
  IoTask& task = acquire_task();
  task.op = request.op;
  task.offset = request.offset;
  task.length = request.length;
  task.iov.assign(request.iov.begin(), request.iov.end());  // the pooled task's capacity
  task.opaque = request.opaque;
  ++in_flight_;

  int error = 0;
  if (static_cast<uint8_t>(task.op) > static_cast<uint8_t>(BlockOp::kWriteZeroes)) {
    error = -EINVAL;
  } else if (config_.read_only && writes(task.op)) {
    error = -EROFS;
  } else if (!active_ && writes(task.op)) {
    error = -EPERM;
  } else if (task.op == BlockOp::kRead || task.op == BlockOp::kWrite) {
    uint64_t total = 0;
    for (const iovec& v : task.iov) {
      if (v.iov_len > UINT64_MAX - total) {
        error = -EINVAL;
        break;
      }
      total += v.iov_len;
    }
    if (total != task.length) error = -EINVAL;
  }
  if (error == 0 && task.op != BlockOp::kFlush &&
      (task.offset > size_ || task.length > size_ - task.offset)) {
    error = -EIO;
  }
  if (error != 0) return complete_later(task, error);
  if (task.length == 0 && task.op != BlockOp::kFlush) return complete_later(task, 0);

  FaultDecision fault = faults_.check(task.op, task.offset, task.length);
  if (fault.any()) {
    task.injected_error = fault.error;
    if (fault.hold) {
      task.held_delay_ns = fault.delay_ns;
      held_.push_back(&task);
      return;
    }
    if (fault.delay_ns > 0) {
      task.deadline_ns = clock_.now_ns() + fault.delay_ns;
      delay_unarmed_.push_back(&task);
      request_kick();
      return;
    }
    return complete_later(task, -fault.error);
  }
  start(task);
  request_kick();
}

void BlockBackend::start(IoTask& task) {
  if (task.injected_error != 0) return complete_later(task, -task.injected_error);
  if (alignment_ > 1 && writes(task.op)) {
    // A write that covers only part of an aligned block rewrites the whole block, so it
    // must not run alongside another write to that block (the other one would be lost).
    uint64_t end = task.offset + task.length;
    task.needs_rmw = task.op == BlockOp::kWrite &&
                     (task.offset % alignment_ != 0 || end % alignment_ != 0);
    task.span_begin = task.needs_rmw ? task.offset / alignment_ * alignment_ : task.offset;
    task.span_end = task.needs_rmw ? (end + alignment_ - 1) / alignment_ * alignment_ : end;
    if (conflicts(task, serial_waiting_.size())) {
      serial_waiting_.push_back(&task);
      return;
    }
    track_write(task);
  }
  launch(task);
}

bool BlockBackend::conflicts(const IoTask& task, size_t waiting_before) const {
  auto clash = [&task](const IoTask* other) {
    return (task.needs_rmw || other->needs_rmw) && task.span_begin < other->span_end &&
           other->span_begin < task.span_end;
  };
  if (rmw_in_flight_ > 0 || task.needs_rmw) {
    if (std::any_of(writes_in_flight_.begin(), writes_in_flight_.end(), clash)) return true;
  }
  return std::any_of(serial_waiting_.begin(), serial_waiting_.begin() + waiting_before, clash);
}

void BlockBackend::track_write(IoTask& task) {
  task.track_index = writes_in_flight_.size();
  task.tracked = true;
  writes_in_flight_.push_back(&task);
  if (task.needs_rmw) ++rmw_in_flight_;
}

void BlockBackend::untrack_write(IoTask& task) {
  IoTask* last = writes_in_flight_.back();
  writes_in_flight_[task.track_index] = last;
  last->track_index = task.track_index;
  writes_in_flight_.pop_back();
  task.tracked = false;
  if (task.needs_rmw) --rmw_in_flight_;
  // Start the waiting writes that no longer clash, oldest first.
  for (size_t i = 0; i < serial_waiting_.size();) {
    IoTask* waiting = serial_waiting_[i];
    if (conflicts(*waiting, i)) {
      ++i;
      continue;
    }
    serial_waiting_.erase(serial_waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    track_write(*waiting);
    launch(*waiting);
  }
}

void BlockBackend::launch(IoTask& task) {
  task.pos = task.offset;
  task.remaining = task.length;
  task.vec = task.iov.data();
  task.vec_count = static_cast<int>(task.iov.size());
  BlockOp first = task.op;
  bool transfers = task.op == BlockOp::kRead || task.op == BlockOp::kWrite;
  if (transfers && alignment_ > 1 && !is_aligned(task, alignment_)) {
    // Bounce through an aligned buffer covering the aligned blocks around the request.
    uint64_t begin = task.offset / alignment_ * alignment_;
    uint64_t end = (task.offset + task.length + alignment_ - 1) / alignment_ * alignment_;
    task.bounce = allocate_aligned(kBounceAlignment, end - begin);
    if (!task.bounce) return complete_later(task, -ENOMEM);
    task.bounce_start = begin;
    task.bounce_length = end - begin;
    task.bounce_iov = {task.bounce.get(), end - begin};
    task.pos = begin;
    task.remaining = end - begin;
    task.vec = &task.bounce_iov;
    task.vec_count = 1;
    if (task.op == BlockOp::kWrite) {
      if (begin == task.offset && end == task.offset + task.length) {
        copy_from_iov(task.iov, task.bounce.get());
      } else {
        task.read_modify_write = true;  // read the edge blocks' current contents first
        first = BlockOp::kRead;
      }
    }
  }
  begin_step(task, first, *file_);
  engine_->enqueue(task);
}

void BlockBackend::on_engine_done(IoTask& task, int result) {
  if (result == 0 && task.read_modify_write) {
    task.read_modify_write = false;
    copy_from_iov(task.iov, task.bounce.get() + (task.offset - task.bounce_start));
    task.bounce_iov = {task.bounce.get(), task.bounce_length};
    task.pos = task.bounce_start;
    task.remaining = task.bounce_length;
    task.vec = &task.bounce_iov;
    task.vec_count = 1;
    begin_step(task, BlockOp::kWrite, *file_);
    engine_->enqueue(task);
    return;
  }
  if (result == 0 && task.op == BlockOp::kRead && task.bounce) {
    copy_to_iov(task.iov, task.bounce.get() + (task.offset - task.bounce_start));
  }
  finish(task, result);
}

void BlockBackend::finish(IoTask& task, int result) {
  if (task.tracked) untrack_write(task);
  uint64_t opaque = task.opaque;
  release_task(task);
  --in_flight_;
  if (!destroying_ && handler_) handler_(opaque, result);
}

void BlockBackend::complete_later(IoTask& task, int result) {
  task.engine_result = result;
  task.next = nullptr;
  if (ready_tail_) {
    ready_tail_->next = &task;
  } else {
    ready_head_ = &task;
  }
  ready_tail_ = &task;
  request_kick();
}

void BlockBackend::deliver_ready() {
  // One at a time: a handler may submit (and so queue) more, or drain.
  while (IoTask* task = ready_head_) {
    ready_head_ = task->next;
    if (!ready_head_) ready_tail_ = nullptr;
    task->next = nullptr;
    finish(*task, task->engine_result);
  }
}

void BlockBackend::request_kick() {
  if (kick_pending_) return;
  kick_pending_ = true;
  // On the loop thread a bottom half costs no system call; another thread (a vCPU holding
  // the machine lock) wakes the loop through the eventfd.
  if (loop_.in_loop_thread()) {
    loop_.schedule([alive = std::weak_ptr<BlockBackend*>(self_)] {
      if (auto self = alive.lock()) (*self)->on_kick();
    });
  } else {
    kick_->notify();
  }
}

void BlockBackend::on_kick() {
  kick_pending_ = false;
  arm_delays();
  deliver_ready();
  // Requests the kernel finished during the submission (page-cache hits) complete now,
  // not one epoll round trip later.
  engine_->submit_and_reap();
}

void BlockBackend::arm_delays() {
  for (IoTask* task : delay_unarmed_) {
    task->timer = loop_.add_timer(clock_, task->deadline_ns,
                                  [this, task] { on_delay_expired(*task); });
    delayed_.push_back(task);
  }
  delay_unarmed_.clear();
}

void BlockBackend::on_delay_expired(IoTask& task) {
  task.timer = 0;
  delayed_.erase(std::find(delayed_.begin(), delayed_.end(), &task));
  start(task);
  engine_->flush();
}

size_t BlockBackend::release_held() {
  std::vector<IoTask*> released;
  released.swap(held_);
  for (IoTask* task : released) unhold(*task);
  if (!released.empty()) request_kick();  // arms the delays, hands the rest to the engine
  return released.size();
}

void BlockBackend::unhold(IoTask& task) {
  if (task.held_delay_ns > 0) {
    task.deadline_ns = clock_.now_ns() + task.held_delay_ns;
    delay_unarmed_.push_back(&task);
    return;
  }
  start(task);
}

Status BlockBackend::wait_all(bool destroying) {
  while (in_flight_ > 0) {
    // Held requests (including ones a handler submitted during this drain) go on now, or
    // are dropped when the backend is going away.
    std::vector<IoTask*> released;
    released.swap(held_);
    for (IoTask* task : released) {
      if (destroying) {
        finish(*task, -ECANCELED);
      } else {
        unhold(*task);
      }
    }
    // Held-back requests: started once their delay has passed (or dropped when the
    // backend is going away).
    for (IoTask* task : delay_unarmed_) delayed_.push_back(task);
    delay_unarmed_.clear();
    int64_t now = clock_.now_ns();
    int64_t next_deadline = INT64_MAX;
    std::vector<IoTask*> due;
    for (IoTask* task : delayed_) {
      if (destroying || task->deadline_ns <= now) {
        due.push_back(task);
      } else {
        next_deadline = std::min(next_deadline, task->deadline_ns);
      }
    }
    for (IoTask* task : due) {
      if (task->timer != 0) loop_.cancel_timer(task->timer);
      task->timer = 0;
      delayed_.erase(std::find(delayed_.begin(), delayed_.end(), task));
      if (destroying) {
        finish(*task, -ECANCELED);
      } else {
        start(*task);
      }
    }
    deliver_ready();
    engine_->flush();
    engine_->reap();
    if (in_flight_ == 0) break;
    if (ready_head_ != nullptr || !delay_unarmed_.empty() || !held_.empty()) continue;
    int64_t timeout = next_deadline == INT64_MAX ? -1 : std::max<int64_t>(0, next_deadline -
                                                                              clock_.now_ns());
    if (engine_->active() > 0) {
      engine_->wait(timeout);
    } else if (timeout >= 0) {
      sleep_ns(timeout);
    } else {
      return Error(ErrorCode::kInternal, "drain: {} requests in flight but none is queued",
                   in_flight_);
    }
  }
  return Status::Ok();
}

Result<int64_t> BlockBackend::drain() {
  int64_t begin = clock_.now_ns();
  FERRY_RETURN_IF_ERROR(wait_all(/*destroying=*/false));
  return clock_.now_ns() - begin;
}

}  // namespace ferry::block
