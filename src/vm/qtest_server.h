// QEMU's qtest text protocol, VM side. As QEMU does with `-qtest unix:PATH`, the VM
// connects as a client to the test's socket; the test sends one command per line and
// gets one reply line, plus asynchronous `IRQ raise N` / `IRQ lower N` lines for
// intercepted interrupt lines.
//
// Commands and replies (QEMU's formats):
//   readb|readw|readl|readq ADDR       -> OK 0x%016x (value in guest byte order)
//   writeb|writew|writel|writeq ADDR V -> OK
//   read ADDR SIZE                     -> OK 0x<2 hex digits per byte>
//   write ADDR SIZE 0xDATA             -> OK (missing bytes are zero)
//   b64read ADDR SIZE                  -> OK <base64>
//   b64write ADDR SIZE B64DATA         -> OK (missing bytes are zero)
//   memset ADDR SIZE BYTE              -> OK
//   inb|inw|inl PORT                   -> OK 0x%04x
//   outb|outw|outl PORT V              -> OK
//   irq_intercept_in|out PATH [NAME]   -> OK | FAIL Unknown device | ...
//   clock_step [NS]                    -> OK <new clock ns>; without NS, to the next deadline
//   clock_set NS                       -> OK <ns> | FAIL <ns>
//   endianness                         -> OK little
// Where QEMU would abort on a malformed argument, this server replies `FAIL <reason>`
// and keeps serving; unknown commands get QEMU's `FAIL Unknown command 'X'`.
//
// Threading: everything runs on the event loop thread, including IRQ notifications from
// the target (post them with EventLoop::schedule from other threads).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/event_loop.h"
#include "base/status.h"
#include "vm/unix_socket.h"

namespace ferry::vm {

enum class IrqDirection { kIn, kOut };

// What the protocol drives: the machine, or a fake in tests.
class QtestTarget {
 public:
  // Called with (line, level) when an intercepted interrupt line changes.
  using IrqHandler = std::function<void(int line, bool level)>;

  virtual ~QtestTarget() = default;
  // One access of `size` bytes (1, 2, 4 or 8) at a guest physical address; the value is
  // in guest (little-endian) order, as a CPU load would see it.
  virtual uint64_t read(uint64_t addr, unsigned size) = 0;
  virtual void write(uint64_t addr, unsigned size, uint64_t value) = 0;
  // Byte ranges (guest memory or MMIO, byte by byte as the machine decides).
  virtual void read_bytes(uint64_t addr, std::span<uint8_t> out) = 0;
  virtual void write_bytes(uint64_t addr, std::span<const uint8_t> data) = 0;
  // I/O ports, size 1, 2 or 4.
  virtual uint32_t port_in(uint16_t port, unsigned size) = 0;
  virtual void port_out(uint16_t port, unsigned size, uint32_t value) = 0;
  // The virtual clock (moved only through qtest when the machine runs with -accel qtest).
  virtual int64_t clock_ns() = 0;
  // The earliest pending timer deadline (absolute ns), if any.
  virtual std::optional<int64_t> next_deadline_ns() = 0;
  // Moves the clock to `target_ns`, firing the timers passed; returns the new value.
  virtual int64_t advance_clock(int64_t target_ns) = 0;
  // Routes the device's interrupt lines (all of them, or the named out-GPIO group) to
  // `handler`. The error's message is sent after "FAIL "; QEMU's are "Unknown device" and
  // "No intercepts installed".
  virtual Status intercept_irqs(std::string_view device_path, IrqDirection direction,
                                std::string_view gpio_name, IrqHandler handler) = 0;
};

class QtestServer {
 public:
  // Largest `read`/`write`/`memset` size accepted, so a typo cannot exhaust memory.
  static constexpr uint64_t kMaxTransfer = uint64_t{64} << 20;
  // Longest command line accepted (a 64 MiB base64 write is ~90 MB); longer lines are
  // refused with FAIL and skipped.
  static constexpr size_t kMaxLine = size_t{96} << 20;

  // Connects to the test's unix socket: `unix:PATH` (the -qtest argument) or a plain PATH.
  static Result<std::unique_ptr<QtestServer>> connect(EventLoop& loop, std::string_view path,
                                                      QtestTarget& target);
  // Serves an already connected stream socket.
  static Result<std::unique_ptr<QtestServer>> attach(EventLoop& loop, UniqueFd fd,
                                                     QtestTarget& target);
  ~QtestServer();
  QtestServer(const QtestServer&) = delete;
  QtestServer& operator=(const QtestServer&) = delete;

  // Executes one command line (without the newline) and returns the reply line(s),
  // newline-terminated. Used by the socket path; public so the protocol can be tested
  // and driven in-process.
  std::string execute(std::string_view line);

  // False once the peer has closed the connection (or it failed).
  bool connected() const { return fd_.valid(); }

 private:
  QtestServer(EventLoop& loop, UniqueFd fd, QtestTarget& target);
  void on_ready(uint32_t events);
  void send(std::string_view text);
  void flush();
  void disconnect();
  void on_irq(int line, bool level);
  std::string handle(const std::vector<std::string_view>& words);
  std::string intercept(const std::vector<std::string_view>& words, IrqDirection direction);

  EventLoop& loop_;
  UniqueFd fd_;
  QtestTarget& target_;
  std::string in_;
  std::string out_;
  bool skipping_long_line_ = false;
  std::optional<std::string> intercepted_device_;
  std::map<int, bool> irq_levels_;  // last level reported per line
  // Lets IRQ handlers held by the target notice that this server is gone.
  std::shared_ptr<QtestServer*> self_;
};

// Base64 (RFC 4648, with padding), as qtest's b64read/b64write use it.

}  // namespace ferry::vm
