// Writes the seed corpus of stream_load_fuzzer: whole migration streams saved by
// save_stream from the VM of stream_load_vm.h, and broken ones close to valid (cut,
// renamed, flipped) so that mutations start near the loader's error paths. Every seed is
// checked to load, or to fail, as intended.
//
// Regenerate the committed seeds (output is deterministic) from the repository root:
//   cmake --preset asan && cmake --build --preset asan --target stream_make_seeds
//   rm -f fuzz/corpus/stream_load/* && build/asan/fuzz/stream_make_seeds fuzz/corpus/stream_load
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "migration/buffer_channel.h"
#include "migration/stream.h"
#include "stream_load_vm.h"

namespace {

using ferry::Status;
using ferry::fuzz::kStreamMachine;
using ferry::fuzz::StreamVm;
namespace mig = ferry::migration;
using Bytes = std::vector<uint8_t>;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "make_stream_seeds: %s\n", why.c_str());
  std::exit(1);
}

// Only the first two RAM pages keep their content, so that seeds stay small (libFuzzer
// mutates short inputs faster); the other pages travel as ZERO records.
std::unique_ptr<StreamVm> vm(bool populated, uint32_t seed) {
  auto made = StreamVm::make(populated, seed);
  if (!made.ok()) die(made.status().to_string());
  auto& block = *(*made)->ram.front();
  std::memset(block.page(2), 0, block.size() - 2 * ferry::memory::kPageSize);
  return std::move(made).value();
}

Bytes save(StreamVm& source, mig::SaveOptions options = {}) {
  mig::BufferChannel channel;
  mig::StreamWriter writer(channel);
  mig::RamSaver saver(mig::test::raw(source.ram));
  Status st = mig::save_stream(writer, kStreamMachine, source.registry, saver, options);
  if (!st.ok()) die("save failed: " + st.to_string());
  return channel.written();
}

Status load(const Bytes& bytes) {
  auto target = vm(false, 0);
  mig::BufferChannel channel(bytes);
  mig::StreamReader reader(channel);
  mig::RamLoader loader(mig::test::raw(target->ram));
  return mig::load_stream(reader, kStreamMachine, target->registry, loader);
}

// Offset of the first occurrence of `needle` (a section's u8 length + name, say).
size_t find(const Bytes& bytes, std::string_view needle) {
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  if (it == bytes.end()) die(fmt::format("'{}' not found", needle));
  return static_cast<size_t>(it - bytes.begin());
}

// The EOF byte: the vmdesc record (0x06, be32 length, JSON) is the stream's tail.
size_t eof_offset(const Bytes& bytes) {
  size_t json = find(bytes, "{\"page_size\"");
  if (json < 6 || bytes[json - 5] != 0x06 || bytes[json - 6] != 0x00) die("no EOF before vmdesc");
  return json - 6;
}

struct Seed {
  std::string name;
  Bytes stream;
  bool loads;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) die("usage: make_stream_seeds OUTPUT_DIR");
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);

  // The vmdesc record (about 20 KB of JSON for the NVMe-like device) is optional: most
  // seeds end right after EOF, which is a complete stream too.
  auto without_vmdesc = [](const Bytes& b) {
    return Bytes(b.begin(), b.begin() + static_cast<long>(eof_offset(b)) + 1);
  };
  std::vector<Seed> seeds;
  auto full = vm(true, 1);
  Bytes with_vmdesc = save(*full);
  Bytes valid = without_vmdesc(with_vmdesc);
  seeds.push_back({"valid-with-vmdesc", with_vmdesc, true});
  seeds.push_back({"valid-populated", valid, true});
  seeds.push_back({"valid-all-zero", without_vmdesc(save(*vm(false, 0))), true});
  seeds.push_back({"valid-other-content", without_vmdesc(save(*vm(true, 7))), true});
  seeds.push_back({"valid-switchover-start",
                   without_vmdesc(save(*full, {.send_switchover_start = true})), true});

  // "timer" FULL record: 0x05 "timer" is its idstr; instance, version and body follow.
  const std::string timer_name = std::string("\x05", 1) + "timer";
  size_t timer = find(valid, timer_name);
  size_t timer_version = timer + 6 + 4;
  size_t timer_footer = timer_version + 4 + 12;
  const std::string nvme_name = std::string("\x11", 1) + "0000:00:02.0/nvme";
  size_t nvme_body = find(valid, nvme_name) + nvme_name.size() + 8;

  seeds.push_back({"cut-in-ram-pages", Bytes(valid.begin(), valid.begin() + timer / 2), false});
  seeds.push_back({"cut-in-device", Bytes(valid.begin(), valid.begin() + nvme_body + 40), false});
  seeds.push_back({"cut-in-vmdesc", Bytes(with_vmdesc.begin(), with_vmdesc.end() - 10), false});

  Bytes bad = valid;
  bad[timer_footer] = 0x7f;
  seeds.push_back({"bad-footer", bad, false});

  bad = valid;
  bad[timer + 5] = 'x';  // "timex": no such section here
  seeds.push_back({"unknown-section", bad, false});

  bad = valid;
  bad[timer_version + 3] = 3;  // timer v3, local is v2
  seeds.push_back({"device-version-too-new", bad, false});

  bad = valid;
  bad[8 + 1 + 4 + kStreamMachine.size() - 1] = '1';  // pc-q35-7.1
  seeds.push_back({"other-machine-type", bad, false});

  bad = valid;
  // RAM START's block list: the be64 length of "pc.ram" no longer matches the block.
  size_t block_len = find(valid, std::string("\x06", 1) + "pc.ram") + 7;
  bad[block_len + 5] ^= 0x01;
  seeds.push_back({"ram-block-size-mismatch", bad, false});

  for (const Seed& seed : seeds) {
    Status st = load(seed.stream);
    if (st.ok() != seed.loads)
      die(fmt::format("seed {}: expected to {}, got: {}", seed.name,
                      seed.loads ? "load" : "fail", st.ok() ? "loaded" : st.to_string()));
    std::ofstream out(dir / seed.name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(seed.stream.data()),
              static_cast<std::streamsize>(seed.stream.size()));
    if (!out) die("cannot write " + (dir / seed.name).string());
    std::printf("%-26s %6zu bytes  %s\n", seed.name.c_str(), seed.stream.size(),
                st.ok() ? "loads" : st.to_string().c_str());
  }
  return 0;
}
