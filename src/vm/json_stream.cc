#include "vm/json_stream.h"

#include <fmt/format.h>

namespace ferry::vm {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

void JsonStream::fail(std::vector<Item>& out, std::string message) {
  out.push_back({false, std::move(message)});
  current_.clear();
  open_.clear();
  in_string_ = escape_ = scalar_ = false;
  skip_line_ = true;
}

std::vector<JsonStream::Item> JsonStream::feed(std::string_view bytes) {
  std::vector<Item> out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (skip_line_) {
      if (c == '\n') skip_line_ = false;
      continue;
    }
    if (scalar_) {
      // A top-level scalar ends at whitespace or at the start of the next value.
      if (is_space(c) || c == '{' || c == '[' || c == '"') {
        out.push_back({true, std::move(current_)});
        current_.clear();
        scalar_ = false;
        if (is_space(c)) continue;
      } else {
        current_.push_back(c);
        if (current_.size() > kMaxBytes) fail(out, "JSON parse error, token too long");
        continue;
      }
    }
    if (open_.empty() && !in_string_) {
      if (is_space(c)) continue;
      if (c == '}' || c == ']') {
        fail(out, fmt::format("JSON parse error, unexpected '{}'", c));
        // The rest of this line belongs to the broken text.
        continue;
      }
      current_.push_back(c);
      if (c == '{' || c == '[') {
        open_.push_back(c);
      } else if (c == '"') {
        in_string_ = true;  // a top-level string: complete when it closes
      } else {
        scalar_ = true;
      }
      continue;
    }

    current_.push_back(c);
    if (current_.size() > kMaxBytes) {
      fail(out, fmt::format("JSON parse error, request longer than {} bytes", kMaxBytes));
      continue;
    }
    if (in_string_) {
      if (escape_) {
        escape_ = false;
      } else if (c == '\\') {
        escape_ = true;
      } else if (c == '"') {
        in_string_ = false;
        if (open_.empty()) {
          out.push_back({true, std::move(current_)});
          current_.clear();
        }
      } else if (static_cast<unsigned char>(c) < 0x20) {
        fail(out, "JSON parse error, control character in string");
        if (c == '\n') skip_line_ = false;  // that newline ended the broken line
      }
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      open_.push_back(c);
      if (open_.size() > kMaxDepth) fail(out, "JSON parse error, nesting too deep");
    } else if (c == '}' || c == ']') {
      // A closer must match the innermost opener; otherwise the text can never complete
      // and waiting for more input would hang the client.
      if ((c == '}') != (open_.back() == '{')) {
        fail(out, fmt::format("JSON parse error, '{}' closes '{}'", c, open_.back()));
        continue;
      }
      open_.pop_back();
      if (open_.empty()) {
        out.push_back({true, std::move(current_)});
        current_.clear();
      }
    }
  }
  return out;
}

}  // namespace ferry::vm
