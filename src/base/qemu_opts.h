// QEMU-style option strings: `-drive if=none,id=d0,file=disk.img,format=raw`.
//
// A schema names the option, its properties (type, default, help, allowed values) and an
// optional implied key: the first element written without '=' is that key's value
// (`-device nvme,serial=F0` -> driver=nvme; `-qmp unix:/p,server=on` -> the chardev path).
// Rules follow QemuOpts: ",," is a literal comma; a later bare `name` means name=on and
// `noname` name=off for boolean properties; `help` (or `?`) asks for the property list;
// a repeated key keeps every value and the last one wins; `id` must be an identifier.
// Every value is checked against its property's type while parsing, so the getters of
// Opts cannot fail. Errors name the option, the property and the value found.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"

namespace ferry {

enum class OptType {
  kString,  // any text
  kBool,    // on/off, true/false, yes/no
  kNumber,  // QemuOpts' "num": unsigned integer, decimal, 0x hex or 0 octal (strtoull base 0)
  kSize,    // byte count with optional suffix B/K/M/G/T/P/E (powers of 1024)
  // qdev integer properties (`-device`): written as kNumber is, and refused unless the value
  // fits the width, as QEMU's visit_type_uintN/intN refuse it ("expects uint8_t"). Signed
  // ones take a leading '-'.
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt32,
  kInt64,
  // qdev's PCI "addr" (SLOT[.FN]): kept as text for the machine to place; QEMU's listing
  // calls it int32 and shows -1 (no slot chosen) as its default.
  kPciDevfn,
};

// The name QEMU's help listings use for a type: QemuOpts' "str", "bool", "num", "size",
// and qdev's "uint8", "uint16", "uint32", "uint64", "int32", "int64" ("int32" for kPciDevfn).
std::string_view opt_type_name(OptType type);

// The range of an integer type: kNumber and the unsigned ones from 0, signed ones from
// their negative bound; nullopt for the other types.
struct IntegerRange {
  int64_t min;
  uint64_t max;
};
std::optional<IntegerRange> integer_range(OptType type);
bool is_signed_integer(OptType type);

struct OptSpec {
  std::string name;
  OptType type = OptType::kString;
  std::string default_value;         // as written on a command line; empty: none
  std::string help;                  // one line
  std::vector<std::string> choices;  // kString only: if not empty, the accepted values
};

struct OptSchema {
  std::string option;       // "-drive", used in every error message
  std::string implied_key;  // empty: every element needs '='
  std::vector<OptSpec> properties;
  // kSize values without a suffix are multiplied by this (QEMU's -m takes MiB).
  uint64_t size_default_unit = 1;
  // Errors start "OPTION ARGUMENT:" (QEMU's location, as for "-m 1.5") instead of
  // "OPTION:", so a value error need not repeat the value.
  bool location_shows_argument = false;

  const OptSpec* find(std::string_view name) const;
};

// uint64_t for kNumber, kSize and the unsigned widths; int64_t for the signed widths.
using OptValue = std::variant<std::string, bool, uint64_t, int64_t>;

// The parsed elements, in command-line order.
class Opts {
 public:
  struct Entry {
    std::string key;
    std::string text;  // as written (commas unescaped)
    OptValue value;    // typed by the schema
  };

  const std::vector<Entry>& entries() const { return entries_; }
  // True when `help` or `?` was among the elements.
  bool help_requested() const { return help_requested_; }
  // True when the command line gave `key` (defaults do not count).
  bool is_set(std::string_view key) const;

  // The last value given for `key`, else the schema's default, else nullopt. Asking for
  // a key with another type than the schema's also gives nullopt.
  std::optional<std::string> string(std::string_view key) const;
  std::optional<bool> boolean(std::string_view key) const;
  std::optional<uint64_t> number(std::string_view key) const;  // kNumber, kSize, kUintN
  std::optional<int64_t> integer(std::string_view key) const;  // kIntN

 private:
  friend Result<Opts> parse_opts(const OptSchema& schema, std::string_view text);
  const OptValue* find(std::string_view key) const;

  std::vector<Entry> entries_;
  std::vector<Entry> defaults_;
  bool help_requested_ = false;
};

Result<Opts> parse_opts(const OptSchema& schema, std::string_view text);

// The value parsers, usable alone. Errors say what was expected and what was found.
Result<bool> parse_bool(std::string_view text);
Result<uint64_t> parse_number(std::string_view text);
// As parse_number, with an optional leading '-' (strtoll base 0); kOutOfRange past int64.
Result<int64_t> parse_signed_number(std::string_view text);
// QEMU's size syntax: decimal (with an optional fraction when a suffix bigger than B
// follows) or 0x hex without suffix; suffixes are case-insensitive.
Result<uint64_t> parse_size(std::string_view text, uint64_t default_unit = 1);

// The property list as `-device nvme,help` prints it:
//   nvme options:
//     serial=<str>           - serial number (default: "")
std::string format_help(const OptSchema& schema, std::string_view title);

}  // namespace ferry
