#include "vm/qtest_server.h"

#include "base/base64.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "base/log.h"
#include "base/qemu_opts.h"

namespace ferry::vm {
namespace {


std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

std::string fail(std::string_view reason) { return fmt::format("FAIL {}\n", reason); }

// Parses an unsigned argument like qemu_strtou64(.., 0, ..) does; the reason names the
// command, the argument and the text found.
Result<uint64_t> unsigned_arg(const std::vector<std::string_view>& words, size_t index,
                              std::string_view what) {
  if (index >= words.size()) {
    return Error(ErrorCode::kInvalidArgument, "{}: missing argument {}", words[0], what);
  }
  auto n = parse_number(words[index]);
  if (!n.ok()) {
    return Error(ErrorCode::kInvalidArgument, "{}: {} '{}' is not a number", words[0], what,
                 words[index]);
  }
  return *n;
}

Result<int64_t> signed_arg(const std::vector<std::string_view>& words, size_t index,
                           std::string_view what) {
  if (index >= words.size()) {
    return Error(ErrorCode::kInvalidArgument, "{}: missing argument {}", words[0], what);
  }
  std::string_view text = words[index];
  bool negative = !text.empty() && text[0] == '-';
  auto n = parse_number(negative ? text.substr(1) : text);
  uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
  if (!n.ok() || *n > limit) {
    return Error(ErrorCode::kInvalidArgument, "{}: {} '{}' is not a 64-bit integer", words[0], what,
                 text);
  }
  return negative ? static_cast<int64_t>(0 - *n) : static_cast<int64_t>(*n);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return 10 + (c - 'a');
  if (c >= 'A' && c <= 'F') return 10 + (c - 'A');
  return -1;
}

unsigned access_size(char suffix) {
  switch (suffix) {
    case 'b': return 1;
    case 'w': return 2;
    case 'l': return 4;
    case 'q': return 8;
  }
  return 0;
}

uint64_t truncate_to(uint64_t value, unsigned size) {
  return size == 8 ? value : value & ((uint64_t{1} << (8 * size)) - 1);
}

}  // namespace

// --- QtestServer ---

Result<std::unique_ptr<QtestServer>> QtestServer::connect(EventLoop& loop, std::string_view path,
                                                          QtestTarget& target) {
  auto socket_path = unix_socket_path(path);
  if (!socket_path.ok()) return socket_path.take_status();
  auto fd = unix_connect(*socket_path);
  if (!fd.ok()) return fd.take_status();
  return attach(loop, std::move(fd).value(), target);
}

Result<std::unique_ptr<QtestServer>> QtestServer::attach(EventLoop& loop, UniqueFd fd,
                                                         QtestTarget& target) {
  FERRY_RETURN_IF_ERROR(set_nonblocking(fd.get()));
  std::unique_ptr<QtestServer> server(new QtestServer(loop, std::move(fd), target));
  QtestServer* raw = server.get();
  FERRY_RETURN_IF_ERROR(loop.watch_fd(raw->fd_.get(), EventLoop::kReadable,
                                      [raw](uint32_t events) { raw->on_ready(events); }));
  return server;
}

QtestServer::QtestServer(EventLoop& loop, UniqueFd fd, QtestTarget& target)
    : loop_(loop),
      fd_(std::move(fd)),
      target_(target),
      self_(std::make_shared<QtestServer*>(this)) {}

QtestServer::~QtestServer() {
  *self_ = nullptr;
  if (fd_.valid()) loop_.unwatch_fd(fd_.get());
}

void QtestServer::disconnect() {
  if (!fd_.valid()) return;
  loop_.unwatch_fd(fd_.get());
  fd_.reset();
  in_.clear();
  out_.clear();
}

void QtestServer::on_ready(uint32_t events) {
  if (events & EventLoop::kWritable) flush();
  if (!fd_.valid()) return;
  if (!(events & (EventLoop::kReadable | EventLoop::kHangup | EventLoop::kError))) return;

  char buf[64 * 1024];
  bool closed = false;
  while (true) {
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      if (in_.size() > kMaxLine) break;  // process what is there before reading more
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    closed = true;  // EOF or error
    break;
  }

  size_t start = 0;
  while (fd_.valid()) {
    size_t nl = in_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(in_.data() + start, nl - start);
    start = nl + 1;
    if (skipping_long_line_) {
      skipping_long_line_ = false;
      continue;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    send(execute(line));
  }
  if (!fd_.valid()) return;
  in_.erase(0, start);
  if (in_.size() > kMaxLine) {
    if (!skipping_long_line_)
      send(fail(fmt::format("command line longer than {} bytes", kMaxLine)));
    skipping_long_line_ = true;
    in_.clear();
  }
  if (closed) {
    log(LogLevel::kInfo, "qtest: peer closed the connection");
    disconnect();
  }
}

void QtestServer::send(std::string_view text) {
  if (!fd_.valid()) return;
  out_.append(text);
  flush();
}

void QtestServer::flush() {
  while (!out_.empty()) {
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    log(LogLevel::kInfo, "qtest: send failed: {}", std::strerror(errno));
    disconnect();
    return;
  }
  // Watch for writability only while replies wait to be sent.
  uint32_t events = EventLoop::kReadable | (out_.empty() ? 0 : EventLoop::kWritable);
  Status s = loop_.modify_fd(fd_.get(), events);
  if (!s.ok()) log(LogLevel::kError, "qtest: {}", s.to_string());
}

void QtestServer::on_irq(int line, bool level) {
  auto it = irq_levels_.find(line);
  bool previous = it != irq_levels_.end() && it->second;
  irq_levels_[line] = level;
  // Only changes are reported, as QEMU does.
  if (previous == level) return;
  send(fmt::format("IRQ {} {}\n", level ? "raise" : "lower", line));
}

std::string QtestServer::execute(std::string_view line) {
  std::vector<std::string_view> words = split_words(line);
  if (words.empty()) return fail("empty command");
  return handle(words);
}

std::string QtestServer::intercept(const std::vector<std::string_view>& words,
                                   IrqDirection direction) {
  if (words.size() < 2) return fail(fmt::format("{}: missing argument QOM-PATH", words[0]));
  std::string_view path = words[1];
  std::string_view name = words.size() > 2 ? words[2] : "";
  if (!name.empty() && direction == IrqDirection::kIn) {
    return fail("Interception of named in-GPIOs not yet supported");
  }
  if (intercepted_device_) {
    return *intercepted_device_ == path ? "OK\n" : fail("IRQ intercept already enabled");
  }
  std::weak_ptr<QtestServer*> weak = self_;
  Status s = target_.intercept_irqs(path, direction, name, [weak](int n, bool level) {
    if (auto self = weak.lock(); self && *self) (*self)->on_irq(n, level);
  });
  if (!s.ok()) return fail(s.message());
  intercepted_device_ = std::string(path);
  return "OK\n";
}

std::string QtestServer::handle(const std::vector<std::string_view>& words) {
  std::string_view cmd = words[0];
  auto arg = [&](size_t index, std::string_view what) { return unsigned_arg(words, index, what); };

  if (cmd == "irq_intercept_in") return intercept(words, IrqDirection::kIn);
  if (cmd == "irq_intercept_out") return intercept(words, IrqDirection::kOut);

  if (cmd == "readb" || cmd == "readw" || cmd == "readl" || cmd == "readq") {
    auto addr = arg(1, "ADDR");
    if (!addr.ok()) return fail(addr.status().message());
    uint64_t value = target_.read(*addr, access_size(cmd[4]));
    return fmt::format("OK 0x{:016x}\n", value);
  }
  if (cmd == "writeb" || cmd == "writew" || cmd == "writel" || cmd == "writeq") {
    auto addr = arg(1, "ADDR");
    if (!addr.ok()) return fail(addr.status().message());
    auto value = arg(2, "VALUE");
    if (!value.ok()) return fail(value.status().message());
    unsigned size = access_size(cmd[5]);
    target_.write(*addr, size, truncate_to(*value, size));
    return "OK\n";
  }
  if (cmd == "inb" || cmd == "inw" || cmd == "inl") {
    auto port = arg(1, "PORT");
    if (!port.ok()) return fail(port.status().message());
    if (*port > 0xffff) return fail(fmt::format("{}: port '{}' is above 0xffff", cmd, words[1]));
    uint32_t value = target_.port_in(static_cast<uint16_t>(*port), access_size(cmd[2]));
    return fmt::format("OK 0x{:04x}\n", value);
  }
  if (cmd == "outb" || cmd == "outw" || cmd == "outl") {
    auto port = arg(1, "PORT");
    if (!port.ok()) return fail(port.status().message());
    if (*port > 0xffff) return fail(fmt::format("{}: port '{}' is above 0xffff", cmd, words[1]));
    auto value = arg(2, "VALUE");
    if (!value.ok()) return fail(value.status().message());
    unsigned size = access_size(cmd[3]);
    target_.port_out(static_cast<uint16_t>(*port), size,
                     static_cast<uint32_t>(truncate_to(*value, size)));
    return "OK\n";
  }

  if (cmd == "read" || cmd == "b64read" || cmd == "write" || cmd == "b64write" || cmd == "memset") {
    auto addr = arg(1, "ADDR");
    if (!addr.ok()) return fail(addr.status().message());
    auto size = arg(2, "SIZE");
    if (!size.ok()) return fail(size.status().message());
    if (*size > kMaxTransfer) {
      return fail(
          fmt::format("{}: size {} is above the limit of {} bytes", cmd, *size, kMaxTransfer));
    }
    std::vector<uint8_t> data(*size);

    if (cmd == "read" || cmd == "b64read") {
      if (cmd == "read" && *size == 0) return fail("read: SIZE must not be 0");
      target_.read_bytes(*addr, data);
      if (cmd == "b64read") return fmt::format("OK {}\n", base64_encode(data));
      std::string reply = "OK 0x";
      reply.reserve(5 + 2 * data.size() + 1);
      for (uint8_t b : data) fmt::format_to(std::back_inserter(reply), "{:02x}", b);
      reply += '\n';
      return reply;
    }
    if (cmd == "memset") {
      auto pattern = arg(3, "VALUE");
      if (!pattern.ok()) return fail(pattern.status().message());
      if (!data.empty()) {
        std::fill(data.begin(), data.end(), static_cast<uint8_t>(*pattern));
        target_.write_bytes(*addr, data);
      }
      return "OK\n";
    }
    if (words.size() < 4) return fail(fmt::format("{}: missing argument DATA", cmd));
    std::string_view text = words[3];
    // QEMU's reply to data shorter than three characters.
    if (text.size() < 3) return "ERR invalid argument size\n";
    if (cmd == "write") {
      if (text[0] != '0' || (text[1] != 'x' && text[1] != 'X')) {
        return fail(fmt::format("write: DATA must start with 0x, found '{}'", text.substr(0, 16)));
      }
      std::string_view hex = text.substr(2);
      // Bytes beyond the data are zero; data beyond SIZE is ignored.
      for (size_t i = 0; i < data.size() && 2 * i + 1 < hex.size(); ++i) {
        int hi = hex_digit(hex[2 * i]);
        int lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
          return fail(fmt::format("write: DATA has a non-hex digit at byte {}", i));
        }
        data[i] = static_cast<uint8_t>(hi << 4 | lo);
      }
    } else {
      auto decoded = base64_decode(text);
      if (!decoded.ok()) return fail(fmt::format("b64write: {}", decoded.status().message()));
      if (decoded->size() != data.size()) {
        log(LogLevel::kInfo, "qtest: b64write: data length mismatch (told {}, found {})",
            data.size(), decoded->size());
      }
      std::copy_n(decoded->begin(), std::min(decoded->size(), data.size()), data.begin());
    }
    if (!data.empty()) target_.write_bytes(*addr, data);
    return "OK\n";
  }

  if (cmd == "endianness") return "OK little\n";

  if (cmd == "clock_step") {
    int64_t old_ns = target_.clock_ns();
    int64_t step;
    if (words.size() > 1) {
      auto ns = signed_arg(words, 1, "NS");
      if (!ns.ok()) return fail(ns.status().message());
      step = *ns;
    } else {
      std::optional<int64_t> deadline = target_.next_deadline_ns();
      if (!deadline) {
        return fail(
            "cannot advance clock to the next deadline because there is no pending "
            "deadline");
      }
      step = std::max<int64_t>(*deadline - old_ns, 0);
    }
    if (step > 0 && old_ns > std::numeric_limits<int64_t>::max() - step) {
      return fail(fmt::format("clock_step: {} ns from {} overflows the clock", step, old_ns));
    }
    int64_t new_ns = target_.advance_clock(old_ns + step);
    if (new_ns > old_ns) return fmt::format("OK {}\n", new_ns);
    return fail("could not advance time");
  }
  if (cmd == "clock_set") {
    auto ns = signed_arg(words, 1, "NS");
    if (!ns.ok()) return fail(ns.status().message());
    int64_t new_ns = target_.advance_clock(*ns);
    return fmt::format("{} {}\n", new_ns == *ns ? "OK" : "FAIL", new_ns);
  }

  return fmt::format("FAIL Unknown command '{}'\n", cmd);
}

}  // namespace ferry::vm
