#include "ferry/live_demo.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "client/child_process.h"
#include "client/line_socket.h"
#include "client/qmp_client.h"

namespace ferry::tools {

namespace {

using client::Json;
using client::Millis;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kNs1Bytes = 64ull << 20;  // namespace 1: 512-byte LBAs
constexpr uint64_t kNs2Bytes = 32ull << 20;  // namespace 2: 4 KiB LBAs
// No runtime: the run phase goes on until the demo ends it (x-guest-finish).
constexpr const char* kWorkload = "verify,device=nvme0,nsid=1,rw=randwrite,bs=4k,iodepth=16,"
                                  "size=32M,seed=2026,loops=1000000";
// How long the workload runs before and after each migration, to measure its IOPS.
constexpr auto kSettle = std::chrono::milliseconds(1000);

// The progress bar is redrawn in place ('\r') on a terminal only (Setup::progress). It is
// cut to the terminal's width so that it never wraps ('\r' returns to the start of the
// last row only), and every redraw and the final clear erase to the end of the line
// (ANSI EL), so nothing of a longer earlier line survives under what is printed next.
constexpr const char* kEraseToEnd = "\x1b[K";

size_t terminal_columns() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

void draw_progress(std::string line) {
  size_t columns = terminal_columns();
  // The last column stays free: writing into it makes some terminals wrap at once.
  if (line.size() >= columns) line.resize(columns - 1);
  fmt::print("\r{}{}", line, kEraseToEnd);
  std::fflush(stdout);
}

// Clears the progress line when it goes out of scope, on every path out of a migration.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled) {}
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  ~ProgressLine() { clear(); }
  bool enabled() const { return enabled_; }
  void draw(std::string line) {
    draw_progress(std::move(line));
    drawn_ = true;
  }
  void clear() {
    if (!drawn_) return;
    fmt::print("\r{}", kEraseToEnd);
    std::fflush(stdout);
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One ferry-vm under the demo's control.
struct Vm {
  std::string name;
  std::optional<client::ChildProcess> process;
  std::optional<client::QmpClient> qmp;

  Result<Json> run(const std::string& cmd, const Json& args = Json::object()) {
    auto reply = qmp->execute(cmd, args);
    if (!reply.ok()) return reply.take_status();
    if (reply->contains("error"))
      return Error(ErrorCode::kFailedPrecondition, "{}: {}: {}", name, cmd,
                   (*reply)["error"]["desc"].get<std::string>());
    return (*reply)["return"];
  }
  Result<uint64_t> guest_ops() {
    auto g = run("query-guest");
    if (!g.ok()) return g.take_status();
    return (*g)["status"].value("ops", uint64_t{0});
  }
};

struct Setup {
  std::string binary;
  std::string dir;
  LiveDemoOptions options;
  bool progress = false;
};

Result<std::unique_ptr<Vm>> start_vm(const Setup& s, const std::string& name,
                                     const std::vector<std::string>& extra) {
  auto vm = std::make_unique<Vm>();
  vm->name = name;
  std::string qmp_path = s.dir + "/" + name + ".qmp";
  std::vector<std::string> argv = {
      s.binary, "-name", name, "-m", fmt::format("{}M", s.options.ram_mib),
      "-drive", fmt::format("if=none,id=d0,file={}/ns1.img,format=raw", s.dir),
      "-drive", fmt::format("if=none,id=d1,file={}/ns2.img,format=raw", s.dir),
      "-device", "nvme,id=nvme0,serial=FERRYDEMO,drive=d0",
      "-device", "nvme-ns,drive=d1,nsid=2,logical_block_size=4096",
      "-guest", kWorkload,
      "-qmp", "unix:" + qmp_path + ",server=on,wait=off"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto process = client::ChildProcess::spawn(argv, s.dir + "/" + name + ".log");
  if (!process.ok()) return process.take_status();
  vm->process.emplace(std::move(process).value());
  for (int i = 0; i < 500; ++i) {
    auto qmp = client::QmpClient::connect(qmp_path);
    if (qmp.ok()) {
      vm->qmp.emplace(std::move(qmp).value());
      return vm;
    }
    if (vm->process->wait(Millis(10)).has_value())
      return Error(ErrorCode::kIo, "{} exited at start: {}", name, vm->process->stderr_text());
  }
  return Error(ErrorCode::kIo, "{} did not open its QMP socket: {}", name,
               vm->process->stderr_text());
}

// One published guest status (the vCPU publishes them; see src/vm/vcpu.h).
struct GuestSample {
  uint64_t ops = 0;
  int64_t published_ns = 0;  // CLOCK_MONOTONIC, when the vCPU took it
  Json guest;                // the whole query-guest reply
};

// The first status the vCPU published after `after_ns` while running. A status that still
// says "parked" predates the last resume: on a destination it is the one taken before the
// state was loaded (ops 0), on a source the one taken at the stop.
Result<GuestSample> fresh_sample(Vm& vm, int64_t after_ns) {
  for (int i = 0; i < 1000; ++i) {
    auto g = vm.run("query-guest");
    if (!g.ok()) return g.take_status();
    std::string state = g->value("state", "");
    if (state == "failed")
      return Error(ErrorCode::kCorrupt, "the workload failed on {}: {}", vm.name,
                   g->value("error", std::string("?")));
    if (state == "finished")
      return Error(ErrorCode::kFailedPrecondition, "the workload on {} ended early", vm.name);
    int64_t published = g->value("published-ns", int64_t{0});
    if (state == "running" && published > after_ns)
      return GuestSample{(*g)["status"].value("ops", uint64_t{0}), published, std::move(*g)};
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Error(ErrorCode::kIo, "{}: no fresh guest status in 5 s", vm.name);
}

// The workload's I/O rate over about `window`: completions between two published statuses
// divided by the time between them (as the vCPU took them, not as the demo asked).
struct IopsSample {
  double iops = 0;
  uint64_t first_ops = 0;  // the count the window starts from
};
Result<IopsSample> measure_iops(Vm& vm, std::chrono::milliseconds window) {
  auto first = fresh_sample(vm, 0);
  if (!first.ok()) return first.take_status();
  std::this_thread::sleep_for(window);
  auto last = fresh_sample(vm, first->published_ns);
  if (!last.ok()) return last.take_status();
  double seconds = static_cast<double>(last->published_ns - first->published_ns) / 1e9;
  return IopsSample{static_cast<double>(last->ops - first->ops) / seconds, first->ops};
}

Status create_image(const std::string& path, uint64_t bytes) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (fd < 0) return Error(ErrorCode::kIo, "cannot create {}", path);
  int rc = ::ftruncate(fd, static_cast<off_t>(bytes));
  ::close(fd);
  if (rc != 0) return Error(ErrorCode::kIo, "cannot size {}", path);
  return {};
}

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }

// Everything one migration showed.
struct HopReport {
  std::string from, to, uri;
  Json stats;                // the source's final query-migrate
  double iops_before = 0;    // the source's workload, the second before `migrate`
  double iops_after = 0;     // the destination's, the first second after it runs
  int64_t io_stall_ns = -1;  // from the guest's own stall record, when it has one
  std::string phase_at_stop; // the workload's phase when the source stopped
  int64_t in_flight_at_stop = -1;  // its commands in flight then
  bool verified = false;     // the workload on the destination: running, no error so far
  uint64_t ops_at_resume = 0;  // its completed I/Os when it resumed (all hosts so far)
  uint64_t ops_after = 0;    // and when checked, after the IOPS window
};

// Migrates the workload from `from` into a new VM, watching progress; returns the new VM.
Result<std::unique_ptr<Vm>> hop(const Setup& s, Vm& from, const std::string& to_name,
                                HopReport& report) {
  report.from = from.name;
  report.to = to_name;
  report.uri = s.options.transport == "tcp" ? client::free_loopback_tcp_uri()
                                            : "unix:" + s.dir + "/" + to_name + ".mig";
  auto to = start_vm(s, to_name, {"-incoming", report.uri});
  if (!to.ok()) return to.take_status();
  auto iops = measure_iops(from, kSettle);
  if (!iops.ok()) return iops.take_status();
  report.iops_before = iops->iops;
  if (!s.options.json) fmt::print("  {} -> {} over {}\n", from.name, to_name, report.uri);
  auto started = from.run("migrate", Json{{"uri", report.uri}});
  if (!started.ok()) return started.take_status();
  uint64_t last_sent = 0;
  auto last_t = Clock::now();
  double rate = 0;
  ProgressLine progress(s.progress);
  for (int i = 0;; ++i) {
    auto q = from.run("query-migrate");
    if (!q.ok()) return q.take_status();
    report.stats = *q;
    std::string status = report.stats.value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") break;
    if (progress.enabled()) {
      const Json& ram = report.stats.value("ram", Json::object());
      uint64_t total = ram.value("total", uint64_t{0}), remaining = ram.value("remaining", uint64_t{0});
      uint64_t sent = ram.value("transferred", uint64_t{0});
      double dt = seconds_since(last_t);
      if (dt > 0.05) {
        rate = static_cast<double>(sent - std::min(sent, last_sent)) / dt;
        last_sent = sent;
        last_t = Clock::now();
      }
      int filled = total ? static_cast<int>(30.0 * static_cast<double>(total - std::min(total, remaining)) /
                                            static_cast<double>(total))
                         : 0;
      progress.draw(fmt::format(
          "    [{:<30}] {:<7} sent {:>10} left {:>10} {:>6.0f} MiB/s  dirty {:>6.1f} MiB/s  "
          "pass {}  expected downtime {} ms",
          std::string(filled, '#'), status, mib(sent), mib(remaining), rate / 1048576.0,
          ram.value("dirty-pages-rate", 0.0) * 4096 / 1048576.0, ram.value("dirty-sync-count", 0),
          report.stats.value("expected-downtime", 0)));
    }
    if (i > 6000) return Error(ErrorCode::kIo, "migration did not finish in 60 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  progress.clear();
  if (report.stats["status"] != "completed")
    return Error(ErrorCode::kFailedPrecondition, "migration {}: {}",
                 report.stats["status"].get<std::string>(),
                 report.stats.value("error-desc", std::string("no reason given")));
  // The source's vCPU published its status when it parked for stop-and-copy.
  if (auto parked = from.run("query-guest"); parked.ok() && parked->value("state", "") == "parked") {
    report.phase_at_stop = (*parked)["status"].value("phase", "");
    report.in_flight_at_stop = (*parked)["status"].value("in_flight", int64_t{-1});
  }
  auto resumed = (*to)->qmp->wait_event("RESUME", Millis(10000));
  if (!resumed.ok()) return Error(ErrorCode::kIo, "{} did not start running", to_name);
  auto after = measure_iops(**to, kSettle);
  if (!after.ok()) return after.take_status();
  report.iops_after = after->iops;
  report.ops_at_resume = after->first_ops;
  auto guest = (*to)->run("query-guest");
  if (!guest.ok()) return guest.take_status();
  const Json& gs = (*guest)["status"];
  const Json& stalls = gs.value("stalls", Json::array());
  if (!stalls.empty()) report.io_stall_ns = stalls.back().value("io_gap_ns", int64_t{-1});
  report.ops_after = gs.value("ops", uint64_t{0});
  report.verified = (*guest)["state"] != "failed" && gs.value("errors", Json(0)) == Json(0);
  if (!report.verified)
    return Error(ErrorCode::kCorrupt, "the workload failed on {}: {}", to_name,
                 (*guest).value("error", gs.value("errors", Json("?")).dump()));
  return to;
}

Json hop_json(const HopReport& h) {
  const Json& st = h.stats;
  Json devices = Json::array();
  for (const Json& d : st["device-breakdown"].value("devices", Json::array())) devices.push_back(d);
  return {{"from", h.from},
          {"to", h.to},
          {"uri", h.uri},
          {"status", st.value("status", "")},
          {"total-ms", st.value("total-time", 0)},
          {"downtime-ms", st.value("downtime", 0)},
          {"ram", st.value("ram", Json::object())},
          {"device-transfer-us", st["device-breakdown"].value("transfer-us", 0)},
          {"devices", devices},
          {"io-stall-ms", h.io_stall_ns < 0 ? Json(nullptr) : Json(h.io_stall_ns / 1e6)},
          {"phase-at-stop", h.phase_at_stop},
          {"in-flight-at-stop", h.in_flight_at_stop},
          {"iops-before", h.iops_before},
          {"iops-after", h.iops_after},
          {"verified", h.verified},
          {"ops-at-resume", h.ops_at_resume},
          {"ops-after", h.ops_after}};
}

std::string stall_text(const HopReport& h) {
  return h.io_stall_ns < 0 ? std::string("-") : fmt::format("{:.1f}", h.io_stall_ns / 1e6);
}

void print_hop(const HopReport& h) {
  const Json& st = h.stats;
  const Json& ram = st["ram"];
  fmt::print("    completed: total {} ms, downtime {} ms (source stop -> destination running)\n",
             st.value("total-time", 0), st.value("downtime", 0));
  fmt::print("    RAM {} sent, {} pages + {} zero pages in {} passes\n",
             mib(ram.value("transferred", uint64_t{0})), ram.value("normal", 0),
             ram.value("duplicate", 0), ram.value("dirty-sync-count", 0));
  fmt::print("    {:<28} {:>10} {:>9} {:>9} {:>11} {:>9} {:>9}\n", "device (stop-and-copy)",
             "quiesce us", "drain us", "save us", "transfer us", "load us", "bytes");
  for (const Json& d : st["device-breakdown"].value("devices", Json::array()))
    fmt::print("    {:<28} {:>10} {:>9} {:>9} {:>11} {:>9} {:>9}\n", d.value("name", ""),
               d.value("quiesce-us", 0), d.value("drain-us", 0), d.value("save-us", 0),
               d.value("transfer-us", 0),
               d.contains("load-us") ? std::to_string(d["load-us"].get<int64_t>()) : "-",
               d.value("bytes", 0));
  fmt::print("    device records on the wire: {} us\n",
             st["device-breakdown"].value("transfer-us", 0));
  fmt::print("    stopped in the {} phase with {} commands in flight; guest I/O stall across the "
             "migration: {}\n",
             h.phase_at_stop.empty() ? "?" : h.phase_at_stop, h.in_flight_at_stop,
             h.io_stall_ns < 0 ? std::string("not recorded") : stall_text(h) + " ms");
  fmt::print("    workload {:.0f} IOPS the second before, {:.0f} the first second after; "
             "verified so far: {}\n\n",
             h.iops_before, h.iops_after, h.verified ? "ok" : "FAILED");
}

// A device's short name in the summary: "0000:00:01.0/nvme" -> "nvme".
std::string short_name(const std::string& idstr) {
  size_t slash = idstr.rfind('/');
  return slash == std::string::npos ? idstr : idstr.substr(slash + 1);
}

// The final table: one row per migration, then the final pass.
void print_summary(const std::vector<HopReport>& hops, const Json& guest, double total_s) {
  // Device columns in the order they first appear; each cell is quiesce/save/load in us
  // (quiesce includes the backend drain).
  std::vector<std::string> devices;
  for (const HopReport& h : hops)
    for (const Json& d : h.stats["device-breakdown"].value("devices", Json::array())) {
      std::string name = short_name(d.value("name", ""));
      if (std::find(devices.begin(), devices.end(), name) == devices.end()) devices.push_back(name);
    }
  std::string header = fmt::format("  {:>3} {:<10} {:>8} {:>11} {:>8} {:>11} {:>10}", "#",
                                   "route", "total ms", "downtime ms", "stall ms", "IOPS before",
                                   "IOPS after");
  for (const std::string& d : devices) header += fmt::format(" {:>16}", d + " us");
  header += "  verify";
  fmt::print("\n  summary: one row per migration\n{}\n", header);
  int index = 0;
  for (const HopReport& h : hops) {
    const Json& st = h.stats;
    std::string row = fmt::format("  {:>3} {:<10} {:>8} {:>11} {:>8} {:>11.0f} {:>10.0f}", ++index,
                                  h.from + "->" + h.to, st.value("total-time", 0),
                                  st.value("downtime", 0), stall_text(h), h.iops_before,
                                  h.iops_after);
    for (const std::string& name : devices) {
      std::string cell = "-";
      for (const Json& d : st["device-breakdown"].value("devices", Json::array()))
        if (short_name(d.value("name", "")) == name)
          cell = fmt::format("{}/{}/{}", d.value("quiesce-us", 0), d.value("save-us", 0),
                             d.contains("load-us") ? std::to_string(d["load-us"].get<int64_t>()) : "-");
      row += fmt::format(" {:>16}", cell);
    }
    row += h.verified ? "  ok" : "  FAILED";
    fmt::print("{}\n", row);
  }
  fmt::print("  downtime: source stop -> destination running; stall: the gap between two I/O "
             "completions across the\n  migration, as the workload measured it; IOPS: the second "
             "before the migration and the first second after;\n  device columns: stop-and-copy "
             "quiesce (backend drain included) / save / load, in us\n");
  if (!guest.is_object()) {
    fmt::print("  final pass: not reached\n");
    return;
  }
  const Json& gs = guest.value("status", Json::object());
  const Json& final_phase = gs.value("phases", Json::object()).value("final", Json::object());
  bool clean = guest.value("state", "") == "finished" && gs.value("errors", Json(0)) == Json(0);
  fmt::print("  final pass: {} blocks re-read and checked ({} never written, skipped), {} "
             "unverified reads: {}\n",
             final_phase.value("ops", 0), gs.value("skipped_blocks", 0),
             gs.value("unverified_reads", 0),
             clean ? "clean" : "FAILED (" + guest.value("error", std::string("not finished")) + ")");
  int64_t longest = 0;
  for (const HopReport& h : hops) longest = std::max<int64_t>(longest, h.stats.value("downtime", 0));
  fmt::print("  {} migrations, longest downtime {} ms, {} I/Os, {:.1f} s in all\n",
             hops.size(), longest, gs.value("ops", 0), total_s);
}

}  // namespace

int run_live_demo(const LiveDemoOptions& options, const std::string& ferry_vm_path) {
  Setup s{ferry_vm_path, "", options, !options.quiet && !options.json && ::isatty(STDOUT_FILENO)};
  Json report = {{"ram-mib", options.ram_mib}, {"transport", options.transport},
                 {"workload", kWorkload}, {"migrations", Json::array()}};
  // With --json, stdout holds the report and nothing else (the result is in it and in the
  // exit status); otherwise the last line says "result: OK" or "result: FAILED".
  auto fail_early = [&](const std::string& why) {
    if (options.json) {
      report["result"] = "FAILED";
      report["error"] = why;
      fmt::print("{}\n", report.dump(2));
    } else {
      fmt::print("  FAILED: {}\nresult: FAILED\n", why);
    }
    return 1;
  };
  char tmpl[] = "/tmp/ferry-demo-XXXXXX";
  if (!::mkdtemp(tmpl)) return fail_early("no temporary directory");
  s.dir = tmpl;
  std::vector<std::unique_ptr<Vm>> vms;  // quit at the end (or on failure)
  std::vector<HopReport> hops;
  Json guest;  // the workload's last status on the last VM, once the final pass ended
  auto t0 = Clock::now();
  auto finish = [&](const Status& st) {
    if (!options.json && !hops.empty()) print_summary(hops, guest, seconds_since(t0));
    for (auto& vm : vms)
      if (vm) {
        (void)vm->run("quit");
        vm->process->wait(Millis(5000));
      }
    report["result"] = st.ok() ? "OK" : "FAILED";
    if (!st.ok()) {
      report["error"] = st.to_string();
      report["logs"] = s.dir;
    }
    if (options.json) {
      fmt::print("{}\n", report.dump(2));
      if (!st.ok()) fmt::print(stderr, "ferry demo: {} (logs kept in {})\n", st.to_string(), s.dir);
    } else if (!st.ok()) {
      fmt::print("  FAILED: {}\n  logs kept in {}\nresult: FAILED\n", st.to_string(), s.dir);
    } else {
      fmt::print("result: OK\n");
    }
    if (!st.ok()) return 1;
    std::error_code ignored;
    std::filesystem::remove_all(s.dir, ignored);
    return 0;
  };

  if (!options.json)
    fmt::print("ferry demo: live migration of an NVMe controller under a verifying workload\n"
               "  {} MiB of RAM; nvme0 with namespace 1 (64 MiB, 512 B LBAs) and namespace 2 "
               "(32 MiB, 4 KiB LBAs)\n  on files in {}; guest program: {}\n\n",
               options.ram_mib, s.dir, kWorkload);
  for (auto [name, bytes] : {std::pair{"ns1.img", kNs1Bytes}, std::pair{"ns2.img", kNs2Bytes}})
    if (Status st = create_image(s.dir + "/" + name, bytes); !st.ok()) return finish(st);

  auto first = start_vm(s, "vm0", {});
  if (!first.ok()) return finish(first.status());
  vms.push_back(std::move(first).value());
  // Let the workload bring the controller up and write for a while.
  for (int i = 0; i < 500; ++i) {
    auto ops = vms.back()->guest_ops();
    if (!ops.ok()) return finish(ops.status());
    if (*ops > 2000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!options.json) fmt::print("  vm0 runs the workload\n");

  for (int index = 1; index <= 2 * options.round_trips; ++index) {
    HopReport h;
    auto next = hop(s, *vms.back(), fmt::format("vm{}", index), h);
    if (!next.ok()) return finish(next.status());
    report["migrations"].push_back(hop_json(h));
    if (!options.json) print_hop(h);
    hops.push_back(std::move(h));
    // The source is done: postmigrate, then quit.
    (void)vms.back()->run("quit");
    vms.back()->process->wait(Millis(5000));
    vms.back().reset();
    vms.push_back(std::move(next).value());
  }

  // Stop the run phase: the program then re-reads and verifies every block it wrote.
  Vm& last = *vms.back();
  if (!options.json) fmt::print("  final verification pass on {}\n", last.name);
  for (int i = 0;; ++i) {
    auto g = last.run("query-guest");
    if (!g.ok()) return finish(g.status());
    std::string state = g->value("state", "");
    if (state == "finished" || state == "failed") {
      guest = *g;
      break;
    }
    if (i == 0) {
      // The workload has no runtime limit of its own here: the demo ends its run phase.
      auto stop = last.run("x-guest-finish");
      if (!stop.ok()) return finish(stop.status());
    }
    if (i > 12000) return finish(Error(ErrorCode::kIo, "the final pass did not end in 120 s"));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const Json& gs = guest["status"];
  report["guest"] = guest;
  report["total-s"] = seconds_since(t0);
  if (guest["state"] != "finished" || gs.value("errors", Json(0)) != Json(0))
    return finish(Error(ErrorCode::kCorrupt, "verification: {}",
                        guest.value("error", std::string("the workload did not finish"))));
  return finish(Status::Ok());
}

}  // namespace ferry::tools
