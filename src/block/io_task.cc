#include "block/io_task.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace ferry::block {

AlignedBytes allocate_aligned(size_t alignment, size_t size) {
  void* p = nullptr;
  if (posix_memalign(&p, std::max<size_t>(alignment, sizeof(void*)), std::max<size_t>(size, 1)) !=
      0) {
    return nullptr;
  }
  return AlignedBytes(static_cast<uint8_t*>(p));
}

namespace {

IoStep zeroing_step(const FileContext& file) {
  return file.no_zero_range.load(std::memory_order_relaxed) ? IoStep::kWriteZeros
                                                            : IoStep::kZeroRange;
}

void advance(IoTask& task, uint64_t n) {
  task.pos += n;
  task.remaining -= n;
  if (task.step == IoStep::kWriteZeros) return;  // the next chunk is recomputed
  while (n > 0 && task.vec_count > 0) {
    if (n >= task.vec->iov_len) {
      n -= task.vec->iov_len;
      ++task.vec;
      --task.vec_count;
    } else {
      task.vec->iov_base = static_cast<uint8_t*>(task.vec->iov_base) + n;
      task.vec->iov_len -= n;
      n = 0;
    }
  }
}

}  // namespace

void begin_step(IoTask& task, BlockOp op, const FileContext& file) {
  switch (op) {
    case BlockOp::kRead: task.step = IoStep::kReadv; break;
    case BlockOp::kWrite: task.step = IoStep::kWritev; break;
    case BlockOp::kFlush: task.step = IoStep::kFlush; break;
    case BlockOp::kDiscard:
      task.step = file.no_punch_hole.load(std::memory_order_relaxed) ? zeroing_step(file)
                                                                     : IoStep::kPunchHole;
      break;
    case BlockOp::kWriteZeroes: task.step = zeroing_step(file); break;
  }
}

int prepare_zero_chunk(IoTask& task, const FileContext& file) {
  if (file.alignment > 1 && (task.pos % file.alignment != 0 || task.remaining % file.alignment)) {
    return -EINVAL;
  }
  task.chunk.iov_base = file.zero_buffer.get();
  task.chunk.iov_len = std::min<uint64_t>(task.remaining, file.zero_buffer_size);
  task.vec = &task.chunk;
  task.vec_count = 1;
  return 0;
}

int vec_count_for_syscall(const IoTask& task) { return std::min(task.vec_count, IOV_MAX); }

StepOutcome apply_step_result(IoTask& task, long res, FileContext& file, int* result) {
  if (res == -EINTR || res == -EAGAIN) return StepOutcome::kAgain;
  switch (task.step) {
    case IoStep::kReadv:
    case IoStep::kWritev:
    case IoStep::kWriteZeros:
      if (res < 0) break;
      if (res == 0) {  // the range is inside the file, so no progress is an error
        res = -EIO;
        break;
      }
      advance(task, static_cast<uint64_t>(res));
      if (task.remaining > 0) return StepOutcome::kAgain;
      res = 0;
      break;
    case IoStep::kFlush:
      break;
    case IoStep::kPunchHole:
      if (res == -EOPNOTSUPP) {
        file.no_punch_hole.store(true, std::memory_order_relaxed);
        task.step = zeroing_step(file);
        return StepOutcome::kAgain;
      }
      break;
    case IoStep::kZeroRange:
      if (res == -EOPNOTSUPP) {
        file.no_zero_range.store(true, std::memory_order_relaxed);
        task.step = IoStep::kWriteZeros;
        return StepOutcome::kAgain;
      }
      break;
  }
  *result = res < 0 ? static_cast<int>(res) : 0;
  return StepOutcome::kDone;
}

namespace {

long blocking_step(IoTask& task, FileContext& file) {
  long res = 0;
  switch (task.step) {
    case IoStep::kReadv:
      res = preadv(file.fd, task.vec, vec_count_for_syscall(task), static_cast<off_t>(task.pos));
      break;
    case IoStep::kWritev:
      res = pwritev(file.fd, task.vec, vec_count_for_syscall(task), static_cast<off_t>(task.pos));
      break;
    case IoStep::kWriteZeros: {
      int err = prepare_zero_chunk(task, file);
      if (err != 0) return err;
      res = pwritev(file.fd, task.vec, 1, static_cast<off_t>(task.pos));
      break;
    }
    case IoStep::kFlush: res = fdatasync(file.fd); break;
    case IoStep::kPunchHole:
      res = fallocate(file.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(task.pos), static_cast<off_t>(task.remaining));
      break;
    case IoStep::kZeroRange:
      res = fallocate(file.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(task.pos), static_cast<off_t>(task.remaining));
      break;
  }
  return res < 0 ? -errno : res;
}

}  // namespace

int run_blocking(IoTask& task, FileContext& file) {
  int result = 0;
  while (apply_step_result(task, blocking_step(task, file), file, &result) ==
         StepOutcome::kAgain) {
  }
  return result;
}

}  // namespace ferry::block
