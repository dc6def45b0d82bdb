#include "client/qtest_bus.h"

#include <algorithm>
#include <array>

namespace ferry::client {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int decode_char(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

Status check_size(unsigned size) {
  if (size == 1 || size == 2 || size == 4 || size == 8) return {};
  return Error(ErrorCode::kInvalidArgument, "qtest bus: access size {} is not 1, 2, 4 or 8", size);
}
}  // namespace

std::string base64_encode(std::span<const uint8_t> data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = uint32_t{data[i]} << 16 | uint32_t{data[i + 1]} << 8 | data[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{data[i]} << 16 | (rest == 2 ? uint32_t{data[i + 1]} << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::vector<uint8_t>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return Error(ErrorCode::kCorrupt, "base64: length {} is not a multiple of 4", text.size());
  }
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    std::array<int, 4> v{};
    int padding = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      bool last_group = i + 4 == text.size();
      if (c == '=' && last_group && k >= 2 && (k == 3 || text[i + 3] == '=')) {
        v[k] = 0;
        ++padding;
        continue;
      }
      v[k] = decode_char(c);
      if (v[k] < 0 || padding > 0) {
        return Error(ErrorCode::kCorrupt, "base64: bad character '{}' at offset {}", c, i + k);
      }
    }
    uint32_t bits = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | uint32_t(v[2]) << 6 | v[3];
    out.push_back(static_cast<uint8_t>(bits >> 16));
    if (padding < 2) out.push_back(static_cast<uint8_t>(bits >> 8));
    if (padding < 1) out.push_back(static_cast<uint8_t>(bits));
  }
  return out;
}

Result<uint64_t> QtestBus::mmio_read(uint64_t addr, unsigned size) {
  FERRY_RETURN_IF_ERROR(check_size(size));
  return client_.read(8 * size, addr);
}

Status QtestBus::mmio_write(uint64_t addr, uint64_t value, unsigned size) {
  FERRY_RETURN_IF_ERROR(check_size(size));
  return client_.write(8 * size, addr, value);
}

Result<uint32_t> QtestBus::port_in(uint16_t port, unsigned size) {
  if (size != 1 && size != 2 && size != 4) {
    return Error(ErrorCode::kInvalidArgument, "qtest bus: port access size {} is not 1, 2 or 4",
                 size);
  }
  auto v = client_.in(8 * size, port);
  if (!v.ok()) return v.take_status();
  return static_cast<uint32_t>(*v);
}

Status QtestBus::port_out(uint16_t port, uint32_t value, unsigned size) {
  if (size != 1 && size != 2 && size != 4) {
    return Error(ErrorCode::kInvalidArgument, "qtest bus: port access size {} is not 1, 2 or 4",
                 size);
  }
  return client_.out(8 * size, port, value);
}

Status QtestBus::memory_read(uint64_t addr, std::span<uint8_t> out) {
  for (size_t done = 0; done < out.size();) {
    size_t chunk = std::min(out.size() - done, kChunk);
    auto reply = client_.command(fmt::format("b64read 0x{:x} {}", addr + done, chunk));
    if (!reply.ok()) return reply.take_status();
    if (reply->rfind("OK ", 0) != 0) {
      return Error(ErrorCode::kIo, "qtest bus: b64read of {} bytes at 0x{:x}: '{}'", chunk,
                   addr + done, reply->substr(0, 80));
    }
    auto bytes = base64_decode(std::string_view(*reply).substr(3));
    if (!bytes.ok()) return bytes.take_status().prepend_message("qtest bus: b64read reply: ");
    if (bytes->size() != chunk) {
      return Error(ErrorCode::kCorrupt, "qtest bus: b64read of {} bytes at 0x{:x} returned {}",
                   chunk, addr + done, bytes->size());
    }
    std::copy(bytes->begin(), bytes->end(), out.begin() + done);
    done += chunk;
  }
  return {};
}

Status QtestBus::memory_write(uint64_t addr, std::span<const uint8_t> data) {
  for (size_t done = 0; done < data.size();) {
    size_t chunk = std::min(data.size() - done, kChunk);
    auto reply = client_.command(fmt::format("b64write 0x{:x} {} {}", addr + done, chunk,
                                             base64_encode(data.subspan(done, chunk))));
    if (!reply.ok()) return reply.take_status();
    if (*reply != "OK") {
      return Error(ErrorCode::kIo, "qtest bus: b64write of {} bytes at 0x{:x}: '{}'", chunk,
                   addr + done, reply->substr(0, 80));
    }
    done += chunk;
  }
  return {};
}

Status QtestBus::idle(std::chrono::microseconds) { return {}; }

}  // namespace ferry::client
