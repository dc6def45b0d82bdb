#include "ferry/live_demo.h"

#include <fcntl.h>
#include <unistd.h>

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

// The workload's I/O rate over `window`, measured through query-guest.
Result<double> measure_iops(Vm& vm, std::chrono::milliseconds window) {
  auto before = vm.guest_ops();
  if (!before.ok()) return before.take_status();
  auto t0 = Clock::now();
  std::this_thread::sleep_for(window);
  auto after = vm.guest_ops();
  if (!after.ok()) return after.take_status();
  return static_cast<double>(*after - *before) / seconds_since(t0);
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
  Json stats;              // the source's final query-migrate
  double iops_before = 0;
  double iops_after = 0;
  int64_t io_stall_ns = -1;  // from the guest's own stall record, when it has one
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
  report.iops_before = *iops;
  if (!s.options.json) fmt::print("  {} -> {} over {}\n", from.name, to_name, report.uri);
  auto started = from.run("migrate", Json{{"uri", report.uri}});
  if (!started.ok()) return started.take_status();
  uint64_t last_sent = 0;
  auto last_t = Clock::now();
  double rate = 0;
  for (int i = 0;; ++i) {
    auto q = from.run("query-migrate");
    if (!q.ok()) return q.take_status();
    report.stats = *q;
    std::string status = report.stats.value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") break;
    if (s.progress) {
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
      fmt::print("\r    [{:<30}] {:<7} sent {:>10} left {:>10} {:>6.0f} MiB/s  dirty {:>6.1f} "
                 "MiB/s  pass {}  expected downtime {} ms  ",
                 std::string(filled, '#'), status, mib(sent), mib(remaining), rate / 1048576.0,
                 ram.value("dirty-pages-rate", 0.0) * 4096 / 1048576.0,
                 ram.value("dirty-sync-count", 0), report.stats.value("expected-downtime", 0));
      std::fflush(stdout);
    }
    if (i > 6000) return Error(ErrorCode::kIo, "migration did not finish in 60 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (s.progress) fmt::print("\r{:120}\r", "");
  if (report.stats["status"] != "completed")
    return Error(ErrorCode::kFailedPrecondition, "migration {}: {}",
                 report.stats["status"].get<std::string>(),
                 report.stats.value("error-desc", std::string("no reason given")));
  auto resumed = (*to)->qmp->wait_event("RESUME", Millis(10000));
  if (!resumed.ok()) return Error(ErrorCode::kIo, "{} did not start running", to_name);
  auto after = measure_iops(**to, kSettle);
  if (!after.ok()) return after.take_status();
  report.iops_after = *after;
  auto guest = (*to)->run("query-guest");
  if (!guest.ok()) return guest.take_status();
  const Json& stalls = (*guest)["status"].value("stalls", Json::array());
  if (!stalls.empty()) report.io_stall_ns = stalls.back().value("io_gap_ns", int64_t{-1});
  if ((*guest)["state"] == "failed")
    return Error(ErrorCode::kCorrupt, "the workload failed on {}: {}", to_name,
                 (*guest).value("error", std::string("?")));
  return to;
}

Json hop_json(const HopReport& h) {
  const Json& st = h.stats;
  Json devices = Json::array();
  for (const Json& d : st["device-breakdown"].value("devices", Json::array())) devices.push_back(d);
  return {{"from", h.from},
          {"to", h.to},
          {"uri", h.uri},
          {"total-ms", st.value("total-time", 0)},
          {"downtime-ms", st.value("downtime", 0)},
          {"ram", st.value("ram", Json::object())},
          {"device-transfer-us", st["device-breakdown"].value("transfer-us", 0)},
          {"devices", devices},
          {"io-stall-ms", h.io_stall_ns < 0 ? Json(nullptr) : Json(h.io_stall_ns / 1e6)},
          {"iops-before", h.iops_before},
          {"iops-after", h.iops_after}};
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
  fmt::print("    guest I/O stall across the migration: {}; workload {:.0f} IOPS before, {:.0f} after\n\n",
             h.io_stall_ns < 0 ? std::string("not recorded")
                               : fmt::format("{:.1f} ms", h.io_stall_ns / 1e6),
             h.iops_before, h.iops_after);
}

}  // namespace

int run_live_demo(const LiveDemoOptions& options, const std::string& ferry_vm_path) {
  Setup s{ferry_vm_path, "", options, !options.quiet && !options.json && ::isatty(STDOUT_FILENO)};
  char tmpl[] = "/tmp/ferry-demo-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    fmt::print("result: FAILED (no temporary directory)\n");
    return 1;
  }
  s.dir = tmpl;
  Json report = {{"ram-mib", options.ram_mib}, {"transport", options.transport},
                 {"workload", kWorkload}, {"migrations", Json::array()}};
  std::vector<std::unique_ptr<Vm>> vms;  // quit at the end (or on failure)
  auto finish = [&](const Status& st) {
    for (auto& vm : vms)
      if (vm) {
        (void)vm->run("quit");
        vm->process->wait(Millis(5000));
      }
    report["result"] = st.ok() ? "OK" : "FAILED";
    if (!st.ok()) report["error"] = st.to_string();
    if (options.json) fmt::print("{}\n", report.dump(2));
    if (!st.ok()) {
      if (!options.json) fmt::print("  FAILED: {}\n  logs kept in {}\n", st.to_string(), s.dir);
      fmt::print("result: FAILED\n");
      return 1;
    }
    std::error_code ignored;
    std::filesystem::remove_all(s.dir, ignored);
    fmt::print("result: OK\n");
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
  auto t0 = Clock::now();
  // Let the workload bring the controller up and write for a while.
  for (int i = 0; i < 500; ++i) {
    auto ops = vms.back()->guest_ops();
    if (!ops.ok()) return finish(ops.status());
    if (*ops > 2000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!options.json) fmt::print("  vm0 runs the workload\n");

  int64_t max_downtime = 0;
  for (int index = 1; index <= 2 * options.round_trips; ++index) {
    HopReport h;
    auto next = hop(s, *vms.back(), fmt::format("vm{}", index), h);
    if (!next.ok()) return finish(next.status());
    max_downtime = std::max<int64_t>(max_downtime, h.stats.value("downtime", int64_t{0}));
    report["migrations"].push_back(hop_json(h));
    if (!options.json) print_hop(h);
    // The source is done: postmigrate, then quit.
    (void)vms.back()->run("quit");
    vms.back()->process->wait(Millis(5000));
    vms.back().reset();
    vms.push_back(std::move(next).value());
  }

  // Stop the run phase: the program then re-reads and verifies every block it wrote.
  Vm& last = *vms.back();
  if (!options.json) fmt::print("  final verification pass on {}\n", last.name);
  Json guest;
  for (int i = 0;; ++i) {
    auto g = last.run("query-guest");
    if (!g.ok()) return finish(g.status());
    guest = *g;
    std::string state = guest.value("state", "");
    if (state == "finished" || state == "failed") break;
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
  if (!options.json) {
    fmt::print("\n  summary: {} migrations, longest downtime {} ms, {} I/Os, {} verification "
               "errors, final pass over {} blocks: {}\n",
               2 * options.round_trips, max_downtime, gs.value("ops", 0),
               gs.value("errors", Json(0)) == Json(0) ? "0" : "1",
               gs["phases"]["final"].value("ops", 0),
               guest["state"] == "finished" ? "clean" : "FAILED");
  }
  if (guest["state"] != "finished" || gs.value("errors", Json(0)) != Json(0))
    return finish(Error(ErrorCode::kCorrupt, "verification: {}",
                        guest.value("error", std::string("the workload did not finish"))));
  return finish(Status::Ok());
}

}  // namespace ferry::tools
