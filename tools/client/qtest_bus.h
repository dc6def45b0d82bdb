// A GuestBus over a qtest connection: the guest driver runs in the test process and every
// access is a qtest command to the VM (ferry-vm or QEMU). Memory blocks move as base64
// (b64read/b64write), the form both servers accept for large transfers.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "client/qtest_client.h"
#include "guest/guest_bus.h"

namespace ferry::client {

class QtestBus : public guest::GuestBus {
 public:
  // `client` must outlive the bus.
  explicit QtestBus(QtestClient& client) : client_(client) {}

  Result<uint64_t> mmio_read(uint64_t addr, unsigned size) override;
  Status mmio_write(uint64_t addr, uint64_t value, unsigned size) override;
  Result<uint32_t> port_in(uint16_t port, unsigned size) override;
  Status port_out(uint16_t port, uint32_t value, unsigned size) override;
  Status memory_read(uint64_t addr, std::span<uint8_t> out) override;
  Status memory_write(uint64_t addr, std::span<const uint8_t> data) override;
  // The VM runs on its own; every qtest round trip already gives it time. Nothing to do.
  Status idle(std::chrono::microseconds max_wait) override;

  // "IRQ raise N" / "IRQ lower N" notifications seen so far (after irq_intercept_in).
  std::deque<std::string>& irqs() { return client_.irqs(); }
  QtestClient& client() { return client_; }

  // Largest block moved by one b64read/b64write command.
  static constexpr size_t kChunk = 1 << 20;

 private:
  QtestClient& client_;
};


}  // namespace ferry::client
