// The thread-pool engine: a few worker threads perform whole tasks with blocking
// syscalls (preadv/pwritev/fdatasync/fallocate) and post them back to the loop through
// a mutex-protected completion queue and an EventNotifier. A task belongs to exactly one
// thread at a time; the queue's mutex is the hand-over.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "block/io_engine.h"

namespace ferry::block {
namespace {

class ThreadPoolEngine final : public IoEngine {
 public:
  ThreadPoolEngine(EventLoop& loop, FileContext& file, DoneCallback done)
      : loop_(loop), file_(file), done_(std::move(done)) {}

  ~ThreadPoolEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& worker : workers_) worker.join();
    if (notifier_) loop_.unwatch_fd(notifier_->fd());
  }

  Status init(unsigned workers) {
    auto notifier = EventNotifier::create();
    if (!notifier.ok()) return notifier.take_status();
    notifier_ = std::move(notifier).value();
    FERRY_RETURN_IF_ERROR(loop_.watch_notifier(*notifier_, [this] { reap(); }));
    for (unsigned i = 0; i < std::max(workers, 1u); ++i) {
      workers_.emplace_back([this] { work(); });
    }
    return Status::Ok();
  }

  std::string_view name() const override { return "threads"; }

  void enqueue(IoTask& task) override {
    ++active_;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      todo_.push(&task);
    }
    work_cv_.notify_one();
  }

  void flush() override {}

  void reap() override {
    while (true) {
      IoTask* task;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        task = finished_.pop();
      }
      if (task == nullptr) return;
      --active_;
      done_(*task, task->engine_result);
    }
  }

  void wait(int64_t timeout_ns) override {
    std::unique_lock<std::mutex> lock(mutex_);
    auto ready = [this] { return !finished_.empty(); };
    if (timeout_ns < 0) {
      done_cv_.wait(lock, ready);
    } else {
      done_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), ready);
    }
  }

  size_t active() const override { return active_; }

 private:
  void work() {
    while (true) {
      IoTask* task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_cv_.wait(lock, [this] { return stopping_ || !todo_.empty(); });
        if (todo_.empty()) return;  // stopping, and nothing left to do
        task = todo_.pop();
      }
      task->engine_result = run_blocking(*task, file_);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        finished_.push(task);
      }
      done_cv_.notify_all();
      notifier_->notify();
    }
  }

  EventLoop& loop_;
  FileContext& file_;
  DoneCallback done_;
  std::unique_ptr<EventNotifier> notifier_;
  std::vector<std::thread> workers_;
  size_t active_ = 0;  // loop thread only

  std::mutex mutex_;
  std::condition_variable work_cv_;  // todo_ gained a task, or stopping_
  std::condition_variable done_cv_;  // finished_ gained a task
  TaskQueue todo_;                   // guarded by mutex_
  TaskQueue finished_;               // guarded by mutex_
  bool stopping_ = false;            // guarded by mutex_
};

}  // namespace

Result<std::unique_ptr<IoEngine>> create_thread_pool_engine(EventLoop& loop, FileContext& file,
                                                            DoneCallback done, unsigned workers) {
  auto engine = std::make_unique<ThreadPoolEngine>(loop, file, std::move(done));
  FERRY_RETURN_IF_ERROR(engine->init(workers));
  return std::unique_ptr<IoEngine>(std::move(engine));
}

}  // namespace ferry::block
