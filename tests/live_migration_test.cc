// Live migration between two ferry-vm processes, driven over QMP like a management tool
// would, with guest RAM and device state checked through qtest on both sides.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "support/ferry_vm.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;
constexpr int kSlot = 3;
const std::vector<std::string> kMachine = {"-m", "64M", "-device", "ferry-testdev,addr=3"};

std::vector<std::string> with(std::vector<std::string> extra) {
  std::vector<std::string> args = kMachine;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// Guest-visible state a migration must carry: RAM words at scattered addresses, and the
// test device with BAR0 mapped, a scratch value and an MSI-X vector programmed.
struct GuestState {
  std::vector<std::pair<uint64_t, uint64_t>> words;

  static GuestState make(uint32_t seed) {
    GuestState s;
    std::mt19937_64 rng(seed);
    for (uint64_t addr : {0x0ull, 0x1000ull, 0x123458ull, 0x2000000ull, 0x3fff000ull - 8})
      s.words.emplace_back(addr, rng());
    return s;
  }
  void write_to(FerryVm& vm) const {
    for (auto [addr, value] : words) vm.mem_write(64, addr, value);
    vm.config_write(kSlot, 0x10, 0xc0000000);
    vm.config_write(kSlot, 0x14, 0);
    vm.config_write(kSlot, 0x04, 0x6, 16);
    vm.mem_write(32, 0xc0000000, 0xfeedbeef);
    vm.mem_write(32, 0xc0002000, 0x5000);  // MSI-X vector 0 -> RAM 0x5000
    vm.mem_write(32, 0xc0002008, 0x77);
    vm.mem_write(32, 0xc000200c, 0);  // unmask (vectors reset masked)
    uint32_t msix = vm.find_capability(kSlot, 0x11);
    EXPECT_NE(msix, 0u);
    vm.config_write(kSlot, msix + 2, 0x8000, 16);  // MSI-X enable
  }
  void expect_in(FerryVm& vm) const {
    for (auto [addr, value] : words) EXPECT_EQ(vm.mem(64, addr), value) << "RAM at " << addr;
    EXPECT_EQ(vm.config_read(kSlot, 0x10), 0xc0000004u);  // BAR0 kept its address
    EXPECT_EQ(vm.mem(32, 0xc0000000), 0xfeedbeefu);      // and is decoded
    EXPECT_EQ(vm.mem(32, 0xc0002008), 0x77u);
  }
};

Json wait_migration_end(FerryVm& vm) {
  for (int i = 0; i < 600; ++i) {
    Json r = vm.ok("query-migrate");
    std::string status = r.value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "migration did not end";
  return Json();
}

void migrate_and_check(const std::string& uri_for_dst, const std::string& uri_for_src) {
  auto src = FerryVm::start(kFerryVm, kMachine);
  auto dst = FerryVm::start(kFerryVm, with({"-incoming", uri_for_dst}));
  ASSERT_TRUE(src && dst);
  EXPECT_EQ(dst->ok("query-status")["status"], "inmigrate");
  GuestState state = GuestState::make(7);
  state.write_to(*src);

  src->ok("migrate", Json{{"uri", uri_for_src}});
  Json result = wait_migration_end(*src);
  ASSERT_EQ(result["status"], "completed") << result.dump();
  EXPECT_GE(result["downtime"].get<int64_t>(), 0);
  EXPECT_EQ(result["ram"]["remaining"], 0);
  EXPECT_GT(result["ram"]["duplicate"].get<int64_t>(), 0);  // zero pages sent as such
  // The stop-and-copy breakdown names the device, its bytes and both ends' times.
  // Sections: QEMU's "globalstate" (the run state), then the device.
  const Json& devices = result["device-breakdown"]["devices"];
  ASSERT_EQ(devices.size(), 2u) << result.dump();
  EXPECT_EQ(devices[1]["name"], fmt::format("0000:00:{:02x}.0/ferry-testdev", kSlot));
  EXPECT_EQ(devices[0]["name"], "globalstate");
  EXPECT_GT(devices[1]["bytes"].get<int64_t>(), 256);  // config space alone is 256+ bytes
  EXPECT_GE(devices[1]["quiesce-us"].get<int64_t>(), 0);
  EXPECT_GE(devices[1]["save-us"].get<int64_t>(), 0);
  EXPECT_GE(devices[1]["transfer-us"].get<int64_t>(), 0);
  EXPECT_TRUE(result["ram"].contains("dirty-pages-rate")) << result.dump();
  EXPECT_TRUE(devices[1].contains("load-us")) << devices[1].dump();
  EXPECT_EQ(src->ok("query-status")["status"], "postmigrate");
  EXPECT_TRUE(src->qmp().wait_event("STOP", Millis(5000)).ok());

  ASSERT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
  EXPECT_EQ(dst->ok("query-status")["status"], "running");
  state.expect_in(*dst);
  // The migrated MSI-X vector still delivers into RAM on the destination.
  dst->mem_write(32, 0xc0000008, 0);
  EXPECT_EQ(dst->mem(32, 0x5000), 0x77u);
}

TEST(LiveMigration, OverUnixSocket) {
  std::string sock = unique_base("mig") + ".sock";
  migrate_and_check("unix:" + sock, "unix:" + sock);
}

TEST(LiveMigration, OverTcpLoopback) {
  std::string uri = free_loopback_tcp_uri();
  migrate_and_check(uri, uri);
}

TEST(LiveMigration, DeferredIncomingStartsWithMigrateIncoming) {
  std::string sock = unique_base("mig") + ".sock";
  auto src = FerryVm::start(kFerryVm, kMachine);
  auto dst = FerryVm::start(kFerryVm, with({"-incoming", "defer"}));
  ASSERT_TRUE(src && dst);
  EXPECT_EQ(dst->ok("query-status")["status"], "inmigrate");
  dst->ok("migrate-incoming", Json{{"uri", "unix:" + sock}});
  auto again = dst->qmp().execute("migrate-incoming", Json{{"uri", "unix:" + sock + "2"}});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->contains("error"));  // only one incoming migration
  GuestState state = GuestState::make(13);
  state.write_to(*src);
  src->ok("migrate", Json{{"uri", "unix:" + sock}});
  ASSERT_EQ(wait_migration_end(*src)["status"], "completed");
  ASSERT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
  state.expect_in(*dst);
}

TEST(LiveMigration, DestinationWithOtherDevicesRefusesAndSourceRunsOn) {
  std::string sock = unique_base("mig") + ".sock";
  auto src = FerryVm::start(kFerryVm, kMachine);
  auto dst = FerryVm::start(kFerryVm, {"-m", "64M", "-incoming", "unix:" + sock});  // no testdev
  ASSERT_TRUE(src && dst);
  src->ok("cont");
  GuestState state = GuestState::make(9);
  state.write_to(*src);
  src->ok("migrate", Json{{"uri", "unix:" + sock}});
  Json result = wait_migration_end(*src);
  EXPECT_EQ(result["status"], "failed");
  EXPECT_NE(result.value("error-desc", "").find("ferry-testdev"), std::string::npos) << result.dump();
  EXPECT_EQ(src->ok("query-status")["status"], "running");
  state.expect_in(*src);
  // The destination never ran: it exits non-zero naming the section.
  EXPECT_EQ(dst->process().wait(Millis(10000)), 1);
  EXPECT_NE(dst->process().stderr_text().find("ferry-testdev"), std::string::npos)
      << dst->process().stderr_text();
}

// A destination that takes `limit` bytes and then drops the connection.
void cutting_peer(UnixListener& listener, size_t limit) {
  auto conn = listener.accept(Millis(10000));
  if (!conn.ok()) return;
  size_t got = 0;
  char buf[65536];
  while (got < limit) {
    ssize_t n = ::recv(conn->fd(), buf, std::min(sizeof buf, limit - got), 0);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  conn->close();
}

TEST(LiveMigration, ConnectionCutAnywhereLeavesTheSourceRunningAndARetryWorks) {
  auto src = FerryVm::start(kFerryVm, kMachine);
  ASSERT_TRUE(src);
  src->ok("cont");
  GuestState state = GuestState::make(11);
  state.write_to(*src);

  // Learn the stream's size from a complete migration into a file.
  std::string file = unique_base("stream") + ".mig";
  src->ok("migrate", Json{{"uri", "file:" + file}});
  Json full = wait_migration_end(*src);
  ASSERT_EQ(full["status"], "completed") << full.dump();
  uint64_t size = full["ram"]["transferred"].get<uint64_t>();
  ASSERT_GT(size, 1000u);
  ::unlink(file.c_str());
  src->ok("cont");  // the file migration left it in postmigrate

  // 50 cut points over the whole stream: header, RAM, device sections, vmdesc.
  for (int k = 0; k < 50; ++k) {
    size_t cut = static_cast<size_t>(size * k / 50 + (k % 7));
    std::string sock = unique_base("cut") + ".sock";
    auto listener = UnixListener::listen(sock);
    ASSERT_TRUE(listener.ok());
    std::thread peer([&] { cutting_peer(*listener, cut); });
    src->ok("migrate", Json{{"uri", "unix:" + sock}});
    Json r = wait_migration_end(*src);
    peer.join();
    EXPECT_EQ(r["status"], "failed") << "cut at " << cut << ": " << r.dump();
    EXPECT_EQ(src->ok("query-status")["status"], "running") << "cut at " << cut;
  }
  state.expect_in(*src);

  std::string sock = unique_base("mig") + ".sock";
  auto dst = FerryVm::start(kFerryVm, with({"-incoming", "unix:" + sock}));
  ASSERT_TRUE(dst);
  src->ok("migrate", Json{{"uri", "unix:" + sock}});
  Json result = wait_migration_end(*src);
  ASSERT_EQ(result["status"], "completed") << result.dump();
  ASSERT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
  state.expect_in(*dst);
}

TEST(LiveMigration, CancelWhileActiveResumesTheSource) {
  std::string sock = unique_base("mig") + ".sock";
  auto src = FerryVm::start(kFerryVm, kMachine);
  auto dst = FerryVm::start(kFerryVm, with({"-incoming", "unix:" + sock}));
  ASSERT_TRUE(src && dst);
  src->ok("cont");
  src->ok("migrate-set-parameters", Json{{"max-bandwidth", 50000}});  // ~3 s for 64 MiB of zeros
  EXPECT_EQ(src->ok("query-migrate-parameters")["max-bandwidth"], 50000);
  src->ok("migrate", Json{{"uri", "unix:" + sock}});
  for (int i = 0; i < 200 && src->ok("query-migrate")["status"] != "active"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  src->ok("migrate_cancel");
  Json r = wait_migration_end(*src);
  EXPECT_EQ(r["status"], "cancelled") << r.dump();
  EXPECT_EQ(src->ok("query-status")["status"], "running");
}

TEST(LiveMigration, WaitingDestinationQuitsAndStalledPeerCancels) {
  std::string sock = unique_base("mig") + ".sock";
  auto dst = FerryVm::start(kFerryVm, with({"-incoming", "unix:" + sock}));
  ASSERT_TRUE(dst);
  dst->ok("quit");
  EXPECT_EQ(dst->process().wait(Millis(10000)), 0) << dst->process().stderr_text();

  // A peer that accepts and never reads or answers: cancel must still end the migration.
  auto src = FerryVm::start(kFerryVm, kMachine);
  ASSERT_TRUE(src);
  src->ok("cont");
  std::string stall = unique_base("stall") + ".sock";
  auto listener = UnixListener::listen(stall);
  ASSERT_TRUE(listener.ok());
  src->ok("migrate", Json{{"uri", "unix:" + stall}});
  auto peer = listener->accept(Millis(10000));
  ASSERT_TRUE(peer.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  src->ok("migrate_cancel");
  Json r = wait_migration_end(*src);
  EXPECT_EQ(r["status"], "cancelled") << r.dump();
  EXPECT_EQ(src->ok("query-status")["status"], "running");
}

TEST(LiveMigration, MigrateCommandErrors) {
  auto src = FerryVm::start(kFerryVm, kMachine);
  ASSERT_TRUE(src);
  auto bad_uri = src->qmp().execute("migrate", Json{{"uri", "carrier-pigeon:home"}});
  ASSERT_TRUE(bad_uri.ok());
  EXPECT_EQ((*bad_uri)["error"]["class"], "GenericError");
  auto no_peer = src->qmp().execute("migrate", Json{{"uri", "unix:/nonexistent/sock"}});
  ASSERT_TRUE(no_peer.ok());
  EXPECT_TRUE(no_peer->contains("error"));
  auto wrong_type = src->qmp().execute("migrate", Json{{"uri", 5}});
  ASSERT_TRUE(wrong_type.ok());
  EXPECT_EQ((*wrong_type)["error"]["desc"], "Invalid parameter type for 'uri', expected: string");
  auto incoming = src->qmp().execute("migrate-incoming", Json{{"uri", "unix:/tmp/x"}});
  ASSERT_TRUE(incoming.ok());
  EXPECT_TRUE(incoming->contains("error"));
}

TEST(LiveMigration, BlockersRefuseMigrateUpFront) {
  auto src = FerryVm::start(kFerryVm, {"-m", "64M", "-device", "ferry-testdev,addr=3,x-block-migration=on"});
  ASSERT_TRUE(src);
  Json reasons = src->ok("query-migrate")["blocked-reasons"];
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_NE(reasons[0].get<std::string>().find("00:03.0"), std::string::npos) << reasons.dump();
  auto refused = src->qmp().execute("migrate", Json{{"uri", "unix:/tmp/never-used.sock"}});
  ASSERT_TRUE(refused.ok());
  EXPECT_NE((*refused)["error"]["desc"].get<std::string>().find("Migration is blocked"),
            std::string::npos);
  EXPECT_EQ(src->ok("query-status")["status"], "running");

  // -only-migratable refuses to start such a VM at all.
  auto child = ChildProcess::spawn({kFerryVm, "-only-migratable", "-device",
                                    "ferry-testdev,x-block-migration=on"},
                                   unique_base("only") + ".stderr");
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(child->wait(Millis(10000)), 1);
  EXPECT_NE(child->stderr_text().find("-only-migratable"), std::string::npos)
      << child->stderr_text();
}

}  // namespace
}  // namespace ferry::testing
