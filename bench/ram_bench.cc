// ram_bench: RAM precopy throughput (design.md §8, issue 3).
//
// Guest RAM of random content and guest RAM of zeros are migrated with Ferry's stream
// (header, configuration, RAM START, one full pass, END, EOF, vmdesc) over a unix socket
// and over TCP loopback, next to a raw socket copy of the same bytes, in the same run.
// When QEMU 7.2 is installed, two QEMU processes migrate the same RAM content over a
// unix socket as well. The program prints one table per transport and the ratios with
// their targets, and exits non-zero only when a destination's bytes differ from the
// source's (or the benchmark itself cannot run).
//
// Processes: the source runs in this process; the destination is a worker process
// forked at startup (before any large allocation, so it shares no page tables with the
// source RAM). Each end thus has its own process and is scheduled on its own core. For
// every run the worker maps fresh destination RAM (as a new VM would), listens, loads,
// takes the end time, and only then checksums its RAM (outside the timed part). Times
// run from the source's first byte to the destination fully loaded; both ends read
// CLOCK_MONOTONIC, which is one clock for the whole machine.
//
// The raw baseline sends exactly the RAM bytes (no records) with plain write()/read()
// loops straight from the source block into a fresh destination block.
//
// QEMU: a source and a destination `qemu-system-x86_64 -M q35 -accel tcg -S` with their
// RAM in a memory-backend-file (share=off), the source's file holding the same random
// bytes; max-bandwidth is lifted and downtime-limit raised so the stopped source sends
// its RAM in one pass. We report QEMU's own total-time, its RAM throughput (mbps), and
// the wall time from `migrate` to the destination's query-migrate reading "completed".
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/crc32c.h"
#include "base/status.h"
#include "memory/ram_block.h"
#include "migration/channel.h"
#include "migration/section_registry.h"
#include "migration/stream.h"
#include "migration/stream_reader.h"
#include "migration/stream_writer.h"

namespace ferry::bench {
namespace {

using memory::RamBlock;
using migration::Channel;
using migration::FdChannel;
using Json = nlohmann::json;

constexpr const char* kQemuBinary = "/usr/bin/qemu-system-x86_64";
constexpr std::string_view kMachineType = "ferry-bench";
constexpr uint64_t kMiB = uint64_t{1} << 20;

// ---- small helpers ----

int64_t read_clock(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
int64_t now_ns() { return read_clock(CLOCK_MONOTONIC); }
// CPU time of this process: on a shared machine, a measure other processes barely disturb.
int64_t cpu_ns() { return read_clock(CLOCK_PROCESS_CPUTIME_ID); }

Status errno_error(std::string_view what) {
  return Error(ErrorCode::kIo, "{}: {}", what, std::strerror(errno));
}

// Copies `text` into a fixed buffer of a control message, always NUL-terminated.
template <size_t N>
void copy_text(char (&out)[N], std::string_view text) {
  size_t n = std::min(text.size(), N - 1);
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

// Deterministic pseudo-random bytes (splitmix64): fast, and the same in every run.
void fill_random(std::span<uint8_t> bytes, uint64_t seed) {
  uint64_t state = seed;
  size_t words = bytes.size() / 8;
  auto* out = bytes.data();
  for (size_t i = 0; i < words; ++i) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::memcpy(out + i * 8, &z, 8);
  }
}

Status write_file(const std::string& path, std::span<const uint8_t> bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(fmt::format("creating {}", path));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, std::min<size_t>(bytes.size() - done, 64 * kMiB));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status st = errno_error(fmt::format("writing {}", path));
      ::close(fd);
      return st;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return {};
}

// A private scratch directory, removed with everything the benchmark put in it.
class ScratchDir {
 public:
  static Result<ScratchDir> create(const std::string& root) {
    std::string pattern = root + "/ferry-ram-bench-XXXXXX";
    if (!::mkdtemp(pattern.data()))
      return errno_error(fmt::format("creating a scratch directory under {}", root));
    return ScratchDir(pattern);
  }
  ScratchDir(ScratchDir&& other) noexcept : path_(std::exchange(other.path_, "")) {}
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir() {
    if (path_.empty()) return;
    for (const char* name : {"random.ram", "zero.ram", "qemu-dst.ram", "ferry.sock",
                             "qemu-mig.sock", "qemu-src.qmp", "qemu-dst.qmp", "qemu-src.log",
                             "qemu-dst.log"})
      ::unlink((path_ + "/" + name).c_str());
    ::rmdir(path_.c_str());
  }
  std::string file(std::string_view name) const { return fmt::format("{}/{}", path_, name); }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// ---- options ----

struct Options {
  uint64_t size_mib = 1024;
  std::string transport = "both";
  bool qemu = ::access(kQemuBinary, X_OK) == 0;
  bool qemu_zero = true;
  int repetitions = 3;
  size_t raw_chunk_kib = 1024;
  std::string scratch_root = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  // Rows to measure (for profiling one case alone); empty = all.
  std::vector<std::string> cases;
  bool wants(std::string_view row) const {
    return cases.empty() || std::find(cases.begin(), cases.end(), row) != cases.end();
  }
};

// ---- the destination worker (a forked process) ----
//
// Control messages travel over a SOCK_SEQPACKET socketpair as fixed-size records.

enum class Method : uint32_t { kFerry, kRaw, kQuit };

struct Request {
  Method method = Method::kQuit;
  uint64_t size = 0;        // destination RAM bytes
  uint64_t raw_chunk = 0;   // read() size for kRaw
  char listen_uri[256] = {};
};

struct Ready {  // the worker listens: `text` is the bound URI, or the error
  int32_t ok = 0;
  char text[512] = {};
};

struct Outcome {  // the worker loaded (or failed)
  int32_t ok = 0;
  int64_t end_ns = 0;  // CLOCK_MONOTONIC when the destination RAM was complete
  int64_t cpu_ns = 0;  // the worker's CPU time from accept to end_ns
  uint32_t crc = 0;    // crc32c of the destination RAM, computed after end_ns
  uint64_t pages = 0;
  uint64_t zero_pages = 0;
  uint64_t stream_bytes = 0;
  char error[1024] = {};
};

template <typename Message>
Status send_message(int fd, const Message& m) {
  static_assert(std::is_trivially_copyable_v<Message>);
  ssize_t n;
  do {
    n = ::send(fd, &m, sizeof m, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof m)) return errno_error("sending a control message");
  return {};
}

// False at a clean end of the control connection.
template <typename Message>
Result<bool> receive_message(int fd, Message& m) {
  static_assert(std::is_trivially_copyable_v<Message>);
  ssize_t n;
  do {
    n = ::recv(fd, &m, sizeof m, 0);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return false;
  if (n != static_cast<ssize_t>(sizeof m))
    return Error(ErrorCode::kIo, "control message of {} bytes, expected {} ({})", n, sizeof m,
                 n < 0 ? std::strerror(errno) : "short");
  return true;
}

Status load_with_ferry(Channel& channel, RamBlock& block, Outcome& out) {
  migration::SectionRegistry registry;
  FERRY_RETURN_IF_ERROR(registry.add_ram().take_status());
  migration::RamLoader loader({&block});
  migration::StreamReader reader(channel);
  migration::LoadReport report;
  FERRY_RETURN_IF_ERROR(migration::load_stream(reader, kMachineType, registry, loader, &report));
  out.end_ns = now_ns();
  out.pages = report.ram.pages;
  out.zero_pages = report.ram.zero_pages;
  out.stream_bytes = reader.offset();
  return {};
}

// The raw baseline is a plain blocking socket copy. Ferry's channels keep their descriptor
// non-blocking (so a cancel can interrupt a wait), so the baseline switches its borrowed
// descriptor back to blocking before it reads or writes.
Result<int> blocking_fd(Channel& channel) {
  int fd = dynamic_cast<FdChannel&>(channel).fd();
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
    return errno_error("raw copy: making the socket blocking");
  return fd;
}

Status load_raw(Channel& channel, RamBlock& block, size_t chunk, Outcome& out) {
  Result<int> blocking = blocking_fd(channel);
  if (!blocking.ok()) return blocking.take_status();
  int fd = *blocking;
  uint8_t* dst = block.host();
  uint64_t size = block.size();
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd, dst + done, std::min<uint64_t>(chunk, size - done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("raw copy: read");
    if (n == 0)
      return Error(ErrorCode::kOutOfRange, "raw copy: stream ended after {} of {} bytes", done,
                   size);
    done += static_cast<uint64_t>(n);
  }
  out.end_ns = now_ns();
  out.stream_bytes = done;
  return {};
}

// One destination run: fresh RAM, listen, report the address, load, time, checksum.
Status serve_one(int control, const Request& req, Outcome& out) {
  Result<std::unique_ptr<RamBlock>> block = RamBlock::anonymous("pc.ram", req.size);
  Result<std::unique_ptr<migration::Listener>> listener =
      block.ok() ? migration::listen_incoming(req.listen_uri)
                 : Result<std::unique_ptr<migration::Listener>>(block.status());
  Ready ready;
  ready.ok = listener.ok();
  copy_text(ready.text, listener.ok() ? (*listener)->uri() : listener.status().to_string());
  FERRY_RETURN_IF_ERROR(send_message(control, ready));
  if (!listener.ok()) return listener.take_status();

  Result<std::unique_ptr<Channel>> channel = (*listener)->accept();
  if (!channel.ok()) return channel.take_status();
  int64_t cpu_start = cpu_ns();
  Status st = req.method == Method::kFerry
                  ? load_with_ferry(**channel, **block, out)
                  : load_raw(**channel, **block, static_cast<size_t>(req.raw_chunk), out);
  out.cpu_ns = cpu_ns() - cpu_start;
  (void)(*channel)->close();
  if (!st.ok()) return st;
  out.crc = crc32c((*block)->bytes());
  return {};
}

int worker_main(int control) {
  while (true) {
    Request req;
    Result<bool> got = receive_message(control, req);
    if (!got.ok() || !*got || req.method == Method::kQuit) return 0;
    req.listen_uri[sizeof req.listen_uri - 1] = '\0';
    Outcome out;
    Status st = serve_one(control, req, out);
    out.ok = st.ok();
    if (!st.ok()) copy_text(out.error, st.to_string());
    if (!send_message(control, out).ok()) return 1;
  }
}

// The parent's handle on the worker: stops it (and reaps it) when destroyed.
class Worker {
 public:
  static Result<std::unique_ptr<Worker>> start() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
      return errno_error("socketpair for the destination worker");
    pid_t pid = ::fork();
    if (pid < 0) return errno_error("fork of the destination worker");
    if (pid == 0) {
      ::close(fds[0]);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::_exit(worker_main(fds[1]));
    }
    ::close(fds[1]);
    return std::unique_ptr<Worker>(new Worker(pid, fds[0]));
  }
  // An idle worker quits when asked; one stuck in a failed run (blocked in accept or
  // read) is killed after a grace period.
  ~Worker() {
    Request quit;
    (void)send_message(control_, quit);
    ::close(control_);
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  int control() const { return control_; }

 private:
  Worker(pid_t pid, int control) : pid_(pid), control_(control) {}
  pid_t pid_;
  int control_;
};

// ---- the source side ----

struct Measurement {
  double seconds = 0;
  double source_cpu = 0;       // seconds of CPU, each end
  double destination_cpu = 0;
  uint64_t stream_bytes = 0;
  uint64_t pages = 0;
  uint64_t zero_pages = 0;
};

enum class Transport { kUnix, kTcp };

std::string_view transport_name(Transport t) { return t == Transport::kUnix ? "unix" : "tcp"; }

struct SourceRam {
  std::string label;  // "random" or "zero"
  std::unique_ptr<RamBlock> block;
  uint32_t crc = 0;
};

// `start_ns` and `cpu_ns` are set when the first byte is about to leave; `cpu_ns` ends
// up holding the CPU time spent sending.
Status send_with_ferry(Channel& channel, RamBlock& block, int64_t& start_ns, int64_t& cpu) {
  migration::SectionRegistry registry;
  FERRY_RETURN_IF_ERROR(registry.add_ram().take_status());
  migration::RamSaver saver({&block});
  migration::StreamWriter writer(channel);
  start_ns = now_ns();
  cpu = cpu_ns();
  FERRY_RETURN_IF_ERROR(migration::save_stream(writer, kMachineType, registry, saver));
  Status st = channel.shutdown_write();
  cpu = cpu_ns() - cpu;
  return st;
}

Status send_raw(Channel& channel, RamBlock& block, size_t chunk, int64_t& start_ns,
                int64_t& cpu) {
  Result<int> blocking = blocking_fd(channel);
  if (!blocking.ok()) return blocking.take_status();
  int fd = *blocking;
  const uint8_t* src = block.host();
  uint64_t size = block.size();
  uint64_t done = 0;
  start_ns = now_ns();
  cpu = cpu_ns();
  while (done < size) {
    ssize_t n = ::write(fd, src + done, std::min<uint64_t>(chunk, size - done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("raw copy: write");
    done += static_cast<uint64_t>(n);
  }
  Status st = channel.shutdown_write();
  cpu = cpu_ns() - cpu;
  return st;
}

// One timed migration of `ram` to the worker. Errors in the benchmark machinery are
// returned; a destination whose checksum differs is an error as well (kCorrupt).
Result<Measurement> run_once(Worker& worker, Method method, Transport transport,
                             const SourceRam& ram, const Options& opt, const ScratchDir& dir) {
  Request req;
  req.method = method;
  req.size = ram.block->size();
  req.raw_chunk = opt.raw_chunk_kib * 1024;
  copy_text(req.listen_uri, transport == Transport::kUnix
                                ? "unix:" + dir.file("ferry.sock")
                                : std::string("tcp:127.0.0.1:0"));
  FERRY_RETURN_IF_ERROR(send_message(worker.control(), req));
  Ready ready;
  Result<bool> got = receive_message(worker.control(), ready);
  if (!got.ok()) return got.take_status();
  if (!*got) return Error(ErrorCode::kInternal, "the destination worker exited");
  ready.text[sizeof ready.text - 1] = '\0';
  Outcome out;
  if (!ready.ok) {
    (void)receive_message(worker.control(), out);  // the worker reports the failure again
    return Error(ErrorCode::kIo, "destination could not listen: {}", ready.text);
  }

  Result<std::unique_ptr<Channel>> channel = migration::connect_outgoing(ready.text);
  if (!channel.ok()) return channel.take_status();  // the worker is stuck in accept: fatal
  int64_t start_ns = 0, source_cpu = 0;
  Status sent = method == Method::kFerry
                    ? send_with_ferry(**channel, *ram.block, start_ns, source_cpu)
                    : send_raw(**channel, *ram.block, req.raw_chunk, start_ns, source_cpu);
  // On a send error, closing ends the destination's read too, so its outcome arrives.
  if (!sent.ok()) (void)(*channel)->close();
  got = receive_message(worker.control(), out);
  (void)(*channel)->close();
  if (!got.ok()) return got.take_status();
  if (!*got) return Error(ErrorCode::kInternal, "the destination worker exited");
  out.error[sizeof out.error - 1] = '\0';
  std::string what = fmt::format("{} {} over {}", method == Method::kFerry ? "ferry" : "raw copy",
                                 ram.label, transport_name(transport));
  if (!out.ok) return Error(ErrorCode::kIo, "{}: destination failed: {}", what, out.error);
  if (!sent.ok()) return sent.prepend_message(what);
  if (out.crc != ram.crc)
    return Error(ErrorCode::kCorrupt,
                 "{}: destination RAM differs from the source (crc32c 0x{:08x}, expected "
                 "0x{:08x})",
                 what, out.crc, ram.crc);
  uint64_t pages = ram.block->pages();
  if (method == Method::kFerry && out.pages + out.zero_pages != pages)
    return Error(ErrorCode::kCorrupt, "{}: destination loaded {} + {} zero pages, expected {}",
                 what, out.pages, out.zero_pages, pages);
  return Measurement{.seconds = static_cast<double>(out.end_ns - start_ns) / 1e9,
                     .source_cpu = static_cast<double>(source_cpu) / 1e9,
                     .destination_cpu = static_cast<double>(out.cpu_ns) / 1e9,
                     .stream_bytes = out.stream_bytes,
                     .pages = out.pages,
                     .zero_pages = out.zero_pages};
}

// ---- QEMU side by side ----

// A child process killed and reaped with its owner.
class Child {
 public:
  static Result<Child> spawn(const std::vector<std::string>& args, const std::string& log_path) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return errno_error("fork for " + args[0]);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (log >= 0) {
        ::dup2(log, STDOUT_FILENO);
        ::dup2(log, STDERR_FILENO);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return Child(pid);
  }
  Child(Child&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  Child& operator=(Child&&) = delete;
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  // Reaps the process if it has ended.
  bool running() {
    if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }

 private:
  explicit Child(pid_t pid) : pid_(pid) {}
  pid_t pid_;
};

// A minimal blocking QMP client: one command at a time, events skipped.
class Qmp {
 public:
  // Retries until the socket accepts (QEMU creates it during startup), `qemu` exits, or
  // `timeout_ms` passes.
  static Result<Qmp> connect(const std::string& path, Child& qemu, int timeout_ms) {
    int64_t deadline = now_ns() + int64_t{timeout_ms} * 1'000'000;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
      return Error(ErrorCode::kInvalidArgument, "QMP socket path too long: {}", path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    while (true) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) return errno_error("socket for QMP");
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        Qmp qmp(fd);
        Result<Json> greeting = qmp.read_message(timeout_ms);
        if (!greeting.ok()) return greeting.take_status();
        if (!greeting->contains("QMP"))
          return Error(ErrorCode::kCorrupt, "QMP greeting expected on {}, got {}", path,
                       greeting->dump());
        Result<Json> caps = qmp.execute("qmp_capabilities");
        if (!caps.ok()) return caps.take_status();
        return qmp;
      }
      ::close(fd);
      if (!qemu.running())
        return Error(ErrorCode::kIo, "QEMU exited before its QMP socket {} accepted", path);
      if (now_ns() > deadline)
        return Error(ErrorCode::kIo, "QMP socket {} did not accept within {} ms", path,
                     timeout_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  Qmp(Qmp&& other) noexcept : fd_(std::exchange(other.fd_, -1)), buf_(std::move(other.buf_)) {}
  Qmp& operator=(Qmp&&) = delete;
  ~Qmp() {
    if (fd_ >= 0) ::close(fd_);
  }

  // The "return" value, or an error carrying QEMU's error description.
  Result<Json> execute(std::string_view command, const Json& arguments = nullptr,
                       int timeout_ms = 60'000) {
    Json request = {{"execute", command}};
    if (!arguments.is_null()) request["arguments"] = arguments;
    std::string line = request.dump() + "\n";
    if (::send(fd_, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
      return errno_error(fmt::format("QMP send of {}", command));
    while (true) {
      Result<Json> msg = read_message(timeout_ms);
      if (!msg.ok()) return msg.take_status();
      if (msg->contains("event")) continue;
      if (msg->contains("error"))
        return Error(ErrorCode::kFailedPrecondition, "QMP {} failed: {}", command,
                     (*msg)["error"].dump());
      if (msg->contains("return")) return (*msg)["return"];
      return Error(ErrorCode::kCorrupt, "unexpected QMP reply to {}: {}", command, msg->dump());
    }
  }

 private:
  explicit Qmp(int fd) : fd_(fd) {}

  Result<Json> read_message(int timeout_ms) {
    int64_t deadline = now_ns() + int64_t{timeout_ms} * 1'000'000;
    while (true) {
      size_t eol = buf_.find('\n');
      if (eol != std::string::npos) {
        Json msg = Json::parse(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(eol), nullptr,
                               /*allow_exceptions=*/false);
        buf_.erase(0, eol + 1);
        if (msg.is_discarded()) return Error(ErrorCode::kCorrupt, "QMP sent malformed JSON");
        return msg;
      }
      int left_ms = static_cast<int>((deadline - now_ns()) / 1'000'000);
      if (left_ms <= 0) return Error(ErrorCode::kIo, "QMP reply timed out");
      pollfd p{fd_, POLLIN, 0};
      int ready = ::poll(&p, 1, left_ms);
      if (ready < 0 && errno != EINTR) return errno_error("QMP poll");
      if (ready <= 0) continue;
      char chunk[4096];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Error(ErrorCode::kIo, "QMP connection closed by QEMU");
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

  int fd_;
  std::string buf_;
};

struct QemuMeasurement {
  double wall_seconds = 0;   // `migrate` sent → destination query-migrate "completed"
  double total_seconds = 0;  // the source's own total-time
  double mbps = 0;           // the source's ram.mbps
  uint64_t transferred = 0;  // the source's ram.transferred
};

std::vector<std::string> qemu_args(uint64_t size_mib, const std::string& mem_path,
                                   const std::string& qmp_path) {
  return {kQemuBinary, "-M", "q35", "-accel", "tcg", "-nodefaults", "-display", "none", "-S",
          "-m", fmt::format("{}M", size_mib), "-object",
          fmt::format("memory-backend-file,id=ram0,size={}M,mem-path={},share=off", size_mib,
                      mem_path),
          "-machine", "memory-backend=ram0",
          "-qmp", fmt::format("unix:{},server=on,wait=off", qmp_path)};
}

Result<std::string> migration_status(Qmp& qmp) {
  Result<Json> info = qmp.execute("query-migrate");
  if (!info.ok()) return info.take_status();
  return info->value("status", std::string("none"));
}

Result<QemuMeasurement> run_qemu_once(const std::string& src_file, uint64_t size_mib,
                                      const ScratchDir& dir) {
  std::string dst_file = dir.file("qemu-dst.ram");
  std::string mig_sock = dir.file("qemu-mig.sock");
  ::unlink(dst_file.c_str());
  ::unlink(mig_sock.c_str());

  std::vector<std::string> dst_args = qemu_args(size_mib, dst_file, dir.file("qemu-dst.qmp"));
  dst_args.insert(dst_args.end(), {"-incoming", "unix:" + mig_sock});
  Result<Child> dst = Child::spawn(dst_args, dir.file("qemu-dst.log"));
  if (!dst.ok()) return dst.take_status();
  Result<Child> src = Child::spawn(qemu_args(size_mib, src_file, dir.file("qemu-src.qmp")),
                                   dir.file("qemu-src.log"));
  if (!src.ok()) return src.take_status();

  auto with_log = [&](Status st, std::string_view which) {
    return st.prepend_message(fmt::format("QEMU {} (log: {})", which,
                                          dir.file(fmt::format("qemu-{}.log", which))));
  };
  Result<Qmp> dst_qmp = Qmp::connect(dir.file("qemu-dst.qmp"), *dst, 30'000);
  if (!dst_qmp.ok()) return with_log(dst_qmp.take_status(), "dst");
  Result<Qmp> src_qmp = Qmp::connect(dir.file("qemu-src.qmp"), *src, 30'000);
  if (!src_qmp.ok()) return with_log(src_qmp.take_status(), "src");

  // No bandwidth cap (100 GiB/s), and a downtime limit the stopped source always meets,
  // so everything goes in one pass.
  Json params = {{"max-bandwidth", uint64_t{100} << 30}, {"downtime-limit", 300'000}};
  Result<Json> set = src_qmp->execute("migrate-set-parameters", params);
  if (!set.ok()) return with_log(set.take_status(), "src");

  int64_t start = now_ns();
  Result<Json> started = src_qmp->execute("migrate", Json{{"uri", "unix:" + mig_sock}});
  if (!started.ok()) return with_log(started.take_status(), "src");

  QemuMeasurement m;
  int64_t deadline = start + int64_t{600} * 1'000'000'000;
  while (true) {
    Result<std::string> status = migration_status(*dst_qmp);
    if (!status.ok()) return with_log(status.take_status(), "dst");
    if (*status == "completed") break;
    if (*status == "failed" || now_ns() > deadline)
      return with_log(Error(ErrorCode::kIo, "incoming migration status {}", *status), "dst");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  m.wall_seconds = static_cast<double>(now_ns() - start) / 1e9;
  while (true) {
    Result<Json> info = src_qmp->execute("query-migrate");
    if (!info.ok()) return with_log(info.take_status(), "src");
    std::string status = info->value("status", std::string("none"));
    if (status == "completed") {
      m.total_seconds = info->value("total-time", 0.0) / 1e3;
      if (info->contains("ram")) {
        m.mbps = (*info)["ram"].value("mbps", 0.0);
        m.transferred = (*info)["ram"].value("transferred", uint64_t{0});
      }
      break;
    }
    if (status == "failed" || now_ns() > deadline)
      return with_log(Error(ErrorCode::kIo, "outgoing migration status {}", status), "src");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ::unlink(dst_file.c_str());
  return m;
}

// ---- the report ----

struct Row {
  std::string name;
  std::optional<double> best;  // seconds, best of the repetitions
  std::optional<double> source_cpu, destination_cpu;  // least CPU seconds seen, each end
  uint64_t stream_bytes = 0;
  static void keep_least(std::optional<double>& slot, double v) {
    slot = slot ? std::min(*slot, v) : v;
  }
  void add(double seconds) { keep_least(best, seconds); }
  void add_cpu(double source, double destination) {
    keep_least(source_cpu, source);
    keep_least(destination_cpu, destination);
  }
};

double gbps(uint64_t bytes, double seconds) { return static_cast<double>(bytes) / seconds / 1e9; }

void print_table(std::string_view title, const std::vector<const Row*>& rows, uint64_t ram_bytes) {
  fmt::print("\n{} (RAM {} MiB per case; best of the repetitions; GB = 1e9 bytes)\n", title,
             ram_bytes / kMiB);
  fmt::print("  {:<20} {:>10} {:>10} {:>14} {:>10} {:>10}\n", "", "seconds", "RAM GB/s",
             "stream bytes", "src cpu s", "dst cpu s");
  auto cpu = [](const std::optional<double>& v) {
    return v ? fmt::format("{:.3f}", *v) : std::string("-");
  };
  for (const Row* r : rows) {
    if (!r->best) continue;
    fmt::print("  {:<20} {:>10.3f} {:>10.2f} {:>14} {:>10} {:>10}\n", r->name, *r->best,
               gbps(ram_bytes, *r->best), r->stream_bytes, cpu(r->source_cpu),
               cpu(r->destination_cpu));
  }
}

// "ferry/raw (random, unix) 0.93x  target >= 0.8x -> PASS"; true when the target holds.
bool print_ratio(std::string_view label, double ratio, double target, bool inclusive) {
  bool pass = inclusive ? ratio >= target : ratio > target;
  fmt::print("  {:<42} {:>6.3f}x  target {} {}x -> {}\n", label, ratio, inclusive ? ">=" : ">",
             target, pass ? "PASS" : "MISS");
  return pass;
}

int run(const Options& opt) {
  ::signal(SIGPIPE, SIG_IGN);
  Result<ScratchDir> dir = ScratchDir::create(opt.scratch_root);
  if (!dir.ok()) {
    fmt::print(stderr, "ram_bench: {}\n", dir.status().to_string());
    return 2;
  }
  // The worker before any large allocation, while this process is still small; it ends
  // before the scratch directory is removed.
  Result<std::unique_ptr<Worker>> worker = Worker::start();
  if (!worker.ok()) {
    fmt::print(stderr, "ram_bench: {}\n", worker.status().to_string());
    return 2;
  }
  auto fail = [](const Status& st) {
    fmt::print(stderr, "ram_bench: {}\n", st.to_string());
    return st.code() == ErrorCode::kCorrupt ? 1 : 2;
  };

  const uint64_t size = opt.size_mib * kMiB;
  std::vector<SourceRam> sources;
  for (std::string label : {"random", "zero"}) {
    Result<std::unique_ptr<RamBlock>> block = RamBlock::anonymous("pc.ram", size);
    if (!block.ok()) return fail(block.status());
    // Populate the source as a running guest's RAM would be (every page backed).
    if (label == "random")
      fill_random((*block)->bytes(), 0x5eed);
    else
      std::memset((*block)->host(), 0, size);
    uint32_t crc = crc32c((*block)->bytes());
    sources.push_back({label, std::move(block).value(), crc});
  }
  SourceRam& random = sources[0];
  SourceRam& zero = sources[1];

  bool qemu = opt.qemu && ::access(kQemuBinary, X_OK) == 0;
  if (opt.qemu && !qemu) fmt::print("note: {} not found; QEMU rows skipped\n", kQemuBinary);
  std::string random_file = dir->file("random.ram");
  std::string zero_file = dir->file("zero.ram");
  if (qemu) {
    Status st = write_file(random_file, random.block->bytes());
    if (st.ok() && opt.qemu_zero) st = write_file(zero_file, zero.block->bytes());
    if (!st.ok()) return fail(st);
  }

  std::vector<Transport> transports;
  if (opt.transport != "tcp") transports.push_back(Transport::kUnix);
  if (opt.transport != "unix") transports.push_back(Transport::kTcp);

  struct TransportRows {
    Row ferry_random{"ferry random"}, raw_random{"raw copy random"};
    Row ferry_zero{"ferry zero"}, raw_zero{"raw copy zero"};
  };
  std::vector<TransportRows> rows(transports.size());
  Row qemu_random{"qemu 7.2 random"}, qemu_zero{"qemu 7.2 zero"};
  QemuMeasurement qemu_random_stats, qemu_zero_stats;  // of the best run

  fmt::print("ram_bench: {} MiB random + {} MiB zero, {} repetition(s), transports: {}, "
             "qemu: {}, scratch: {}\n",
             opt.size_mib, opt.size_mib, opt.repetitions, opt.transport,
             qemu ? "on" : "off", opt.scratch_root);
  // Repetitions are the outer loop, so slow phases of a noisy machine spread over every row.
  for (int rep = 0; rep < opt.repetitions; ++rep) {
    for (size_t t = 0; t < transports.size(); ++t) {
      struct Case {
        std::string_view key;
        Method method;
        const SourceRam* ram;
        Row* row;
      };
      TransportRows& tr = rows[t];
      for (const Case& c : {Case{"ferry-random", Method::kFerry, &random, &tr.ferry_random},
                            Case{"raw-random", Method::kRaw, &random, &tr.raw_random},
                            Case{"ferry-zero", Method::kFerry, &zero, &tr.ferry_zero},
                            Case{"raw-zero", Method::kRaw, &zero, &tr.raw_zero}}) {
        if (!opt.wants(c.key)) continue;
        Result<Measurement> m = run_once(**worker, c.method, transports[t], *c.ram, opt, *dir);
        if (!m.ok()) return fail(m.status());
        c.row->add(m->seconds);
        c.row->add_cpu(m->source_cpu, m->destination_cpu);
        c.row->stream_bytes = m->stream_bytes;
        fmt::print("  rep {} {:<5} {:<16} {:8.3f} s (cpu: source {:.3f} s, destination {:.3f} s)\n",
                   rep + 1, transport_name(transports[t]), c.row->name, m->seconds,
                   m->source_cpu, m->destination_cpu);
      }
    }
    if (qemu) {
      struct QemuCase {
        const std::string* file;
        Row* row;
        QemuMeasurement* best;
      };
      std::vector<QemuCase> cases;
      if (opt.wants("qemu-random"))
        cases.push_back({&random_file, &qemu_random, &qemu_random_stats});
      if (opt.qemu_zero && opt.wants("qemu-zero"))
        cases.push_back({&zero_file, &qemu_zero, &qemu_zero_stats});
      for (const QemuCase& c : cases) {
        Result<QemuMeasurement> m = run_qemu_once(*c.file, opt.size_mib, *dir);
        if (!m.ok()) return fail(m.status());
        if (!c.row->best || m->wall_seconds < *c.row->best) *c.best = *m;
        c.row->add(m->wall_seconds);
        c.row->stream_bytes = m->transferred;
        fmt::print("  rep {} unix  {:<16} {:8.3f} s wall, total-time {:.3f} s, {:.0f} mbps\n",
                   rep + 1, c.row->name, m->wall_seconds, m->total_seconds, m->mbps);
      }
    }
  }

  bool all_pass = true;
  for (size_t t = 0; t < transports.size(); ++t) {
    TransportRows& tr = rows[t];
    std::vector<const Row*> table = {&tr.ferry_random, &tr.raw_random, &tr.ferry_zero,
                                     &tr.raw_zero};
    if (transports[t] == Transport::kUnix && qemu) {
      table.push_back(&qemu_random);
      if (opt.qemu_zero) table.push_back(&qemu_zero);
    }
    std::string_view name = transport_name(transports[t]);
    print_table(fmt::format("transport {}", name), table, size);
    // Ratios need both rows measured (--cases can leave some out).
    auto both = [](const Row& a, const Row& b) { return a.best && b.best; };
    if (both(tr.raw_random, tr.ferry_random))
      all_pass &= print_ratio(fmt::format("ferry/raw throughput (random, {})", name),
                              *tr.raw_random.best / *tr.ferry_random.best, 0.8, true);
    if (both(tr.raw_random, tr.ferry_random))
      fmt::print("  {:<42} source {:.2f}x, destination {:.2f}x (ferry CPU / raw CPU)\n",
                 fmt::format("cpu cost (random, {})", name),
                 *tr.ferry_random.source_cpu / *tr.raw_random.source_cpu,
                 *tr.ferry_random.destination_cpu / *tr.raw_random.destination_cpu);
    if (both(tr.raw_zero, tr.ferry_zero))
      print_ratio(fmt::format("ferry/raw throughput (zero, {})", name),
                  *tr.raw_zero.best / *tr.ferry_zero.best, 1.0, false);
    if (transports[t] == Transport::kUnix && qemu) {
      // QEMU's own total-time stops when its source has sent everything; our wall time
      // includes the destination's load. Judge against the smaller of the two.
      auto judge = [&](std::string_view what, const Row& qemu_row, const QemuMeasurement& q,
                       const Row& ferry) {
        if (!both(qemu_row, ferry)) return true;
        double qemu_time = std::min(q.wall_seconds, q.total_seconds);
        fmt::print("  qemu {} (best run): wall {:.3f} s, total-time {:.3f} s, ram mbps {:.0f} "
                   "(= {:.2f} GB/s)\n",
                   what, q.wall_seconds, q.total_seconds, q.mbps, q.mbps / 8e3);
        return print_ratio(fmt::format("qemu time / ferry time ({}, unix)", what),
                           qemu_time / *ferry.best, 1.0, false);
      };
      all_pass &= judge("random", qemu_random, qemu_random_stats, tr.ferry_random);
      if (opt.qemu_zero) judge("zero", qemu_zero, qemu_zero_stats, tr.ferry_zero);
    }
  }
  fmt::print("\nall destinations verified (crc32c of the whole RAM); targets {}\n",
             all_pass ? "met" : "NOT met");
  return 0;  // a missed target is reported, not a failure; wrong bytes are
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  ferry::bench::Options opt;
  CLI::App app{"RAM precopy benchmark: Ferry vs a raw socket copy vs QEMU 7.2"};
  app.add_option("--size-mib", opt.size_mib, "RAM per case in MiB (random and zero)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{16384}));
  app.add_option("--transport", opt.transport, "unix, tcp or both")
      ->check(CLI::IsMember({"unix", "tcp", "both"}));
  app.add_option("--qemu", opt.qemu, "run QEMU 7.2 side by side (on/off)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, bool>{{"on", true},
                                                                      {"off", false}}));
  app.add_option("--qemu-zero", opt.qemu_zero, "also migrate the zero RAM with QEMU (on/off)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, bool>{{"on", true},
                                                                      {"off", false}}));
  app.add_option("--reps", opt.repetitions, "repetitions; the best is reported")
      ->check(CLI::Range(1, 100));
  app.add_option("--raw-chunk-kib", opt.raw_chunk_kib, "write()/read() size of the raw copy")
      ->check(CLI::Range(size_t{4}, size_t{1} << 20));
  app.add_option("--cases", opt.cases,
                 "measure only these rows (ferry-random raw-random ferry-zero raw-zero "
                 "qemu-random qemu-zero), e.g. to profile one")
      ->check(CLI::IsMember({"ferry-random", "raw-random", "ferry-zero", "raw-zero",
                             "qemu-random", "qemu-zero"}));
  app.add_option("--scratch", opt.scratch_root,
                 "directory for the QEMU RAM files and sockets (default /dev/shm)");
  CLI11_PARSE(app, argc, argv);
  return ferry::bench::run(opt);
}
