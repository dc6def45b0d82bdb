#include "client/qtest_bus.h"

#include <algorithm>
#include <array>

#include "base/base64.h"

namespace ferry::client {

namespace {
Status check_size(unsigned size) {
  if (size == 1 || size == 2 || size == 4 || size == 8) return {};
  return Error(ErrorCode::kInvalidArgument, "qtest bus: access size {} is not 1, 2, 4 or 8", size);
}
}  // namespace

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
