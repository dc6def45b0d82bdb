// verify.h's option half: the `-guest verify` schema, option checks and the fixed layout of
// the program's guest memory.
#include "guest/programs/verify.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "spec/nvme.h"

namespace ferry::guest {

namespace sn = spec::nvme;
using verify::Mode;

namespace {

constexpr uint32_t kMaxBlockSize = 1u << 20;
constexpr std::array<std::string_view, 5> kModeNames = {"write", "randwrite", "read", "randread",
                                                        "randrw"};

uint64_t round_up(uint64_t value, uint64_t to) { return (value + to - 1) / to * to; }

// The text a property was given as, for error messages.
std::string given(const Opts& opts, std::string_view key) {
  std::string text;
  for (const Opts::Entry& e : opts.entries()) {
    if (e.key == key) text = e.text;
  }
  return text;
}

Status bad_value(std::string_view key, std::string_view expects, std::string_view found) {
  return Error(ErrorCode::kInvalidArgument, "{}: Parameter '{}' expects {}, found '{}'", kVerifyOption,
               key, expects, found);
}

// fio's duration syntax: a number with an optional unit (ms, s, m, h; seconds by default).
Result<uint64_t> parse_duration_ms(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return Error(ErrorCode::kInvalidArgument, "not a duration");
  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) value = value * 10 + static_cast<uint64_t>(text[i] - '0');
  std::string_view unit = text.substr(digits);
  if (unit == "ms") return value;
  if (unit.empty() || unit == "s") return value * 1000;
  if (unit == "m") return value * 60'000;
  if (unit == "h") return value * 3'600'000;
  return Error(ErrorCode::kInvalidArgument, "unknown unit");
}

}  // namespace

Status verify_check_config(const VerifyConfig& c) {
  if (c.block_size < 512 || c.block_size % 512 != 0 || c.block_size > kMaxBlockSize)
    return bad_value("bs", "a multiple of 512 from 512 to 1M", fmt::format("{}", c.block_size));
  if (c.iodepth < 1 || c.iodepth > verify::kMaxIodepth)
    return bad_value("iodepth", "a number from 1 to 1023", fmt::format("{}", c.iodepth));
  if (c.nsid == 0 || c.nsid == 0xffffffffu)
    return bad_value("nsid", "a namespace id from 1 to 4294967294", fmt::format("{}", c.nsid));
  if (c.size % c.block_size != 0)
    return bad_value("size", fmt::format("a multiple of bs={}", c.block_size),
                     fmt::format("{}", c.size));
  if (static_cast<uint8_t>(c.rw) >= kModeNames.size())
    return bad_value("rw", "write, randwrite, read, randread or randrw",
                     fmt::format("{}", static_cast<int>(c.rw)));
  return {};
}

std::string_view verify_mode_name(Mode mode) {
  auto i = static_cast<size_t>(mode);
  return i < kModeNames.size() ? kModeNames[i] : "unknown";
}

OptSchema verify_schema() {
  OptSchema s;
  s.option = std::string(kVerifyOption);
  s.implied_key = "program";
  s.properties = {
      {"program", OptType::kString, "verify", "the guest program", {"verify"}},
      {"device", OptType::kString, "", "id of the NVMe controller (-device nvme,id=ID)", {}},
      {"nsid", OptType::kNumber, "1", "namespace to use", {}},
      {"rw", OptType::kString, "randwrite", "I/O pattern",
       {"write", "randwrite", "read", "randread", "randrw"}},
      {"bs", OptType::kSize, "4K", "bytes per I/O (a multiple of the LBA size)", {}},
      {"iodepth", OptType::kNumber, "16", "commands kept in flight (1..1023)", {}},
      {"size", OptType::kSize, "", "bytes used from LBA 0 (default: the namespace, up to 1G)", {}},
      {"runtime", OptType::kString, "", "how long the run phase lasts (e.g. 30s, 500ms, 2m)", {}},
      {"loops", OptType::kNumber, "", "run-phase passes over the region (default 1)", {}},
      {"seed", OptType::kNumber, "1", "seed of block choice and payloads", {}},
      {"verify", OptType::kString, "crc32c", "block checksum", {"crc32c"}},
  };
  return s;
}

Result<VerifyConfig> verify_config(const Opts& opts) {
  VerifyConfig c;
  c.device = opts.string("device").value_or("");
  std::string rw = opts.string("rw").value_or("randwrite");
  auto mode = std::find(kModeNames.begin(), kModeNames.end(), rw);
  if (mode == kModeNames.end())
    return bad_value("rw", "write, randwrite, read, randread or randrw", rw);
  c.rw = static_cast<Mode>(mode - kModeNames.begin());
  uint64_t nsid = opts.number("nsid").value_or(1);
  if (nsid == 0 || nsid >= 0xffffffffu)
    return bad_value("nsid", "a namespace id from 1 to 4294967294", given(opts, "nsid"));
  c.nsid = static_cast<uint32_t>(nsid);
  uint64_t bs = opts.number("bs").value_or(4096);
  if (bs < 512 || bs % 512 != 0 || bs > kMaxBlockSize)
    return bad_value("bs", "a multiple of 512 from 512 to 1M", given(opts, "bs"));
  c.block_size = static_cast<uint32_t>(bs);
  uint64_t depth = opts.number("iodepth").value_or(16);
  if (depth < 1 || depth > verify::kMaxIodepth)
    return bad_value("iodepth", "a number from 1 to 1023", given(opts, "iodepth"));
  c.iodepth = static_cast<uint32_t>(depth);
  if (opts.is_set("size")) {
    uint64_t size = opts.number("size").value_or(0);
    if (size == 0 || size % bs != 0)
      return bad_value("size", fmt::format("a non-zero multiple of bs={}", bs),
                       given(opts, "size"));
    c.size = size;
  }
  if (opts.is_set("runtime")) {
    std::string text = opts.string("runtime").value_or("");
    auto ms = parse_duration_ms(text);
    if (!ms.ok() || *ms == 0)
      return bad_value("runtime", "a duration like 30s, 500ms or 2m", text);
    c.runtime_ms = *ms;
  }
  if (opts.is_set("loops")) {
    uint64_t loops = opts.number("loops").value_or(0);
    if (loops == 0) return bad_value("loops", "a number of at least 1", given(opts, "loops"));
    c.loops = loops;
  }
  c.seed = opts.number("seed").value_or(1);
  std::string check = opts.string("verify").value_or("crc32c");
  if (check != "crc32c") return bad_value("verify", "crc32c", check);
  return c;
}

VerifyLayout verify_layout(const VerifyConfig& c) {
  VerifyLayout l;
  l.admin_sq = c.dma_base;
  l.admin_cq = l.admin_sq + kVerifyPage;
  l.identify = l.admin_cq + kVerifyPage;
  l.io_sq = l.identify + kVerifyPage;
  l.io_cq = l.io_sq + round_up(uint64_t{c.iodepth + 1} * sn::kSqeSize, kVerifyPage);
  l.buffers = l.io_cq + round_up(uint64_t{c.iodepth + 1} * sn::kCqeSize, kVerifyPage);
  l.buffer_stride = round_up(c.block_size, kVerifyPage);
  l.end = l.buffers + uint64_t{c.iodepth} * l.buffer_stride;
  if (c.block_size > 2 * kVerifyPage) {
    l.prp_lists = l.end;
    l.end = l.prp_lists + uint64_t{c.iodepth} * kVerifyPage;
  }
  return l;
}

uint64_t verify_dma_bytes(const VerifyConfig& config) {
  return verify_layout(config).end - config.dma_base;
}

}  // namespace ferry::guest
