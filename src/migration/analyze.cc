#include "migration/analyze.h"

#include <map>
#include <string>

#include "base/byte_order.h"
#include "base/byte_reader.h"
#include "migration/wire.h"

namespace ferry::migration {
namespace {

using vmstate::Json;

// A malformed spot: offset and reason.
struct Problem {
  uint64_t offset;
  std::string reason;
};

// Finds the vmdesc JSON the way analyze-migration.py does; empty when absent.
Json find_vmdesc(std::span<const uint8_t> bytes, size_t* record_offset) {
  size_t nul = bytes.size();
  while (nul > 0 && bytes[nul - 1] != 0) --nul;
  if (nul == 0) return Json();
  size_t brace = nul;
  while (brace < bytes.size() && bytes[brace] != '{') ++brace;
  if (brace >= bytes.size() || brace < 5 || bytes[brace - 5] != wire::kVmdescription)
    return Json();
  uint32_t len = load_be<uint32_t>(&bytes[brace - 4]);
  if (len != bytes.size() - brace) return Json();
  Json j = Json::parse(bytes.begin() + static_cast<long>(brace), bytes.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Json();
  *record_offset = brace - 5;
  return j;
}

uint64_t json_u64(const Json& j, const char* key, bool* ok) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) {
    *ok = false;
    return 0;
  }
  return it->get<uint64_t>();
}

class Walker {
 public:
  Walker(std::span<const uint8_t> bytes, Json& out) : bytes_(bytes), r_(bytes), out_(out) {}

  void run() {
    out_["size"] = bytes_.size();
    out_["records"] = Json::array();
    Json ram = Json::object();
    ram["blocks"] = Json::array();
    ram["pages"] = 0;
    ram["zero_pages"] = 0;
    out_["ram"] = ram;
    out_["errors"] = Json::array();
    size_t vmdesc_at = bytes_.size();
    vmdesc_ = find_vmdesc(bytes_, &vmdesc_at);
    if (!walk()) {
      out_["errors"].push_back({{"offset", problem_.offset}, {"reason", problem_.reason}});
    }
    if (!vmdesc_.is_null()) out_["vmdesc"] = vmdesc_;
  }

 private:
  bool fail(uint64_t offset, std::string reason) {
    problem_ = {offset, std::move(reason)};
    return false;
  }
  bool need(size_t n, std::string_view what) {
    if (r_.remaining() >= n) return true;
    return fail(r_.offset(), fmt::format("stream ends while reading {} (needed {} bytes, {} left)",
                                         what, n, r_.remaining()));
  }
  template <typename T>
  bool get(T& v, std::string_view what) {
    return need(sizeof(T), what) && r_.get(v);
  }
  bool get_name(std::string& s, std::string_view what) {
    uint8_t len = 0;
    std::span<const uint8_t> raw;
    if (!get(len, what) || !need(len, what) || !r_.take(len, raw)) return false;
    s.assign(reinterpret_cast<const char*>(raw.data()), raw.size());
    return true;
  }

  bool walk() {
    uint32_t magic = 0, version = 0;
    if (!get(magic, "magic") || !get(version, "version")) return false;
    if (magic != wire::kMagic) return fail(0, fmt::format("bad magic 0x{:08x}", magic));
    if (version != wire::kVersion)
      return fail(4, fmt::format("unsupported stream version {}", version));
    out_["records"].push_back({{"offset", 0}, {"type", "header"}, {"version", version}});
    while (true) {
      uint64_t at = r_.offset();
      uint8_t type = 0;
      if (!get(type, "record type")) return false;
      Json rec = Json::object();
      rec["offset"] = at;
      bool ok = true;
      switch (type) {
        case wire::kConfiguration: ok = configuration(rec); break;
        case wire::kSectionStart:
        case wire::kSectionFull: ok = start_or_full(type, rec); break;
        case wire::kSectionPart:
        case wire::kSectionEnd: ok = part_or_end(type, rec); break;
        case wire::kCommand: ok = command(rec); break;
        case wire::kEof:
          rec["type"] = "EOF";
          out_["records"].push_back(rec);
          return after_eof();
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
    if (!get(len, "machine type length")) return false;
    if (len > 256) return fail(r_.offset() - 4, fmt::format("machine type length {}", len));
    std::span<const uint8_t> raw;
    if (!need(len, "machine type") || !r_.take(len, raw)) return false;
    std::string name(reinterpret_cast<const char*>(raw.data()), raw.size());
    rec["machine_type"] = name;
    out_["machine_type"] = name;
    uint8_t next = 0;
    if (r_.peek_u8(0, next) && next == wire::kSubsection)
      return fail(r_.offset(), "configuration subsections are not decoded by analyze");
    return true;
  }

  bool start_or_full(uint8_t type, Json& rec) {
    rec["type"] = type == wire::kSectionStart ? "START" : "FULL";
    uint32_t id = 0, instance = 0, version = 0;
    std::string idstr;
    if (!get(id, "section id") || !get_name(idstr, "section name") ||
        !get(instance, "instance id") || !get(version, "version"))
      return false;
    rec["section_id"] = id;
    rec["idstr"] = idstr;
    rec["instance_id"] = instance;
    rec["version"] = version;
    sections_[id] = idstr;
    uint64_t body = r_.offset();
    rec["body_offset"] = body;
    bool ok = idstr == wire::kRamIdstr ? ram_body(rec) : device_body(idstr, instance, rec);
    rec["body_size"] = r_.offset() - body;
    return ok && footer(id);
  }

  bool part_or_end(uint8_t type, Json& rec) {
    rec["type"] = type == wire::kSectionPart ? "PART" : "END";
    uint32_t id = 0;
    if (!get(id, "section id")) return false;
    rec["section_id"] = id;
    auto it = sections_.find(id);
    if (it == sections_.end())
      return fail(r_.offset() - 4, fmt::format("section id {} was never started", id));
    rec["idstr"] = it->second;
    if (it->second != wire::kRamIdstr)
      return fail(r_.offset(), fmt::format("PART/END for '{}' (only RAM is iterative here)",
                                           it->second));
    uint64_t body = r_.offset();
    bool ok = ram_body(rec);
    rec["body_size"] = r_.offset() - body;
    return ok && footer(id);
  }

  bool footer(uint32_t id) {
    uint64_t at = r_.offset();
    uint8_t marker = 0;
    uint32_t got = 0;
    if (!get(marker, "footer")) return false;
    if (marker != wire::kFooter)
      return fail(at, fmt::format("expected footer 0x7e, found 0x{:02x}", marker));
    if (!get(got, "footer section id")) return false;
    if (got != id)
      return fail(at + 1, fmt::format("footer names section {}, expected {}", got, id));
    return true;
  }

  bool command(Json& rec) {
    rec["type"] = "command";
    uint16_t cmd = 0, len = 0;
    if (!get(cmd, "command") || !get(len, "command length")) return false;
    rec["command"] = cmd;
    rec["name"] = wire::command_name(cmd);
    rec["length"] = len;
    return need(len, "command data") && r_.skip(len);
  }

  bool ram_body(Json& rec) {
    uint64_t pages = 0, zeros = 0;
    Json& ram = out_["ram"];
    while (true) {
      uint64_t at = r_.offset();
      uint64_t word = 0;
      if (!get(word, "RAM record header")) return false;
      uint64_t flags = word & wire::kRamFlagMask, addr = word & ~wire::kRamFlagMask;
      uint64_t kind = flags & ~wire::kRamContinue;
      if (kind == wire::kRamEos) break;
      if (kind == wire::kRamMultifdFlush) continue;
      if (kind == wire::kRamMemSize) {
        uint64_t sum = 0;
        while (sum < addr) {
          std::string name;
          uint64_t len = 0;
          if (!get_name(name, "RAM block name") || !get(len, "RAM block length")) return false;
          if (len == 0 || len > addr - sum)
            return fail(r_.offset() - 8, fmt::format("RAM block '{}' length 0x{:x} overflows the "
                                                     "total 0x{:x}", name, len, addr));
          blocks_[name] = len;
          ram["blocks"].push_back({{"idstr", name}, {"length", len}});
          sum += len;
        }
        continue;
      }
      if (kind != wire::kRamZero && kind != wire::kRamPage)
        return fail(at, fmt::format("unsupported RAM record flags 0x{:x}", flags));
      if (!(flags & wire::kRamContinue)) {
        if (!get_name(block_, "RAM block name")) return false;
      } else if (block_.empty()) {
        return fail(at, "CONTINUE with no block named before");
      }
      auto b = blocks_.find(block_);
      if (b == blocks_.end()) return fail(at, fmt::format("unknown RAM block '{}'", block_));
      if (addr >= b->second)
        return fail(at, fmt::format("offset 0x{:x} outside block '{}' of 0x{:x} bytes", addr,
                                    block_, b->second));
      if (kind == wire::kRamZero) {
        uint8_t fill = 0;
        if (!get(fill, "zero page fill byte")) return false;
        if (fill != 0) return fail(r_.offset() - 1, fmt::format("zero page fill byte {}", fill));
        ++zeros;
      } else {
        if (!need(4096, "RAM page data")) return false;
        r_.skip(4096);
        ++pages;
      }
    }
    rec["pages"] = pages;
    rec["zero_pages"] = zeros;
    ram["pages"] = ram["pages"].get<uint64_t>() + pages;
    ram["zero_pages"] = ram["zero_pages"].get<uint64_t>() + zeros;
    return true;
  }

  const Json* vmdesc_device(const std::string& idstr, uint32_t instance) const {
    if (!vmdesc_.is_object() || !vmdesc_.contains("devices") || !vmdesc_["devices"].is_array())
      return nullptr;
    for (const Json& d : vmdesc_["devices"]) {
      if (d.is_object() && d.value("name", "") == idstr &&
          d.value("instance_id", uint64_t{~0ull}) == instance)
        return &d;
    }
    return nullptr;
  }

  // Walks one described struct body (fields, then subsections), recording top-level fields.
  bool described_body(const Json& desc, Json* fields, int depth) {
    if (depth > 32) return fail(r_.offset(), "vmdesc nests too deeply");
    if (desc.contains("fields") && desc["fields"].is_array()) {
      for (const Json& f : desc["fields"]) {
        bool ok = true;
        uint64_t size = json_u64(f, "size", &ok);
        uint64_t count = f.contains("array_len") ? json_u64(f, "array_len", &ok) : 1;
        if (!ok || (count != 0 && size > r_.remaining() / count))
          return fail(r_.offset(), fmt::format("field '{}' of {} x {} bytes does not fit in the "
                                               "stream", f.value("name", "?"), count, size));
        uint64_t at = r_.offset();
        r_.skip(size * count);
        if (fields) {
          Json e = {{"name", f.value("name", "?")}, {"type", f.value("type", "?")},
                    {"offset", at}, {"size", size * count}};
          if (count == 1 && size >= 1 && size <= 8) {
            uint64_t v = 0;
            for (uint64_t i = 0; i < size; ++i) v = (v << 8) | bytes_[at + i];
            e["value"] = fmt::format("0x{:0{}x}", v, size * 2);
          }
          fields->push_back(std::move(e));
        }
      }
    }
    if (desc.contains("subsections") && desc["subsections"].is_array()) {
      for (const Json& sub : desc["subsections"]) {
        uint64_t at = r_.offset();
        uint8_t marker = 0;
        std::string name;
        uint32_t version = 0;
        if (!get(marker, "subsection marker")) return false;
        if (marker != wire::kSubsection)
          return fail(at, fmt::format("expected subsection marker 0x05, found 0x{:02x}", marker));
        if (!get_name(name, "subsection name") || !get(version, "subsection version"))
          return false;
        if (name != sub.value("vmsd_name", ""))
          return fail(at, fmt::format("subsection '{}' where vmdesc lists '{}'", name,
                                      sub.value("vmsd_name", "")));
        if (fields) fields->push_back({{"name", name}, {"type", "subsection"}, {"offset", at}});
        if (!described_body(sub, nullptr, depth + 1)) return false;
      }
    }
    return true;
  }

  bool device_body(const std::string& idstr, uint32_t instance, Json& rec) {
    const Json* desc = vmdesc_device(idstr, instance);
    if (!desc)
      return fail(r_.offset(), fmt::format("cannot size section '{}' instance {}: no vmdesc "
                                           "entry", idstr, instance));
    rec["vmsd_name"] = desc->value("vmsd_name", "");
    Json fields = Json::array();
    bool ok = described_body(*desc, &fields, 0);
    rec["fields"] = std::move(fields);
    return ok;
  }

  bool after_eof() {
    if (r_.at_end()) return true;
    uint64_t at = r_.offset();
    uint8_t type = 0;
    uint32_t len = 0;
    if (!get(type, "vmdesc record")) return false;
    if (type != wire::kVmdescription)
      return fail(at, fmt::format("after EOF: expected vmdesc 0x06, found 0x{:02x}", type));
    if (!get(len, "vmdesc length")) return false;
    if (len != r_.remaining())
      return fail(at + 1, fmt::format("vmdesc length {} but {} bytes follow", len, r_.remaining()));
    if (vmdesc_.is_null()) return fail(at + 5, "vmdesc JSON does not parse or cannot be found");
    out_["records"].push_back({{"offset", at}, {"type", "vmdesc"}, {"length", len}});
    return true;
  }

  std::span<const uint8_t> bytes_;
  ByteReader r_;
  Json& out_;
  Json vmdesc_;
  Problem problem_;
  std::map<uint32_t, std::string> sections_;
  std::map<std::string, uint64_t> blocks_;
  std::string block_;
};

}  // namespace

Json analyze_stream(std::span<const uint8_t> bytes) {
  Json out = Json::object();
  Walker(bytes, out).run();
  return out;
}

}  // namespace ferry::migration
