#include "base/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ferry {

namespace {
LogLevel parse_level(const char* text) {
  if (!text) return LogLevel::kWarn;
  if (!std::strcmp(text, "error")) return LogLevel::kError;
  if (!std::strcmp(text, "info")) return LogLevel::kInfo;
  if (!std::strcmp(text, "debug")) return LogLevel::kDebug;
  return LogLevel::kWarn;
}
}  // namespace

LogLevel log_level() {
  // Read once; immutable afterwards, so no shared mutable state.
  static const LogLevel level = parse_level(std::getenv("FERRY_LOG"));
  return level;
}

void log_write(LogLevel level, std::string_view message) {
  static constexpr const char* kNames[] = {"error", "warn", "info", "debug"};
  // One fprintf call per line keeps lines from different threads whole.
  std::fprintf(stderr, "ferry %s: %.*s\n", kNames[static_cast<int>(level)],
               static_cast<int>(message.size()), message.data());
}

}  // namespace ferry
