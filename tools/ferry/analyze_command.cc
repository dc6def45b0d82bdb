#include "ferry/analyze_command.h"

#include <cstdio>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/byte_order.h"
#include "base/crc32c.h"
#include "hw/virtio/net/virtio_net_analyze.h"
#include "migration/analyze.h"
#include "migration/wire.h"

namespace ferry::tools {
namespace {

using OrderedJson = vmstate::Json;  // QEMU's key order, as analyze-migration.py prints it
namespace wire = migration::wire;

constexpr int kMaxDepth = 32;  // vmdesc nesting we follow; analyze_stream stops at the same

std::string hex_bytes(std::span<const uint8_t> raw) {
  std::string s;
  s.reserve(raw.size() * 3);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (i) s.push_back(' ');
    s += fmt::format("{:02x}", raw[i]);
  }
  return s;
}

uint64_t json_u64(const OrderedJson& j, const char* key, uint64_t fallback) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return fallback;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  int64_t v = it->get<int64_t>();
  return v < 0 ? fallback : static_cast<uint64_t>(v);
}

// Decodes described bodies into named values, analyze-migration.py style: integers as
// zero-padded hex strings, bools as booleans, arrays as lists, structs as objects,
// anything else (buffers, opaque types such as "virtio" or "pci config") as hex bytes.
// Every read is bounds-checked: the description comes from the (untrusted) stream.
class BodyDecoder {
 public:
  // `body` is one section body, which starts at stream offset `base`.
  // `virtio_net`: the section is a virtio-net one, whose opaque "virtio" field (QEMU writes
  // it by hand, so its vmdesc says nothing inside) is decoded with virtio-net's layout.
  Status decode(const OrderedJson& desc, std::span<const uint8_t> body_bytes, uint64_t base,
                OrderedJson& out, bool virtio_net = false) {
    virtio_net_ = virtio_net;
    bytes_ = body_bytes;
    base_ = base;
    pos_ = 0;
    return body(desc, out, 0);
  }
  // Bytes decoded from the body.
  uint64_t decoded() const { return pos_; }

 private:
  Status body(const OrderedJson& desc, OrderedJson& out, int depth) {
    if (depth > kMaxDepth)
      return Error(ErrorCode::kCorrupt, "offset {}: vmdesc nests too deeply", at());
    out = OrderedJson::object();
    auto fields = desc.find("fields");
    if (fields != desc.end() && fields->is_array()) {
      for (const OrderedJson& f : *fields) FERRY_RETURN_IF_ERROR(field(f, out, depth));
    }
    // Each subsection sits beside the fields under its own name ("nvme-state/error-log"),
    // as analyze-migration.py puts it; the '/' in the name keeps it apart from any field.
    auto subs = desc.find("subsections");
    if (subs != desc.end() && subs->is_array() && !subs->empty()) {
      OrderedJson& decoded = out;
      for (const OrderedJson& sub : *subs) {
        uint64_t marker_at = at();
        FERRY_RETURN_IF_ERROR(need(2, "subsection header"));
        if (bytes_[pos_] != wire::kSubsection)
          return Error(ErrorCode::kCorrupt, "offset {}: expected subsection marker 0x05, found "
                       "0x{:02x}", marker_at, bytes_[pos_]);
        size_t len = bytes_[pos_ + 1];
        pos_ += 2;
        FERRY_RETURN_IF_ERROR(need(len + 4, "subsection name and version"));
        std::string name(reinterpret_cast<const char*>(&bytes_[pos_]), len);
        pos_ += len + 4;
        FERRY_RETURN_IF_ERROR(body(sub, decoded[name], depth + 1));
      }
    }
    return {};
  }

  Status field(const OrderedJson& f, OrderedJson& out, int depth) {
    if (!f.is_object()) return Error(ErrorCode::kCorrupt, "vmdesc field is not an object");
    std::string name = f.value("name", "?");
    uint64_t size = json_u64(f, "size", ~uint64_t{0});
    if (size == ~uint64_t{0})
      return Error(ErrorCode::kCorrupt, "vmdesc field '{}' has no size", name);
    OrderedJson value;
    if (f.contains("array_len")) {
      uint64_t count = json_u64(f, "array_len", ~uint64_t{0});
      if (count == ~uint64_t{0} || (size != 0 && count > remaining() / size) ||
          (size == 0 && count > remaining() + 1))
        return Error(ErrorCode::kCorrupt, "offset {}: field '{}' of {} x {} bytes does not fit",
                     at(), name, count, size);
      value = OrderedJson::array();
      for (uint64_t i = 0; i < count; ++i) {
        OrderedJson element;
        FERRY_RETURN_IF_ERROR(element_value(f, size, element, depth));
        value.push_back(std::move(element));
      }
    } else {
      FERRY_RETURN_IF_ERROR(element_value(f, size, value, depth));
    }
    // QEMU names the elements of some arrays one by one ("index"): gather them in a list.
    if (f.contains("index")) {
      OrderedJson& slot = out[name];
      if (!slot.is_array()) slot = OrderedJson::array();
      slot.push_back(std::move(value));
      return {};
    }
    std::string key = name;
    for (int n = 2; out.contains(key); ++n) key = fmt::format("{} #{}", name, n);
    out[key] = std::move(value);
    return {};
  }

  Status element_value(const OrderedJson& f, uint64_t size, OrderedJson& value, int depth) {
    FERRY_RETURN_IF_ERROR(need(size, f.value("name", "?")));
    const uint64_t start = pos_;
    auto nested = f.find("struct");
    if (nested != f.end() && nested->is_object()) {
      FERRY_RETURN_IF_ERROR(body(*nested, value, depth + 1));
      if (pos_ - start != size)
        return Error(ErrorCode::kCorrupt, "offset {}: struct '{}' decodes to {} bytes, vmdesc "
                     "says {}", base_ + start, f.value("name", "?"), pos_ - start, size);
      return {};
    }
    std::string type = f.value("type", "");
    if (virtio_net_ && type == "virtio") {
      auto layout = virtio::net::describe_virtio_net_field(bytes_.subspan(start, size));
      if (!layout.ok())
        return Error(ErrorCode::kCorrupt, "offset {}: {}", base_ + start,
                     layout.status().to_string());
      FERRY_RETURN_IF_ERROR(body(*layout, value, depth + 1));
      if (pos_ - start != size)
        return Error(ErrorCode::kCorrupt, "offset {}: field 'virtio' decodes to {} bytes, vmdesc "
                     "says {}", base_ + start, pos_ - start, size);
      return {};
    }
    std::span<const uint8_t> raw = bytes_.subspan(start, size);
    pos_ += size;
    if (type == "bool" && size == 1 && raw[0] <= 1) {
      value = raw[0] == 1;
    } else if ((type.starts_with("int") || type.starts_with("uint")) && size >= 1 && size <= 8) {
      bool little = type.ends_with(" le");
      uint64_t v = 0;
      for (size_t i = 0; i < size; ++i) v = (v << 8) | raw[little ? size - 1 - i : i];
      value = fmt::format("0x{:0{}x}", v, size * 2);
    } else {
      value = hex_bytes(raw);
    }
    return {};
  }

  uint64_t remaining() const { return bytes_.size() - pos_; }
  Status need(uint64_t n, std::string_view what) const {
    if (pos_ <= bytes_.size() && n <= remaining()) return {};
    return Error(ErrorCode::kOutOfRange, "offset {}: {} needs {} bytes, {} left", at(), what, n,
                 pos_ <= bytes_.size() ? remaining() : 0);
  }
  uint64_t at() const { return base_ + pos_; }

  std::span<const uint8_t> bytes_;
  uint64_t base_ = 0;
  uint64_t pos_ = 0;
  bool virtio_net_ = false;
};

// What the walk passes by: device bodies (kept, to decode once the walk succeeded) and,
// for --memory, the last record of each RAM page. Memory grows with the device state and
// the page list asked for, never with the stream's bytes.
class Collector final : public migration::AnalyzeObserver {
 public:
  explicit Collector(bool memory) : memory_(memory) {}

  void device_body(uint64_t offset, std::span<const uint8_t> body) override {
    bodies_[offset].assign(body.begin(), body.end());
  }
  void ram_page(std::string_view block, uint64_t address, std::span<const uint8_t> page,
                uint8_t fill) override {
    if (!memory_) return;
    std::string what = !page.empty() ? fmt::format("crc32c 0x{:08x}", crc32c(page))
                       : fill == 0   ? std::string("zero")
                                     : fmt::format("fill 0x{:02x}", fill);
    pages_[std::string(block)][fmt::format("0x{:016x}", address)] = std::move(what);
  }

  const std::vector<uint8_t>* body(uint64_t offset) const {
    auto it = bodies_.find(offset);
    return it == bodies_.end() ? nullptr : &it->second;
  }
  bool memory() const { return memory_; }
  OrderedJson pages_json() const {
    OrderedJson out = OrderedJson::object();
    for (const auto& [block, pages] : pages_) {
      OrderedJson& b = out[block] = OrderedJson::object();
      for (const auto& [offset, what] : pages) b[offset] = what;
    }
    return out;
  }

 private:
  bool memory_;
  std::map<uint64_t, std::vector<uint8_t>> bodies_;
  std::map<std::string, std::map<std::string, std::string>> pages_;  // sorted by offset
};

const OrderedJson* vmdesc_device(const OrderedJson& analysis, const std::string& idstr,
                                 uint64_t instance) {
  auto vmdesc = analysis.find("vmdesc");
  if (vmdesc == analysis.end() || !vmdesc->is_object()) return nullptr;
  auto devices = vmdesc->find("devices");
  if (devices == vmdesc->end() || !devices->is_array()) return nullptr;
  for (const OrderedJson& d : *devices) {
    if (d.is_object() && d.value("name", "") == idstr &&
        json_u64(d, "instance_id", ~0ull) == instance)
      return &d;
  }
  return nullptr;
}

// The end of the last record analyze_stream saw: where its walk stopped.
uint64_t walked_to(const OrderedJson& analysis) {
  const OrderedJson& records = analysis["records"];
  if (!records.is_array() || records.empty()) return 0;
  const OrderedJson& last = records.back();
  std::string type = last.value("type", "");
  uint64_t at = json_u64(last, "offset", 0);
  if (type == "vmdesc") return at + 5 + json_u64(last, "length", 0);
  if (type == "EOF") return at + 1;
  return at;
}

// The analyze-migration.py-like state view: {"<idstr> (<section id>)": {...}, ...}, from
// the walk's records and the bodies it kept.
Result<OrderedJson> decode_state(const OrderedJson& analysis, const Collector& collected) {
  OrderedJson state = OrderedJson::object();
  const OrderedJson& records = analysis["records"];
  if (!records.is_array()) return Error(ErrorCode::kInvalidArgument, "analysis has no records");
  BodyDecoder decoder;
  bool any_ram = false;
  for (const OrderedJson& rec : records) {
    std::string type = rec.value("type", "");
    if (type != "START" && type != "FULL") continue;
    std::string idstr = rec.value("idstr", "");
    std::string key = fmt::format("{} ({})", idstr, json_u64(rec, "section_id", 0));
    if (idstr == wire::kRamIdstr) {
      any_ram = true;
      OrderedJson sizes = OrderedJson::object();
      for (const OrderedJson& b : analysis["ram"]["blocks"])
        sizes[b.value("idstr", "?")] = fmt::format("0x{:016x}", json_u64(b, "length", 0));
      state[key] = {{"section sizes", std::move(sizes)}};
      continue;
    }
    const OrderedJson* desc = vmdesc_device(analysis, idstr, json_u64(rec, "instance_id", 0));
    if (!desc) return Error(ErrorCode::kCorrupt, "section '{}' has no vmdesc entry", key);
    uint64_t offset = json_u64(rec, "body_offset", ~0ull);
    const std::vector<uint8_t>* body = collected.body(offset);
    if (!body) return Error(ErrorCode::kCorrupt, "section '{}': the walk kept no body", key);
    OrderedJson fields;
    const bool virtio_net = idstr.ends_with("/virtio-net");
    FERRY_RETURN_IF_ERROR(decoder.decode(*desc, *body, offset, fields, virtio_net));
    if (decoder.decoded() != body->size())
      return Error(ErrorCode::kCorrupt, "section '{}': decoded {} bytes, the walk measured {}",
                   key, decoder.decoded(), body->size());
    state[key] = std::move(fields);
  }
  if (collected.memory() && any_ram) state["memory"] = collected.pages_json();
  return state;
}

}  // namespace

Result<AnalyzeDump> parse_analyze_dump(std::string_view text) {
  if (text == "state") return AnalyzeDump::kState;
  if (text == "desc") return AnalyzeDump::kDesc;
  if (text == "records") return AnalyzeDump::kRecords;
  return Error(ErrorCode::kInvalidArgument, "--dump: expected state, desc or records, found '{}'",
               text);
}

int run_analyze(const AnalyzeOptions& options) {
  Collector collected(options.memory);
  auto result = migration::analyze_file(options.file, &collected);
  if (!result.ok()) {
    std::fprintf(stderr, "ferry analyze: %s: %s\n", options.file.c_str(),
                 std::string(result.status().message()).c_str());
    return 2;
  }
  const OrderedJson& analysis = *result;
  const OrderedJson& errors = analysis["errors"];
  bool malformed = errors.is_array() && !errors.empty();
  // Names come from the stream: bytes that are not UTF-8 are printed replaced, not thrown.
  auto text = [](const OrderedJson& j) {
    return j.dump(2, ' ', false, OrderedJson::error_handler_t::replace);
  };

  if (options.dump == AnalyzeDump::kRecords) {
    std::printf("%s\n", text(analysis).c_str());
  } else if (!malformed && options.dump == AnalyzeDump::kDesc) {
    if (!analysis.contains("vmdesc")) {
      std::fprintf(stderr, "ferry analyze: %s: the stream carries no vmdesc\n",
                   options.file.c_str());
      return 1;
    }
    std::printf("%s\n", text(analysis["vmdesc"]).c_str());
  } else if (!malformed) {
    auto state = decode_state(analysis, collected);
    if (!state.ok()) {
      std::fprintf(stderr, "ferry analyze: %s: %s\n", options.file.c_str(),
                   std::string(state.status().message()).c_str());
      return 1;
    }
    std::printf("%s\n", text(*state).c_str());
  }

  const uint64_t size = json_u64(analysis, "size", 0);
  if (malformed) {
    const OrderedJson& e = errors.front();
    std::fprintf(stderr, "ferry analyze: %s: offset %llu: %s\n", options.file.c_str(),
                 static_cast<unsigned long long>(json_u64(e, "offset", 0)),
                 e.value("reason", "malformed").c_str());
    return 1;
  }
  uint64_t end = walked_to(analysis);
  if (end != size) {
    std::fprintf(stderr, "ferry analyze: %s: offset %llu: %llu bytes not accounted for\n",
                 options.file.c_str(), static_cast<unsigned long long>(end),
                 static_cast<unsigned long long>(size - end));
    return 1;
  }
  std::fprintf(stderr,
               "ferry analyze: %s: %llu bytes, every byte accounted for (%zu records, %llu RAM "
               "pages, %llu zero pages)\n",
               options.file.c_str(), static_cast<unsigned long long>(size),
               analysis["records"].size(),
               static_cast<unsigned long long>(json_u64(analysis["ram"], "pages", 0)),
               static_cast<unsigned long long>(json_u64(analysis["ram"], "zero_pages", 0)));
  return 0;
}

}  // namespace ferry::tools
