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

Status QtestBus::enable_interrupts(guest::InterruptSource source) {
  if (source_ == source) return {};
  if (source_) {
    return Error(ErrorCode::kFailedPrecondition,
                 "qtest bus: already intercepting {} interrupts; qtest intercepts one device",
                 *source_ == guest::InterruptSource::kMsi ? "MSI" : "INTx");
  }
  const char* device = source == guest::InterruptSource::kMsi ? "msi" : "ioapic";
  auto reply = client_.command(fmt::format("irq_intercept_in {}", device));
  if (!reply.ok()) return reply.take_status();
  if (*reply != "OK") {
    return Error(ErrorCode::kFailedPrecondition, "qtest bus: irq_intercept_in {}: '{}'", device,
                 *reply);
  }
  source_ = source;
  return {};
}

template <typename F>
Status QtestBus::wait_for(F&& done, std::chrono::microseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    auto left = std::chrono::ceil<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto got = client_.wait_irq(left);
    if (!got.ok()) return got.take_status();
  }
  return {};
}

Result<uint32_t> QtestBus::wait_msi(uint32_t data, std::chrono::microseconds timeout) {
  if (source_ != guest::InterruptSource::kMsi) {
    return Error(ErrorCode::kFailedPrecondition,
                 "qtest bus: MSI data 0x{:x}: MSI interception is not enabled", data);
  }
  // Every message is "raise D" then "lower D"; other data values stay for later waits.
  const std::string raise = fmt::format("raise {}", static_cast<int>(data));
  const std::string lower = fmt::format("lower {}", static_cast<int>(data));
  uint32_t taken = 0;
  auto take = [&] {
    auto& lines = client_.irqs();
    for (auto it = lines.begin(); it != lines.end();) {
      if (*it == raise) ++taken;
      it = (*it == raise || *it == lower) ? lines.erase(it) : std::next(it);
    }
    return taken > 0;
  };
  FERRY_RETURN_IF_ERROR(wait_for(take, timeout));
  return taken;
}

void QtestBus::absorb_intx_lines() {
  auto& lines = client_.irqs();
  while (!lines.empty()) {
    const std::string& line = lines.front();
    bool raised = line.rfind("raise ", 0) == 0;
    if (raised || line.rfind("lower ", 0) == 0) {
      try {
        levels_[static_cast<unsigned>(std::stoul(line.substr(6)))] = raised;
      } catch (...) {
        // not a line number: leave the level map alone
      }
    }
    lines.pop_front();
  }
}

Result<bool> QtestBus::wait_intx(unsigned irq, bool level, std::chrono::microseconds timeout) {
  if (source_ != guest::InterruptSource::kIntx) {
    return Error(ErrorCode::kFailedPrecondition,
                 "qtest bus: INTx line {}: INTx interception is not enabled", irq);
  }
  auto level_now = [&] {
    auto it = levels_.find(irq);
    return it != levels_.end() && it->second;
  };
  FERRY_RETURN_IF_ERROR(wait_for(
      [&] {
        absorb_intx_lines();
        return level_now() == level;
      },
      timeout));
  return level_now();
}

}  // namespace ferry::client
