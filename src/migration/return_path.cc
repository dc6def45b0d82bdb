#include "migration/return_path.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/byte_order.h"
#include "migration/wire.h"

namespace ferry::migration {

namespace {

constexpr size_t kHeaderBytes = 4;
constexpr size_t kLoadTimeFixedBytes = 8 + 1;  // be64 ns, u8 idstr length
constexpr size_t kMaxIdstrBytes = 255;

// The data length a type always has, or nullopt for the variable ones.
std::optional<size_t> fixed_length(uint16_t type) {
  switch (type) {
    case wire::kRpShut:
    case wire::kRpPong:
      return 4;
    case wire::kRpSwitchoverAck:
    case wire::kRpFerryLoaded:
    case wire::kRpFerryRunning:
    case wire::kRpFerryPaused:
      return 0;
    default:
      return std::nullopt;
  }
}

bool is_known(uint16_t type) {
  return fixed_length(type) || type == wire::kRpFerryLoadTime ||
         type == wire::kRpFerryLoadFailed;
}

std::string type_label(uint16_t type) {
  return fmt::format("{} (0x{:04x})", return_path_message_name(type), type);
}

}  // namespace

ReturnPathMessage ReturnPathMessage::shut(uint32_t status) {
  return {.type = wire::kRpShut, .value = status};
}
ReturnPathMessage ReturnPathMessage::pong(uint32_t value) {
  return {.type = wire::kRpPong, .value = value};
}
ReturnPathMessage ReturnPathMessage::load_time(std::string idstr, int64_t ns) {
  return {.type = wire::kRpFerryLoadTime, .ns = ns, .text = std::move(idstr)};
}
ReturnPathMessage ReturnPathMessage::load_failed(std::string reason) {
  return {.type = wire::kRpFerryLoadFailed, .text = std::move(reason)};
}

std::string_view return_path_message_name(uint16_t type) {
  static constexpr std::string_view kQemu[] = {
      "INVALID",    "SHUT",        "PONG",       "REQ_PAGES_ID",
      "REQ_PAGES",  "RECV_BITMAP", "RESUME_ACK", "SWITCHOVER_ACK"};
  if (type < std::size(kQemu)) return kQemu[type];
  switch (type) {
    case wire::kRpFerryLoadTime: return "FERRY_LOAD_TIME";
    case wire::kRpFerryLoaded: return "FERRY_LOADED";
    case wire::kRpFerryLoadFailed: return "FERRY_LOAD_FAILED";
    case wire::kRpFerryRunning: return "FERRY_RUNNING";
    case wire::kRpFerryPaused: return "FERRY_PAUSED";
    default: return "unknown";
  }
}

std::string command_display_name(uint16_t cmd) {
  if (cmd == wire::kCmdFerryGo) return "FERRY_GO";
  return std::string(wire::command_name(cmd));
}

std::vector<uint8_t> encode_return_path_message(const ReturnPathMessage& m) {
  std::vector<uint8_t> data;
  switch (m.type) {
    case wire::kRpShut:
    case wire::kRpPong:
      data.resize(4);
      store_be<uint32_t>(data.data(), m.value);
      break;
    case wire::kRpFerryLoadTime: {
      size_t n = std::min(m.text.size(), kMaxIdstrBytes);
      data.resize(kLoadTimeFixedBytes + n);
      store_be<uint64_t>(data.data(), static_cast<uint64_t>(m.ns));
      data[8] = static_cast<uint8_t>(n);
      std::copy_n(m.text.begin(), n, data.begin() + kLoadTimeFixedBytes);
      break;
    }
    case wire::kRpFerryLoadFailed: {
      size_t n = std::min<size_t>(m.text.size(), UINT16_MAX);
      data.assign(m.text.begin(), m.text.begin() + static_cast<long>(n));
      break;
    }
    default:
      break;  // no data
  }
  std::vector<uint8_t> out(kHeaderBytes + data.size());
  store_be<uint16_t>(out.data(), m.type);
  store_be<uint16_t>(out.data() + 2, static_cast<uint16_t>(data.size()));
  std::copy(data.begin(), data.end(), out.begin() + kHeaderBytes);
  return out;
}

Result<std::optional<ReturnPathMessage>> decode_return_path_message(
    std::span<const uint8_t> bytes, size_t& used) {
  if (bytes.size() < kHeaderBytes) return std::optional<ReturnPathMessage>();
  const uint16_t type = load_be<uint16_t>(bytes.data());
  const uint16_t len = load_be<uint16_t>(bytes.data() + 2);
  // Refused from the header alone, so a hostile length never makes us wait for its data.
  if (!is_known(type))
    return Error(ErrorCode::kCorrupt,
                 "return path: unknown message type {} of length {}", type_label(type), len);
  if (auto want = fixed_length(type); want && *want != len)
    return Error(ErrorCode::kCorrupt,
                 "return path: message {} has length {}, expected {}", type_label(type), len,
                 *want);
  if (type == wire::kRpFerryLoadTime && len < kLoadTimeFixedBytes)
    return Error(ErrorCode::kCorrupt,
                 "return path: message {} has length {}, expected at least {}",
                 type_label(type), len, kLoadTimeFixedBytes);
  if (bytes.size() < kHeaderBytes + len) return std::optional<ReturnPathMessage>();
  std::span<const uint8_t> data = bytes.subspan(kHeaderBytes, len);
  ReturnPathMessage m{.type = type};
  switch (type) {
    case wire::kRpShut:
    case wire::kRpPong:
      m.value = load_be<uint32_t>(data.data());
      break;
    case wire::kRpFerryLoadTime: {
      uint64_t ns = load_be<uint64_t>(data.data());
      size_t n = data[8];
      if (kLoadTimeFixedBytes + n != len)
        return Error(ErrorCode::kCorrupt,
                     "return path: message {} has length {}, but its idstr length {} makes {}",
                     type_label(type), len, n, kLoadTimeFixedBytes + n);
      if (ns > static_cast<uint64_t>(INT64_MAX))
        return Error(ErrorCode::kCorrupt,
                     "return path: message {} carries load time 0x{:016x}, more than "
                     "INT64_MAX ns", type_label(type), ns);
      m.ns = static_cast<int64_t>(ns);
      m.text.assign(reinterpret_cast<const char*>(data.data()) + kLoadTimeFixedBytes, n);
      break;
    }
    case wire::kRpFerryLoadFailed:
      m.text.assign(reinterpret_cast<const char*>(data.data()), data.size());
      break;
    default:
      break;
  }
  used = kHeaderBytes + len;
  return std::optional<ReturnPathMessage>(std::move(m));
}

Result<ReturnPathMessage> decode_one_return_path_message(std::span<const uint8_t> bytes) {
  size_t used = 0;
  auto decoded = decode_return_path_message(bytes, used);
  if (!decoded.ok()) return decoded.take_status();
  if (!*decoded) {
    if (bytes.size() < kHeaderBytes)
      return Error(ErrorCode::kCorrupt,
                   "return path: truncated message: {} bytes, a header takes {}", bytes.size(),
                   kHeaderBytes);
    const uint16_t type = load_be<uint16_t>(bytes.data());
    return Error(ErrorCode::kCorrupt,
                 "return path: truncated message {}: {} of its {} bytes", type_label(type),
                 bytes.size(), kHeaderBytes + load_be<uint16_t>(bytes.data() + 2));
  }
  if (used != bytes.size())
    return Error(ErrorCode::kCorrupt, "return path: {} bytes follow message {}",
                 bytes.size() - used, type_label((*decoded)->type));
  return std::move(**decoded);
}

std::vector<uint8_t> encode_command(uint16_t cmd, std::span<const uint8_t> data) {
  std::vector<uint8_t> out(5 + data.size());
  out[0] = wire::kCommand;
  store_be<uint16_t>(out.data() + 1, cmd);
  store_be<uint16_t>(out.data() + 3, static_cast<uint16_t>(data.size()));
  std::copy(data.begin(), data.end(), out.begin() + 5);
  return out;
}

std::vector<uint8_t> encode_ping(uint32_t value) {
  uint8_t data[4];
  store_be<uint32_t>(data, value);
  return encode_command(wire::kCmdPing, data);
}

Result<uint32_t> check_return_path_command(uint16_t cmd, std::span<const uint8_t> data,
                                           uint64_t at) {
  size_t want = 0;
  switch (cmd) {
    case wire::kCmdOpenReturnPath:
    case wire::kCmdFerryGo:
      want = 0;
      break;
    case wire::kCmdPing:
      want = 4;
      break;
    default:
      return Error(ErrorCode::kCorrupt, "unsupported command {} ({}) of length {} at offset {}",
                   cmd, command_display_name(cmd), data.size(), at);
  }
  // QEMU's wording, with the offset.
  if (data.size() != want)
    return Error(ErrorCode::kCorrupt,
                 "{} received with bad length - expecting {}, got {} (command at offset {})",
                 command_display_name(cmd), want, data.size(), at);
  return cmd == wire::kCmdPing ? load_be<uint32_t>(data.data()) : 0u;
}

Result<ReturnPathMessage> ReturnPathReader::next() {
  for (;;) {
    size_t used = 0;
    auto decoded = decode_return_path_message(pending_, used);
    if (!decoded.ok()) return decoded.take_status();
    if (*decoded) {
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(used));
      return std::move(**decoded);
    }
    uint8_t buf[512];
    auto n = channel_.read_some(buf);
    if (!n.ok()) return n.take_status().prepend_message("reading the return path");
    if (*n == 0) {
      if (pending_.empty())
        return Error(ErrorCode::kIo, "destination closed the return path before confirming");
      auto truncated = decode_one_return_path_message(pending_);
      return truncated.take_status().prepend_message(
          "destination closed the return path inside a message");
    }
    pending_.insert(pending_.end(), buf, buf + *n);
  }
}

Status send_return_path_message(Channel& channel, const ReturnPathMessage& message) {
  std::vector<uint8_t> bytes = encode_return_path_message(message);
  return channel.write_all(bytes);
}

}  // namespace ferry::migration
