// Black-box tests of `ferry analyze FILE`: streams written by Ferry's migration library
// and, where QEMU 7.2 is installed, by qemu-system-x86_64 itself, analyzed by the `ferry`
// executable as a user would run it.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "migration/channel.h"
#include "migration/stream.h"
#include "migration/test_devices.h"
#include "client/child_process.h"
#include "client/qmp_client.h"

namespace ferry::testing {

using namespace ::ferry::client;  // the clients live in tools/client
namespace {

namespace mig = ferry::migration;
constexpr const char* kFerry = FERRY_PATH;
constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";

// Built with ASan or TSan: gcc says so through macros, clang (the asan preset's clang-14)
// through __has_feature.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FERRY_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FERRY_UNDER_SANITIZER 1
#endif
#endif
#ifndef FERRY_UNDER_SANITIZER
#define FERRY_UNDER_SANITIZER 0
#endif

struct CommandRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::string s = read_text(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

void write_bytes(const std::string& path, std::span<const uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Each test works in its own directory, removed afterwards.
class Analyze : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fmt::format("/tmp/ferry-analyze-test-{}-{}", ::getpid(), info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Runs `ferry analyze ARGS...` through the shell so that stdout lands in a file.
  CommandRun analyze(const std::vector<std::string>& args) {
    std::string command = fmt::format("exec '{}' analyze", kFerry);
    for (const auto& a : args) command += " '" + a + "'";
    command += " > '" + path("stdout") + "'";
    auto child = ChildProcess::spawn({"/bin/sh", "-c", command}, path("stderr"));
    EXPECT_TRUE(child.ok()) << child.status().to_string();
    CommandRun run;
    if (!child.ok()) return run;
    auto code = child->wait(std::chrono::milliseconds(120000));
    EXPECT_TRUE(code.has_value()) << "ferry analyze did not finish";
    run.exit_code = code.value_or(-1);
    run.out = read_text(path("stdout"));
    run.err = child->stderr_text();
    return run;
  }

  std::string dir_;
};

// A Ferry stream of a stopped VM: "pc.ram" (16 pages of mixed content), a timer and the
// NVMe-like device at 0000:00:02.0 (with its subsection nvme-like/smart), saved to a file
// through the file: channel.
std::string write_ferry_stream(const std::string& file) {
  auto ram = mig::test::make_ram({{"pc.ram", 16}}, true);
  mig::test::Timer timer{0x1122334455667788ull, 250};
  vmstate::samples::NvmeLike nvme;
  vmstate::samples::fill_nvme_like(nvme, 3);
  nvme.smart_units_read = 42;  // so the subsection nvme-like/smart is sent
  mig::SectionRegistry registry;
  EXPECT_TRUE(registry.add_ram().ok());
  EXPECT_TRUE(registry.add("timer", vmstate::bind(mig::test::kTimerDesc, timer)).ok());
  EXPECT_TRUE(registry
                  .add(mig::pci_idstr(0, 0, 2, 0, "nvme"),
                       vmstate::bind(vmstate::samples::kNvmeLikeDesc, nvme))
                  .ok());
  auto channel = mig::connect_outgoing("file:" + file);
  EXPECT_TRUE(channel.ok()) << channel.status().to_string();
  if (!channel.ok()) return "";
  mig::StreamWriter w(**channel);
  mig::RamSaver saver(mig::test::raw(ram));
  Status st = mig::save_stream(w, "pc-q35-7.2", registry, saver);
  EXPECT_TRUE(st.ok()) << st.to_string();
  st = (*channel)->close();
  EXPECT_TRUE(st.ok()) << st.to_string();
  return file;
}

// The "offset N" of "ferry analyze: FILE: offset N: reason", or nothing.
std::optional<uint64_t> reported_offset(const std::string& err, const std::string& file) {
  std::string prefix = "ferry analyze: " + file + ": offset ";
  size_t at = err.find(prefix);
  if (at == std::string::npos) return std::nullopt;
  size_t colon = err.find(':', at + prefix.size());
  if (colon == std::string::npos) return std::nullopt;
  return std::stoull(err.substr(at + prefix.size(), colon - at - prefix.size()));
}

TEST_F(Analyze, FerryStreamDecodesEverySection) {
  std::string file = write_ferry_stream(path("ferry.mig"));
  ASSERT_FALSE(file.empty());
  size_t size = std::filesystem::file_size(file);

  CommandRun run = analyze({file});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find(fmt::format("{} bytes, every byte accounted for", size)),
            std::string::npos)
      << run.err;
  auto state = Json::parse(run.out, nullptr, false);
  ASSERT_TRUE(state.is_object()) << run.out;
  // Section ids follow registration order: ram 0, timer 1, nvme 2.
  ASSERT_TRUE(state.contains("ram (0)")) << state.dump(2);
  EXPECT_EQ(state["ram (0)"]["section sizes"]["pc.ram"], "0x0000000000010000");
  ASSERT_TRUE(state.contains("timer (1)")) << state.dump(2);
  EXPECT_EQ(state["timer (1)"]["ticks"], "0x1122334455667788");
  EXPECT_EQ(state["timer (1)"]["period"], "0x000000fa");
  ASSERT_TRUE(state.contains("0000:00:02.0/nvme (2)")) << state.dump(2);
  const Json& nvme = state["0000:00:02.0/nvme (2)"];
  EXPECT_FALSE(nvme.empty());
  // Subsections sit beside the fields under their own names, as analyze-migration.py
  // lays them out.
  ASSERT_TRUE(nvme.contains("nvme-like/smart")) << nvme.dump(2);
  EXPECT_EQ(nvme["nvme-like/smart"]["units_read"], "0x000000000000002a");
  EXPECT_FALSE(nvme.contains("subsections"));
}

TEST_F(Analyze, DescRecordsAndMemoryViews) {
  std::string file = write_ferry_stream(path("ferry.mig"));
  ASSERT_FALSE(file.empty());

  CommandRun desc = analyze({file, "--dump", "desc"});
  ASSERT_EQ(desc.exit_code, 0) << desc.err;
  auto vmdesc = Json::parse(desc.out, nullptr, false);
  ASSERT_TRUE(vmdesc.is_object()) << desc.out;
  EXPECT_EQ(vmdesc["page_size"], 4096);
  ASSERT_EQ(vmdesc["devices"].size(), 2u);
  EXPECT_EQ(vmdesc["devices"][0]["name"], "timer");
  EXPECT_EQ(vmdesc["devices"][1]["name"], "0000:00:02.0/nvme");

  CommandRun records = analyze({file, "--dump", "records"});
  ASSERT_EQ(records.exit_code, 0) << records.err;
  auto walk = Json::parse(records.out, nullptr, false);
  ASSERT_TRUE(walk.is_object()) << records.out;
  EXPECT_EQ(walk["size"], std::filesystem::file_size(file));
  EXPECT_TRUE(walk["errors"].empty());
  EXPECT_EQ(walk["ram"]["pages"].get<uint64_t>() + walk["ram"]["zero_pages"].get<uint64_t>(), 16u);

  CommandRun memory = analyze({file, "--memory"});
  ASSERT_EQ(memory.exit_code, 0) << memory.err;
  auto state = Json::parse(memory.out, nullptr, false);
  ASSERT_TRUE(state.is_object()) << memory.out;
  EXPECT_EQ(state["memory"]["pc.ram"].size(), 16u) << state["memory"].dump(2);
  EXPECT_TRUE(state["memory"]["pc.ram"].contains("0x000000000000f000"));
}

TEST_F(Analyze, TruncatedStreamNamesTheOffset) {
  std::string file = write_ferry_stream(path("ferry.mig"));
  ASSERT_FALSE(file.empty());
  std::vector<uint8_t> bytes = read_bytes(file);
  ASSERT_GT(bytes.size(), 1000u);

  // Cut in the middle of the RAM pages: the walk stops where the stream ends.
  std::string cut = path("cut.mig");
  write_bytes(cut, std::span(bytes).first(bytes.size() / 2));
  CommandRun run = analyze({cut});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  auto offset = reported_offset(run.err, cut);
  ASSERT_TRUE(offset.has_value()) << run.err;
  EXPECT_LE(*offset, bytes.size() / 2);
  EXPECT_NE(run.err.find("ends"), std::string::npos) << run.err;
  EXPECT_TRUE(run.out.empty()) << run.out;

  // One byte short of the end: the vmdesc length no longer matches.
  write_bytes(cut, std::span(bytes).first(bytes.size() - 1));
  run = analyze({cut});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_TRUE(reported_offset(run.err, cut).has_value()) << run.err;
}

TEST_F(Analyze, FlippedByteNamesTheOffset) {
  std::string file = write_ferry_stream(path("ferry.mig"));
  ASSERT_FALSE(file.empty());
  std::vector<uint8_t> bytes = read_bytes(file);

  // The RAM START record's type byte (after the 8-byte header and the configuration
  // "07 be32 len pc-q35-7.2"): 0x01 becomes 0x41, an unknown record type.
  size_t start = 8 + 1 + 4 + std::string_view("pc-q35-7.2").size();
  ASSERT_EQ(bytes[start], 0x01);
  bytes[start] ^= 0x40;
  std::string bad = path("flipped.mig");
  write_bytes(bad, bytes);
  CommandRun run = analyze({bad});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_EQ(reported_offset(run.err, bad), start) << run.err;
  EXPECT_NE(run.err.find("unknown record type 0x41"), std::string::npos) << run.err;

  // A footer byte: the record before it is complete, the footer is not.
  bytes[start] ^= 0x40;
  size_t timer_header = 0;
  for (size_t i = 0; i + 6 < bytes.size(); ++i) {
    if (bytes[i] == 0x05 && std::memcmp(&bytes[i + 1], "timer", 5) == 0) {
      timer_header = i;
      break;
    }
  }
  ASSERT_NE(timer_header, 0u);
  size_t footer = timer_header + 6 + 4 + 4 + 12;  // idstr, instance, version, u64 + u32 body
  ASSERT_EQ(bytes[footer], 0x7e);
  bytes[footer] = 0x7f;
  write_bytes(bad, bytes);
  run = analyze({bad});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_EQ(reported_offset(run.err, bad), footer) << run.err;
}

// The case: a 2 GB sparse file is not read whole (it took 32 s and 2.1 GB, and died
// of bad_alloc under a memory limit): the magic is refused at once, in little memory.
TEST_F(Analyze, SparseFileIsRefusedAtOnceInLittleMemory) {
  std::string file = path("sparse.mig");
  { std::ofstream create(file); }
  std::filesystem::resize_file(file, 2ull << 30);
#if FERRY_UNDER_SANITIZER
  // The sanitizers reserve terabytes of address space up front: no address-space limit can
  // tell a small process from a large one there. The time bound still holds.
  std::string limit;
#else
  std::string limit = "ulimit -v 524288 && ";  // 512 MiB of address space
#endif
  std::string command = fmt::format("{}exec '{}' analyze '{}' > '{}'", limit, kFerry, file,
                                    path("stdout"));
  auto start = std::chrono::steady_clock::now();
  auto child = ChildProcess::spawn({"/bin/sh", "-c", command}, path("stderr"));
  ASSERT_TRUE(child.ok()) << child.status().to_string();
  auto code = child->wait(std::chrono::milliseconds(120000));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1) << child->stderr_text();
  EXPECT_NE(child->stderr_text().find(
                file + ": offset 0: bad magic 0x00000000 (expected 0x5145564d, \"QEVM\")"),
            std::string::npos)
      << child->stderr_text();
  // Reading the first 8 bytes takes milliseconds; reading 2 GB took 32 s. Generous for a
  // busy machine, far below the whole read.
  EXPECT_LT(seconds, 10.0);
}

// Cut anywhere after the RAM section, or with the vmdesc broken: the report says where the
// stream ends (or where the vmdesc breaks), never that a complete section cannot be sized.
TEST_F(Analyze, CutAfterTheRamSectionSaysWhereTheStreamEnds) {
  std::string file = write_ferry_stream(path("ferry.mig"));
  ASSERT_FALSE(file.empty());
  std::vector<uint8_t> bytes = read_bytes(file);
  CommandRun records = analyze({file, "--dump", "records"});
  ASSERT_EQ(records.exit_code, 0) << records.err;
  auto walk = Json::parse(records.out, nullptr, false);
  ASSERT_TRUE(walk.is_object());
  uint64_t ram_end = 0, vmdesc_at = 0;
  for (const Json& rec : walk["records"]) {
    if (rec.value("idstr", "") == "ram")
      ram_end = (rec.contains("body_offset") ? rec["body_offset"].get<uint64_t>()
                                             : rec["offset"].get<uint64_t>() + 5) +
                rec["body_size"].get<uint64_t>() + 5;
    if (rec.value("type", "") == "vmdesc") vmdesc_at = rec["offset"].get<uint64_t>();
  }
  ASSERT_GT(ram_end, 0u);
  ASSERT_GT(vmdesc_at, ram_end);
  // Every record boundary region and a spread of points in between (the unit test in
  // src/migration/analyze_test.cc tries every single cut).
  std::vector<uint64_t> cuts;
  for (uint64_t n = ram_end; n < bytes.size(); n += 41) cuts.push_back(n);
  for (uint64_t n : {ram_end, ram_end + 1, vmdesc_at - 1, vmdesc_at, vmdesc_at + 1, vmdesc_at + 5,
                     vmdesc_at + 6, static_cast<uint64_t>(bytes.size() - 1)})
    cuts.push_back(n);
  std::string cut = path("cut.mig");
  for (uint64_t n : cuts) {
    write_bytes(cut, std::span(bytes).first(n));
    CommandRun run = analyze({cut});
    SCOPED_TRACE(fmt::format("cut at {}: {}", n, run.err));
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_EQ(reported_offset(run.err, cut), n);
    EXPECT_NE(run.err.find(fmt::format("the stream ends at offset {} ", n)), std::string::npos);
    EXPECT_EQ(run.err.find("cannot size"), std::string::npos);
  }
  // A vmdesc that is not JSON is named as such, with where it starts and breaks.
  auto broken = bytes;
  ASSERT_EQ(broken[vmdesc_at + 5], '{');
  broken[vmdesc_at + 6] = 0x01;  // a control byte where a key's quote belongs
  write_bytes(cut, broken);
  CommandRun run = analyze({cut});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(fmt::format("the vmdesc JSON that starts at offset {} is broken at "
                                     "offset {}", vmdesc_at + 5, vmdesc_at + 6)),
            std::string::npos)
      << run.err;
}

TEST_F(Analyze, MissingFileAndBadDumpAreRefused) {
  CommandRun run = analyze({path("absent.mig")});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("absent.mig"), std::string::npos) << run.err;
  std::string file = write_ferry_stream(path("ferry.mig"));
  run = analyze({file, "--dump", "everything"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("everything"), std::string::npos) << run.err;
}

// QEMU 7.2 (Debian's qemu-system-x86): a stopped q35 VM with a virtio-net-pci device
// migrated to a file; `ferry analyze` must account for every byte of it.
TEST_F(Analyze, Qemu72StreamIsAccountedForByteByByte) {
  if (::access(kQemu, X_OK) != 0) GTEST_SKIP() << kQemu << " is not installed";
  std::string qmp_path = path("qemu.qmp");
  auto qemu = ChildProcess::spawn(
      {kQemu, "-M", "q35", "-nodefaults", "-display", "none", "-m", "32", "-S", "-device",
       "virtio-net-pci,netdev=n0", "-netdev", "user,id=n0", "-qmp",
       "unix:" + qmp_path + ",server=on,wait=off"},
      path("qemu.stderr"));
  ASSERT_TRUE(qemu.ok()) << qemu.status().to_string();
  auto qmp = QmpClient::connect(qmp_path, Millis(30000));
  ASSERT_TRUE(qmp.ok()) << qmp.status().to_string() << "\n" << qemu->stderr_text();

  // cat writes a temporary name and the rename marks the file complete: QEMU reports
  // "completed" once it has written the pipe, possibly before cat has drained it.
  std::string file = path("qemu.mig");
  auto started = qmp->execute(
      "migrate", {{"uri", fmt::format("exec:cat > '{0}.part' && mv '{0}.part' '{0}'", file)}});
  ASSERT_TRUE(started.ok()) << started.status().to_string();
  ASSERT_TRUE(started->contains("return")) << started->dump();
  std::string status;
  for (int i = 0; i < 600 && status != "completed" && status != "failed"; ++i) {
    auto info = qmp->execute("query-migrate");
    ASSERT_TRUE(info.ok()) << info.status().to_string();
    status = (*info)["return"].value("status", "");
    if (status != "completed") std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(status, "completed") << qemu->stderr_text();
  for (int i = 0; i < 600 && !std::filesystem::exists(file); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(std::filesystem::exists(file));
  auto quit = qmp->execute("quit");
  EXPECT_TRUE(quit.ok()) << quit.status().to_string();
  EXPECT_TRUE(qemu->wait(std::chrono::milliseconds(30000)).has_value());

  size_t size = std::filesystem::file_size(file);
  CommandRun run = analyze({file});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find(fmt::format("{} bytes, every byte accounted for", size)),
            std::string::npos)
      << run.err;
  auto state = Json::parse(run.out, nullptr, false);
  ASSERT_TRUE(state.is_object()) << run.out.substr(0, 2000);
  bool ram = false, net = false;
  for (auto& [key, section] : state.items()) {
    if (key.starts_with("ram (")) ram = section["section sizes"].contains("pc.ram");
    if (key.find("/virtio-net (") != std::string::npos) {
      // QEMU's vmdesc shows one opaque "virtio" field; analyze decodes it field by field.
      const Json& virtio = section["virtio"];
      net = virtio.is_object() && virtio.contains("virtio-net-device") &&
            virtio.contains("virtio/virtqueues") && virtio.contains("virtio/extra_state");
      if (net) {
        EXPECT_EQ(virtio["virtio-net-device"]["mac"]["mac"], "52 54 00 12 34 56");
        EXPECT_EQ(virtio["queues"]["num_queues"], "0x00000003");
        EXPECT_EQ(virtio["config"]["config_len"], "0x00000008");
      }
    }
  }
  EXPECT_TRUE(ram) << state.dump(2).substr(0, 2000);
  EXPECT_TRUE(net) << state.dump(2).substr(0, 2000);

  // The record walk ends exactly at the end of the file: EOF, then the vmdesc record.
  CommandRun records = analyze({file, "--dump", "records"});
  ASSERT_EQ(records.exit_code, 0) << records.err;
  auto walk = Json::parse(records.out, nullptr, false);
  ASSERT_TRUE(walk.is_object());
  EXPECT_EQ(walk["machine_type"], "pc-q35-7.2");
  const Json& last = walk["records"].back();
  EXPECT_EQ(last["type"], "vmdesc");
  EXPECT_EQ(last["offset"].get<uint64_t>() + 5 + last["length"].get<uint64_t>(), size);
}

}  // namespace
}  // namespace ferry::testing
