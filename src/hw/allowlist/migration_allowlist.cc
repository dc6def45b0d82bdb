#include "hw/allowlist/migration_allowlist.h"

#include <fmt/format.h>

namespace ferry::allowlist::detail {

std::string unclassified_property(std::string_view where, std::string_view kind,
                                  std::string_view key) {
  return fmt::format("{}: {} '{}' is not classified as migratable", where, kind, key);
}

std::string blocking_property(std::string_view where, std::string_view kind,
                              std::string_view key, std::string_view note) {
  return fmt::format("{}: {} '{}' blocks migration ({})", where, kind, key, note);
}

std::string property_over_limit(std::string_view where, std::string_view kind,
                                std::string_view key, uint64_t value, std::string_view note) {
  return fmt::format("{}: {} '{}={}' blocks migration ({})", where, kind, key, value, note);
}

std::string unclassified_advertised(std::string_view where, std::string_view what) {
  return fmt::format("{}: {} is advertised but not classified as migratable", where, what);
}

std::string blocking_advertised(std::string_view where, std::string_view kind,
                                std::string_view row, std::string_view what,
                                std::string_view note) {
  return fmt::format("{}: {} '{}' ({}) blocks migration ({})", where, kind, row, what, note);
}

}  // namespace ferry::allowlist::detail
