// Cuts a byte stream into top-level JSON texts, as QEMU's JSON streamer does for QMP:
// a value may span lines and reads, several may share a line. Only the structure is
// tracked here (brackets, strings, escapes); the texts are parsed by the caller.
//
// Malformed input never stalls the stream: a raw control character inside a string, a
// stray closing bracket, nesting deeper than kMaxDepth or a text longer than kMaxBytes
// yields an error and the splitter skips to the end of the current line, so the next
// line starts clean (a client that sent garbage gets an error and can carry on).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::vm {

class JsonStream {
 public:
  static constexpr size_t kMaxDepth = 1024;
  static constexpr size_t kMaxBytes = size_t{16} << 20;

  struct Item {
    bool ok;           // true: `text` is one complete JSON text (maybe still invalid JSON)
    std::string text;  // the text, or the error description
  };

  // Consumes `bytes`; returns the texts and errors completed by them, in order.
  std::vector<Item> feed(std::string_view bytes);
  // True when a text has started but not finished (a client disconnecting now leaves a
  // partial request behind).
  bool in_text() const { return !current_.empty(); }

 private:
  void fail(std::vector<Item>& out, std::string message);

  std::string current_;
  std::string open_;  // the brackets open now, innermost last
  bool in_string_ = false;
  bool escape_ = false;
  bool scalar_ = false;  // a top-level scalar (number, literal) is being read
  bool skip_line_ = false;
};

}  // namespace ferry::vm
