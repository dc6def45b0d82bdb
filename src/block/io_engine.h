// Internal to the block layer: the interface between BlockBackend and the two ways of
// performing file I/O (io_uring, thread pool). An engine performs a task's steps to the
// end (short transfers, fallocate fallbacks) and reports one result per task through
// its DoneCallback, always on the loop thread and never from inside `enqueue`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "base/event_loop.h"
#include "base/status.h"
#include "block/io_task.h"

namespace ferry::block {

using DoneCallback = std::function<void(IoTask& task, int result)>;

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  virtual std::string_view name() const = 0;
  // Takes a task whose first step is set up. (Loop thread.)
  virtual void enqueue(IoTask& task) = 0;
  // Hands queued work to the kernel (io_uring: one io_uring_submit for the batch).
  virtual void flush() = 0;
  // Reports every finished task through the DoneCallback. Safe to call re-entrantly
  // from that callback.
  virtual void reap() = 0;
  // flush() then reap(): what the kernel completes during the submission itself (page-cache
  // hits) is reported at once. Engines may do it without waking the loop for nothing.
  virtual void submit_and_reap() {
    flush();
    reap();
  }
  // Blocks until a task may have finished or `timeout_ns` passed (negative: no limit).
  virtual void wait(int64_t timeout_ns) = 0;
  // Tasks taken by enqueue and not yet reported.
  virtual size_t active() const = 0;
};

// io_uring. Fails with the errno of the setup (`*setup_errno`) when the kernel refuses.
Result<std::unique_ptr<IoEngine>> create_io_uring_engine(EventLoop& loop, FileContext& file,
                                                         DoneCallback done, unsigned entries,
                                                         int* setup_errno);
Result<std::unique_ptr<IoEngine>> create_thread_pool_engine(EventLoop& loop, FileContext& file,
                                                            DoneCallback done, unsigned workers);

}  // namespace ferry::block
