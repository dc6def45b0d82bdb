#include "migration/stream.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <vector>

#include "base/byte_order.h"
#include "migration/buffer_channel.h"
#include "migration/stream_reader.h"
#include "migration/wire.h"

namespace ferry::migration {

std::string_view wire::command_name(uint16_t cmd) {
  static constexpr std::string_view kNames[] = {
      "INVALID",         "OPEN_RETURN_PATH", "PING",          "POSTCOPY_ADVISE",
      "POSTCOPY_LISTEN", "POSTCOPY_RUN",     "POSTCOPY_RAM_DISCARD", "PACKAGED",
      "POSTCOPY_RESUME", "RECV_BITMAP",      "ENABLE_COLO",   "SWITCHOVER_START"};
  if (cmd == wire::kCmdFerryGo) return "FERRY_GO";  // Ferry's, above QEMU's range
  return cmd < std::size(kNames) ? kNames[cmd] : "unknown";
}

// ---- writing ----

void write_header(StreamWriter& w) {
  w.put_be32(wire::kMagic);
  w.put_be32(wire::kVersion);
}

void write_configuration(StreamWriter& w, std::string_view machine_type) {
  w.put_u8(wire::kConfiguration);
  w.put_be32(static_cast<uint32_t>(machine_type.size()));
  w.put_bytes(machine_type);
}

void write_section_header(StreamWriter& w, uint8_t type, const SectionEntry& entry,
                          uint32_t version) {
  w.put_u8(type);
  w.put_be32(entry.section_id);
  w.put_u8(static_cast<uint8_t>(entry.idstr.size()));
  w.put_bytes(entry.idstr);
  w.put_be32(entry.instance_id);
  w.put_be32(version);
}

void write_section_continuation(StreamWriter& w, uint8_t type, uint32_t section_id) {
  w.put_u8(type);
  w.put_be32(section_id);
}

void write_footer(StreamWriter& w, uint32_t section_id) {
  w.put_u8(wire::kFooter);
  w.put_be32(section_id);
}

void write_command(StreamWriter& w, uint16_t cmd, std::span<const uint8_t> data) {
  w.put_u8(wire::kCommand);
  w.put_be16(cmd);
  w.put_be16(static_cast<uint16_t>(data.size()));
  w.put_bytes(data);
}

Status write_device_section(StreamWriter& w, const SectionEntry& entry,
                            vmstate::StateBinding& state, vmstate::Json* devices) {
  write_section_header(w, wire::kSectionFull, entry, static_cast<uint32_t>(state.version()));
  Status st;
  if (devices) {
    vmstate::Json dev = vmstate::Json::object();
    dev["name"] = entry.idstr;
    dev["instance_id"] = entry.instance_id;
    st = state.save(w, dev);
    devices->push_back(std::move(dev));
  } else {
    st = state.save(w);
  }
  if (!st.ok())
    return st.prepend_message(
        fmt::format("saving section '{}' instance {}", entry.idstr, entry.instance_id));
  write_footer(w, entry.section_id);
  return {};
}

std::string padded_vmdesc_text(const vmstate::Json& vmdesc) {
  std::string text = vmdesc.dump();
  auto length_is_safe = [](uint32_t len) {
    // The bytes before the JSON: 0x00 (EOF), 0x06, then the be32 length.
    uint8_t bytes[6] = {wire::kEof, wire::kVmdescription, static_cast<uint8_t>(len >> 24),
                        static_cast<uint8_t>(len >> 16), static_cast<uint8_t>(len >> 8),
                        static_cast<uint8_t>(len)};
    int last_zero = 0;
    for (int i = 0; i < 6; ++i)
      if (bytes[i] == 0) last_zero = i;
    for (int i = last_zero + 1; i < 6; ++i)
      if (bytes[i] == '{') return false;
    return true;
  };
  while (!length_is_safe(static_cast<uint32_t>(text.size()))) text.push_back(' ');
  return text;
}

void write_eof_and_vmdesc(StreamWriter& w, const vmstate::Json& vmdesc) {
  std::string text = padded_vmdesc_text(vmdesc);
  w.put_u8(wire::kEof);
  w.put_u8(wire::kVmdescription);
  w.put_be32(static_cast<uint32_t>(text.size()));
  w.put_bytes(text);
}

// ---- the order of a save ----

Result<DeviceRecords> save_device_sections(const SectionRegistry& registry, SavePhase phase,
                                           std::vector<SectionSaveCost>* costs) {
  DeviceRecords out;
  BufferChannel sink;
  StreamWriter w(sink);
  SaveContext ctx{.vmdesc_devices = &out.vmdesc_devices};
  for (const auto& e : registry.entries()) {
    if (e->is_ram() || e->handler->iterative()) continue;
    auto start = std::chrono::steady_clock::now();
    uint64_t at = w.position();
    FERRY_RETURN_IF_ERROR(phase == SavePhase::kSetup ? e->handler->save_setup(w, *e, ctx)
                                                     : e->handler->save_complete(w, *e, ctx));
    if (costs && w.position() > at)
      costs->push_back({.idstr = e->idstr,
                        .save_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - start)
                                       .count(),
                        .bytes = w.position() - at});
  }
  FERRY_RETURN_IF_ERROR(w.flush());
  out.records = sink.written();
  return out;
}

IterativeSections::IterativeSections(const SectionRegistry& registry, SectionHandler& ram) {
  for (const auto& e : registry.entries()) {
    if (e->is_ram()) sections_.emplace_back(e.get(), &ram);
    else if (e->handler->iterative()) sections_.emplace_back(e.get(), e->handler.get());
  }
  pass_done_.assign(sections_.size(), false);
}

Status IterativeSections::save_setup(StreamWriter& w, SaveContext& ctx) {
  for (auto& [entry, handler] : sections_) FERRY_RETURN_IF_ERROR(handler->save_setup(w, *entry, ctx));
  return {};
}

Status IterativeSections::save_complete(StreamWriter& w, SaveContext& ctx) {
  for (auto& [entry, handler] : sections_)
    FERRY_RETURN_IF_ERROR(handler->save_complete(w, *entry, ctx));
  return {};
}

uint64_t IterativeSections::sync() {
  uint64_t bytes = 0;
  for (auto& [entry, handler] : sections_) bytes += handler->sync_pending();
  pass_done_.assign(sections_.size(), false);
  return bytes;
}

uint64_t IterativeSections::pending_bytes() const {
  uint64_t bytes = 0;
  for (const auto& [entry, handler] : sections_) bytes += handler->pending_bytes();
  return bytes;
}

Result<bool> IterativeSections::iterate(StreamWriter& w, uint64_t byte_budget) {
  bool all_done = true;
  for (size_t i = 0; i < sections_.size(); ++i) {
    if (pass_done_[i]) continue;
    auto done = sections_[i].second->save_iterate(w, *sections_[i].first, byte_budget);
    if (!done.ok()) return done.take_status();
    pass_done_[i] = *done;
    all_done = all_done && *done;
  }
  return all_done;
}

Status run_save(StreamWriter& w, std::string_view machine_type, const SectionRegistry& registry,
                SectionHandler& ram, SaveRunner& runner, const SaveOptions& options) {
  if (!registry.ram())
    return Error(ErrorCode::kFailedPrecondition, "no RAM section registered (add_ram)");
  IterativeSections iterative(registry, ram);
  vmstate::Json vmdesc_devices = vmstate::Json::array();
  SaveContext ctx{.vmdesc_devices = &vmdesc_devices};
  auto put_devices = [&](DeviceRecords& records) {
    w.put_bytes(records.records);
    for (auto& d : records.vmdesc_devices) vmdesc_devices.push_back(std::move(d));
  };

  write_header(w);
  write_configuration(w, machine_type);
  FERRY_RETURN_IF_ERROR(runner.configuration_written(w));
  auto setup = runner.device_records(SavePhase::kSetup);
  if (!setup.ok()) return setup.take_status();
  put_devices(*setup);
  FERRY_RETURN_IF_ERROR(iterative.save_setup(w, ctx));
  FERRY_RETURN_IF_ERROR(runner.setup_written(w));

  FERRY_RETURN_IF_ERROR(runner.iterate(w, iterative));

  auto complete = runner.device_records(SavePhase::kComplete);  // the VM stops
  if (!complete.ok()) return complete.take_status();
  FERRY_RETURN_IF_ERROR(iterative.save_complete(w, ctx));
  FERRY_RETURN_IF_ERROR(runner.iterative_complete_written(w));
  if (options.send_switchover_start) write_command(w, wire::kCmdSwitchoverStart);
  put_devices(*complete);

  vmstate::Json vmdesc = vmstate::Json::object();
  vmdesc["page_size"] = wire::kVmdescPageSize;
  vmdesc["devices"] = std::move(vmdesc_devices);
  write_eof_and_vmdesc(w, vmdesc);
  return w.flush();
}

namespace {

// A stopped VM: its devices may be read here, and nothing iterates.
class StoppedVmRunner final : public SaveRunner {
 public:
  explicit StoppedVmRunner(const SectionRegistry& registry) : registry_(registry) {}
  Result<DeviceRecords> device_records(SavePhase phase) override {
    return save_device_sections(registry_, phase);
  }

 private:
  const SectionRegistry& registry_;
};

}  // namespace

Status save_stream(StreamWriter& w, std::string_view machine_type, SectionRegistry& registry,
                   RamSaver& ram, const SaveOptions& options) {
  RamSection ram_section(ram);
  StoppedVmRunner runner(registry);
  return run_save(w, machine_type, registry, ram_section, runner, options);
}

// ---- reading ----

namespace {

std::string_view type_name(uint8_t type) {
  switch (type) {
    case wire::kSectionStart: return "START";
    case wire::kSectionPart: return "PART";
    case wire::kSectionEnd: return "END";
    case wire::kSectionFull: return "FULL";
    default: return "?";
  }
}

class Loader {
 public:
  Loader(StreamReader& r, std::string_view machine_type, SectionRegistry& registry,
         RamLoader& ram, LoadReport& report, StreamEnd end, StreamCommandHandler* commands)
      : r_(r),
        machine_type_(machine_type),
        registry_(registry),
        ram_(ram),
        report_(report),
        end_(end),
        commands_(commands) {}

  Status run() {
    FERRY_RETURN_IF_ERROR(read_header());
    // The configuration record comes first: a stream for another machine is refused
    // before anything is loaded.
    uint8_t first = 0;
    FERRY_RETURN_IF_ERROR(r_.read_u8(first, "configuration record"));
    if (first != wire::kConfiguration)
      return Error(ErrorCode::kCorrupt,
                   "expected the configuration record 0x07 at offset 8, found 0x{:02x}", first);
    FERRY_RETURN_IF_ERROR(read_configuration(8));
    while (true) {
      uint64_t at = r_.offset();
      uint8_t type = 0;
      FERRY_RETURN_IF_ERROR(r_.read_u8(type, "record type"));
      switch (type) {
        case wire::kConfiguration:
          return Error(ErrorCode::kCorrupt, "second configuration record at offset {}", at);
        case wire::kSectionStart:
        case wire::kSectionFull:
          FERRY_RETURN_IF_ERROR(read_start_or_full(type, at));
          break;
        case wire::kSectionPart:
        case wire::kSectionEnd:
          FERRY_RETURN_IF_ERROR(read_part_or_end(type, at));
          break;
        case wire::kCommand:
          FERRY_RETURN_IF_ERROR(read_command(at));
          break;
        case wire::kEof:
          return finish(at);
        default:
          return Error(ErrorCode::kCorrupt,
                       "unknown record type 0x{:02x} at offset {}, where a section, command or "
                       "EOF record was expected: the bytes there are '{}'{}",
                       type, at, bytes_from(type), second_stream_note(type));
      }
    }
  }

 private:
  Status read_header() {
    uint32_t magic = 0, version = 0;
    FERRY_RETURN_IF_ERROR(r_.read_be32(magic, "stream magic"));
    if (magic != wire::kMagic)
      return Error(ErrorCode::kCorrupt,
                   "not a migration stream: magic 0x{:08x} at offset 0, expected 0x{:08x} (QEVM)",
                   magic, wire::kMagic);
    FERRY_RETURN_IF_ERROR(r_.read_be32(version, "stream version"));
    if (version != wire::kVersion)
      return Error(ErrorCode::kVersionMismatch,
                   "unsupported migration stream version {} at offset 4, expected {}", version,
                   wire::kVersion);
    return {};
  }

  Status read_configuration(uint64_t at) {
    uint32_t len = 0;
    FERRY_RETURN_IF_ERROR(r_.read_be32(len, "machine type length"));
    if (len > 256)
      return Error(ErrorCode::kCorrupt,
                   "machine type length {} at offset {} exceeds 256", len, at + 1);
    std::span<const uint8_t> name;
    FERRY_RETURN_IF_ERROR(r_.take(len, name, "machine type"));
    std::string received(reinterpret_cast<const char*>(name.data()), name.size());
    if (received != machine_type_)
      return Error(ErrorCode::kFailedPrecondition,
                   "Machine type received is '{}' and local is '{}'", escaped_bytes(received),
                   machine_type_);
    // Optional subsections of QEMU's "configuration" description.
    while (true) {
      uint8_t next = 0;
      Result<bool> got = r_.peek_u8(next);
      if (!got.ok()) return got.take_status();
      if (!*got || next != wire::kSubsection) return {};
      FERRY_RETURN_IF_ERROR(read_configuration_subsection());
    }
  }

  Status read_configuration_subsection() {
    uint64_t at = r_.offset();
    uint8_t marker = 0, len = 0;
    FERRY_RETURN_IF_ERROR(r_.read_u8(marker, "configuration subsection marker"));
    FERRY_RETURN_IF_ERROR(r_.read_u8(len, "configuration subsection name length"));
    std::span<const uint8_t> raw;
    FERRY_RETURN_IF_ERROR(r_.take(len, raw, "configuration subsection name"));
    std::string name(reinterpret_cast<const char*>(raw.data()), raw.size());
    uint32_t version = 0;
    FERRY_RETURN_IF_ERROR(r_.read_be32(version, "configuration subsection version"));
    if (name == "configuration/uuid") {
      std::span<const uint8_t> uuid;
      return r_.take(16, uuid, "configuration uuid");
    }
    if (name == "configuration/capabilities") {
      uint32_t count = 0;
      FERRY_RETURN_IF_ERROR(r_.read_be32(count, "capability count"));
      if (count > 0) {
        uint8_t clen = 0;
        FERRY_RETURN_IF_ERROR(r_.read_u8(clen, "capability name length"));
        std::span<const uint8_t> cap;
        FERRY_RETURN_IF_ERROR(r_.take(clen, cap, "capability name"));
        return Error(ErrorCode::kFailedPrecondition,
                     "the source requires migration capability '{}' (offset {}), which Ferry "
                     "does not support",
                     escaped_bytes(cap), at);
      }
      return {};
    }
    return Error(ErrorCode::kCorrupt, "unknown configuration subsection '{}' at offset {}",
                 escaped_bytes(name), at);
  }

  Status read_start_or_full(uint8_t type, uint64_t at) {
    uint32_t section_id = 0, instance_id = 0, version = 0;
    uint8_t len = 0;
    FERRY_RETURN_IF_ERROR(r_.read_be32(section_id, "section id"));
    FERRY_RETURN_IF_ERROR(r_.read_u8(len, "section name length"));
    std::span<const uint8_t> raw;
    FERRY_RETURN_IF_ERROR(r_.take(len, raw, "section name"));
    std::string idstr(reinterpret_cast<const char*>(raw.data()), raw.size());
    FERRY_RETURN_IF_ERROR(r_.read_be32(instance_id, "section instance id"));
    FERRY_RETURN_IF_ERROR(r_.read_be32(version, "section version"));
    const SectionEntry* entry = registry_.find(idstr, instance_id);
    if (!entry)
      return Error(ErrorCode::kCorrupt,
                   "Unknown savevm section or instance '{}' {} at offset {}. Make sure that your "
                   "current VM setup matches your saved VM setup, including any hotplugged "
                   "devices.",
                   escaped_bytes(idstr), instance_id, at);
    if (open_.count(section_id) || (type == wire::kSectionStart && started_.count(entry)))
      return Error(ErrorCode::kCorrupt, "{} record for section '{}' id {} at offset {} is a "
                   "repeat", type_name(type), escaped_bytes(idstr), section_id, at);
    if (!entry->is_ram() && entry->handler->iterative()) {
      // Another iterative section: START, then PART/END records, as RAM's.
      if (type != wire::kSectionStart)
        return Error(ErrorCode::kCorrupt,
                     "iterative section '{}' at offset {}: expected a START record, found {}",
                     escaped_bytes(idstr), at, type_name(type));
      FERRY_RETURN_IF_ERROR(check_version(*entry, version, at));
      FERRY_RETURN_IF_ERROR(entry->handler->load(r_, type, static_cast<int>(version))
                                .prepend_message(fmt::format("section '{}' START", idstr)));
      open_[section_id] = {entry, static_cast<int>(version)};
      started_[entry] = true;
    } else if (entry->is_ram()) {
      if (type != wire::kSectionStart)
        return Error(ErrorCode::kCorrupt,
                     "RAM section at offset {}: expected a START record, found {}", at,
                     type_name(type));
      if (version != wire::kRamVersion)
        return Error(ErrorCode::kVersionMismatch,
                     "section 'ram' at offset {}: version {}, expected {}", at, version,
                     wire::kRamVersion);
      FERRY_RETURN_IF_ERROR(ram_section_.load(r_, type, static_cast<int>(version))
                                .prepend_message("RAM section START"));
      open_[section_id] = {entry, static_cast<int>(version)};
      started_[entry] = true;
    } else {
      if (type != wire::kSectionFull)
        return Error(ErrorCode::kCorrupt,
                     "device section '{}' at offset {}: expected a FULL record, found {}", idstr,
                     at, type_name(type));
      FERRY_RETURN_IF_ERROR(check_version(*entry, version, at));
      FERRY_RETURN_IF_ERROR(load_device(*entry, type, version));
    }
    ++report_.sections_loaded;
    return read_footer(section_id, idstr);
  }

  // A section's stream version must be one its local handler loads.
  static Status check_version(const SectionEntry& entry, uint32_t version, uint64_t at) {
    int local = entry.handler->version();
    int minimum = entry.handler->minimum_version();
    if (version > static_cast<uint32_t>(local) || version < static_cast<uint32_t>(minimum))
      return Error(ErrorCode::kVersionMismatch,
                   "section '{}' instance {} at offset {}: stream version {}, local accepts "
                   "{}..{}",
                   escaped_bytes(entry.idstr), entry.instance_id, at, version, minimum, local);
    return {};
  }

  Status load_device(const SectionEntry& entry, uint8_t type, uint32_t version) {
    uint64_t at = r_.offset();
    int64_t load_ns = 0;
    Status st = load_section_timed(entry, type, version, load_ns);
    report_.device_load_times.push_back({entry.idstr, load_ns});
    if (!st.ok()) {
      // Input ran out: say why (window limit, or a broken channel) rather than "ends early".
      if (st.code() == ErrorCode::kOutOfRange && !r_.section_status().ok())
        st.prepend_message(r_.section_status().to_string());
      return st.prepend_message(fmt::format(
          "loading section '{}' instance {} (body at stream offset {}; offsets below are "
          "relative to it)",
          entry.idstr, entry.instance_id, at));
    }
    return {};
  }

  // A device's load time, without the time spent waiting for its bytes to arrive (that is
  // transfer): each wait for the channel is subtracted.
  Status load_section_timed(const SectionEntry& entry, uint8_t type, uint32_t version,
                            int64_t& load_ns) {
    (void)r_.take_wait_ns();
    auto start = std::chrono::steady_clock::now();
    Status st = entry.handler->load(r_, type, static_cast<int>(version));
    load_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count() -
              r_.take_wait_ns();
    return st;
  }

  Status read_part_or_end(uint8_t type, uint64_t at) {
    uint32_t section_id = 0;
    FERRY_RETURN_IF_ERROR(r_.read_be32(section_id, "section id"));
    auto it = open_.find(section_id);
    if (it == open_.end())
      return Error(ErrorCode::kCorrupt,
                   "{} record at offset {} for section id {}, which no START record opened",
                   type_name(type), at, section_id);
    const SectionEntry& entry = *it->second.entry;
    if (entry.is_ram()) {
      FERRY_RETURN_IF_ERROR(ram_section_.load(r_, type, static_cast<int>(wire::kRamVersion))
                                .prepend_message(fmt::format("RAM section {}", type_name(type))));
    } else {
      FERRY_RETURN_IF_ERROR(entry.handler->load(r_, type, it->second.version)
                                .prepend_message(fmt::format("section '{}' {}",
                                                             escaped_bytes(entry.idstr),
                                                             type_name(type))));
    }
    if (type == wire::kSectionEnd) open_.erase(it);
    return read_footer(section_id, entry.idstr);
  }

  Status read_footer(uint32_t section_id, std::string_view idstr) {
    uint64_t at = r_.offset();
    uint8_t marker = 0;
    uint32_t id = 0;
    FERRY_RETURN_IF_ERROR(r_.read_u8(marker, "section footer"));
    if (marker != wire::kFooter)
      return Error(ErrorCode::kCorrupt,
                   "Missing section footer for '{}': expected 0x7e at offset {}, found 0x{:02x}",
                   idstr, at, marker);
    FERRY_RETURN_IF_ERROR(r_.read_be32(id, "section footer id"));
    if (id != section_id)
      return Error(ErrorCode::kCorrupt,
                   "section footer for '{}' at offset {} names section id {}, expected {}",
                   idstr, at, id, section_id);
    return {};
  }

  Status read_command(uint64_t at) {
    uint16_t cmd = 0, len = 0;
    FERRY_RETURN_IF_ERROR(r_.read_be16(cmd, "command number"));
    FERRY_RETURN_IF_ERROR(r_.read_be16(len, "command length"));
    if (commands_ && commands_->handles(cmd)) {  // the return path's, on a live connection
      std::span<const uint8_t> data;
      FERRY_RETURN_IF_ERROR(r_.take(len, data, "command data"));
      return commands_->command(cmd, data, at);
    }
    if (cmd != wire::kCmdSwitchoverStart)
      return Error(ErrorCode::kCorrupt,
                   "unsupported command {} ({}) of length {} at offset {}", cmd,
                   wire::command_name(cmd), len, at);
    if (len != 0)
      return Error(ErrorCode::kCorrupt,
                   "command 11 (SWITCHOVER_START) at offset {} has length {}, expected 0", at,
                   len);
    // The source is about to stop: nothing more to prepare on a non-live load.
    report_.switchover_started = true;
    return {};
  }

  Status finish(uint64_t at) {
    if (!open_.empty()) {
      const SectionEntry& e = *open_.begin()->second.entry;
      return Error(ErrorCode::kCorrupt, "EOF at offset {} while section '{}' is still open (no "
                   "END record)", at, e.idstr);
    }
    if (registry_.ram() && !started_.count(registry_.ram()))
      return Error(ErrorCode::kCorrupt, "EOF at offset {}: the stream carried no RAM section", at);
    // The vmdesc record is optional (QEMU can leave it out).
    uint8_t type = 0;
    Result<bool> got = r_.peek_u8(type);
    if (!got.ok()) return got.take_status();
    if (*got) {
      uint64_t vat = r_.offset();
      FERRY_RETURN_IF_ERROR(r_.read_u8(type, "vmdesc record"));
      if (type != wire::kVmdescription)
        return Error(ErrorCode::kCorrupt,
                     "after EOF at offset {}: expected the vmdesc record 0x06, found 0x{:02x} "
                     "(the bytes there are '{}'){}",
                     vat, type, bytes_from(type), second_stream_note(type));
      uint32_t len = 0;
      FERRY_RETURN_IF_ERROR(r_.read_be32(len, "vmdesc length"));
      if (len > r_.window_limit())
        return Error(ErrorCode::kOutOfRange, "vmdesc length {} at offset {} exceeds {}", len,
                     vat + 1, r_.window_limit());
      std::span<const uint8_t> text;
      FERRY_RETURN_IF_ERROR(r_.take(len, text, "vmdesc JSON"));
      report_.vmdesc = vmstate::Json::parse(text.begin(), text.end(), nullptr, false);
      if (report_.vmdesc.is_discarded())
        return Error(ErrorCode::kCorrupt, "vmdesc JSON at offset {} does not parse", vat + 5);
      report_.has_vmdesc = true;
    }
    if (end_ == StreamEnd::kEndOfInput) {
      Result<bool> end = r_.at_end();
      if (!end.ok()) return end.take_status();
      if (!*end)
        return Error(ErrorCode::kCorrupt, "unexpected bytes at offset {} after the end of the "
                     "stream: '{}'{}", r_.offset(), escaped_bytes(r_.buffered_bytes(), kShown),
                     second_stream_note(std::nullopt));
    }
    report_.ram = ram_.stats();
    report_.bytes = r_.offset();
    return {};
  }

  // Bytes shown in a message about bytes that cannot be used.
  static constexpr size_t kShown = 24;

  // `first` (already read) and what is buffered after it, escaped.
  std::string bytes_from(uint8_t first) const {
    std::vector<uint8_t> shown{first};
    std::span<const uint8_t> more = r_.buffered_bytes();
    more = more.first(std::min(more.size(), kShown - 1));
    shown.insert(shown.end(), more.begin(), more.end());
    return escaped_bytes(shown, kShown);
  }
  // ", the start of a second migration stream" when the bytes from `first` (or from the
  // reader's position) are QEMU's magic; and the sentence's end.
  std::string second_stream_note(std::optional<uint8_t> first) const {
    uint8_t magic[4];
    store_be<uint32_t>(magic, wire::kMagic);
    std::span<const uint8_t> more = r_.buffered_bytes();
    bool is_magic = first ? *first == magic[0] && more.size() >= 3 &&
                                std::equal(magic + 1, magic + 4, more.begin())
                          : more.size() >= 4 && std::equal(magic, magic + 4, more.begin());
    return is_magic ? ", the start of a second migration stream." : ".";
  }

  StreamReader& r_;
  std::string_view machine_type_;
  SectionRegistry& registry_;
  RamLoader& ram_;
  LoadReport& report_;
  StreamEnd end_;
  RamSection ram_section_{ram_};  // RAM's handler, over this load's RamLoader
  StreamCommandHandler* commands_;
  // Iterative sections a START opened and no END closed yet, by stream section id.
  struct OpenSection {
    const SectionEntry* entry;
    int version;  // the START record's
  };
  std::map<uint32_t, OpenSection> open_;
  std::map<const SectionEntry*, bool> started_;
};

}  // namespace

Status load_stream(StreamReader& r, std::string_view machine_type, SectionRegistry& registry,
                   RamLoader& ram, LoadReport* report, StreamEnd end,
                   StreamCommandHandler* commands) {
  LoadReport local;
  Loader loader(r, machine_type, registry, ram, report ? *report : local, end, commands);
  return loader.run();
}

}  // namespace ferry::migration
