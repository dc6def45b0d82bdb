#include "client/qtest_client.h"

#include <fmt/format.h>

namespace ferry::client {

namespace {
char width_letter(unsigned bits) {
  switch (bits) {
    case 8: return 'b';
    case 16: return 'w';
    case 32: return 'l';
    default: return 'q';
  }
}

Result<uint64_t> parse_ok_value(const std::string& reply) {
  if (reply.rfind("OK ", 0) != 0) return Error(ErrorCode::kCorrupt, "qtest replied '{}'", reply);
  try {
    return static_cast<uint64_t>(std::stoull(reply.substr(3), nullptr, 0));
  } catch (...) {
    return Error(ErrorCode::kCorrupt, "qtest reply '{}' has no number", reply);
  }
}
}  // namespace

Result<std::string> QtestClient::command(const std::string& line, Millis timeout) {
  FERRY_RETURN_IF_ERROR(socket_.send(line + "\n"));
  for (;;) {
    auto reply = socket_.read_line(timeout);
    if (!reply.ok()) return reply;
    if (reply->rfind("IRQ ", 0) == 0) {
      irqs_.push_back(reply->substr(4));
      continue;
    }
    return reply;
  }
}

Result<bool> QtestClient::wait_irq(Millis timeout) {
  auto line = socket_.try_read_line(timeout);
  if (!line.ok()) return line.take_status();
  if (!*line) return false;
  if ((*line)->rfind("IRQ ", 0) != 0)
    return Error(ErrorCode::kCorrupt, "qtest: unexpected line '{}' with no command outstanding",
                 **line);
  irqs_.push_back((*line)->substr(4));
  return true;
}

Result<uint64_t> QtestClient::read(unsigned bits, uint64_t addr) {
  auto reply = command(fmt::format("read{} 0x{:x}", width_letter(bits), addr));
  if (!reply.ok()) return reply.take_status();
  return parse_ok_value(*reply);
}

Status QtestClient::write(unsigned bits, uint64_t addr, uint64_t value) {
  auto reply = command(fmt::format("write{} 0x{:x} 0x{:x}", width_letter(bits), addr, value));
  if (!reply.ok()) return reply.take_status();
  if (*reply != "OK") return Error(ErrorCode::kCorrupt, "qtest replied '{}'", *reply);
  return {};
}

Result<uint64_t> QtestClient::in(unsigned bits, uint16_t port) {
  auto reply = command(fmt::format("in{} 0x{:x}", width_letter(bits), port));
  if (!reply.ok()) return reply.take_status();
  return parse_ok_value(*reply);
}

Status QtestClient::out(unsigned bits, uint16_t port, uint32_t value) {
  auto reply = command(fmt::format("out{} 0x{:x} 0x{:x}", width_letter(bits), port, value));
  if (!reply.ok()) return reply.take_status();
  if (*reply != "OK") return Error(ErrorCode::kCorrupt, "qtest replied '{}'", *reply);
  return {};
}

Result<int64_t> QtestClient::clock_step(std::optional<int64_t> ns) {
  auto reply = command(ns ? fmt::format("clock_step {}", *ns) : std::string("clock_step"));
  if (!reply.ok()) return reply.take_status();
  auto value = parse_ok_value(*reply);
  if (!value.ok()) return value.take_status();
  return static_cast<int64_t>(*value);
}

Result<int64_t> QtestClient::clock_set(int64_t ns) {
  auto reply = command(fmt::format("clock_set {}", ns));
  if (!reply.ok()) return reply.take_status();
  auto value = parse_ok_value(*reply);
  if (!value.ok()) return value.take_status();
  return static_cast<int64_t>(*value);
}

}  // namespace ferry::client
