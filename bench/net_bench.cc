// net_bench: frames per second between two ferry-vm guests joined by `-netdev stream` over a
// unix socket, against a raw exchange of the same framed bytes between two processes, in one
// run (target ≥ 0.5× raw), for 1,514-byte and 64-byte frames.
//
// Ferry: VM A runs `-guest net-verify,role=send,rate=0` (as fast as its TX ring takes
// frames), VM B `role=receive`; each frame goes guest driver → virtio-net TX ring → A's
// stream backend → the socket → B's backend → B's RX ring → B's guest, which checks its
// crc32c and sequence number. The rate is B's received count between two statuses it
// published (query-guest's counters and their `published-ns` stamp, so count and time
// belong together). Both VMs are stopped (QMP stop) while the raw side runs, so the two do
// not share the CPU.
//
// Raw: a socketpair and a forked writer sending the same bytes (be32 length + the frame
// net-verify builds); the reader takes them in 64 KiB reads and walks the lengths: no rings,
// no guest, no checks. Two writers: one write() per frame (the backend's own way while the
// socket keeps up: one sendmsg per frame; the target is against this one), and 64 frames
// per write() (the most the backend coalesces when frames queue behind a full socket), the
// ceiling of a frame-at-a-time-free path.
//
// Each round measures both raw writers then Ferry for `seconds` each; the ratio reported is the median
// of the rounds' ratios, with their range. Results on a shared machine are noisy.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "client/child_process.h"
#include "guest/programs/net_frame.h"
#include "client/qmp_client.h"

namespace {

using namespace ferry;
using Clock = std::chrono::steady_clock;
using client::Json;

struct Options {
  std::string ferry_vm = FERRY_VM_PATH;
  double seconds = 1.0;
  int rounds = 3;
  std::string dir = "/tmp";
};

// The most frames the stream backend hands the socket in one sendmsg (when frames queue up).
constexpr unsigned kBurst = 64;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// ---- raw ----------------------------------------------------------------------------------------

double raw_rate(size_t frame_size, double seconds, unsigned batch) {
  guest::netverify::FrameFields fields;
  std::vector<uint8_t> frame = guest::netverify::build_frame(fields, frame_size);
  std::vector<uint8_t> message(4 + frame.size());
  uint32_t length = static_cast<uint32_t>(frame.size());
  message[0] = static_cast<uint8_t>(length >> 24);
  message[1] = static_cast<uint8_t>(length >> 16);
  message[2] = static_cast<uint8_t>(length >> 8);
  message[3] = static_cast<uint8_t>(length);
  std::memcpy(message.data() + 4, frame.data(), frame.size());
  std::vector<uint8_t> burst;
  for (unsigned i = 0; i < batch; ++i) burst.insert(burst.end(), message.begin(), message.end());

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  pid_t writer = ::fork();
  if (writer == 0) {
    ::close(fds[0]);
    ::signal(SIGPIPE, SIG_IGN);
    for (;;) {
      if (::write(fds[1], burst.data(), burst.size()) <= 0) ::_exit(0);
    }
  }
  ::close(fds[1]);
  std::vector<uint8_t> buffer(65536);
  size_t have = 0;
  uint64_t frames = 0;
  bool bad = false;
  auto read_some = [&] {
    ssize_t got = ::read(fds[0], buffer.data() + have, buffer.size() - have);
    if (got <= 0) return false;
    have += static_cast<size_t>(got);
    size_t at = 0;
    while (have - at >= 4) {
      uint32_t len = uint32_t{buffer[at]} << 24 | uint32_t{buffer[at + 1]} << 16 |
                     uint32_t{buffer[at + 2]} << 8 | buffer[at + 3];
      if (len != frame.size()) bad = true;
      if (have - at < 4 + len) break;
      at += 4 + len;
      ++frames;
    }
    std::memmove(buffer.data(), buffer.data() + at, have - at);
    have -= at;
    return true;
  };
  // Warm up, then count whole frames over the window.
  for (auto until = Clock::now() + std::chrono::milliseconds(100); Clock::now() < until;)
    if (!read_some()) break;
  uint64_t start_frames = frames;
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < end && !bad)
    if (!read_some()) break;
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fds[0]);
  int status = 0;
  ::waitpid(writer, &status, 0);
  if (bad) {
    std::fprintf(stderr, "raw: a length other than %zu arrived\n", frame.size());
    return 0;
  }
  return static_cast<double>(frames - start_frames) / elapsed;
}

// ---- Ferry --------------------------------------------------------------------------------------

struct Vm {
  std::optional<client::ChildProcess> process;
  std::optional<client::QmpClient> qmp;
};

std::optional<Vm> start_vm(const Options& o, const std::string& base, const std::string& netdev,
                           const std::string& mac, const std::string& guest) {
  Vm vm;
  std::string qmp_path = base + ".qmp";
  auto child = client::ChildProcess::spawn(
      {o.ferry_vm, "-qmp", "unix:" + qmp_path + ",server=on,wait=off", "-netdev", netdev,
       "-device", "virtio-net-pci,netdev=n0,id=nic0,mac=" + mac, "-guest", guest},
      base + ".stderr");
  if (!child.ok()) {
    std::fprintf(stderr, "%s\n", child.status().to_string().c_str());
    return std::nullopt;
  }
  vm.process.emplace(std::move(child).value());
  auto qmp = client::QmpClient::connect(qmp_path);
  if (!qmp.ok()) {
    std::fprintf(stderr, "%s\n%s\n", qmp.status().to_string().c_str(),
                 vm.process->stderr_text().c_str());
    return std::nullopt;
  }
  vm.qmp.emplace(std::move(qmp).value());
  return vm;
}

std::optional<Json> query(Vm& vm, const std::string& command) {
  auto reply = vm.qmp->execute(command);
  if (!reply.ok() || !reply->contains("return")) {
    std::fprintf(stderr, "%s: %s\n", command.c_str(),
                 reply.ok() ? reply->dump().c_str() : reply.status().to_string().c_str());
    return std::nullopt;
  }
  return (*reply)["return"];
}

struct Sample {
  int64_t published_ns = 0;
  int64_t received = 0;
};

std::optional<Sample> sample(Vm& vm) {
  auto g = query(vm, "query-guest");
  if (!g) return std::nullopt;
  if (g->value("state", "") == "failed") {
    std::fprintf(stderr, "the guest failed: %s\n", g->dump().c_str());
    return std::nullopt;
  }
  return Sample{(*g).value("published-ns", int64_t{0}),
                (*g)["status"]["rx"].value("received", int64_t{0})};
}

// B's received frames per second over about `seconds`, measured between published statuses.
std::optional<double> ferry_rate(Vm& b, double seconds) {
  auto first = sample(b);
  if (!first) return std::nullopt;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto last = sample(b);
  if (!last) return std::nullopt;
  // A status is published every 50 ms: wait for one newer than the window's start.
  for (int i = 0; i < 200 && last->published_ns == first->published_ns; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    last = sample(b);
    if (!last) return std::nullopt;
  }
  double elapsed = static_cast<double>(last->published_ns - first->published_ns) / 1e9;
  if (elapsed <= 0) return std::nullopt;
  return static_cast<double>(last->received - first->received) / elapsed;
}

bool run_size(const Options& o, size_t size, int index) {
  std::string base = fmt::format("{}/ferry-net-bench-{}-{}", o.dir, ::getpid(), index);
  std::string sock = base + ".sock";
  std::string guest = fmt::format("net-verify,device=nic0,rate=0,size={}", size);
  auto a = start_vm(o, base + "-a", "stream,id=n0,server=on,addr.type=unix,addr.path=" + sock,
                    "52:54:00:00:00:01", guest + ",role=send,peer=52:54:00:00:00:02");
  if (!a) return false;
  auto b = start_vm(o, base + "-b", "stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
                    "52:54:00:00:00:02", guest + ",role=receive,peer=52:54:00:00:00:01");
  if (!b) return false;
  // Frames flowing (the guests found each other) before anything is timed.
  for (auto until = Clock::now() + std::chrono::seconds(60);; ) {
    auto s = sample(*b);
    if (!s) return false;
    if (s->received > 1000) break;
    if (Clock::now() > until) {
      std::fprintf(stderr, "no frames arrive: %s\n", query(*b, "query-guest")->dump().c_str());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  std::vector<double> raws, raw_bursts, ferrys, ratios, burst_ratios;
  for (int r = 0; r < o.rounds; ++r) {
    if (!query(*a, "stop") || !query(*b, "stop")) return false;
    double raw = raw_rate(size, o.seconds, 1);
    double raw_burst = raw_rate(size, o.seconds, kBurst);
    if (!query(*b, "cont") || !query(*a, "cont")) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // back up to speed
    auto ferry = ferry_rate(*b, o.seconds);
    if (!ferry || raw <= 0 || raw_burst <= 0) return false;
    raws.push_back(raw);
    raw_bursts.push_back(raw_burst);
    ferrys.push_back(*ferry);
    ratios.push_back(*ferry / raw);
    burst_ratios.push_back(*ferry / raw_burst);
  }
  // The counts must be clean, or the rate means nothing.
  auto g = query(*b, "query-guest");
  if (!g) return false;
  const Json& rx = (*g)["status"]["rx"];
  bool clean = rx.value("lost", -1) == 0 && rx.value("duplicates", -1) == 0 &&
               rx.value("corrupted", -1) == 0 && rx.value("reordered", -1) == 0;
  auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
  auto [blo, bhi] = std::minmax_element(burst_ratios.begin(), burst_ratios.end());
  std::printf("%zu-byte frames: ferry-vm to ferry-vm %.0f frames/s (%.1f MB/s)%s\n", size,
              median(ferrys), median(ferrys) * static_cast<double>(size) / 1e6,
              clean ? "" : "  COUNTS NOT CLEAN");
  std::printf("  raw, one frame per write:  %10.0f frames/s, ratio %.3f (rounds %.3f..%.3f; "
              "target >= 0.5)\n",
              median(raws), median(ratios), *lo, *hi);
  std::printf("  raw, %u frames per write:  %10.0f frames/s, ratio %.3f (rounds %.3f..%.3f)\n",
              kBurst, median(raw_bursts), median(burst_ratios), *blo, *bhi);
  if (!clean) std::fprintf(stderr, "receiver: %s\n", g->dump().c_str());
  return clean;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"frames/s between two ferry-vm guests over -netdev stream, against a raw unix socket"};
  app.add_option("--ferry-vm", o.ferry_vm, "the ferry-vm executable");
  app.add_option("--seconds", o.seconds, "length of each measured window")->check(CLI::PositiveNumber);
  app.add_option("--rounds", o.rounds, "raw+Ferry rounds per frame size")->check(CLI::PositiveNumber);
  app.add_option("--dir", o.dir, "where sockets and logs go");
  CLI11_PARSE(app, argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  bool ok = run_size(o, 1514, 0) && run_size(o, 64, 1);
  return ok ? 0 : 1;
}
