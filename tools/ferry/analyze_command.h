// `ferry analyze FILE`: describes a migration stream (Ferry's or QEMU's) as JSON, in the
// spirit of QEMU's scripts/analyze-migration.py, on top of migration::analyze_stream.
//
//   --dump state    (default) sections keyed "idstr (section_id)" with their fields
//                   decoded through the stream's own vmdesc; RAM sections list their
//                   block sizes ("section sizes")
//   --dump desc     the vmdesc JSON the stream carries
//   --dump records  analyze_stream's record-by-record walk (offsets, sizes, raw values)
//   --memory        with state: every RAM page record, per block ("zero" or a crc32c)
//
// Exit code 0 when every byte was accounted for (stderr says so), 1 with
// "ferry analyze: FILE: offset N: reason" on stderr for malformed input, 2 when the file
// cannot be read.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/status.h"
#include "vmstate/vmdesc.h"

namespace ferry::tools {

enum class AnalyzeDump { kState, kDesc, kRecords };

struct AnalyzeOptions {
  std::string file;
  AnalyzeDump dump = AnalyzeDump::kState;
  bool memory = false;
};

// "state" | "desc" | "records", else an error naming the value.
Result<AnalyzeDump> parse_analyze_dump(std::string_view text);

// The analyze-migration.py-like state view of `bytes`, given analyze_stream's result for
// them: {"<idstr> (<section id>)": {...}, ...}. Fails when a section cannot be decoded
// (only possible when `analysis` reports an error or does not belong to `bytes`).
Result<vmstate::Json> decode_state(std::span<const uint8_t> bytes, const vmstate::Json& analysis,
                                   bool memory);

// Runs the command: prints JSON on stdout, the verdict on stderr; returns the exit code.
int run_analyze(const AnalyzeOptions& options);

}  // namespace ferry::tools
