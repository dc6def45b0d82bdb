#include "block/drive_config.h"

namespace ferry::block {

std::string_view cache_mode_name(CacheMode mode) {
  switch (mode) {
    case CacheMode::kWriteback: return "writeback";
    case CacheMode::kNone: return "none";
    case CacheMode::kDirectsync: return "directsync";
  }
  return "?";
}

std::string_view aio_mode_name(AioMode mode) {
  return mode == AioMode::kIoUring ? "io_uring" : "threads";
}

const OptSchema& drive_schema() {
  static const OptSchema schema{
      .option = "-drive",
      .properties = {
          {.name = "if", .default_value = "none", .help = "interface", .choices = {"none"}},
          {.name = "id", .help = "drive name, referenced by -device ...,drive=ID"},
          {.name = "file", .help = "disk image file"},
          {.name = "format", .default_value = "raw", .help = "image format", .choices = {"raw"}},
          {.name = "cache",
           .default_value = "writeback",
           .help = "host cache mode",
           .choices = {"writeback", "none", "directsync"}},
          {.name = "aio",
           .default_value = "io_uring",
           .help = "I/O engine",
           .choices = {"io_uring", "threads"}},
          {.name = "read-only",
           .type = OptType::kBool,
           .default_value = "off",
           .help = "open the image read-only"},
          {.name = "werror",
           .default_value = "enospc",
           .help = "action on write error",
           .choices = {"report", "ignore", "stop", "enospc"}},
          {.name = "rerror",
           .default_value = "report",
           .help = "action on read error",
           .choices = {"report", "ignore", "stop", "enospc"}},
      }};
  return schema;
}

std::string drive_help() { return format_help(drive_schema(), "-drive"); }

Result<DriveConfig> parse_drive_config(std::string_view text) {
  // format is checked here rather than by the schema's choices, for a clearer message.
  OptSchema schema = drive_schema();
  for (OptSpec& spec : schema.properties) {
    if (spec.name == "format") spec.choices.clear();
  }
  auto parsed = parse_opts(schema, text);
  if (!parsed.ok()) return parsed.take_status();
  const Opts& opts = *parsed;
  if (opts.help_requested()) return Status(ErrorCode::kFailedPrecondition, drive_help());

  DriveConfig config;
  config.id = opts.string("id").value_or("");
  if (config.id.empty()) {
    return Error(ErrorCode::kInvalidArgument, "-drive: Parameter 'id' is required");
  }
  config.file = opts.string("file").value_or("");
  if (config.file.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "-drive id={}: Parameter 'file' is required (a raw image path)", config.id);
  }
  config.format = opts.string("format").value_or("raw");
  if (config.format != "raw") {
    return Error(ErrorCode::kInvalidArgument, "-drive: format '{}' is not supported (only raw)",
                 config.format);
  }
  std::string cache = opts.string("cache").value_or("writeback");
  config.cache = cache == "none"         ? CacheMode::kNone
                 : cache == "directsync" ? CacheMode::kDirectsync
                                         : CacheMode::kWriteback;
  config.aio = opts.string("aio").value_or("io_uring") == "threads" ? AioMode::kThreads
                                                                     : AioMode::kIoUring;
  config.aio_given = opts.is_set("aio");
  config.read_only = opts.boolean("read-only").value_or(false);
  // The schema's choices are exactly the policy names.
  config.werror = error_policy_from_name(opts.string("werror").value_or("enospc")).value();
  config.rerror = error_policy_from_name(opts.string("rerror").value_or("report")).value();
  return config;
}

}  // namespace ferry::block
