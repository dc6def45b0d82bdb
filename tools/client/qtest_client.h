// A qtest client for tests: the VM connects to our listening socket (as QEMU does with
// -qtest unix:PATH); commands are text lines answered by "OK ..." or "FAIL ...", and
// interrupt notifications ("IRQ raise N") may arrive at any time.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "client/line_socket.h"

namespace ferry::client {

class QtestClient {
 public:
  explicit QtestClient(LineSocket socket) : socket_(std::move(socket)) {}

  // Sends one command line and returns its reply line ("OK ..." or "FAIL ...").
  Result<std::string> command(const std::string& line, Millis timeout = Millis(10000));

  // Convenience wrappers; errors when the reply is not OK.
  Result<uint64_t> read(unsigned bits, uint64_t addr);  // readb/w/l/q
  Status write(unsigned bits, uint64_t addr, uint64_t value);
  Result<uint64_t> in(unsigned bits, uint16_t port);     // inb/w/l
  Status out(unsigned bits, uint16_t port, uint32_t value);
  // The virtual clock of a VM run with `-accel qtest` (QEMU's clock_step / clock_set):
  // advances it by `ns`, or to the next timer deadline when none is given, running the
  // timers that fall due; returns the clock reading after the step (ns).
  Result<int64_t> clock_step(std::optional<int64_t> ns = std::nullopt);
  Result<int64_t> clock_set(int64_t ns);

  // While no command is outstanding, waits up to `timeout` for an asynchronous line: an
  // IRQ line is added to irqs() (true); false when none came. Any other line is an error.
  Result<bool> wait_irq(Millis timeout);

  // IRQ lines received so far ("raise 3", "lower 3"), oldest first.
  std::deque<std::string>& irqs() { return irqs_; }

 private:
  LineSocket socket_;
  std::deque<std::string> irqs_;
};

}  // namespace ferry::client
