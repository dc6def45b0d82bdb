#include "ferry/live_demo.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "client/child_process.h"
#include "client/qmp_client.h"
#include "client/qtest_client.h"

namespace ferry::tools {

namespace {

using client::Json;
using client::Millis;

constexpr int kSlot = 3;
constexpr uint64_t kBar0 = 0xc0000000;

// One ferry-vm under the demo's control.
struct Vm {
  std::string name;
  std::optional<client::ChildProcess> process;
  std::optional<client::QmpClient> qmp;
  std::optional<client::QtestClient> qtest;

  Result<Json> run(const std::string& cmd, const Json& args = Json::object()) {
    auto reply = qmp->execute(cmd, args);
    if (!reply.ok()) return reply.take_status();
    if (reply->contains("error"))
      return Error(ErrorCode::kFailedPrecondition, "{}: {}: {}", name, cmd,
                   (*reply)["error"]["desc"].get<std::string>());
    return (*reply)["return"];
  }
  Status config_write(uint32_t offset, uint32_t value, unsigned bits) {
    FERRY_RETURN_IF_ERROR(qtest->out(32, 0xcf8, 0x80000000u | (kSlot << 11) | (offset & 0xfc)));
    return qtest->out(bits, static_cast<uint16_t>(0xcfc + (offset & 3)), value);
  }
};

Result<std::unique_ptr<Vm>> start_vm(const std::string& binary, const std::string& dir,
                                     const std::string& name, uint64_t ram_mib,
                                     const std::vector<std::string>& extra) {
  auto vm = std::make_unique<Vm>();
  vm->name = name;
  auto listener = client::UnixListener::listen(dir + "/" + name + ".qtest");
  if (!listener.ok()) return listener.take_status();
  std::vector<std::string> argv = {binary, "-name", name, "-m", fmt::format("{}M", ram_mib),
                                   "-device", fmt::format("ferry-testdev,addr={}", kSlot),
                                   "-qmp", "unix:" + dir + "/" + name + ".qmp,server=on,wait=off",
                                   "-qtest", "unix:" + dir + "/" + name + ".qtest"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto process = client::ChildProcess::spawn(argv, dir + "/" + name + ".log");
  if (!process.ok()) return process.take_status();
  vm->process.emplace(std::move(process).value());
  auto conn = listener->accept(Millis(10000));
  if (!conn.ok()) return Error(ErrorCode::kIo, "{} did not start: {}", name, vm->process->stderr_text());
  vm->qtest.emplace(std::move(conn).value());
  auto qmp = client::QmpClient::connect(dir + "/" + name + ".qmp");
  if (!qmp.ok()) return qmp.take_status();
  vm->qmp.emplace(std::move(qmp).value());
  return vm;
}

// What the guest "has": words at pages spread over RAM, and the test device programmed.
struct GuestContent {
  std::vector<std::pair<uint64_t, uint64_t>> words;
  uint32_t scratch = 0;

  static GuestContent make(uint64_t ram_bytes, uint32_t seed) {
    GuestContent c;
    std::mt19937_64 rng(seed);
    for (uint64_t addr = 0x10000; addr + 8 <= ram_bytes; addr += 0x40000 + (rng() % 64) * 8)
      c.words.emplace_back(addr, rng());
    c.scratch = static_cast<uint32_t>(rng());
    return c;
  }

  Status write_to(Vm& vm) const {
    for (auto [addr, value] : words) FERRY_RETURN_IF_ERROR(vm.qtest->write(64, addr, value));
    FERRY_RETURN_IF_ERROR(vm.config_write(0x10, static_cast<uint32_t>(kBar0), 32));
    FERRY_RETURN_IF_ERROR(vm.config_write(0x14, 0, 32));
    FERRY_RETURN_IF_ERROR(vm.config_write(0x04, 0x6, 16));  // memory decoding, bus master
    return vm.qtest->write(32, kBar0, scratch);
  }

  Status verify_in(Vm& vm) const {
    for (auto [addr, value] : words) {
      auto found = vm.qtest->read(64, addr);
      if (!found.ok()) return found.take_status();
      if (*found != value)
        return Error(ErrorCode::kCorrupt, "{}: RAM at {:#x}: expected {:#x}, found {:#x}",
                     vm.name, addr, value, *found);
    }
    auto reg = vm.qtest->read(32, kBar0);
    if (!reg.ok()) return reg.take_status();
    if (*reg != scratch)
      return Error(ErrorCode::kCorrupt, "{}: ferry-testdev scratch: expected {:#x}, found {:#x}",
                   vm.name, scratch, *reg);
    return {};
  }
};

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }

// Migrates `from` into a new VM and returns it; prints progress and the hop's report.
Result<std::unique_ptr<Vm>> hop(Vm& from, const std::string& binary, const std::string& dir,
                                const std::string& to_name, const LiveDemoOptions& options) {
  std::string uri = options.transport == "tcp" ? client::free_loopback_tcp_uri()
                                               : "unix:" + dir + "/" + to_name + ".mig";
  auto to = start_vm(binary, dir, to_name, options.ram_mib, {"-incoming", uri});
  if (!to.ok()) return to.take_status();
  fmt::print("  {} -> {} over {}\n", from.name, to_name, uri);
  auto started = from.run("migrate", Json{{"uri", uri}});
  if (!started.ok()) return started.take_status();
  const bool tty = ::isatty(STDOUT_FILENO);
  Json stats;
  for (int i = 0;; ++i) {
    auto q = from.run("query-migrate");
    if (!q.ok()) return q.take_status();
    stats = *q;
    std::string status = stats.value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") break;
    if (tty) {
      const Json& ram = stats.value("ram", Json::object());
      fmt::print("\r    {:<10} sent {:>10}  remaining {:>10}  expected downtime {} ms   ",
                 status, mib(ram.value("transferred", 0ull)), mib(ram.value("remaining", 0ull)),
                 stats.value("expected-downtime", 0));
      std::fflush(stdout);
    }
    if (i > 6000) return Error(ErrorCode::kIo, "migration did not finish in 60 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (tty) fmt::print("\r{:80}\r", "");
  if (stats["status"] != "completed")
    return Error(ErrorCode::kFailedPrecondition, "migration {}: {}", stats["status"].get<std::string>(),
                 stats.value("error-desc", std::string("no reason given")));
  auto resumed = (*to)->qmp->wait_event("RESUME", Millis(10000));
  if (!resumed.ok()) return Error(ErrorCode::kIo, "{} did not start running", to_name);
  const Json& ram = stats["ram"];
  fmt::print("    completed: total {} ms, setup {} ms, downtime {} ms (stop -> destination running)\n",
             stats["total-time"].get<int64_t>(), stats["setup-time"].get<int64_t>(),
             stats["downtime"].get<int64_t>());
  fmt::print("    RAM {} in {} sent: {} pages, {} zero pages, {} passes, {:.0f} Mbit/s; device save {} ms\n",
             mib(ram["total"].get<uint64_t>()), mib(ram["transferred"].get<uint64_t>()),
             ram["normal"].get<uint64_t>(), ram["duplicate"].get<uint64_t>(),
             ram["dirty-sync-count"].get<uint64_t>(), ram["mbps"].get<double>(),
             stats["device-breakdown"]["save-ms"].get<int64_t>());
  auto src_status = from.run("query-status");
  if (!src_status.ok()) return src_status.take_status();
  fmt::print("    {} is now {}, {} is running\n", from.name,
             (*src_status)["status"].get<std::string>(), to_name);
  return to;
}

}  // namespace

int run_live_demo(const LiveDemoOptions& options, const std::string& ferry_vm_path) {
  fmt::print("ferry demo: live migration between two ferry-vm processes\n"
             "  (the NVMe controller under a verifying guest workload joins this demo once the\n"
             "  NVMe device and guest programs exist; today the guest state is written and\n"
             "  checked through qtest, and the device is ferry-testdev)\n\n");
  char tmpl[] = "/tmp/ferry-demo-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    fmt::print("result: FAILED (no temporary directory)\n");
    return 1;
  }
  std::string dir = tmpl;
  auto fail = [&](const Status& st) {
    fmt::print("  FAILED: {}\n  logs kept in {}\nresult: FAILED\n", st.to_string(), dir);
    return 1;
  };

  auto current = start_vm(ferry_vm_path, dir, "vm0", options.ram_mib, {});
  if (!current.ok()) return fail(current.status());
  GuestContent content = GuestContent::make(options.ram_mib << 20, 2026);
  if (Status st = content.write_to(**current); !st.ok()) return fail(st);
  fmt::print("  vm0 runs with {} MiB of RAM ({} words written across it) and ferry-testdev at "
             "00:{:02x}.0\n",
             options.ram_mib, content.words.size(), kSlot);

  std::unique_ptr<Vm> vm = std::move(current).value();
  for (int hop_index = 1; hop_index <= 2 * options.round_trips; ++hop_index) {
    auto next = hop(*vm, ferry_vm_path, dir, fmt::format("vm{}", hop_index), options);
    if (!next.ok()) return fail(next.status());
    if (Status st = content.verify_in(**next); !st.ok()) return fail(st);
    fmt::print("    verified on vm{}: every RAM word and the device register match\n\n", hop_index);
    (void)vm->run("quit");
    vm->process->wait(Millis(5000));
    vm = std::move(next).value();
  }
  (void)vm->run("quit");
  vm->process->wait(Millis(5000));
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  fmt::print("result: OK\n");
  return 0;
}

}  // namespace ferry::tools
