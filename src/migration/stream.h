// The whole migration stream (design.md §5): record writers, the order of a save (run_save,
// the one place it is decided, for the live source and a stopped VM alike), and the
// non-live save and load of a stopped VM.
//
//   header · configuration
//   setup     each device section's setup records (registration order: an early-setup
//             device's FULL), then each iterative section's (RAM START)
//   iterate   iterative sections' PART records while the VM runs (a live save only)
//   complete  each iterative section's last record (RAM END) · [SWITCHOVER_START] ·
//             each device section's complete records (FULL) · EOF · vmdesc
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
Status write_device_section(StreamWriter& w, const SectionEntry& entry,
                            vmstate::StateBinding& state, vmstate::Json* devices);
// EOF, then the vmdesc record holding `vmdesc`, padded as analyze-migration.py needs.
void write_eof_and_vmdesc(StreamWriter& w, const vmstate::Json& vmdesc);
// The JSON text of a vmdesc, padded with spaces so that its be32 length has no 0x7b
// byte after its last 0x00 byte (analyze-migration.py looks for the last 0x00, then '{').
std::string padded_vmdesc_text(const vmstate::Json& vmdesc);

// ---- the order of a save ----

struct SaveOptions {
  bool send_switchover_start = false;  // QEMU >= 10 sends it before the device state
};

enum class SavePhase { kSetup, kComplete };

// What one device section's records of a phase cost (sections that sent nothing are left
// out).
struct SectionSaveCost {
  std::string idstr;
  int64_t save_ns = 0;
  uint64_t bytes = 0;
};

// The device (non-iterative) sections' records of `phase`, in registration order, as
// records ready for the stream and their vmdesc entries. The machine runs this where its
// devices may be read (its main loop; for kComplete with the VM stopped).
struct DeviceRecords {
  std::vector<uint8_t> records;
  vmstate::Json vmdesc_devices = vmstate::Json::array();
};
Result<DeviceRecords> save_device_sections(const SectionRegistry& registry, SavePhase phase,
                                           std::vector<SectionSaveCost>* costs = nullptr);

// The iterative sections of one save (RAM, whose handler is the save's own RamSection,
// and any iterative handler in the registry), in registration order.
class IterativeSections {
 public:
  IterativeSections(const SectionRegistry& registry, SectionHandler& ram);
  // Each section's setup records (RAM START), then, at complete, its last ones (RAM END).
  Status save_setup(StreamWriter& w, SaveContext& ctx);
  Status save_complete(StreamWriter& w, SaveContext& ctx);
  // Every section's sync_pending(), summed; starts a pass.
  uint64_t sync();
  uint64_t pending_bytes() const;
  // One PART record of up to `byte_budget` bytes from each section that has not finished
  // the pass (so each sends at least one per pass); true once all have finished it.
  Result<bool> iterate(StreamWriter& w, uint64_t byte_budget);

 private:
  std::vector<std::pair<const SectionEntry*, SectionHandler*>> sections_;
  std::vector<bool> pass_done_;
};

// What differs between saving a running VM and a stopped one; run_save calls these at
// their places in the stream.
class SaveRunner {
 public:
  virtual ~SaveRunner() = default;
  // save_device_sections(phase), done where the devices may be read; before kComplete's
  // the VM stops.
  virtual Result<DeviceRecords> device_records(SavePhase phase) = 0;
  // The header and configuration are written: a live source opens the return path here.
  virtual Status configuration_written(StreamWriter& w) {
    (void)w;
    return {};
  }
  // Setup's records are written.
  virtual Status setup_written(StreamWriter& w) {
    (void)w;
    return {};
  }
  // The iterate phase: sends the iterative sections while the VM runs, until what is
  // left fits the downtime (nothing for a stopped VM: complete sends it all).
  virtual Status iterate(StreamWriter& w, IterativeSections& sections) {
    (void)w, (void)sections;
    return {};
  }
  // The iterative sections' last records are written; the device records follow.
  virtual Status iterative_complete_written(StreamWriter& w) {
    (void)w;
    return {};
  }
};

// One whole save in the order above, flushed at its end. `ram` is the handler of the
// registry's "ram" entry.
Status run_save(StreamWriter& w, std::string_view machine_type, const SectionRegistry& registry,
                SectionHandler& ram, SaveRunner& runner, const SaveOptions& options = {});

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
