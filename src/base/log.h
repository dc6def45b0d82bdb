// Minimal leveled logging to stderr. The level comes from FERRY_LOG
// (error|warn|info|debug; default warn), read once.
#pragma once

#include <string_view>

#include <fmt/format.h>

namespace ferry {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

LogLevel log_level();
void log_write(LogLevel level, std::string_view message);

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (level > log_level()) return;
  log_write(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace ferry
