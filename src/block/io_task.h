// Internal to the block layer: one request while the backend owns it (IoTask), the
// open file the engines share (FileContext), and the engine-independent rules for
// turning a request into system calls and their results into progress. Both engines
// issue the same steps; io_uring asynchronously, the thread pool with plain syscalls.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "base/event_loop.h"
#include "block/block_op.h"

namespace ferry::block {

// What the engine does next for a task.
enum class IoStep : uint8_t {
  kReadv,
  kWritev,
  kFlush,       // fdatasync
  kPunchHole,   // fallocate(PUNCH_HOLE | KEEP_SIZE)
  kZeroRange,   // fallocate(ZERO_RANGE | KEEP_SIZE)
  kWriteZeros,  // pwritev from the shared zero buffer, chunk by chunk
};

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t, FreeDeleter>;
// posix_memalign; null on failure.
AlignedBytes allocate_aligned(size_t alignment, size_t size);

// The open image, shared by the backend and its engine (read-only after open, except the
// "not supported" flags, which any thread may set).
struct FileContext {
  int fd = -1;
  uint32_t alignment = 1;  // O_DIRECT alignment, 1 without O_DIRECT
  AlignedBytes zero_buffer;
  size_t zero_buffer_size = 0;
  std::atomic<bool> no_punch_hole{false};
  std::atomic<bool> no_zero_range{false};
};

struct IoTask {
  // --- the request as submitted ---
  BlockOp op = BlockOp::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<iovec> iov;  // the submitter's buffers
  uint64_t opaque = 0;

  // --- what the engine performs: the next step's position and what is left ---
  IoStep step = IoStep::kReadv;
  uint64_t pos = 0;        // file offset of the next transfer
  uint64_t remaining = 0;  // bytes left
  iovec* vec = nullptr;    // buffers for the rest (advanced in place after short I/O)
  int vec_count = 0;
  iovec chunk{};           // kWriteZeros: the current slice of the zero buffer

  // --- bounce buffer (O_DIRECT with unaligned requests) ---
  AlignedBytes bounce;
  iovec bounce_iov{};
  uint64_t bounce_start = 0;   // file offset of bounce[0]
  uint64_t bounce_length = 0;  // bytes, a multiple of the alignment
  bool read_modify_write = false;  // the bounced read is the first half of a write

  // --- O_DIRECT write serialisation ---
  bool needs_rmw = false;   // a write covering only part of an aligned block
  bool tracked = false;     // in the backend's writes-in-flight list
  size_t track_index = 0;   // its position there
  uint64_t span_begin = 0;  // the bytes it rewrites
  uint64_t span_end = 0;

  // --- engine scratch ---
  int step_error = 0;     // io_uring: a step that failed before reaching the kernel
  int engine_result = 0;  // thread pool: the result, handed back with the task

  // --- fault injection ---
  int injected_error = 0;
  int64_t held_delay_ns = 0;  // held: the delay to wait out once released
  int64_t deadline_ns = 0;
  EventLoop::TimerId timer = 0;

  IoTask* next = nullptr;  // intrusive list link (free list, ready list, engine queues)
};

// A FIFO of tasks through their `next` links: no allocation.
struct TaskQueue {
  IoTask* head = nullptr;
  IoTask* tail = nullptr;
  bool empty() const { return head == nullptr; }
  void push(IoTask* task) {
    task->next = nullptr;
    if (tail) {
      tail->next = task;
    } else {
      head = task;
    }
    tail = task;
  }
  IoTask* pop() {
    IoTask* task = head;
    if (task) {
      head = task->next;
      if (!head) tail = nullptr;
      task->next = nullptr;
    }
    return task;
  }
};

// Sets up the first step of a task whose request fields and buffers (vec/vec_count,
// pos/remaining) are filled in: picks the fallocate variant the file supports.
void begin_step(IoTask& task, BlockOp op, const FileContext& file);

// Before issuing a kWriteZeros step: points `chunk` at the zero buffer. Returns 0, or
// -EINVAL when O_DIRECT alignment makes writing zeroes over this range impossible.
int prepare_zero_chunk(IoTask& task, const FileContext& file);

// The iovec count one preadv/pwritev may take (IOV_MAX); longer lists continue like a
// short transfer.
int vec_count_for_syscall(const IoTask& task);

enum class StepOutcome { kDone, kAgain };
// Applies the result of one step (bytes or -errno) to the task: short transfers advance
// the buffers, unsupported fallocate modes switch to the fallback. kDone sets *result.
StepOutcome apply_step_result(IoTask& task, long res, FileContext& file, int* result);

// Performs a task's steps with blocking system calls (the thread-pool engine).
int run_blocking(IoTask& task, FileContext& file);

}  // namespace ferry::block
