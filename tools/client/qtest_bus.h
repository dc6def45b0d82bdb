// A GuestBus over a qtest connection: the guest driver runs in the test process and every
// access is a qtest command to the VM (ferry-vm or QEMU). Memory blocks move as base64
// (b64read/b64write), the form both servers accept for large transfers.
//
// Interrupts come from qtest's interception, one source per connection as QEMU allows:
// INTx through `irq_intercept_in ioapic` (lines by interrupt number), MSI-window messages
// through ferry-vm's `irq_intercept_in msi` (each message a raise and lower of its data;
// QEMU has no such device, so there MSI waits are refused). Waiting reads the
// asynchronous `IRQ` lines as they come; the bus consumes the ones it interprets from
// irqs() (messages it hands out, and INTx level changes).
#pragma once

#include <deque>
#include <map>
#include <optional>
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
  Status enable_interrupts(guest::InterruptSource source) override;
  Result<uint32_t> wait_msi(uint32_t data, std::chrono::microseconds timeout) override;
  Result<bool> wait_intx(unsigned irq, bool level, std::chrono::microseconds timeout) override;

  // "IRQ raise N" / "IRQ lower N" notifications seen so far (after irq_intercept_in).
  std::deque<std::string>& irqs() { return client_.irqs(); }
  QtestClient& client() { return client_; }

  // Largest block moved by one b64read/b64write command.
  static constexpr size_t kChunk = 1 << 20;

 private:
  // Reads IRQ lines until `done()` or the timeout.
  template <typename F>
  Status wait_for(F&& done, std::chrono::microseconds timeout);
  // Moves INTx level changes from irqs() into levels_.
  void absorb_intx_lines();

  QtestClient& client_;
  std::optional<guest::InterruptSource> source_;
  std::map<unsigned, bool> levels_;  // INTx lines as last reported
};


}  // namespace ferry::client
