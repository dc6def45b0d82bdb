#include "migration/analyze.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/byte_order.h"
#include "base/byte_reader.h"
#include "migration/buffer_channel.h"
#include "migration/stream_reader.h"
#include "migration/wire.h"

namespace ferry::migration {
namespace {

using vmstate::Json;

// The largest vmdesc analyze reads (QEMU's are tens of KiB; a JSON this size is ~10x that
// in memory once parsed).
constexpr size_t kVmdescLimit = 16 << 20;
constexpr size_t kTailChunk = 64 << 10;

// A malformed spot: offset and reason.
struct Problem {
  uint64_t offset;
  std::string reason;
};

struct VmdescLookup {
  Json json;                       // null when there is none
  uint64_t record_offset = 0;      // of its 0x06 byte
  std::optional<Problem> problem;  // there is one, but it is cut or not JSON
};

// Finds the vmdesc the way analyze-migration.py does, reading the stream's end backwards
// only as far as the last 0x00 (at most kVmdescLimit bytes).
VmdescLookup find_vmdesc(StreamTail& tail) {
  VmdescLookup found;
  const uint64_t size = tail.size();
  std::vector<uint8_t> bytes;  // the stream from `start` to its end
  uint64_t start = size;
  std::optional<size_t> nul;  // index in `bytes` after the last 0x00
  while (start > 0 && !nul && size - start < kVmdescLimit) {
    // Doubling chunks: each byte is copied a bounded number of times.
    size_t chunk =
        static_cast<size_t>(std::min<uint64_t>(start, std::max(kTailChunk, bytes.size())));
    std::vector<uint8_t> more(chunk);
    if (!tail.read_at(start - chunk, more).ok()) return found;
    start -= chunk;
    for (size_t i = chunk; i > 0; --i)
      if (more[i - 1] == 0) {
        nul = i;
        break;
      }
    // `nul` counts from `more`'s front, which is the front of `bytes` from now on.
    more.insert(more.end(), bytes.begin(), bytes.end());
    bytes = std::move(more);
  }
  if (!nul) return found;
  auto brace = std::find(bytes.begin() + static_cast<long>(*nul), bytes.end(), uint8_t{'{'});
  if (brace == bytes.end()) return found;
  const uint64_t json_at = start + static_cast<uint64_t>(brace - bytes.begin());
  if (json_at < 5) return found;
  uint8_t header[5];
  if (!tail.read_at(json_at - 5, header).ok() || header[0] != wire::kVmdescription) return found;
  const uint64_t len = load_be<uint32_t>(&header[1]);
  const uint64_t present = size - json_at;
  if (len > present) {
    found.problem = Problem{size, fmt::format("the stream ends at offset {} inside the vmdesc JSON "
                                              "that starts at offset {} ({} of its {} bytes are "
                                              "there)", size, json_at, present, len)};
    return found;
  }
  try {
    found.json = Json::parse(brace, brace + static_cast<long>(len));
  } catch (const Json::parse_error& e) {
    // e.byte counts from 1 and points past the byte where parsing failed.
    uint64_t bad = json_at + (e.byte > 0 ? e.byte - 1 : 0);
    found.problem = Problem{bad, fmt::format("the vmdesc JSON that starts at offset {} is broken "
                                             "at offset {} (not valid JSON)", json_at, bad)};
    found.json = Json();
    return found;
  } catch (const Json::exception& e) {  // a number out of range, and the like
    found.problem = Problem{json_at, fmt::format("the vmdesc JSON that starts at offset {} is "
                                                 "broken ({})", json_at, e.what())};
    found.json = Json();
    return found;
  }
  if (!found.json.is_object()) {
    found.problem = Problem{json_at, fmt::format("the vmdesc JSON at offset {} is not an object",
                                                 json_at)};
    found.json = Json();
    return found;
  }
  found.record_offset = json_at - 5;
  return found;
}

uint64_t json_u64(const Json& j, const char* key, bool* ok) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) {
    *ok = false;
    return 0;
  }
  return it->get<uint64_t>();
}

std::string in_quotes(std::string_view name) { return "'" + escaped_bytes(name) + "'"; }

class Walker {
 public:
  Walker(Channel& stream, StreamTail& tail, AnalyzeObserver* observer, Json& out)
      : reader_(stream), tail_(tail), observer_(observer), out_(out) {}

  void run() {
    out_["size"] = tail_.size();
    out_["records"] = Json::array();
    Json ram = Json::object();
    ram["blocks"] = Json::array();
    ram["pages"] = 0;
    ram["zero_pages"] = 0;
    out_["ram"] = ram;
    out_["errors"] = Json::array();
    if (!walk()) {
      out_["errors"].push_back({{"offset", problem_.offset}, {"reason", problem_.reason}});
    }
    if (vmdesc_ && !vmdesc_->json.is_null()) out_["vmdesc"] = vmdesc_->json;
  }

 private:
  bool fail(uint64_t offset, std::string reason) {
    problem_ = {offset, std::move(reason)};
    return false;
  }
  // Where the walk is, for "the stream ends ... inside <where>".
  void set_where(std::string where) { where_ = std::move(where); }

  // The error for a read of `n` bytes that the stream could not give.
  bool ended(size_t n, size_t left, std::string_view what) {
    const uint64_t end = reader_.offset() + left;
    if (where_.empty())
      return fail(end, fmt::format("the stream ends at offset {} before {} (needed {} byte{})",
                                   end, what, n, n == 1 ? "" : "s"));
    return fail(end, fmt::format("the stream ends at offset {} inside {}, in {} (needed {} "
                                 "byte{}, {} there)", end, where_, what, n, n == 1 ? "" : "s",
                                 left));
  }
  bool need(size_t n, std::string_view what) {
    Status st = reader_.need(n, what);
    if (st.ok()) return true;
    size_t left = reader_.buffered_bytes().size();
    if (st.code() == ErrorCode::kOutOfRange && left < n) return ended(n, left, what);
    return fail(reader_.offset(), std::string(st.message()));
  }
  template <typename T>
  bool get(T& v, std::string_view what) {
    if (!need(sizeof(T), what)) return false;
    v = load_be<T>(reader_.buffered_bytes().data());
    reader_.consume(sizeof(T));
    return true;
  }
  bool get_name(std::string& s, std::string_view what) {
    uint8_t len = 0;
    if (!get(len, what) || !need(len, what)) return false;
    s.assign(reinterpret_cast<const char*>(reader_.buffered_bytes().data()), len);
    reader_.consume(len);
    return true;
  }
  bool skip(uint64_t n, std::string_view what) {
    while (n > 0) {
      size_t step = static_cast<size_t>(std::min<uint64_t>(n, kTailChunk));
      if (!need(step, what)) return false;
      reader_.consume(step);
      n -= step;
    }
    return true;
  }

  bool walk() {
    uint32_t magic = 0, version = 0;
    set_where("the stream header");
    if (!get(magic, "the magic")) return false;
    if (magic != wire::kMagic)
      return fail(0, fmt::format("bad magic 0x{:08x} (expected 0x{:08x}, \"QEVM\")", magic,
                                 wire::kMagic));
    if (!get(version, "the version")) return false;
    if (version != wire::kVersion)
      return fail(4, fmt::format("unsupported stream version {}", version));
    out_["records"].push_back({{"offset", 0}, {"type", "header"}, {"version", version}});
    std::string after = "the stream header";
    while (true) {
      uint64_t at = reader_.offset();
      uint8_t type = 0;
      set_where("");
      if (!get(type, fmt::format("the record that follows {}", after))) return false;
      Json rec = Json::object();
      rec["offset"] = at;
      bool ok = true;
      switch (type) {
        case wire::kConfiguration:
          set_where(fmt::format("the configuration record at offset {}", at));
          ok = configuration(rec);
          after = "the configuration record";
          break;
        case wire::kSectionStart:
        case wire::kSectionFull:
          set_where(fmt::format("the {} record at offset {}",
                                type == wire::kSectionStart ? "START" : "FULL", at));
          ok = start_or_full(type, rec);
          after = fmt::format("section {} (id {})", in_quotes(rec.value("idstr", "")),
                              rec.value("section_id", 0u));
          break;
        case wire::kSectionPart:
        case wire::kSectionEnd:
          set_where(fmt::format("the {} record at offset {}",
                                type == wire::kSectionPart ? "PART" : "END", at));
          ok = part_or_end(type, rec);
          after = fmt::format("the {} record of section {} (id {})",
                              type == wire::kSectionPart ? "PART" : "END",
                              in_quotes(rec.value("idstr", "")), rec.value("section_id", 0u));
          break;
        case wire::kCommand:
          set_where(fmt::format("the COMMAND record at offset {}", at));
          ok = command(rec);
          after = "the COMMAND record";
          break;
        case wire::kEof:
          rec["type"] = "EOF";
          out_["records"].push_back(rec);
          return after_eof(at);
        default:
          return fail(at, fmt::format("unknown record type 0x{:02x}", type));
      }
      out_["records"].push_back(std::move(rec));
      if (!ok) return false;
    }
  }

  bool configuration(Json& rec) {
    rec["type"] = "configuration";
    uint32_t len = 0;
    if (!get(len, "the machine type length")) return false;
    if (len > 256) return fail(reader_.offset() - 4, fmt::format("machine type length {}", len));
    if (!need(len, "the machine type")) return false;
    std::string name(reinterpret_cast<const char*>(reader_.buffered_bytes().data()), len);
    reader_.consume(len);
    rec["machine_type"] = name;
    out_["machine_type"] = name;
    uint8_t next = 0;
    Result<bool> got = reader_.peek_u8(next);
    if (got.ok() && *got && next == wire::kSubsection)
      return fail(reader_.offset(), "configuration subsections are not decoded by analyze");
    return true;
  }

  bool start_or_full(uint8_t type, Json& rec) {
    rec["type"] = type == wire::kSectionStart ? "START" : "FULL";
    uint32_t id = 0, instance = 0, version = 0;
    std::string idstr;
    if (!get(id, "the section id") || !get_name(idstr, "the section name")) return false;
    set_where(fmt::format("the {} record of section {} (id {}) at offset {}",
                          rec["type"].get<std::string>(), in_quotes(idstr), id,
                          rec["offset"].get<uint64_t>()));
    if (!get(instance, "the instance id") || !get(version, "the version")) return false;
    rec["section_id"] = id;
    rec["idstr"] = idstr;
    rec["instance_id"] = instance;
    rec["version"] = version;
    sections_[id] = idstr;
    uint64_t body = reader_.offset();
    rec["body_offset"] = body;
    bool ok = idstr == wire::kRamIdstr ? ram_body(rec) : device_body(idstr, id, instance, rec);
    rec["body_size"] = reader_.offset() - body;
    return ok && footer(id);
  }

  bool part_or_end(uint8_t type, Json& rec) {
    rec["type"] = type == wire::kSectionPart ? "PART" : "END";
    uint32_t id = 0;
    if (!get(id, "the section id")) return false;
    rec["section_id"] = id;
    auto it = sections_.find(id);
    if (it == sections_.end())
      return fail(reader_.offset() - 4, fmt::format("section id {} was never started", id));
    rec["idstr"] = it->second;
    if (it->second != wire::kRamIdstr)
      return fail(reader_.offset(), fmt::format("PART/END for {} (only RAM is iterative here)",
                                                in_quotes(it->second)));
    set_where(fmt::format("the {} record of section 'ram' (id {}) at offset {}",
                          rec["type"].get<std::string>(), id, rec["offset"].get<uint64_t>()));
    uint64_t body = reader_.offset();
    bool ok = ram_body(rec);
    rec["body_size"] = reader_.offset() - body;
    return ok && footer(id);
  }

  bool footer(uint32_t id) {
    uint64_t at = reader_.offset();
    uint8_t marker = 0;
    uint32_t got = 0;
    if (!get(marker, "its footer")) return false;
    if (marker != wire::kFooter)
      return fail(at, fmt::format("expected footer 0x7e, found 0x{:02x}", marker));
    if (!get(got, "its footer's section id")) return false;
    if (got != id)
      return fail(at + 1, fmt::format("footer names section {}, expected {}", got, id));
    return true;
  }

  bool command(Json& rec) {
    rec["type"] = "command";
    const uint64_t at = reader_.offset() - 1;
    uint16_t cmd = 0, len = 0;
    if (!get(cmd, "the command") || !get(len, "the command length")) return false;
    rec["command"] = cmd;
    rec["name"] = wire::command_name(cmd);
    rec["length"] = len;
    // The return path's commands (a socket stream's: return_path.h) have fixed lengths.
    std::optional<uint16_t> want;
    if (cmd == wire::kCmdOpenReturnPath || cmd == wire::kCmdFerryGo ||
        cmd == wire::kCmdSwitchoverStart)
      want = 0;
    if (cmd == wire::kCmdPing) want = 4;
    if (want && *want != len)
      return fail(at, fmt::format("{} received with bad length - expecting {}, got {}",
                                  wire::command_name(cmd), *want, len));
    if (cmd == wire::kCmdPing) {
      uint32_t value = 0;
      if (!get(value, "the PING value")) return false;
      rec["value"] = value;
      return true;
    }
    return skip(len, "the command data");
  }

  bool ram_body(Json& rec) {
    uint64_t pages = 0, zeros = 0;
    Json& ram = out_["ram"];
    while (true) {
      uint64_t at = reader_.offset();
      uint64_t word = 0;
      if (!get(word, "a RAM record header")) return false;
      uint64_t flags = word & wire::kRamFlagMask, addr = word & ~wire::kRamFlagMask;
      uint64_t kind = flags & ~wire::kRamContinue;
      if (kind == wire::kRamEos) break;
      if (kind == wire::kRamMultifdFlush) continue;
      if (kind == wire::kRamMemSize) {
        uint64_t sum = 0;
        while (sum < addr) {
          std::string name;
          uint64_t len = 0;
          if (!get_name(name, "a RAM block name") || !get(len, "a RAM block length")) return false;
          if (len == 0 || len > addr - sum)
            return fail(reader_.offset() - 8,
                        fmt::format("RAM block {} length 0x{:x} overflows the total 0x{:x}",
                                    in_quotes(name), len, addr));
          blocks_[name] = len;
          ram["blocks"].push_back({{"idstr", name}, {"length", len}});
          sum += len;
        }
        continue;
      }
      if (kind != wire::kRamZero && kind != wire::kRamPage)
        return fail(at, fmt::format("unsupported RAM record flags 0x{:x}", flags));
      if (!(flags & wire::kRamContinue)) {
        if (!get_name(block_, "a RAM block name")) return false;
      } else if (block_.empty()) {
        return fail(at, "CONTINUE with no block named before");
      }
      auto b = blocks_.find(block_);
      if (b == blocks_.end())
        return fail(at, fmt::format("unknown RAM block {}", in_quotes(block_)));
      if (addr >= b->second)
        return fail(at, fmt::format("offset 0x{:x} outside block {} of 0x{:x} bytes", addr,
                                    in_quotes(block_), b->second));
      if (kind == wire::kRamZero) {
        uint8_t fill = 0;
        if (!get(fill, "a zero page's fill byte")) return false;
        if (fill != 0)
          return fail(reader_.offset() - 1, fmt::format("zero page fill byte {}", fill));
        if (observer_) observer_->ram_page(block_, addr, {}, fill);
        ++zeros;
      } else {
        if (!need(4096, "RAM page data")) return false;
        if (observer_) observer_->ram_page(block_, addr, reader_.buffered_bytes().first(4096), 0);
        reader_.consume(4096);
        ++pages;
      }
    }
    rec["pages"] = pages;
    rec["zero_pages"] = zeros;
    ram["pages"] = ram["pages"].get<uint64_t>() + pages;
    ram["zero_pages"] = ram["zero_pages"].get<uint64_t>() + zeros;
    return true;
  }

  const VmdescLookup& vmdesc() {
    if (!vmdesc_) vmdesc_ = find_vmdesc(tail_);
    return *vmdesc_;
  }

  const Json* vmdesc_device(const std::string& idstr, uint32_t instance) {
    const Json& v = vmdesc().json;
    if (!v.is_object() || !v.contains("devices") || !v["devices"].is_array()) return nullptr;
    for (const Json& d : v["devices"]) {
      if (d.is_object() && d.value("name", "") == idstr &&
          d.value("instance_id", uint64_t{~0ull}) == instance)
        return &d;
    }
    return nullptr;
  }

  // A read inside a device body that the section reader could not give: the end of the
  // stream, or the window.
  bool body_ended(ByteReader& body, size_t n, std::string_view what) {
    if (!reader_.section_status().ok())
      return fail(reader_.offset() + body.offset(),
                  fmt::format("{}: {}", where_, reader_.section_status().message()));
    const uint64_t end = reader_.offset() + body.offset() + body.remaining();
    return fail(end, fmt::format("the stream ends at offset {} inside {}, in {} (needed {} "
                                 "byte{}, {} there)", end, where_, what, n, n == 1 ? "" : "s",
                                 body.remaining()));
  }

  // Walks one described struct body (fields, then subsections), recording top-level fields.
  bool described_body(ByteReader& body, const Json& desc, Json* fields, int depth) {
    const uint64_t base = reader_.offset();
    if (depth > 32) return fail(base + body.offset(), "vmdesc nests too deeply");
    if (desc.contains("fields") && desc["fields"].is_array()) {
      for (const Json& f : desc["fields"]) {
        bool ok = true;
        uint64_t size = json_u64(f, "size", &ok);
        uint64_t count = f.contains("array_len") ? json_u64(f, "array_len", &ok) : 1;
        const uint64_t at = base + body.offset();
        const std::string name = f.value("name", "?");
        const uint64_t left = tail_.size() - std::min(tail_.size(), at);
        if (!ok || (count != 0 && size > left / count))
          return fail(at, fmt::format("field {} of {} x {} bytes does not fit in the stream "
                                      "({} bytes left)", in_quotes(name), count, size, left));
        const uint64_t total = size * count;
        std::string what = fmt::format("field {}", in_quotes(name));
        if (total > reader_.window_limit() || !body.skip(static_cast<size_t>(total)))
          return body_ended(body, static_cast<size_t>(std::min<uint64_t>(total, SIZE_MAX)), what);
        if (fields) {
          Json e = {{"name", name}, {"type", f.value("type", "?")}, {"offset", at},
                    {"size", total}};
          if (count == 1 && size >= 1 && size <= 8) {
            std::span<const uint8_t> raw =
                reader_.buffered_bytes().subspan(body.offset() - size, size);
            uint64_t v = 0;
            for (uint8_t byte : raw) v = (v << 8) | byte;
            e["value"] = fmt::format("0x{:0{}x}", v, size * 2);
          }
          fields->push_back(std::move(e));
        }
      }
    }
    if (desc.contains("subsections") && desc["subsections"].is_array()) {
      for (const Json& sub : desc["subsections"]) {
        const uint64_t at = base + body.offset();
        uint8_t marker = 0, len = 0;
        uint32_t version = 0;
        std::span<const uint8_t> raw;
        if (!body.get(marker)) return body_ended(body, 1, "a subsection marker");
        if (marker != wire::kSubsection)
          return fail(at, fmt::format("expected subsection marker 0x05, found 0x{:02x}", marker));
        if (!body.get(len)) return body_ended(body, 1, "a subsection name");
        if (!body.take(len, raw)) return body_ended(body, len, "a subsection name");
        std::string name(reinterpret_cast<const char*>(raw.data()), raw.size());
        if (!body.get(version)) return body_ended(body, 4, "a subsection version");
        if (name != sub.value("vmsd_name", ""))
          return fail(at, fmt::format("subsection {} where vmdesc lists {}", in_quotes(name),
                                      in_quotes(sub.value("vmsd_name", ""))));
        if (fields) fields->push_back({{"name", name}, {"type", "subsection"}, {"offset", at}});
        if (!described_body(body, sub, nullptr, depth + 1)) return false;
      }
    }
    return true;
  }

  bool device_body(const std::string& idstr, uint32_t id, uint32_t instance, Json& rec) {
    const VmdescLookup& found = vmdesc();
    if (found.problem) return fail(found.problem->offset, found.problem->reason);
    if (found.json.is_null()) return body_by_footer(id, rec);
    const Json* desc = vmdesc_device(idstr, instance);
    if (!desc)
      return fail(reader_.offset(), fmt::format("cannot size section {} instance {}: no vmdesc "
                                                "entry", in_quotes(idstr), instance));
    rec["vmsd_name"] = desc->value("vmsd_name", "");
    Json fields = Json::array();
    ByteReader body = reader_.section_reader();
    bool ok = described_body(body, *desc, &fields, 0);
    rec["fields"] = std::move(fields);
    if (!ok) return false;
    if (observer_)
      observer_->device_body(reader_.offset(), reader_.buffered_bytes().first(body.offset()));
    reader_.consume(body.offset());
    return true;
  }

  // With no vmdesc in the stream (it was cut before it), a device body ends where its
  // footer (0x7e, the section id) is followed by a record type or the end of the stream.
  // Only for saying where a cut stream ends; the body is not described.
  bool body_by_footer(uint32_t id, Json& rec) {
    ByteReader body = reader_.section_reader();
    uint8_t want[5] = {wire::kFooter};
    store_be<uint32_t>(&want[1], id);
    for (size_t i = 0;; ++i) {
      std::span<const uint8_t> five = body.peek(i, 5);
      if (five.empty()) {
        if (!reader_.section_status().ok())
          return fail(reader_.offset(),
                      fmt::format("cannot size {}: the stream has no vmdesc, and no footer "
                                  "follows within {}", where_, reader_.section_status().message()));
        const uint64_t end = reader_.offset() + body.remaining();
        return fail(end, fmt::format("the stream ends at offset {} inside {}, whose body starts "
                                     "at offset {} (no footer follows, and the stream has no "
                                     "vmdesc)", end, where_, reader_.offset()));
      }
      if (std::memcmp(five.data(), want, 5) != 0) continue;
      uint8_t next = 0;
      if (body.peek_u8(i + 5, next) && next != wire::kEof && next != wire::kSectionStart &&
          next != wire::kSectionPart && next != wire::kSectionEnd &&
          next != wire::kSectionFull && next != wire::kCommand)
        continue;
      rec["sized_by"] = "footer";
      reader_.consume(i);
      return true;
    }
  }

  bool after_eof(uint64_t eof_at) {
    Result<bool> end = reader_.at_end();
    if (!end.ok()) return fail(reader_.offset(), std::string(end.status().message()));
    const VmdescLookup& found = vmdesc();
    if (*end) {
      if (found.problem) return fail(found.problem->offset, found.problem->reason);
      bool devices = false;
      for (const auto& [id, idstr] : sections_) devices |= idstr != wire::kRamIdstr;
      if (devices)
        return fail(reader_.offset(),
                    fmt::format("the stream ends at offset {} after EOF (at offset {}): the vmdesc "
                                "record that describes its device sections is missing",
                                reader_.offset(), eof_at));
      return true;
    }
    uint64_t at = reader_.offset();
    uint8_t type = 0;
    uint32_t len = 0;
    set_where(fmt::format("the vmdesc record at offset {}", at));
    if (!get(type, "the vmdesc record type")) return false;
    if (type != wire::kVmdescription)
      return fail(at, fmt::format("after EOF: expected vmdesc 0x06, found 0x{:02x}", type));
    if (!get(len, "the vmdesc length")) return false;
    if (found.problem) return fail(found.problem->offset, found.problem->reason);
    const uint64_t follow = tail_.size() - std::min(tail_.size(), reader_.offset());
    if (len > follow)
      return fail(tail_.size(), fmt::format("the stream ends at offset {} inside the vmdesc JSON "
                                            "that starts at offset {} ({} of its {} bytes are "
                                            "there)", tail_.size(), at + 5, follow, len));
    if (len < follow)
      return fail(at + 1, fmt::format("vmdesc length {} but {} bytes follow", len, follow));
    if (found.json.is_null() || found.record_offset != at)
      return fail(at + 5, "vmdesc JSON does not parse or cannot be found");
    if (!skip(len, "the vmdesc JSON")) return false;
    Result<bool> done = reader_.at_end();
    if (done.ok() && !*done)
      return fail(reader_.offset(), "bytes follow the vmdesc (the stream grew while it was read)");
    out_["records"].push_back({{"offset", at}, {"type", "vmdesc"}, {"length", len}});
    return true;
  }

  StreamReader reader_;
  StreamTail& tail_;
  AnalyzeObserver* observer_;
  Json& out_;
  std::optional<VmdescLookup> vmdesc_;  // looked up when first needed
  Problem problem_;
  std::string where_;
  std::map<uint32_t, std::string> sections_;
  std::map<std::string, uint64_t> blocks_;
  std::string block_;
};

class SpanTail final : public StreamTail {
 public:
  explicit SpanTail(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  Status read_at(uint64_t offset, std::span<uint8_t> out) override {
    if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
      return Error(ErrorCode::kOutOfRange, "read of {} bytes at offset {} past the end", out.size(),
                   offset);
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return {};
  }

 private:
  std::span<const uint8_t> bytes_;
};

class FileTail final : public StreamTail {
 public:
  FileTail(int fd, uint64_t size) : fd_(fd), size_(size) {}
  uint64_t size() const override { return size_; }
  Status read_at(uint64_t offset, std::span<uint8_t> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(fd_, out.data() + done, out.size() - done,
                          static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error(ErrorCode::kIo, "cannot read at offset {}: {}", offset + done,
                              std::strerror(errno));
      if (n == 0) return Error(ErrorCode::kOutOfRange, "the file ends at offset {}", offset + done);
      done += static_cast<size_t>(n);
    }
    return {};
  }

 private:
  int fd_;
  uint64_t size_;
};

}  // namespace

Json analyze_stream(Channel& stream, StreamTail& tail, AnalyzeObserver* observer) {
  Json out = Json::object();
  Walker(stream, tail, observer, out).run();
  return out;
}

Json analyze_stream(std::span<const uint8_t> bytes, AnalyzeObserver* observer) {
  BufferChannel channel(bytes);
  SpanTail tail(bytes);
  return analyze_stream(channel, tail, observer);
}

Result<Json> analyze_file(const std::string& path, AnalyzeObserver* observer) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(ErrorCode::kIo, "cannot open: {}", std::strerror(errno));
  // The channel owns `fd` and reads it in order; the tail reads the same file by offset.
  FdChannel channel(fd, "file:" + path, /*is_socket=*/false);
  struct stat st{};
  if (::fstat(fd, &st) != 0) return Error(ErrorCode::kIo, "cannot stat: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Error(ErrorCode::kInvalidArgument, "not a regular file");
  FileTail tail(fd, static_cast<uint64_t>(st.st_size));
  return analyze_stream(channel, tail, observer);
}

}  // namespace ferry::migration
