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
// cannot be opened. The file is read in order, never whole (memory stays bounded), and the
// walk stops at the first byte it cannot account for.
#pragma once

#include <string>

#include "base/status.h"

namespace ferry::tools {

enum class AnalyzeDump { kState, kDesc, kRecords };

struct AnalyzeOptions {
  std::string file;
  AnalyzeDump dump = AnalyzeDump::kState;
  bool memory = false;
};

// "state" | "desc" | "records", else an error naming the value.
Result<AnalyzeDump> parse_analyze_dump(std::string_view text);

// Runs the command: prints JSON on stdout, the verdict on stderr; returns the exit code.
int run_analyze(const AnalyzeOptions& options);

}  // namespace ferry::tools
