// Live migration between two ferry-vm processes, driven over QMP like a management tool
// would, with guest RAM and device state checked through qtest on both sides.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <optional>
#include <random>
#include <thread>

#include "support/ferry_vm.h"
#include "support/vm_waits.h"

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
  // The last RAM pass is timed apart from the device records' transfer.
  EXPECT_GE(result["device-breakdown"]["final-ram-us"].get<int64_t>(), 0) << result.dump();
  EXPECT_TRUE(result["ram"].contains("dirty-pages-rate")) << result.dump();
  EXPECT_TRUE(devices[1].contains("load-us")) << devices[1].dump();
  EXPECT_EQ(src->ok("query-status")["status"], "postmigrate");
  EXPECT_TRUE(src->qmp().wait_event("STOP", Millis(30000)).ok());

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

// Where a cut of the return path lands: after `messages` whole messages of Ferry's
// switchover handshake and SHUT (return_path.h; QEMU's PONG and SWITCHOVER_ACK, which come
// while the stream still flows, are not counted) and `bytes` more of the next one.
struct AnswerCut {
  size_t messages = SIZE_MAX, bytes = 0;
};

// Whether the return-path cut counts a message of this type.
bool is_handshake_message(uint16_t type) { return type >= 0x100 || type == 1 /* SHUT */; }

// The return-path messages of the switchover handshake that `answer` holds whole.
size_t handshake_messages(const std::string& answer) {
  size_t at = 0, count = 0;
  while (at + 4 <= answer.size()) {
    auto byte = [&](size_t i) { return static_cast<uint8_t>(answer[at + i]); };
    uint16_t type = static_cast<uint16_t>(byte(0) << 8 | byte(1));
    size_t size = 4 + static_cast<size_t>(byte(2) << 8 | byte(3));
    if (at + size > answer.size()) break;
    if (is_handshake_message(type)) ++count;
    at += size;
  }
  return count;
}

// Stands between a source and a destination ferry-vm: forwards the stream and the return
// path, and cuts both connections (closes them) once exactly `stream_cut` stream bytes went
// through, or, with the whole stream through, where `answer_cut` says in the return path.
// Records what went each way.
class CuttingProxy {
 public:
  static constexpr size_t kNever = SIZE_MAX;

  static std::unique_ptr<CuttingProxy> start(std::string dst_path, size_t stream_cut,
                                             AnswerCut answer_cut = {}) {
    std::string path = unique_base("proxy") + ".sock";
    auto listener = UnixListener::listen(path);
    EXPECT_TRUE(listener.ok()) << listener.status().to_string();
    if (!listener.ok()) return nullptr;
    auto proxy = std::unique_ptr<CuttingProxy>(new CuttingProxy(
        std::move(listener).value(), path, std::move(dst_path), stream_cut, answer_cut));
    proxy->thread_ = std::thread([p = proxy.get()] { p->run(); });
    return proxy;
  }
  ~CuttingProxy() { join(); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  const std::string& path() const { return path_; }

  std::vector<uint8_t> stream;  // what reached the destination
  std::string answer;           // what reached the source
  std::string error;

 private:
  CuttingProxy(UnixListener listener, std::string path, std::string dst_path, size_t stream_cut,
               AnswerCut answer_cut)
      : listener_(std::move(listener)),
        path_(std::move(path)),
        dst_path_(std::move(dst_path)),
        stream_cut_(stream_cut),
        answer_cut_(answer_cut) {}

  static bool send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  // Returns (closing both connections) at a cut, at the end, or on an error.
  void run() {
    auto src = listener_.accept(Millis(20000));
    if (!src.ok()) {
      error = src.status().to_string();
      return;
    }
    auto dst = connect_unix(dst_path_, Millis(10000));
    if (!dst.ok()) {
      error = dst.status().to_string();
      return;
    }
    // Small kernel buffers on the proxy's sockets: little of the stream waits in them.
    int small = 16 * 1024;
    ::setsockopt(src->fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ::setsockopt(dst->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    if (stream_cut_ == 0) return;  // cut before the first byte
    bool stream_open = true, answer_open = true;
    char buf[65536];
    while (stream_open || answer_open) {
      pollfd fds[2] = {{src->fd(), static_cast<short>(stream_open ? POLLIN : 0), 0},
                       {dst->fd(), static_cast<short>(answer_open ? POLLIN : 0), 0}};
      if (::poll(fds, 2, 30000) <= 0) {
        error = "proxy: nothing moved for 30 s";
        return;
      }
      if (stream_open && fds[0].revents != 0) {
        size_t room = std::min(sizeof buf, stream_cut_ - stream.size());
        ssize_t n = ::read(src->fd(), buf, room);
        if (n < 0) {
          if (errno == EINTR) continue;
          error = fmt::format("proxy: read from the source: {}", std::strerror(errno));
          return;
        }
        if (n == 0) {
          ::shutdown(dst->fd(), SHUT_WR);  // the whole stream went through
          stream_open = false;
        } else {
          stream.insert(stream.end(), buf, buf + n);
          if (!send_all(dst->fd(), buf, static_cast<size_t>(n))) {
            error = "proxy: the destination stopped reading";
            return;
          }
          if (stream.size() == stream_cut_) return;  // the cut
        }
      }
      if (answer_open && fds[1].revents != 0) {
        ssize_t n = ::read(dst->fd(), buf, 1);  // byte by byte: the answers are short
        if (n < 0) {
          if (errno == EINTR) continue;
          error = fmt::format("proxy: read from the destination: {}", std::strerror(errno));
          return;
        }
        if (n == 0) {
          ::shutdown(src->fd(), SHUT_WR);
          answer_open = false;
        } else {
          // A message's header is held until whole: its type says whether the cut counts it.
          unsent_.push_back(static_cast<uint8_t>(buf[0]));
          if (into_ == 0 && unsent_.size() < 4) continue;
          if (into_ == 0) {
            counted_ = is_handshake_message(static_cast<uint16_t>(unsent_[0] << 8 | unsent_[1]));
            size_ = 4 + static_cast<size_t>(unsent_[2] << 8 | unsent_[3]);
          }
          for (uint8_t b : unsent_) {
            if (counted_ && messages_ == answer_cut_.messages && into_ == answer_cut_.bytes)
              return;  // the cut
            answer.push_back(static_cast<char>(b));
            if (!send_all(src->fd(), reinterpret_cast<const char*>(&b), 1)) {
              error = "proxy: the source stopped reading";
              return;
            }
            if (++into_ == size_) {
              if (counted_) ++messages_;
              into_ = 0;
            }
          }
          unsent_.clear();
        }
      }
    }
  }

  UnixListener listener_;
  std::string path_, dst_path_;
  size_t stream_cut_;
  AnswerCut answer_cut_;
  // The return path forwarded so far: whole counted messages, and the current message's
  // forwarded bytes, size and kind; bytes read but not forwarded yet.
  size_t messages_ = 0, into_ = 0, size_ = 0;
  bool counted_ = false;
  std::vector<uint8_t> unsent_;
  std::thread thread_;
};

// Guest RAM with content: 16 MiB of 0xa5 pages make a stream far larger than the socket
// buffers, so a cut in it stops the source near where it lands.
constexpr uint64_t kFillAt = 0x400000, kFillBytes = 16ull << 20;

void fill_ram(FerryVm& vm) {
  auto reply = vm.qtest().command(fmt::format("memset 0x{:x} 0x{:x} 0xa5", kFillAt, kFillBytes));
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, "OK");
}

void expect_fill(FerryVm& vm) {
  for (uint64_t at : {kFillAt, kFillAt + kFillBytes / 2 + 8, kFillAt + kFillBytes - 8})
    EXPECT_EQ(vm.mem(64, at), 0xa5a5a5a5a5a5a5a5ull) << "RAM at " << at;
}

// Where the records of a Ferry stream begin: walks the header, the configuration, RAM START
// and every RAM page record; the device sections are found by their idstr, EOF and vmdesc
// from the end.
struct StreamMap {
  size_t configuration = 8, commands = 0, ram_start = 0, ram_start_end = 0, first_part = 0, ram_end = 0;
  size_t devices = 0, testdev = 0, eof = 0, size = 0;
  std::vector<size_t> page_records;  // offsets of the PAGE records of the first pass
};

std::optional<StreamMap> map_stream(const std::vector<uint8_t>& s) {
  StreamMap m;
  m.size = s.size();
  size_t at = 0;
  auto be = [&](size_t n) -> uint64_t {
    uint64_t v = 0;
    for (size_t i = 0; i < n && at < s.size(); ++i) v = v << 8 | s[at++];
    return v;
  };
  auto room = [&](size_t n) { return at + n <= s.size(); };
  if (!room(13) || be(4) != 0x5145564d || be(4) != 3 || s[at++] != 0x07) return std::nullopt;
  at += be(4);  // the machine type
  // QEMU's OPEN_RETURN_PATH and PING 1 (return-path is on by default).
  m.commands = at;
  if (!room(14) || s[at] != 0x08 || s[at + 2] != 1 || s[at + 5] != 0x08 || s[at + 7] != 2)
    return std::nullopt;
  at += 5 + 9;
  m.ram_start = at;
  // RAM START (no early-setup sections on this machine): type, section id, idstr "ram",
  // instance, version, then the block list.
  if (!room(17) || s[at] != 0x01 || s[at + 5] != 3 || std::memcmp(&s[at + 6], "ram", 3) != 0)
    return std::nullopt;
  at += 1 + 4 + 1 + 3 + 4 + 4;
  uint64_t total = be(8) & ~uint64_t{0xfff}, listed = 0;
  while (listed < total && room(9)) {
    at += 1 + s[at];
    listed += be(8);
  }
  if (be(8) != 0x10) return std::nullopt;  // EOS
  at += 5;                                 // footer
  m.ram_start_end = at;
  // PART records, then END: page records up to EOS, then a footer.
  while (room(5) && (s[at] == 0x02 || s[at] == 0x03)) {
    if (s[at] == 0x02 && m.first_part == 0) m.first_part = at;
    if (s[at] == 0x03) m.ram_end = at;
    at += 5;
    for (;;) {
      if (!room(9)) return std::nullopt;
      size_t record = at;
      uint64_t flags = be(8) & 0xfff;
      if (flags & 0x10) break;
      if (!(flags & 0x20)) at += 1 + s[at];
      if (flags & 0x02) at += 1;
      if (flags & 0x08) {
        if (m.ram_end == 0) m.page_records.push_back(record);
        at += 4096;
      }
    }
    at += 5;
  }
  m.devices = at;
  std::string_view text(reinterpret_cast<const char*>(s.data()), s.size());
  size_t testdev = text.find(fmt::format("0000:00:{:02x}.0/ferry-testdev", kSlot), at);
  size_t json = text.rfind("{\"page_size\"");
  if (m.first_part == 0 || m.ram_end == 0 || testdev == std::string_view::npos ||
      json == std::string_view::npos || json < 6 || s[json - 5] != 0x06 || s[json - 6] != 0x00)
    return std::nullopt;
  m.testdev = testdev - 6;  // type, section id, idstr length
  m.eof = json - 6;
  return m;
}

// One migration of `src` to a fresh destination through a CuttingProxy.
struct Attempt {
  Json result;
  std::vector<uint8_t> stream;  // the migration stream that went through
  bool go = false;              // the source's FERRY_GO after it went through too
  std::string answer;
  std::unique_ptr<FerryVm> dst;
};

Attempt migrate_through_proxy(FerryVm& src, size_t stream_cut, AnswerCut answer_cut = {}) {
  Attempt a;
  std::string dst_sock = unique_base("dst") + ".sock";
  a.dst = FerryVm::start(kFerryVm, with({"-incoming", "unix:" + dst_sock}));
  if (!a.dst) return a;
  auto proxy = CuttingProxy::start(dst_sock, stream_cut, answer_cut);
  if (!proxy) return a;
  src.ok("migrate", Json{{"uri", "unix:" + proxy->path()}});
  a.result = wait_migration_end(src);
  proxy->join();
  EXPECT_EQ(proxy->error, "");
  a.stream = std::move(proxy->stream);
  a.answer = std::move(proxy->answer);
  // The source's side of the switchover handshake follows the stream on its connection:
  // the FERRY_GO command (0x08, be16 0x0100, be16 0).
  static constexpr std::array<uint8_t, 5> kGo = {0x08, 0x01, 0x00, 0x00, 0x00};
  if (a.stream.size() >= kGo.size() &&
      std::equal(kGo.begin(), kGo.end(), a.stream.end() - static_cast<long>(kGo.size()))) {
    a.go = true;
    a.stream.resize(a.stream.size() - kGo.size());
  }
  return a;
}

TEST(LiveMigration, ConnectionCutAnywhereLeavesTheSourceRunningAndARetryWorks) {
  auto src = FerryVm::start(kFerryVm, kMachine);
  ASSERT_TRUE(src);
  src->ok("cont");
  GuestState state = GuestState::make(11);
  state.write_to(*src);
  fill_ram(*src);

  // A whole migration, through the proxy: the stream and the answers the cuts will see.
  auto succeed = [&](const char* when, size_t expected_size) -> Attempt {
    Attempt whole = migrate_through_proxy(*src, CuttingProxy::kNever);
    EXPECT_EQ(whole.result["status"], "completed") << when << ": " << whole.result.dump();
    if (expected_size) {
      EXPECT_EQ(whole.stream.size(), expected_size) << when;
    }
    if (whole.dst) {
      EXPECT_TRUE(whole.dst->qmp().wait_event("RESUME", Millis(10000)).ok()) << when;
      state.expect_in(*whole.dst);
      expect_fill(*whole.dst);
    }
    src->ok("cont");  // out of postmigrate, for the next attempt
    return whole;
  };
  Attempt first = succeed("first migration", 0);
  ASSERT_EQ(first.result["status"], "completed");
  auto map = map_stream(first.stream);
  ASSERT_TRUE(map) << "stream of " << first.stream.size() << " bytes did not map";
  const StreamMap& m = *map;
  const std::string& answer = first.answer;
  ASSERT_GT(m.page_records.size(), 4000u);
  ASSERT_EQ(handshake_messages(answer), 5u) << "two load times, loaded, running, shut";

  // Cut points over every part of the stream, then over the return path.
  struct Cut {
    std::string where;
    size_t stream = CuttingProxy::kNever;
    AnswerCut answer;
  };
  std::vector<Cut> cuts;
  auto stream_cuts = [&](const char* where, std::initializer_list<size_t> at) {
    for (size_t n : at) cuts.push_back({where, n});
  };
  stream_cuts("header", {0, 1, 4, 7});
  stream_cuts("configuration", {8, 9, 12, 13, m.commands - 1});
  stream_cuts("return-path commands", {m.commands, m.commands + 1, m.commands + 5,
                                       m.commands + 9, m.ram_start - 1});
  stream_cuts("RAM START", {m.ram_start, m.ram_start + 1, m.ram_start + 6, m.ram_start + 9,
                            m.ram_start + 17, m.ram_start + 25, m.ram_start_end - 3,
                            m.ram_start_end - 1});
  stream_cuts("RAM pages", {m.first_part, m.first_part + 3, m.first_part + 5, m.first_part + 12,
                            m.first_part + 40});
  for (size_t k = 1; k <= 15; ++k) {
    size_t page = m.page_records[k * (m.page_records.size() - 1) / 16];
    cuts.push_back({"RAM pages", page + (k % 3 == 0 ? 0 : k % 3 == 1 ? 9 : 2000)});
  }
  stream_cuts("RAM END", {m.ram_end, m.ram_end + 2, m.ram_end + 5, m.devices - 1});
  stream_cuts("device sections", {m.devices, m.devices + 1, m.devices + 8, m.devices + 20,
                                  m.testdev, m.testdev + 10, m.testdev + 300, m.eof - 1});
  // m.eof + 1 ends a complete stream (the vmdesc is optional): that destination loads it
  // all and still never runs, as the source's FERRY_GO does not come.
  stream_cuts("EOF and vmdesc", {m.eof, m.eof + 1, m.eof + 2, m.eof + 3, m.eof + 6,
                                 (m.eof + m.size) / 2, m.size - 1});
  // The answers (after the PONG): FERRY_LOAD_TIME globalstate, FERRY_LOAD_TIME <testdev>,
  // FERRY_LOADED, then (after the source's FERRY_GO) FERRY_RUNNING and SHUT 0.
  for (AnswerCut at : std::initializer_list<AnswerCut>{
           {0, 0}, {0, 1}, {0, 12}, {1, 0}, {1, 5}, {2, 0}, {2, 3}, {3, 0}, {3, 2}})
    cuts.push_back({"return path", CuttingProxy::kNever, at});
  ASSERT_GE(cuts.size(), 50u);

  for (size_t i = 0; i < cuts.size(); ++i) {
    const Cut& cut = cuts[i];
    const bool in_stream = cut.stream != CuttingProxy::kNever;
    std::string label =
        in_stream ? fmt::format("{} cut at stream byte {} of {}", cut.where, cut.stream, m.size)
                  : fmt::format("return path cut after {} handshake messages and {} bytes",
                                cut.answer.messages, cut.answer.bytes);
    SCOPED_TRACE(label);
    Attempt a = migrate_through_proxy(*src, cut.stream, cut.answer);
    ASSERT_TRUE(a.dst);
    EXPECT_EQ(a.result["status"], "failed") << a.result.dump();
    std::string error = a.result.value("error-desc", "");
    if (in_stream) {
      // The destination got exactly the bytes before the cut, refused them, and never ran.
      EXPECT_EQ(a.stream.size(), cut.stream);
      EXPECT_EQ(a.dst->process().wait(Millis(10000)), 1) << a.dst->process().stderr_text();
      // Far from the end, the source fails while sending, not at the end of the stream.
      if (cut.stream + (4u << 20) < m.size) {
        EXPECT_NE(error.find("write"), std::string::npos) << error;
      }
    } else {
      // The whole stream went through; the source never heard "running". Who owns the VM
      // depends on whether the source's FERRY_GO reached the destination: if not, the source
      // resumed and the destination never runs; if so, the destination runs and the source
      // stays paused. Never both.
      EXPECT_EQ(a.stream.size(), m.size);
      EXPECT_EQ(handshake_messages(a.answer), cut.answer.messages);
      EXPECT_NE(error.find("return path"), std::string::npos) << error;
      const bool after_loaded = cut.answer.messages >= 3;
      if (!after_loaded) {
        EXPECT_FALSE(a.go);
      }
      if (cut.answer.messages == 3 && cut.answer.bytes > 0) {
        EXPECT_TRUE(a.go);  // FERRY_RUNNING had begun: FERRY_GO went before it
      }
      std::string src_status = src->ok("query-status")["status"];
      if (a.go) {
        // The destination runs the VM: the source must not.
        EXPECT_TRUE(a.dst->qmp().wait_event("RESUME", Millis(10000)).ok());
        EXPECT_EQ(a.dst->ok("query-status")["status"], "running");
        state.expect_in(*a.dst);
        EXPECT_EQ(src_status, "paused") << error;
        EXPECT_NE(error.find("stays paused"), std::string::npos) << error;
        a.dst.reset();  // the operator retires one copy before resuming the other
      } else {
        EXPECT_EQ(a.dst->process().wait(Millis(10000)), 1) << a.dst->process().stderr_text();
        // FERRY_GO may have been written before the proxy's close took effect: then the
        // source cannot know it was lost, and waits paused, safely.
        if (!after_loaded) {
          EXPECT_EQ(src_status, "running") << error;
        }
      }
      if (src_status == "paused") src->ok("cont");
    }
    // The source runs on (resumed by the operator where it had to wait) with its RAM and
    // device state as they were.
    EXPECT_EQ(src->ok("query-status")["status"], "running");
    state.expect_in(*src);
    expect_fill(*src);
    if (i % 10 == 9) succeed(label.c_str(), m.size);  // and a retry works
  }
  succeed("after the last cut", m.size);
}

// After a completed migration the VM is resumed by `cont` and stopped by the user; a later
// migration that fails must leave it stopped (only a VM the failed migration stopped runs
// again).
TEST(LiveMigration, AStoppedSourceStaysStoppedWhenALaterMigrationFails) {
  auto src = FerryVm::start(kFerryVm, kMachine);
  ASSERT_TRUE(src);
  src->ok("cont");
  fill_ram(*src);
  Attempt done = migrate_through_proxy(*src, CuttingProxy::kNever);
  ASSERT_EQ(done.result["status"], "completed") << done.result.dump();
  src->ok("cont");
  src->ok("stop");
  ASSERT_EQ(src->ok("query-status")["status"], "paused");
  // Cut in the RAM stream: the migration fails before stop-and-copy.
  Attempt failed = migrate_through_proxy(*src, 64 * 1024);
  EXPECT_EQ(failed.result["status"], "failed") << failed.result.dump();
  EXPECT_EQ(src->ok("query-status")["status"], "paused");
  // A migration that fails after stopping a running VM still resumes it.
  src->ok("cont");
  Attempt late = migrate_through_proxy(*src, CuttingProxy::kNever, {.messages = 0, .bytes = 0});
  EXPECT_EQ(late.result["status"], "failed") << late.result.dump();
  EXPECT_EQ(src->ok("query-status")["status"], "running");
}

// switchover-ack (QEMU 8.1): a source with it never stops the VM before the destination's
// SWITCHOVER_ACK. A destination without the capability never acks, so the source stays
// active with its VM running however converged, and migrate_cancel still works; one with
// it (set while it already waits for its connection) acks and the migration completes.
TEST(LiveMigration, SwitchoverAckHoldsTheStopUntilTheDestinationAcks) {
  auto src = FerryVm::start(kFerryVm, kMachine);
  std::string silent_sock = unique_base("mig") + ".sock";
  auto silent = FerryVm::start(kFerryVm, with({"-incoming", "unix:" + silent_sock}));
  ASSERT_TRUE(src && silent);
  src->ok("cont");
  const Json ack_on = {{"capabilities", Json::array({{{"capability", "switchover-ack"},
                                                      {"state", true}}})}};
  src->ok("migrate-set-capabilities", ack_on);
  src->ok("migrate", Json{{"uri", "unix:" + silent_sock}});
  Json info;
  for (int i = 0; i < 6000; ++i) {  // converged: every page sent, nothing left
    info = src->ok("query-migrate");
    if (info["status"] == "active" && info.contains("ram") && info["ram"]["remaining"] == 0 &&
        info["ram"]["transferred"].get<uint64_t>() > 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(info["status"], "active") << info.dump();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a negative check
  EXPECT_EQ(src->ok("query-migrate")["status"], "active");
  EXPECT_EQ(src->ok("query-status")["status"], "running");
  src->ok("migrate_cancel");
  Json r = wait_migration_end(*src);
  EXPECT_EQ(r["status"], "cancelled") << r.dump();
  EXPECT_EQ(src->ok("query-status")["status"], "running");
  EXPECT_EQ(silent->process().wait(Millis(10000)), 1) << silent->process().stderr_text();

  std::string sock = unique_base("mig") + ".sock";
  auto dst = FerryVm::start(kFerryVm, with({"-incoming", "unix:" + sock}));
  ASSERT_TRUE(dst);
  dst->ok("migrate-set-capabilities", ack_on);
  src->ok("migrate", Json{{"uri", "unix:" + sock}});
  r = wait_migration_end(*src);
  EXPECT_EQ(r["status"], "completed") << r.dump();
  EXPECT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
}

TEST(LiveMigration, CancelWhileActiveResumesTheSource) {
  std::string sock = unique_base("mig") + ".sock";
  auto src = FerryVm::start(kFerryVm, kMachine);
  auto dst = FerryVm::start(kFerryVm, with({"-incoming", "unix:" + sock}));
  ASSERT_TRUE(src && dst);
  src->ok("cont");
  // ~30 s for 64 MiB of zeros: still active when the cancel comes, however busy the machine
  // (the cancel interrupts the bandwidth wait at once).
  src->ok("migrate-set-parameters", Json{{"max-bandwidth", 5000}});
  EXPECT_EQ(src->ok("query-migrate-parameters")["max-bandwidth"], 5000);
  src->ok("migrate", Json{{"uri", "unix:" + sock}});
  for (int i = 0; i < 3000 && src->ok("query-migrate")["status"] != "active"; ++i)
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
