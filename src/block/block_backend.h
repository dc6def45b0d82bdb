// BlockBackend: an asynchronous raw image file, the layer block devices (NVMe) submit
// requests to. A request carries all its own state (op, byte range, guest buffers, the
// submitter's tag); its result (0 or -errno) comes back exactly once through the
// completion handler, on the main loop thread.
//
// Engines (chosen by -drive aio=): io_uring (default; one ring per backend, completions
// signalled through an eventfd the loop watches, submissions batched into one
// io_uring_submit per loop iteration) or a small pool of worker threads doing
// preadv/pwritev/fdatasync/fallocate. When io_uring cannot be set up (ENOSYS, EPERM) and
// aio= was not given, the backend falls back to threads and logs it; with an explicit
// aio=io_uring, open() fails.
//
// cache=none opens with O_DIRECT (directsync adds O_DSYNC). Requests whose offset, length
// or buffers are not aligned to required_alignment() go through an aligned bounce buffer;
// writes that cover only part of an aligned block are read-modify-write, and wait for (and
// hold back) other writes to the blocks they rewrite. Writing zeroes by hand (where the
// file system lacks ZERO_RANGE) needs an aligned range under O_DIRECT, else -EINVAL.
//
// Operations: read/write = preadv/pwritev (short transfers are continued; a 0-byte
// transfer is -EIO); flush = fdatasync; discard = fallocate(PUNCH_HOLE|KEEP_SIZE), reading
// back zeroes; write-zeroes = fallocate(ZERO_RANGE), falling back to writing zeroes where
// the file system lacks it.
//
// Activation (QEMU's inactivate/activate around a migration): an active backend holds the
// image's write lock (block/file_lock.h; read-only drives hold only the read side), so a
// second writer — another process, another -drive, QEMU — is refused. A backend opened
// kInactive (the destination of an incoming migration) holds no lock and refuses writes
// until activate(), which happens at switchover after the source's inactivate() released
// the lock. A source whose migration failed re-activates to write again.
//
// Immediate errors (delivered through the handler like any other result):
//   -EIO     the range is outside the image (as QEMU's block layer reports it)
//   -EINVAL  read/write length differs from the iovec total; unknown op
//   -EROFS   write, discard or write-zeroes on a read-only drive (QEMU says EACCES or
//            EPERM depending on the path; one errno is simpler for the error policy)
//   -EPERM   write, discard or write-zeroes on an inactive backend (QEMU asserts: the
//            VM cannot run then; this is the guard behind that)
//
// Threading: every member runs on the loop thread (or on a thread holding the lock that
// serialises device code with the loop thread: `submit` touches no EventLoop state and
// wakes the loop through an eventfd). Worker threads of the thread-pool engine touch only
// requests handed to them, through a mutex-protected queue.
//
// Lifetime: the guest buffers of a request must stay valid until its completion. The
// destructor waits for every request the kernel or a worker still holds (it never leaves
// I/O writing into freed memory) but does not call the handler any more.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/event_loop.h"
#include "base/status.h"
#include "block/block_op.h"
#include "block/drive_config.h"
#include "block/error_policy.h"
#include "block/fault_injector.h"
#include "block/file_lock.h"

namespace ferry::block {

struct IoTask;
class BlockBackend;
struct FileContext;
class IoEngine;

struct BlockRequest {  // a request carries all its own state
  BlockOp op = BlockOp::kRead;
  uint64_t offset = 0;     // bytes
  uint64_t length = 0;     // bytes (read/write: must equal the iovec total)
  std::span<const iovec> iov;  // read/write buffers (guest RAM; not owned), copied at submit
  uint64_t opaque = 0;     // the submitter's tag, returned on completion
};

// Called on the main loop thread, once per submitted request: result 0 or -errno.
using CompletionHandler = std::function<void(uint64_t opaque, int result)>;

// Told of every failed request a device applied the error policy to (QEMU's
// blk_error_action): the machine sends BLOCK_IO_ERROR and, for kStop, pauses the VM.
// Runs on the loop thread, inside the device's completion handling: it must not stop the
// VM synchronously (that would drain the backend from within its own handler).
struct IoErrorReport {
  BlockOp op;
  bool is_read;
  ErrorAction action;
  int error;  // positive errno
};
using IoErrorListener = std::function<void(const BlockBackend&, const IoErrorReport&)>;

// Knobs for tests and benchmarks; the defaults are what -drive gets.
struct BackendTuning {
  unsigned ring_entries = 256;    // io_uring submission queue size
  unsigned worker_threads = 4;    // thread-pool engine
  // Tests: pretend io_uring setup failed with this errno (ENOSYS, EPERM, ...).
  int simulate_io_uring_error = 0;
};

// Whether open() takes the image lock (kActive) or leaves it to activate() (kInactive).
enum class Activation { kActive, kInactive };

class BlockBackend {
 public:
  static Result<std::unique_ptr<BlockBackend>> open(EventLoop& loop, const DriveConfig& config);
  static Result<std::unique_ptr<BlockBackend>> open(EventLoop& loop, const DriveConfig& config,
                                                    const BackendTuning& tuning,
                                                    Activation activation = Activation::kActive);
  ~BlockBackend();
  BlockBackend(const BlockBackend&) = delete;
  BlockBackend& operator=(const BlockBackend&) = delete;

  const DriveConfig& config() const { return config_; }
  uint64_t size_bytes() const { return size_; }
  bool read_only() const { return config_.read_only; }
  std::string_view engine_name() const;  // "io_uring" or "threads"
  // 1, or the O_DIRECT alignment (the logical block size, at least 512).
  uint32_t required_alignment() const { return alignment_; }

  void set_completion_handler(CompletionHandler handler);  // set once by the device

  // Queues the request. Immediate errors (out of range, write to read-only, length/iov
  // mismatch) are still delivered through the completion handler (on the loop, never
  // re-entrantly from submit).
  void submit(BlockRequest request);
  // Hands what submit() queued to the kernel now instead of at the next loop iteration, and
  // delivers whatever completed at once (handlers run). Loop thread, outside any handler.
  void submit_queued_now() {
    if (kick_pending_) on_kick();
  }
  // Requests submitted whose handler has not run yet.
  size_t in_flight() const { return in_flight_; }

  // Waits (blocking this thread, the loop thread) until every submitted request has
  // completed and its handler has run, including requests the handler submits meanwhile
  // and requests held back by an injected delay (which still wait out their delay).
  // Requests parked by a hold rule are released first (then wait out their delay, if the
  // rule has one): nothing else could release them while the loop thread is blocked here.
  // Used at migration stop-and-copy and reset. Returns how long it took in ns.
  Result<int64_t> drain();

  FaultInjector& faults() { return faults_; }
  // Requests parked by a hold rule (fault_injector.h), waiting for release_held or a drain.
  size_t held() const { return held_.size(); }
  // Sends every held request on (each then waits out its rule's delay, if any); returns how
  // many. Loop thread, outside any handler.
  size_t release_held();

  // ---- activation (the image lock) ----
  bool active() const { return active_; }
  // Takes the image lock; QEMU's error when another user holds it (the backend stays
  // inactive then). A no-op when already active.
  Status activate();
  // Waits for every request (as drain()), then releases the lock: from now on another
  // process may write the image. A no-op when inactive.
  Status inactivate();

  // ---- error policy (block/error_policy.h) ----
  // What the device should do with a request of `op` that failed with -error.
  ErrorAction error_action(BlockOp op, int error) const {
    return decide_error_action(op == BlockOp::kRead ? config_.rerror : config_.werror, error);
  }
  // The device acted on a failure: records the I/O status (kStop only, first error wins,
  // as QEMU) and tells the listener.
  void report_error(BlockOp op, ErrorAction action, int error);
  IoStatus io_status() const { return io_status_; }
  void reset_io_status() { io_status_ = IoStatus::kOk; }  // the VM continues
  void set_io_error_listener(IoErrorListener listener) { io_error_listener_ = std::move(listener); }

 private:
  BlockBackend(EventLoop& loop, DriveConfig config);
  Status init(const BackendTuning& tuning, Activation activation);

  IoTask& acquire_task();
  void release_task(IoTask& task);
  // Sends a request on (after faults and delays): holds it back while it would clash
  // with a read-modify-write, else launches it.
  void start(IoTask& task);
  // Bounces the request if needed and hands it to the engine.
  void launch(IoTask& task);
  bool conflicts(const IoTask& task, size_t waiting_before) const;
  void track_write(IoTask& task);
  void untrack_write(IoTask& task);
  void finish(IoTask& task, int result);  // runs the handler
  // Completes a request without I/O, from the kick callback (never inside submit).
  void complete_later(IoTask& task, int result);
  void deliver_ready();
  void on_engine_done(IoTask& task, int result);
  void request_kick();
  void on_kick();
  void arm_delays();
  void on_delay_expired(IoTask& task);
  // A held request goes on: into the delay list when its rule has a delay, else started.
  void unhold(IoTask& task);
  // The drain loop. `destroying`: requests still held back by a delay are dropped
  // (-ECANCELED, handler not called) instead of waited for.
  Status wait_all(bool destroying);

  EventLoop& loop_;
  DriveConfig config_;
  MonotonicClock clock_;
  int fd_ = -1;
  std::unique_ptr<FileLock> lock_;
  bool active_ = false;
  uint64_t size_ = 0;
  uint32_t alignment_ = 1;
  std::unique_ptr<FileContext> file_;
  std::unique_ptr<IoEngine> engine_;
  std::unique_ptr<EventNotifier> kick_;
  bool kick_pending_ = false;
  // A kick scheduled as a bottom half finds the backend through this; gone with it.
  std::shared_ptr<BlockBackend*> self_ = std::make_shared<BlockBackend*>(this);
  bool destroying_ = false;
  CompletionHandler handler_;
  FaultInjector faults_;
  IoStatus io_status_ = IoStatus::kOk;
  IoErrorListener io_error_listener_;
  size_t in_flight_ = 0;

  // Task pool: tasks are reused, so the steady state allocates nothing per request.
  std::vector<std::unique_ptr<IoTask>> tasks_;
  IoTask* free_tasks_ = nullptr;
  // Requests that complete without I/O (immediate errors, injected errors), delivered
  // from the kick callback; and requests waiting for an injected delay.
  IoTask* ready_head_ = nullptr;
  IoTask* ready_tail_ = nullptr;
  std::vector<IoTask*> delay_unarmed_;  // delay decided, timer not yet added
  std::vector<IoTask*> delayed_;        // timer running
  std::vector<IoTask*> held_;           // parked by a hold rule, in submission order
  // O_DIRECT only: writes in flight (for read-modify-write serialisation), how many of
  // them are read-modify-writes, and writes waiting for a clashing one to finish.
  std::vector<IoTask*> writes_in_flight_;
  size_t rmw_in_flight_ = 0;
  std::vector<IoTask*> serial_waiting_;
};

}  // namespace ferry::block
