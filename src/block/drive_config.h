// `-drive` options: what a drive is (its id, image file and format) and how it is opened
// (cache mode, I/O engine, read-only, error policies). Parsed with base/qemu_opts.h in
// QEMU's syntax:
//   if=none,id=ID,file=PATH,format=raw[,cache=writeback|none|directsync]
//   [,aio=io_uring|threads][,read-only=on][,werror=report|ignore|stop|enospc]
//   [,rerror=report|ignore|stop|enospc]
// `if` may only be `none` (Ferry has no default interfaces; leaving it out means none);
// `id` and `file` are required; the only format is raw. werror/rerror are the error
// policies of block/error_policy.h (QEMU's -drive refuses rerror=enospc; Ferry takes it,
// as QEMU's device-level rerror does: stop on ENOSPC, report the rest).
#pragma once

#include <string>
#include <string_view>

#include "base/qemu_opts.h"
#include "base/status.h"
#include "block/error_policy.h"

namespace ferry::block {

enum class CacheMode {
  kWriteback,   // page cache (default)
  kNone,        // O_DIRECT
  kDirectsync,  // O_DIRECT | O_DSYNC
};
enum class AioMode { kIoUring, kThreads };

std::string_view cache_mode_name(CacheMode mode);  // "writeback", "none", "directsync"
std::string_view aio_mode_name(AioMode mode);      // "io_uring", "threads"

struct DriveConfig {
  std::string id, file, format = "raw";
  CacheMode cache = CacheMode::kWriteback;
  AioMode aio = AioMode::kIoUring;
  bool aio_given = false;  // aio= was on the command line (no silent fallback then)
  bool read_only = false;
  ErrorPolicy werror = ErrorPolicy::kEnospc;  // writes, flushes, write-zeroes, discards
  ErrorPolicy rerror = ErrorPolicy::kReport;  // reads
};

// The schema behind parse_drive_config, for help listings and callers that extend it.
const OptSchema& drive_schema();

// Parses the text after `-drive`. Errors name the option, the property and the value,
// e.g. "-drive: format 'qcow2' is not supported (only raw)". `help` gives an error of
// code kFailedPrecondition whose message is drive_help() (callers print it and exit).
Result<DriveConfig> parse_drive_config(std::string_view text);

// The property list, as `-drive help` prints it.
std::string drive_help();

}  // namespace ferry::block
