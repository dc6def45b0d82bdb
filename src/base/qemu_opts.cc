#include "base/qemu_opts.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

namespace ferry {
namespace {

// One comma-separated element, with ",," turned into ','.
struct Element {
  std::string text;
  bool has_equals = false;
  std::string key;    // before the first '=' (valid when has_equals)
  std::string value;  // after it
};

// Splits on single commas; ",," is a literal comma wherever it appears.
std::vector<std::string> split_elements(std::string_view text) {
  std::vector<std::string> out;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != ',') {
      current.push_back(text[i]);
    } else if (i + 1 < text.size() && text[i + 1] == ',') {
      current.push_back(',');
      ++i;
    } else {
      out.push_back(std::move(current));
      current.clear();
    }
  }
  out.push_back(std::move(current));
  return out;
}

Element classify(std::string text) {
  Element e;
  size_t eq = text.find('=');
  if (eq != std::string::npos) {
    e.has_equals = true;
    e.key = text.substr(0, eq);
    e.value = text.substr(eq + 1);
  }
  e.text = std::move(text);
  return e;
}

// QEMU's id rule: a letter, then letters, digits, '-', '.', '_'.
bool is_identifier(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

std::string join_choices(const std::vector<std::string>& choices) {
  std::string out;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += (i + 1 == choices.size()) ? " or " : ", ";
    out += choices[i];
  }
  return out;
}

// The C type QEMU names when a qdev integer does not fit ("expects uint8_t").
std::string_view c_type_name(OptType type) {
  switch (type) {
    case OptType::kUint8: return "uint8_t";
    case OptType::kUint16: return "uint16_t";
    case OptType::kUint32: return "uint32_t";
    case OptType::kUint64: return "uint64_t";
    case OptType::kInt32: return "int32_t";
    case OptType::kInt64: return "int64_t";
    default: return "integer";
  }
}

// A qdev integer: text that is no integer (or past 64 bits) "expects integer", one outside
// the width "expects uint8_t", as QEMU words both. A '-' before an unsigned value is out of
// range (QEMU's strtoull wraps it to a huge value and refuses that).
template <typename Bad>
Result<OptValue> width_checked(const OptSpec& spec, const std::string& text, const Bad& bad) {
  IntegerRange range = *integer_range(spec.type);
  if (is_signed_integer(spec.type)) {
    auto n = parse_signed_number(text);
    if (!n.ok()) return bad("integer");
    if (*n < range.min || (*n > 0 && static_cast<uint64_t>(*n) > range.max))
      return bad(c_type_name(spec.type));
    return OptValue(*n);
  }
  bool negative = !text.empty() && text[0] == '-';
  auto n = parse_number(negative ? std::string_view(text).substr(1) : std::string_view(text));
  if (!n.ok()) return bad("integer");
  if ((negative && *n != 0) || *n > range.max) return bad(c_type_name(spec.type));
  return OptValue(*n);
}

// Parses `text` as the property's type; the error names option, property and value.
Result<OptValue> typed_value(const OptSchema& schema, const OptSpec& spec,
                             const std::string& text) {
  auto bad = [&](std::string_view expected) {
    if (schema.location_shows_argument)
      return Error(ErrorCode::kInvalidArgument, "{}: Parameter '{}' expects {}", schema.option,
                   spec.name, expected);
    return Error(ErrorCode::kInvalidArgument, "{}: Parameter '{}' expects {}, found '{}'",
                 schema.option, spec.name, expected, text);
  };
  switch (spec.type) {
    case OptType::kString:
    case OptType::kPciDevfn:
      if (!spec.choices.empty() &&
          std::find(spec.choices.begin(), spec.choices.end(), text) == spec.choices.end()) {
        return bad(join_choices(spec.choices));
      }
      return OptValue(text);
    case OptType::kBool: {
      auto b = parse_bool(text);
      if (!b.ok()) return bad("'on' or 'off'");
      return OptValue(*b);
    }
    case OptType::kNumber: {
      auto n = parse_number(text);
      if (!n.ok()) {
        if (n.status().code() == ErrorCode::kOutOfRange) {
          return Error(ErrorCode::kOutOfRange, "{}: Value '{}' is out of range for parameter '{}'",
                       schema.option, text, spec.name);
        }
        return bad("a number");
      }
      return OptValue(*n);
    }
    case OptType::kUint8:
    case OptType::kUint16:
    case OptType::kUint32:
    case OptType::kUint64:
    case OptType::kInt32:
    case OptType::kInt64:
      return width_checked(spec, text, bad);
    case OptType::kSize: {
      auto n = parse_size(text, schema.size_default_unit);
      if (!n.ok()) {
        if (n.status().code() == ErrorCode::kOutOfRange) {
          return Error(ErrorCode::kOutOfRange, "{}: Value '{}' is out of range for parameter '{}'",
                       schema.option, text, spec.name);
        }
        // QEMU's message and hint, word for word.
        Status error = bad("a non-negative number below 2^64");
        return Error(error.code(), "{}\nOptional suffix k, M, G, T, P or E means kilo-, mega-, "
                     "giga-, tera-, peta-\nand exabytes, respectively.", error.message());
      }
      return OptValue(*n);
    }
  }
  return Error(ErrorCode::kInternal, "{}: unknown type of '{}'", schema.option, spec.name);
}

}  // namespace

std::string_view opt_type_name(OptType type) {
  switch (type) {
    case OptType::kString: return "str";
    case OptType::kBool: return "bool";
    case OptType::kNumber: return "num";
    case OptType::kSize: return "size";
    case OptType::kUint8: return "uint8";
    case OptType::kUint16: return "uint16";
    case OptType::kUint32: return "uint32";
    case OptType::kUint64: return "uint64";
    case OptType::kInt32: return "int32";
    case OptType::kInt64: return "int64";
    case OptType::kPciDevfn: return "int32";
  }
  return "?";
}

std::optional<IntegerRange> integer_range(OptType type) {
  switch (type) {
    case OptType::kNumber:
    case OptType::kUint64: return IntegerRange{0, std::numeric_limits<uint64_t>::max()};
    case OptType::kUint8: return IntegerRange{0, std::numeric_limits<uint8_t>::max()};
    case OptType::kUint16: return IntegerRange{0, std::numeric_limits<uint16_t>::max()};
    case OptType::kUint32: return IntegerRange{0, std::numeric_limits<uint32_t>::max()};
    case OptType::kInt32:
      return IntegerRange{std::numeric_limits<int32_t>::min(),
                          uint64_t{std::numeric_limits<int32_t>::max()}};
    case OptType::kInt64:
      return IntegerRange{std::numeric_limits<int64_t>::min(),
                          uint64_t{std::numeric_limits<int64_t>::max()}};
    default: return std::nullopt;
  }
}

bool is_signed_integer(OptType type) {
  return type == OptType::kInt32 || type == OptType::kInt64;
}

const OptSpec* OptSchema::find(std::string_view name) const {
  for (const OptSpec& spec : properties) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

// --- value parsers ---

Result<bool> parse_bool(std::string_view text) {
  if (text == "on" || text == "true" || text == "yes") return true;
  if (text == "off" || text == "false" || text == "no") return false;
  return Error(ErrorCode::kInvalidArgument, "expected 'on' or 'off', found '{}'", text);
}

Result<uint64_t> parse_number(std::string_view text) {
  // strtoull with base 0, minus its leniencies: no sign, no spaces, no trailing junk.
  auto bad = [&] {
    return Error(ErrorCode::kInvalidArgument, "expected a number, found '{}'", text);
  };
  if (text.empty()) return bad();
  unsigned base = 10;
  size_t i = 0;
  if (text.size() > 1 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    i = 2;
    if (i == text.size()) return bad();
  } else if (text.size() > 1 && text[0] == '0') {
    base = 8;
    i = 1;
  }
  uint64_t value = 0;
  for (; i < text.size(); ++i) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = 10 + (c - 'a');
    } else {
      return bad();
    }
    if (digit >= base) return bad();
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / base) {
      return Error(ErrorCode::kOutOfRange, "number '{}' does not fit in 64 bits", text);
    }
    value = value * base + digit;
  }
  return value;
}

Result<int64_t> parse_signed_number(std::string_view text) {
  bool negative = !text.empty() && text[0] == '-';
  auto magnitude = parse_number(negative ? text.substr(1) : text);
  if (!magnitude.ok()) {
    if (magnitude.status().code() != ErrorCode::kOutOfRange)
      return Error(ErrorCode::kInvalidArgument, "expected a number, found '{}'", text);
    return magnitude.take_status();
  }
  // -2^63 is the one value whose magnitude int64_t cannot hold.
  constexpr uint64_t kMaxMagnitude = uint64_t{std::numeric_limits<int64_t>::max()};
  if (*magnitude > kMaxMagnitude + (negative ? 1 : 0))
    return Error(ErrorCode::kOutOfRange, "number '{}' does not fit in a signed 64-bit integer",
                 text);
  if (negative) return static_cast<int64_t>(0 - *magnitude);
  return static_cast<int64_t>(*magnitude);
}

Result<uint64_t> parse_size(std::string_view text, uint64_t default_unit) {
  auto bad = [&] {
    return Error(ErrorCode::kInvalidArgument, "expected a size, found '{}'", text);
  };
  auto too_big = [&] {
    return Error(ErrorCode::kOutOfRange, "size '{}' does not fit in 64 bits", text);
  };
  if (text.empty()) return bad();

  // Split number and suffix.
  size_t end = 0;
  bool hex = text.size() > 1 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  if (hex) {
    end = 2;
    while (end < text.size() && std::isxdigit(static_cast<unsigned char>(text[end]))) ++end;
    if (end == 2) return bad();
  } else {
    while (end < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.')) {
      ++end;
    }
  }
  std::string_view number = text.substr(0, end);
  std::string_view suffix = text.substr(end);
  if (number.empty() || number.front() == '.') return bad();

  uint64_t unit = default_unit;
  if (!suffix.empty()) {
    if (suffix.size() != 1 || hex) return bad();  // QEMU rejects hex with a suffix
    switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
      case 'B': unit = 1; break;
      case 'K': unit = uint64_t{1} << 10; break;
      case 'M': unit = uint64_t{1} << 20; break;
      case 'G': unit = uint64_t{1} << 30; break;
      case 'T': unit = uint64_t{1} << 40; break;
      case 'P': unit = uint64_t{1} << 50; break;
      case 'E': unit = uint64_t{1} << 60; break;
      default: return bad();
    }
  }

  size_t dot = number.find('.');
  std::string_view whole = number.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? "" : number.substr(dot + 1);
  if (dot != std::string_view::npos) {
    // A fraction needs a unit bigger than a byte and digits after the dot; a non-zero one
    // also a suffix written after it (QEMU refuses "-m 1.5" though -m counts in MiB, and
    // takes "-m 2.0").
    bool nonzero_fraction = fraction.find_first_not_of('0') != std::string_view::npos;
    if (unit == 1 || (suffix.empty() && nonzero_fraction) || fraction.empty() ||
        fraction.find('.') != std::string_view::npos) {
      return bad();
    }
  }
  // Sizes are decimal even with a leading 0 (unlike plain numbers); hex is 0x.
  uint64_t integer = 0;
  if (hex) {
    auto n = parse_number(number);
    if (!n.ok()) return n.status().code() == ErrorCode::kOutOfRange ? too_big() : bad();
    integer = *n;
  } else {
    if (whole.empty()) return bad();
    for (char c : whole) {
      uint64_t d = static_cast<uint64_t>(c - '0');
      if (integer > (std::numeric_limits<uint64_t>::max() - d) / 10) return too_big();
      integer = integer * 10 + d;
    }
  }
  if (integer > std::numeric_limits<uint64_t>::max() / unit) return too_big();
  uint64_t value = integer * unit;
  if (!fraction.empty()) {
    // QEMU too goes through a double here; 18 digits are more than a double holds.
    double f = 0;
    double scale = 0.1;
    for (char c : fraction.substr(0, 18)) {
      f += (c - '0') * scale;
      scale /= 10;
    }
    auto extra = static_cast<uint64_t>(f * static_cast<double>(unit));
    if (value > std::numeric_limits<uint64_t>::max() - extra) return too_big();
    value += extra;
  }
  return value;
}

// --- Opts ---

const OptValue* Opts::find(std::string_view key) const {
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (it->key == key) return &it->value;
  }
  for (const Entry& e : defaults_) {
    if (e.key == key) return &e.value;
  }
  return nullptr;
}

bool Opts::is_set(std::string_view key) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.key == key; });
}

std::optional<std::string> Opts::string(std::string_view key) const {
  const OptValue* v = find(key);
  if (v == nullptr || !std::holds_alternative<std::string>(*v)) return std::nullopt;
  return std::get<std::string>(*v);
}

std::optional<bool> Opts::boolean(std::string_view key) const {
  const OptValue* v = find(key);
  if (v == nullptr || !std::holds_alternative<bool>(*v)) return std::nullopt;
  return std::get<bool>(*v);
}

std::optional<uint64_t> Opts::number(std::string_view key) const {
  const OptValue* v = find(key);
  if (v == nullptr || !std::holds_alternative<uint64_t>(*v)) return std::nullopt;
  return std::get<uint64_t>(*v);
}

std::optional<int64_t> Opts::integer(std::string_view key) const {
  const OptValue* v = find(key);
  if (v == nullptr || !std::holds_alternative<int64_t>(*v)) return std::nullopt;
  return std::get<int64_t>(*v);
}

Result<Opts> parse_opts(const OptSchema& given, std::string_view text) {
  OptSchema located;
  if (given.location_shows_argument) {
    located = given;
    located.option = fmt::format("{} {}", given.option, text);
  }
  const OptSchema& schema = given.location_shows_argument ? located : given;
  Opts opts;
  std::vector<std::string> elements;
  if (!text.empty()) elements = split_elements(text);
  for (size_t i = 0; i < elements.size(); ++i) {
    Element e = classify(std::move(elements[i]));
    if (!e.has_equals && (e.text == "help" || e.text == "?")) {
      opts.help_requested_ = true;
      continue;
    }
    std::string key;
    std::string value;
    if (e.has_equals) {
      key = e.key;
      value = e.value;
    } else if (i == 0 && !schema.implied_key.empty()) {
      key = schema.implied_key;
      value = e.text;
    } else {
      // A bare boolean: `name` is name=on, `noname` is name=off.
      const OptSpec* spec = schema.find(e.text);
      if (spec != nullptr && spec->type == OptType::kBool) {
        key = e.text;
        value = "on";
      } else if (e.text.size() > 2 && e.text.compare(0, 2, "no") == 0 &&
                 (spec = schema.find(e.text.substr(2))) != nullptr &&
                 spec->type == OptType::kBool) {
        key = e.text.substr(2);
        value = "off";
      } else if (spec != nullptr) {
        return Error(ErrorCode::kInvalidArgument, "{}: Parameter '{}' expects a value",
                     schema.option, e.text);
      } else {
        return Error(ErrorCode::kInvalidArgument, "{}: Invalid parameter '{}'", schema.option,
                     e.text);
      }
    }
    const OptSpec* spec = schema.find(key);
    if (spec == nullptr) {
      return Error(ErrorCode::kInvalidArgument, "{}: Invalid parameter '{}'", schema.option, key);
    }
    if (key == "id" && !is_identifier(value)) {
      return Error(ErrorCode::kInvalidArgument,
                   "{}: Parameter 'id' expects an identifier, found '{}' (identifiers consist "
                   "of letters, digits, '-', '.', '_', starting with a letter)",
                   schema.option, value);
    }
    auto typed = typed_value(schema, *spec, value);
    if (!typed.ok()) return typed.take_status();
    opts.entries_.push_back({std::move(key), std::move(value), std::move(typed).value()});
  }
  for (const OptSpec& spec : schema.properties) {
    if (spec.default_value.empty()) continue;
    auto typed = typed_value(schema, spec, spec.default_value);
    if (!typed.ok()) {
      return Error(ErrorCode::kInternal, "{}: schema default of '{}' is invalid: {}", schema.option,
                   spec.name, typed.status().message());
    }
    opts.defaults_.push_back({spec.name, spec.default_value, std::move(typed).value()});
  }
  return opts;
}

std::string format_help(const OptSchema& schema, std::string_view title) {
  std::string out = fmt::format("{} options:\n", title);
  std::vector<const OptSpec*> sorted;
  for (const OptSpec& spec : schema.properties) sorted.push_back(&spec);
  // QEMU lists properties alphabetically.
  std::sort(sorted.begin(), sorted.end(),
            [](const OptSpec* a, const OptSpec* b) { return a->name < b->name; });
  for (const OptSpec* spec : sorted) {
    std::string line = fmt::format("{}=<{}>", spec->name, opt_type_name(spec->type));
    std::string help = spec->help;
    if (!spec->choices.empty()) {
      if (!help.empty()) help += ' ';
      help += fmt::format("({})", join_choices(spec->choices));
    }
    if (!help.empty() || !spec->default_value.empty()) {
      if (line.size() < 24) line.resize(24, ' ');
      line += fmt::format(" - {}", help);
      if (!spec->default_value.empty()) line += fmt::format(" (default: {})", spec->default_value);
    }
    out += fmt::format("  {}\n", line);
  }
  return out;
}

}  // namespace ferry
