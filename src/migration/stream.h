// The whole migration stream (design.md §5): record writers, and the non-live save and
// load of a stopped VM.
//
//   header · configuration · early-setup FULL sections · RAM START · [RAM PART]* ·
//   RAM END · device FULL sections · EOF · vmdesc
//
// The record writers are the building blocks the live engine reuses; save_stream and
// load_stream compose them for a VM that is stopped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "migration/ram_section.h"
#include "migration/section_registry.h"
#include "migration/stream_reader.h"
#include "migration/stream_writer.h"
#include "vmstate/vmdesc.h"

namespace ferry::migration {

// ---- record writers ----
void write_header(StreamWriter& w);
void write_configuration(StreamWriter& w, std::string_view machine_type);
// START/FULL header: type, section id, idstr, instance id, version.
void write_section_header(StreamWriter& w, uint8_t type, const SectionEntry& entry,
                          uint32_t version);
// PART/END header: type, section id.
void write_section_continuation(StreamWriter& w, uint8_t type, uint32_t section_id);
void write_footer(StreamWriter& w, uint32_t section_id);
void write_command(StreamWriter& w, uint16_t cmd, std::span<const uint8_t> data = {});
// A FULL record of a device (header, body, footer); appends its vmdesc entry to
// `devices` (a JSON array) when given.
Status write_device_section(StreamWriter& w, const SectionEntry& entry, vmstate::Json* devices);
// EOF, then the vmdesc record holding `vmdesc`, padded as analyze-migration.py needs.
void write_eof_and_vmdesc(StreamWriter& w, const vmstate::Json& vmdesc);
// The JSON text of a vmdesc, padded with spaces so that its be32 length has no 0x7b
// byte after its last 0x00 byte (analyze-migration.py looks for the last 0x00, then '{').
std::string padded_vmdesc_text(const vmstate::Json& vmdesc);

struct SaveOptions {
  bool send_switchover_start = false;  // QEMU >= 10 sends it before the device state
};

// Non-live save of a stopped VM: everything, then flush. A file destination checks that
// nothing follows; on a live connection the caller may keep it open for the return path.
Status save_stream(StreamWriter& w, std::string_view machine_type, SectionRegistry& registry,
                   RamSaver& ram, const SaveOptions& options = {});

// How long one device section took to load (stop-and-copy breakdown, design.md §6).
struct SectionLoadTime {
  std::string idstr;
  int64_t ns = 0;
};

struct LoadReport {
  uint64_t sections_loaded = 0;
  std::vector<SectionLoadTime> device_load_times;  // in stream order
  bool switchover_started = false;
  bool has_vmdesc = false;
  vmstate::Json vmdesc;  // parsed vmdesc, when present
  RamStats ram;
  uint64_t bytes = 0;
};

// What may follow the last record. A file ends there, and bytes after it are an error. A
// live connection stays open for the return path, and a QEMU source does not half-close
// it: nothing is read past the vmdesc record, as QEMU's own loader does.
enum class StreamEnd { kEndOfInput, kConnectionStaysOpen };

// COMMAND records a live load hands to its caller instead of refusing them: the return
// path's OPEN_RETURN_PATH and PING (destination.cc answers them on the connection).
class StreamCommandHandler {
 public:
  virtual ~StreamCommandHandler() = default;
  virtual bool handles(uint16_t cmd) const = 0;
  // `at` is the record's stream offset; an error fails the load.
  virtual Status command(uint16_t cmd, std::span<const uint8_t> data, uint64_t at) = 0;
};

// Loads a whole stream into the registered sections and RAM; refuses anything it does not
// expect, naming what was expected, what was found and the stream offset.
Status load_stream(StreamReader& r, std::string_view machine_type, SectionRegistry& registry,
                   RamLoader& ram, LoadReport* report = nullptr,
                   StreamEnd end = StreamEnd::kEndOfInput,
                   StreamCommandHandler* commands = nullptr);

}  // namespace ferry::migration
