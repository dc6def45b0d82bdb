#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "migration/analyze.h"
#include "migration/buffer_channel.h"
#include "migration/stream.h"
#include "migration/test_devices.h"
#include "migration/wire.h"
#include "vmstate/test_util.h"

namespace ferry::migration {
namespace {

using vmstate::test::hex;
using vmstate::test::to_hex;
using vmstate::samples::NvmeLike;
using vmstate::samples::fill_nvme_like;
using vmstate::samples::kNvmeLikeDesc;

constexpr std::string_view kMachine = "pc-q35-7.2";

// A VM's migratable state: RAM blocks, an early-setup timer, a timer and an NVMe-like
// device at a PCI address.
struct Vm {
  std::vector<std::unique_ptr<memory::RamBlock>> ram;
  test::Timer early, timer;
  NvmeLike nvme;
  SectionRegistry registry;

  explicit Vm(bool populated, bool with_nvme = true) {
    ram = test::make_ram({{"pc.ram", 96}, {"vga.vram", 8}}, populated);
    if (populated) {
      early = {77, 1};
      timer = {0x1122334455667788ull, 250};
      fill_nvme_like(nvme, 3);
    }
    EXPECT_TRUE(registry.add("kvmclock", vmstate::bind(test::kTimerDesc, early), 0, true).ok());
    EXPECT_TRUE(registry.add_ram().ok());
    EXPECT_TRUE(registry.add("timer", vmstate::bind(test::kTimerDesc, timer)).ok());
    if (with_nvme) {
      EXPECT_TRUE(registry
                      .add(pci_idstr(0, 0, 2, 0, "nvme"), vmstate::bind(kNvmeLikeDesc, nvme))
                      .ok());
    }
  }
  bool same_as(const Vm& o) const {
    return test::same_ram(ram, o.ram) && early == o.early && timer == o.timer && nvme == o.nvme;
  }
};

std::vector<uint8_t> save_to_bytes(Vm& vm, SaveOptions options = {}) {
  BufferChannel ch;
  StreamWriter w(ch);
  RamSaver saver(test::raw(vm.ram));
  Status st = save_stream(w, kMachine, vm.registry, saver, options);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return ch.written();
}

Status load_bytes(Vm& vm, std::span<const uint8_t> bytes, LoadReport* report = nullptr,
                  std::string_view machine = kMachine, size_t max_read = SIZE_MAX) {
  BufferChannel ch(bytes, max_read);
  StreamReader r(ch);
  RamLoader loader(test::raw(vm.ram));
  return load_stream(r, machine, vm.registry, loader, report);
}

// QEMU's analyze-migration.py: the JSON starts at the first '{' after the last 0x00.
size_t analyze_json_start(const std::vector<uint8_t>& bytes) {
  size_t nul = bytes.size();
  while (nul > 0 && bytes[nul - 1] != 0) --nul;
  for (size_t i = nul; i < bytes.size(); ++i)
    if (bytes[i] == '{') return i;
  return bytes.size();
}

TEST(Stream, GoldenBytesOfATinyStream) {
  auto ram = test::make_ram({{"pc.ram", 1}}, false);
  test::Timer timer{0x0102, 3};
  SectionRegistry registry;
  ASSERT_TRUE(registry.add_ram().ok());
  ASSERT_TRUE(registry.add("timer", vmstate::bind(test::kTimerDesc, timer)).ok());
  BufferChannel ch;
  StreamWriter w(ch);
  RamSaver saver(test::raw(ram));
  ASSERT_TRUE(save_stream(w, "pc", registry, saver).ok());
  const auto& bytes = ch.written();
  std::string expected =
      "5145564d 00000003"                                     // magic, version
      "07 00000002 7063"                                      // configuration "pc"
      "01 00000000 03 72616d 00000000 00000004"               // RAM START, id 0, v4
      "0000000000001004 06 70632e72616d 0000000000001000 0000000000000010"
      "7e 00000000"
      "03 00000000"                                           // RAM END
      "0000000000000002 06 70632e72616d 00 0000000000000010"  // one zero page, EOS
      "7e 00000000"
      "04 00000001 05 74696d6572 00000000 00000002"           // timer FULL, id 1, v2
      "0000000000000102 00000003"
      "7e 00000001"
      "00 06";                                                // EOF, vmdesc
  auto want = hex(expected);
  ASSERT_GT(bytes.size(), want.size() + 4);
  EXPECT_EQ(to_hex(std::span(bytes).first(want.size())), to_hex(want));
  uint32_t len = load_be<uint32_t>(&bytes[want.size()]);
  ASSERT_EQ(want.size() + 4 + len, bytes.size());
  std::string json(bytes.begin() + want.size() + 4, bytes.end());
  EXPECT_EQ(json.rfind("{\"page_size\":4096,\"devices\":[{\"name\":\"timer\",\"instance_id\":0,"
                       "\"vmsd_name\":\"timer\",\"version\":2,",
                       0),
            0u)
      << json;
  EXPECT_EQ(analyze_json_start(bytes), want.size() + 4);
}

TEST(Stream, VmdescLengthNeverHidesTheJson) {
  for (size_t n = 100; n < 700; ++n) {
    vmstate::Json j = vmstate::Json::object();
    j["x"] = std::string(n - 8, 'a');  // {"x":"..."} is n bytes
    std::string text = padded_vmdesc_text(j);
    std::vector<uint8_t> tail(6 + text.size());
    tail[1] = 0x06;
    store_be<uint32_t>(&tail[2], static_cast<uint32_t>(text.size()));
    std::memcpy(&tail[6], text.data(), text.size());
    ASSERT_EQ(analyze_json_start(tail), 6u) << "json length " << n;
    auto parsed = vmstate::Json::parse(text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded());
    if (n == 0x7b) {
      EXPECT_EQ(text.size(), 0x7cu);  // 00 00 00 7b would fool the finder
    }
  }
}

TEST(Stream, RoundTripInMemoryWithEarlySetupAndSwitchover) {
  Vm src(true), dst(false);
  ASSERT_FALSE(src.same_as(dst));
  auto bytes = save_to_bytes(src, {.send_switchover_start = true});
  // The early-setup section precedes RAM START.
  std::string s(bytes.begin(), bytes.end());
  EXPECT_LT(s.find("kvmclock"), s.find("\x03ram"));
  LoadReport report;
  Status st = load_bytes(dst, bytes, &report);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(src.same_as(dst));
  EXPECT_TRUE(report.switchover_started);
  EXPECT_EQ(report.sections_loaded, 4u);
  ASSERT_TRUE(report.has_vmdesc);
  EXPECT_EQ(report.vmdesc["devices"].size(), 3u);
  EXPECT_EQ(report.vmdesc["devices"][2]["name"], "0000:00:02.0/nvme");
  EXPECT_EQ(report.bytes, bytes.size());
  // The same bytes, delivered 3 bytes per read.
  Vm slow(false);
  ASSERT_TRUE(load_bytes(slow, bytes, nullptr, kMachine, 3).ok());
  EXPECT_TRUE(src.same_as(slow));
}

// Migrates over a real channel: source in a thread, destination here.
void migrate_over(std::unique_ptr<Listener> listener, std::string_view out_uri) {
  Vm src(true), dst(false);
  Status save_status;
  std::thread source([&] {
    auto out = connect_outgoing(out_uri);
    if (!out.ok()) {
      save_status = out.take_status();
      return;
    }
    {
      StreamWriter w(**out);
      RamSaver saver(test::raw(src.ram));
      save_status = save_stream(w, kMachine, src.registry, saver);
    }
    Status closed = (*out)->close();
    if (save_status.ok()) save_status = std::move(closed);
  });
  auto in = listener->accept();
  ASSERT_TRUE(in.ok()) << in.status().to_string();
  StreamReader r(**in);
  RamLoader loader(test::raw(dst.ram));
  Status st = load_stream(r, kMachine, dst.registry, loader);
  source.join();
  ASSERT_TRUE(save_status.ok()) << save_status.to_string();
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(src.same_as(dst));
}

TEST(StreamOverChannels, Tcp4) {
  auto l = listen_incoming("tcp:127.0.0.1:0");
  ASSERT_TRUE(l.ok());
  std::string uri = (*l)->uri();
  migrate_over(std::move(*l), uri);
}

TEST(StreamOverChannels, Tcp6) {
  auto l = listen_incoming("tcp:[::1]:0");
  if (!l.ok()) GTEST_SKIP() << l.status().to_string();
  std::string uri = (*l)->uri();
  migrate_over(std::move(*l), uri);
}

TEST(StreamOverChannels, Unix) {
  std::string uri = "unix:/tmp/ferry_stream_" + std::to_string(::getpid()) + ".sock";
  auto l = listen_incoming(uri);
  ASSERT_TRUE(l.ok());
  migrate_over(std::move(*l), uri);
}

TEST(StreamOverChannels, FdSocketpair) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  auto l = listen_incoming("fd:" + std::to_string(sv[1]));
  ASSERT_TRUE(l.ok());
  migrate_over(std::move(*l), "fd:" + std::to_string(sv[0]));
}

TEST(StreamOverChannels, FileThenExecCat) {
  std::string path = "/tmp/ferry_stream_" + std::to_string(::getpid()) + ".mig";
  Vm src(true);
  {
    auto out = connect_outgoing("exec:cat > " + path);
    ASSERT_TRUE(out.ok());
    {
      StreamWriter w(**out);
      RamSaver saver(test::raw(src.ram));
      ASSERT_TRUE(save_stream(w, kMachine, src.registry, saver).ok());
    }
    ASSERT_TRUE((*out)->close().ok());
  }
  for (std::string uri : {"file:" + path, "exec:cat " + path}) {
    auto l = listen_incoming(uri);
    ASSERT_TRUE(l.ok());
    auto in = (*l)->accept();
    ASSERT_TRUE(in.ok());
    Vm dst(false);
    StreamReader r(**in);
    RamLoader loader(test::raw(dst.ram));
    Status st = load_stream(r, kMachine, dst.registry, loader);
    ASSERT_TRUE(st.ok()) << uri << ": " << st.to_string();
    EXPECT_TRUE(src.same_as(dst)) << uri;
  }
  ::unlink(path.c_str());
}

// ---- the corrupted-stream catalogue ----

class Corrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    ram = test::make_ram({{"pc.ram", 2}}, false);
    ram[0]->page(1)[9] = 1;
    ASSERT_TRUE(registry.add_ram().ok());
    ASSERT_TRUE(registry.add("timer", vmstate::bind(test::kTimerDesc, timer)).ok());
    BufferChannel ch;
    {
      StreamWriter w(ch);
      RamSaver saver(test::raw(ram));
      ASSERT_TRUE(save_stream(w, "pc", registry, saver).ok());
    }
    good = ch.written();
    std::string s(good.begin(), good.end());
    timer_full = s.find(std::string_view("\x04\x00\x00\x00\x01\x05timer", 11));
    ASSERT_NE(timer_full, std::string::npos);
    eof = timer_full + 1 + 4 + 1 + 5 + 4 + 4 + 12 + 5;
    ASSERT_EQ(good[eof], 0);
    ASSERT_EQ(good[eof + 1], 6);
  }
  Status load(std::span<const uint8_t> bytes, std::string_view machine = "pc") {
    auto dst = test::make_ram({{"pc.ram", 2}}, false);
    test::Timer t;
    SectionRegistry reg;
    EXPECT_TRUE(reg.add_ram().ok());
    EXPECT_TRUE(reg.add("timer", vmstate::bind(test::kTimerDesc, t)).ok());
    BufferChannel ch(bytes);
    StreamReader r(ch);
    RamLoader loader(test::raw(dst));
    return load_stream(r, machine, reg, loader);
  }
  void expect_error(std::span<const uint8_t> bytes, std::string_view needle,
                    std::string_view machine = "pc") {
    Status st = load(bytes, machine);
    ASSERT_FALSE(st.ok()) << "expected: " << needle;
    EXPECT_NE(st.to_string().find(needle), std::string::npos) << st.to_string();
  }
  std::vector<uint8_t> patched(size_t at, std::vector<uint8_t> with, size_t replace = 0) {
    auto b = good;
    b.erase(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + replace));
    b.insert(b.begin() + static_cast<long>(at), with.begin(), with.end());
    return b;
  }

  std::vector<std::unique_ptr<memory::RamBlock>> ram;
  test::Timer timer{5, 6};
  SectionRegistry registry;
  std::vector<uint8_t> good;
  size_t timer_full = 0, eof = 0;
};

TEST_F(Corrupt, GoodStreamLoads) { EXPECT_TRUE(load(good).ok()); }

TEST_F(Corrupt, HeaderAndConfiguration) {
  expect_error(patched(0, {0x51, 0x45, 0x56, 0x4e}, 4), "magic 0x5145564e at offset 0");
  expect_error(patched(4, {0, 0, 0, 2}, 4), "unsupported migration stream version 2");
  expect_error(good, "Machine type received is 'pc' and local is 'q35'", "q35");
  expect_error(patched(9, {0xff, 0xff, 0xff, 0xff}, 4), "machine type length 4294967295");
  expect_error(patched(8, {0x01}, 1), "expected the configuration record 0x07 at offset 8");
}

TEST_F(Corrupt, SectionsFootersCommands) {
  // Unknown section: rename "timer" to "tim3r".
  expect_error(patched(timer_full + 9, {'3'}, 1),
               "Unknown savevm section or instance 'tim3r' 0");
  // Instance 7 of timer.
  expect_error(patched(timer_full + 11, {0, 0, 0, 7}, 4), "'timer' 7");
  expect_error(patched(timer_full + 15, {0, 0, 0, 9}, 4), "stream version 9, local accepts");
  size_t footer = eof - 5;
  expect_error(patched(footer, {0x7f}, 1), "Missing section footer for 'timer'");
  expect_error(patched(footer + 1, {0, 0, 0, 4}, 4), "names section id 4, expected 1");
  expect_error(patched(timer_full, {0x08, 0x00, 0x05, 0x00, 0x00}),
               "unsupported command 5 (POSTCOPY_RUN)");
  expect_error(patched(timer_full, {0x08, 0x00, 0x0b, 0x00, 0x01, 0x00}),
               "SWITCHOVER_START) at offset");
  EXPECT_TRUE(load(patched(timer_full, {0x08, 0x00, 0x0b, 0x00, 0x00})).ok());
  expect_error(patched(timer_full, {0x02, 0, 0, 0, 9}), "section id 9, which no START");
  expect_error(patched(timer_full, {0x42}), "unknown record type 0x42");
  expect_error(patched(eof + 1, {0x09}, 1), "expected the vmdesc record 0x06");
  expect_error(patched(eof + 2, {0x7f, 0xff, 0xff, 0xff}, 4), "vmdesc length 2147483647");
  auto junk = good;
  junk.push_back(0);
  expect_error(junk, "after the end of the stream");
}

TEST_F(Corrupt, TruncatedAtEveryOffset) {
  for (size_t n = 0; n < good.size(); ++n) {
    Status st = load(std::span(good).first(n));
    if (n == eof + 1) {  // the vmdesc record is optional
      EXPECT_TRUE(st.ok()) << st.to_string();
      continue;
    }
    ASSERT_FALSE(st.ok()) << "prefix of " << n << " bytes loaded";
    EXPECT_TRUE(st.to_string().find("ends") != std::string::npos ||
                st.to_string().find("end") != std::string::npos)
        << n << ": " << st.to_string();
  }
}

TEST_F(Corrupt, EveryByteFlippedNeverCrashes) {
  for (size_t i = 0; i < good.size(); ++i) {
    if (i > 150 && i + 400 < good.size()) continue;  // inside the page data: just bytes
    auto b = good;
    b[i] ^= 0xff;
    (void)load(b);  // ASan/UBSan watch; any Status is fine
  }
}

TEST(Analyze, DescribesEveryRecordOfAFerryStream) {
  Vm src(true);
  auto bytes = save_to_bytes(src, {.send_switchover_start = true});
  auto j = analyze_stream(bytes);
  ASSERT_TRUE(j["errors"].empty()) << j["errors"].dump();
  EXPECT_EQ(j["machine_type"], kMachine);
  EXPECT_EQ(j["ram"]["pages"].get<uint64_t>() + j["ram"]["zero_pages"].get<uint64_t>(), 104u);
  bool saw_timer = false;
  for (const auto& rec : j["records"]) {
    if (rec.value("idstr", "") == "timer") {
      saw_timer = true;
      EXPECT_EQ(rec["fields"][0]["name"], "ticks");
      EXPECT_EQ(rec["fields"][0]["value"], "0x1122334455667788");
    }
  }
  EXPECT_TRUE(saw_timer);
  EXPECT_EQ(j["records"].back()["type"], "vmdesc");
}

TEST(Analyze, ReportsOffsetAndReasonOfDamage) {
  Vm src(true, false);
  auto bytes = save_to_bytes(src);
  bytes[8] = 0x42;  // where the configuration record starts
  auto j = analyze_stream(bytes);
  ASSERT_EQ(j["errors"].size(), 1u);
  EXPECT_EQ(j["errors"][0]["offset"], 8u);
  EXPECT_NE(j["errors"][0]["reason"].get<std::string>().find("0x42"), std::string::npos);
  for (size_t n = 0; n < bytes.size(); n += 97) (void)analyze_stream(std::span(bytes).first(n));
}


struct Blob {
  std::array<uint8_t, 20000> bytes{};
};
inline constexpr auto kBlobDesc =
    vmstate::describe<Blob>("blob", {}, vmstate::buffer("bytes", &Blob::bytes));

// A stream of one page of RAM and `blob`, for machine "pc".
std::vector<uint8_t> blob_stream(Blob& blob, std::vector<std::unique_ptr<memory::RamBlock>>& ram) {
  SectionRegistry reg;
  EXPECT_TRUE(reg.add_ram().ok());
  EXPECT_TRUE(reg.add("blob", vmstate::bind(kBlobDesc, blob)).ok());
  BufferChannel out;
  StreamWriter w(out);
  RamSaver saver(test::raw(ram));
  EXPECT_TRUE(save_stream(w, "pc", reg, saver).ok());
  return out.written();
}

TEST(Stream, SectionLargerThanTheLoadWindowIsRefusedClearly) {
  auto ram = test::make_ram({{"pc.ram", 1}}, false);
  Blob blob;
  blob.bytes[19999] = 7;
  std::vector<uint8_t> bytes = blob_stream(blob, ram);
  for (size_t window : {size_t{8192}, size_t{1} << 20}) {
    Blob got;
    SectionRegistry dst;
    ASSERT_TRUE(dst.add_ram().ok());
    ASSERT_TRUE(dst.add("blob", vmstate::bind(kBlobDesc, got)).ok());
    BufferChannel in(bytes);
    StreamReader r(in, window);
    RamLoader loader(test::raw(ram));
    Status st = load_stream(r, "pc", dst, loader);
    if (window == 8192) {
      ASSERT_FALSE(st.ok());
      EXPECT_NE(st.to_string().find("does not fit in the 8192-byte load window"),
                std::string::npos)
          << st.to_string();
    } else {
      ASSERT_TRUE(st.ok()) << st.to_string();
      EXPECT_EQ(got.bytes[19999], 7);
    }
  }
}

// Device sections carry no length: they load as their bytes arrive, never waiting for
// bytes beyond them. A live connection stays open after the vmdesc record (a QEMU source
// never half-closes it: it waits on the return path), and the load still completes.
TEST(Stream, ALiveConnectionLoadsWithoutEndingTheStream) {
  Vm src(true), dst(false);
  std::vector<uint8_t> bytes = save_to_bytes(src);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  FdChannel sender(fds[0], "sender", true);
  FdChannel receiver(fds[1], "receiver", true);
  // The sender writes everything, then keeps the connection open until the test ends.
  std::thread writer([&] { EXPECT_TRUE(sender.write_all(bytes).ok()); });
  std::atomic<bool> loaded{false};
  Status st;
  std::thread loading([&] {
    StreamReader r(receiver);
    RamLoader loader(test::raw(dst.ram));
    st = load_stream(r, kMachine, dst.registry, loader, nullptr,
                     StreamEnd::kConnectionStaysOpen);
    loaded.store(true);
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!loaded.load() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  bool finished = loaded.load();
  (void)sender.shutdown_write();  // unblocks a loader that waited for the end after all
  writer.join();
  loading.join();
  ASSERT_TRUE(finished) << "the load waited for the sender to end the stream";
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(src.same_as(dst));
}

// A section much larger than one channel read, delivered a few bytes at a time: the
// description pulls each piece as it needs it.
TEST(Stream, ASectionArrivingInSmallPiecesLoads) {
  auto ram = test::make_ram({{"pc.ram", 1}}, false);
  Blob blob;
  for (size_t i = 0; i < blob.bytes.size(); ++i) blob.bytes[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> bytes = blob_stream(blob, ram);
  Blob got;
  SectionRegistry dst;
  ASSERT_TRUE(dst.add_ram().ok());
  ASSERT_TRUE(dst.add("blob", vmstate::bind(kBlobDesc, got)).ok());
  BufferChannel in(bytes, 13);
  StreamReader r(in);
  RamLoader loader(test::raw(ram));
  ASSERT_TRUE(load_stream(r, "pc", dst, loader).ok());
  EXPECT_EQ(got.bytes, blob.bytes);
}

// The connection breaking inside a device section names the channel's error, not merely
// "input ends early".
TEST(Stream, ABrokenChannelInsideASectionIsNamed) {
  Vm src(true), dst(false);
  std::vector<uint8_t> bytes = save_to_bytes(src);
  // Cut a little after the NVMe-like section's header: find its idstr.
  std::string idstr = pci_idstr(0, 0, 2, 0, "nvme");
  auto it = std::search(bytes.begin(), bytes.end(), idstr.begin(), idstr.end());
  ASSERT_NE(it, bytes.end());
  size_t cut = static_cast<size_t>(it - bytes.begin()) + idstr.size() + 8 + 40;
  BufferChannel ch(std::span<const uint8_t>(bytes).first(cut));
  ch.fail_reads_at_end(Error(ErrorCode::kIo, "Connection reset by peer"));
  StreamReader r(ch);
  RamLoader loader(test::raw(dst.ram));
  Status st = load_stream(r, kMachine, dst.registry, loader);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("Connection reset by peer"), std::string::npos) << st.to_string();
  EXPECT_NE(st.to_string().find(idstr), std::string::npos) << st.to_string();
}

TEST(SectionRegistry, NamesInstancesAndIds) {
  test::Timer a, b, c;
  SectionRegistry reg;
  EXPECT_EQ(pci_idstr(0, 0, 2, 0, "nvme"), "0000:00:02.0/nvme");
  EXPECT_EQ(pci_idstr(1, 0x1a, 0x1f, 7, "virtio-net"), "0001:1a:1f.7/virtio-net");
  auto ram = reg.add_ram();
  ASSERT_TRUE(ram.ok());
  EXPECT_EQ(*ram, 0u);
  auto first = reg.add("timer", vmstate::bind(test::kTimerDesc, a));
  auto second = reg.add("timer", vmstate::bind(test::kTimerDesc, b));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*second, 2u);
  EXPECT_EQ(reg.find("timer", 1)->section_id, 2u);
  EXPECT_FALSE(reg.add("timer", vmstate::bind(test::kTimerDesc, c), 1).ok());  // taken
  auto too_long = reg.add(std::string(128, 'n'), vmstate::bind(test::kTimerDesc, c));
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().to_string().find("128 bytes"), std::string::npos);
  EXPECT_FALSE(reg.add("ram", vmstate::bind(test::kTimerDesc, c)).ok());
  EXPECT_FALSE(reg.add_ram().ok());
  EXPECT_TRUE(reg.ram()->is_ram());
}


TEST(Stream, PeerGoneIsAnErrorNotASignal) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ::close(sv[1]);
  auto out = connect_outgoing("fd:" + std::to_string(sv[0]));
  ASSERT_TRUE(out.ok());
  Vm src(true);
  StreamWriter w(**out);
  RamSaver saver(test::raw(src.ram));
  Status st = save_stream(w, kMachine, src.registry, saver);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("migration stream write at offset 0"), std::string::npos)
      << st.to_string();
}


// ---- bulk data that bypasses the buffers ----

namespace bulk {

// Appends by resize + memcpy (vector::insert of spans trips GCC 12's -Warray-bounds).
void append(std::vector<uint8_t>& v, std::span<const uint8_t> s) {
  size_t at = v.size();
  v.resize(at + s.size());
  if (!s.empty()) std::memcpy(v.data() + at, s.data(), s.size());
}

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 8)) ^ seed);
  return v;
}

// "abc", 10000 payload bytes, be32 0x01020304, 4096 payload bytes, 0xee.
struct Sample {
  std::vector<uint8_t> first = pattern(10000, 1), second = pattern(4096, 2), bytes;
  Sample() {
    const uint8_t abc[] = {'a', 'b', 'c'}, marker[] = {1, 2, 3, 4}, last[] = {0xee};
    append(bytes, abc);
    append(bytes, first);
    append(bytes, marker);
    append(bytes, second);
    append(bytes, last);
  }
};

void read_sample(StreamReader& r, const Sample& s) {
  uint8_t abc[3];
  ASSERT_TRUE(r.read_bytes(abc, "abc").ok());
  EXPECT_EQ(std::memcmp(abc, "abc", 3), 0);
  std::vector<uint8_t> first(s.first.size()), second(s.second.size());
  Status st = r.read_into(first, "first payload");
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(first, s.first);
  EXPECT_EQ(r.offset(), 3u + first.size());
  uint32_t marker = 0;
  ASSERT_TRUE(r.read_be32(marker, "marker").ok());
  EXPECT_EQ(marker, 0x01020304u);
  st = r.read_into(second, "second payload");
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(second, s.second);
  uint8_t last = 0;
  ASSERT_TRUE(r.read_u8(last, "last").ok());
  EXPECT_EQ(last, 0xee);
  auto end = r.at_end();
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(*end);
  EXPECT_EQ(r.offset(), s.bytes.size());
}

}  // namespace bulk

TEST(StreamReader, ReadIntoGivesExactBytesAndOffsetsAtEveryChunking) {
  bulk::Sample s;
  for (size_t max_read : {size_t{1}, size_t{3}, size_t{7}, size_t{4096}, size_t{4099},
                          size_t{70000}, SIZE_MAX}) {
    SCOPED_TRACE(max_read);
    BufferChannel ch(s.bytes, max_read);
    StreamReader r(ch);
    bulk::read_sample(r, s);
  }
}

TEST(StreamReader, ReadIntoOverASocketReadsPayloadsDirectly) {
  bulk::Sample s;
  // Many samples back to back, more than the socket buffer holds: a writer thread.
  constexpr int kCopies = 200;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  FdChannel out(sv[0], "socketpair", true), in(sv[1], "socketpair", true);
  std::thread writer([&] {
    for (int i = 0; i < kCopies; ++i) EXPECT_TRUE(out.write_all(s.bytes).ok());
    EXPECT_TRUE(out.shutdown_write().ok());
  });
  StreamReader r(in);
  for (int i = 0; i < kCopies; ++i) {
    uint8_t abc[3];
    std::vector<uint8_t> first(s.first.size()), second(s.second.size());
    uint32_t marker = 0;
    uint8_t last = 0;
    ASSERT_TRUE(r.read_bytes(abc, "abc").ok());
    ASSERT_TRUE(r.read_into(first, "first").ok());
    ASSERT_TRUE(r.read_be32(marker, "marker").ok());
    ASSERT_TRUE(r.read_into(second, "second").ok());
    ASSERT_TRUE(r.read_u8(last, "last").ok());
    ASSERT_EQ(first, s.first) << "copy " << i;
    ASSERT_EQ(second, s.second) << "copy " << i;
    ASSERT_EQ(marker, 0x01020304u);
    ASSERT_EQ(last, 0xee);
    ASSERT_EQ(r.offset(), (i + 1) * s.bytes.size());
  }
  writer.join();
  auto end = r.at_end();
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(*end);
}

TEST(StreamReader, ReadIntoACutStreamNamesWhereItEnds) {
  // An 8-byte header, then only 1000 of the 4096 payload bytes.
  std::vector<uint8_t> bytes = bulk::pattern(8 + 1000, 3);
  for (size_t max_read : {size_t{1}, size_t{8}, size_t{13}, size_t{600}, SIZE_MAX}) {
    SCOPED_TRACE(max_read);
    BufferChannel ch(bytes, max_read);
    StreamReader r(ch);
    uint64_t header = 0;
    ASSERT_TRUE(r.read_be64(header, "RAM record header").ok());
    std::vector<uint8_t> page(4096, 0x5a);
    Status st = r.read_into(page, "RAM page data");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), ErrorCode::kOutOfRange);
    EXPECT_NE(st.to_string().find("stream ends at offset 1008 while reading RAM page data "
                                  "(needed 4096 bytes, 1000 left)"),
              std::string::npos)
        << st.to_string();
    // What arrived is in place; nothing beyond it was touched.
    EXPECT_TRUE(std::equal(page.begin(), page.begin() + 1000, bytes.begin() + 8));
    EXPECT_TRUE(std::all_of(page.begin() + 1000, page.end(), [](uint8_t b) { return b == 0x5a; }));
  }
}

// Records every iovec a writer hands over, and the bytes.
class RecordingChannel final : public Channel {
 public:
  Result<size_t> read_some(std::span<uint8_t>) override { return size_t{0}; }
  Status write_all(std::span<const uint8_t> data) override {
    iovec v{const_cast<uint8_t*>(data.data()), data.size()};
    return writev_all(std::span(&v, 1));
  }
  Status writev_all(std::span<iovec> iov) override {
    ++writes;
    for (const iovec& v : iov) {
      bases.push_back(v.iov_base);
      auto* p = static_cast<const uint8_t*>(v.iov_base);
      bytes.insert(bytes.end(), p, p + v.iov_len);
    }
    return {};
  }
  Status shutdown_write() override { return {}; }
  Status close() override { return {}; }
  const std::string& name() const override { return name_; }

  size_t writes = 0;
  std::vector<const void*> bases;
  std::vector<uint8_t> bytes;

 private:
  std::string name_ = "recording";
};

TEST(StreamWriter, ReferencedBytesKeepTheirPlaceInTheStream) {
  RecordingChannel ch;
  std::vector<uint8_t> a = bulk::pattern(4096, 4), b = bulk::pattern(10, 5),
                       big = bulk::pattern(100000, 6), c = bulk::pattern(4096, 7);
  std::vector<uint8_t> expected;
  auto add = [&](std::span<const uint8_t> s) { bulk::append(expected, s); };
  {
    StreamWriter w(ch, 64 * 1024);
    w.put_u8(0x11);
    add(std::vector<uint8_t>{0x11});
    w.put_by_reference(a);
    add(a);
    w.put_be32(0x22334455);
    add(std::vector<uint8_t>{0x22, 0x33, 0x44, 0x55});
    w.put_by_reference(b);
    add(b);
    EXPECT_EQ(w.position(), expected.size());
    w.put_bytes(big);  // larger than the buffer: leaves at once, after what is queued
    add(big);
    w.put_by_reference(c);
    add(c);
    w.put_u8(0x66);
    add(std::vector<uint8_t>{0x66});
    // Many pages by reference: they go out in few writes.
    for (int i = 0; i < 300; ++i) {
      w.put_be64(static_cast<uint64_t>(i));
      std::vector<uint8_t> be(8);
      store_be<uint64_t>(be.data(), static_cast<uint64_t>(i));
      add(be);
      w.put_by_reference(a);
      add(a);
    }
    EXPECT_EQ(w.position(), expected.size());
    ASSERT_TRUE(w.flush().ok());
  }
  EXPECT_EQ(ch.bytes, expected);
  // One write per buffer's worth of referenced bytes (64 KiB here), not one per page.
  EXPECT_LE(ch.writes, 300u * 4096 / (64 * 1024) + 4);
  // The referenced memory itself was handed to the channel: no copy in between.
  EXPECT_NE(std::find(ch.bases.begin(), ch.bases.end(), a.data()), ch.bases.end());
  EXPECT_NE(std::find(ch.bases.begin(), ch.bases.end(), c.data()), ch.bases.end());
}

}  // namespace
}  // namespace ferry::migration
