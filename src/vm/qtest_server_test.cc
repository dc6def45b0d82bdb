#include "vm/qtest_server.h"

#include "vm/machine.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <thread>

namespace ferry::vm {
namespace {

using std::chrono::milliseconds;

// Memory is a sparse byte map (little-endian sized accesses), ports echo a register file,
// and the clock is a VirtualClock driven through a real EventLoop.
class FakeTarget : public QtestTarget {
 public:
  explicit FakeTarget(EventLoop& loop) : loop_(loop) {}

  uint64_t read(uint64_t addr, unsigned size) override {
    sized_accesses.push_back({addr, size});
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) v |= uint64_t{byte(addr + i)} << (8 * i);
    return v;
  }
  void write(uint64_t addr, unsigned size, uint64_t value) override {
    sized_accesses.push_back({addr, size});
    for (unsigned i = 0; i < size; ++i) memory[addr + i] = static_cast<uint8_t>(value >> (8 * i));
  }
  void read_bytes(uint64_t addr, std::span<uint8_t> out) override {
    for (size_t i = 0; i < out.size(); ++i) out[i] = byte(addr + i);
  }
  void write_bytes(uint64_t addr, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) memory[addr + i] = data[i];
  }
  uint32_t port_in(uint16_t port, unsigned size) override {
    last_port_size = size;
    return ports[port];
  }
  void port_out(uint16_t port, unsigned size, uint32_t value) override {
    last_port_size = size;
    ports[port] = value;
  }
  int64_t clock_ns() override { return clock.now_ns(); }
  std::optional<int64_t> next_deadline_ns() override { return loop_.next_deadline(clock); }
  int64_t advance_clock(int64_t target_ns) override {
    return loop_.advance_clock(clock, target_ns);
  }
  Status intercept_irqs(std::string_view path, IrqDirection direction, std::string_view name,
                        IrqHandler handler) override {
    if (path != "/machine/nvme") return Error(ErrorCode::kInvalidArgument, "Unknown device");
    intercepted_direction = direction;
    intercepted_name = std::string(name);
    irq = std::move(handler);
    return Status::Ok();
  }

  uint8_t byte(uint64_t addr) const {
    auto it = memory.find(addr);
    return it == memory.end() ? 0 : it->second;
  }

  EventLoop& loop_;
  std::map<uint64_t, uint8_t> memory;
  std::map<uint16_t, uint32_t> ports;
  std::vector<std::pair<uint64_t, unsigned>> sized_accesses;
  unsigned last_port_size = 0;
  VirtualClock clock;
  IrqHandler irq;
  std::optional<IrqDirection> intercepted_direction;
  std::string intercepted_name;
};

class QtestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = EventLoop::create();
    ASSERT_TRUE(l.ok());
    loop = std::move(l).value();
    target = std::make_unique<FakeTarget>(*loop);
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    test_end = UniqueFd(fds[0]);
    ASSERT_TRUE(set_nonblocking(test_end.get()).ok());
    auto s = QtestServer::attach(*loop, UniqueFd(fds[1]), *target);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server = std::move(s).value();
  }

  void send_text(std::string_view text) {
    ASSERT_EQ(::write(test_end.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }

  void drain() {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(test_end.get(), buf, sizeof(buf))) > 0) received.append(buf, n);
  }

  // Runs the loop until a whole line arrived; returns it without the newline.
  std::string next_line() {
    Status s = loop->run_until(
        [&] {
          drain();
          return received.find('\n') != std::string::npos;
        },
        milliseconds(5000));
    EXPECT_TRUE(s.ok()) << s.to_string() << " (received so far: '" << received << "')";
    size_t nl = received.find('\n');
    if (nl == std::string::npos) return "<no reply>";
    std::string line = received.substr(0, nl);
    received.erase(0, nl + 1);
    return line;
  }

  std::string command(std::string_view line) {
    send_text(std::string(line) + "\n");
    return next_line();
  }

  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<FakeTarget> target;
  std::unique_ptr<QtestServer> server;
  UniqueFd test_end;
  std::string received;
};

TEST_F(QtestServerTest, SizedReadsAndWritesUseQemusReplyFormat) {
  EXPECT_EQ(command("writel 0x1000 0x12345678"), "OK");
  EXPECT_EQ(command("readl 0x1000"), "OK 0x0000000012345678");
  EXPECT_EQ(command("readb 0x1000"), "OK 0x0000000000000078");
  EXPECT_EQ(command("readw 0x1002"), "OK 0x0000000000001234");
  EXPECT_EQ(command("writeq 0x2000 0x1122334455667788"), "OK");
  EXPECT_EQ(command("readq 0x2000"), "OK 0x1122334455667788");
  EXPECT_EQ(target->byte(0x2000), 0x88);  // little-endian guest
  // Values wider than the access are truncated, as in QEMU.
  EXPECT_EQ(command("writeb 0x3000 0x1ff"), "OK");
  EXPECT_EQ(command("readb 0x3000"), "OK 0x00000000000000ff");
  EXPECT_EQ(command("writew 4096 65535"), "OK");  // decimal works too
  // Sized accesses reach the target as one access of that size.
  EXPECT_EQ(target->sized_accesses.back(), (std::pair<uint64_t, unsigned>{4096, 2}));
}

TEST_F(QtestServerTest, ByteRanges) {
  EXPECT_EQ(command("write 0x100 4 0xdeadbeef"), "OK");
  EXPECT_EQ(command("read 0x100 4"), "OK 0xdeadbeef");
  EXPECT_EQ(command("read 0x100 6"), "OK 0xdeadbeef0000");
  // Short data: the rest is zero. Extra data is ignored.
  EXPECT_EQ(command("write 0x200 3 0xAB"), "OK");
  EXPECT_EQ(command("read 0x200 3"), "OK 0xab0000");
  EXPECT_EQ(command("write 0x300 1 0x0102"), "OK");
  EXPECT_EQ(command("read 0x300 2"), "OK 0x0100");
  EXPECT_EQ(command("memset 0x400 3 0x5a"), "OK");
  EXPECT_EQ(command("read 0x400 4"), "OK 0x5a5a5a00");
  EXPECT_EQ(command("memset 0x400 0 0x11"), "OK");
  EXPECT_EQ(command("b64write 0x500 5 aGVsbG8="), "OK");
  EXPECT_EQ(command("read 0x500 5"), "OK 0x68656c6c6f");
  EXPECT_EQ(command("b64read 0x500 5"), "OK aGVsbG8=");
  EXPECT_EQ(command("b64read 0x500 0"), "OK ");
}

TEST_F(QtestServerTest, Ports) {
  EXPECT_EQ(command("outl 0xcf8 0x80001000"), "OK");
  EXPECT_EQ(target->ports[0xcf8], 0x80001000u);
  EXPECT_EQ(target->last_port_size, 4u);
  EXPECT_EQ(command("inl 0xcf8"), "OK 0x80001000");
  EXPECT_EQ(command("outb 0x80 0x7"), "OK");
  EXPECT_EQ(command("inb 0x80"), "OK 0x0007");
  EXPECT_EQ(target->last_port_size, 1u);
  EXPECT_EQ(command("outw 0x10000 1"), "FAIL outw: port '0x10000' is above 0xffff");
}

TEST_F(QtestServerTest, ClockStepAndSet) {
  EXPECT_EQ(command("clock_step"),
            "FAIL cannot advance clock to the next deadline because there is no pending "
            "deadline");
  EXPECT_EQ(command("clock_step 100"), "OK 100");
  std::vector<int64_t> fired;
  loop->add_timer(target->clock, 250, [&] { fired.push_back(target->clock.now_ns()); });
  loop->add_timer(target->clock, 900, [&] { fired.push_back(target->clock.now_ns()); });
  EXPECT_EQ(command("clock_step"), "OK 250");  // to the next deadline
  EXPECT_EQ(fired, (std::vector<int64_t>{250}));
  EXPECT_EQ(command("clock_set 1000"), "OK 1000");
  EXPECT_EQ(fired, (std::vector<int64_t>{250, 900}));
  EXPECT_EQ(command("clock_set 500"), "FAIL 1000");  // never backwards
  EXPECT_EQ(command("clock_step 0"), "FAIL could not advance time");
  EXPECT_EQ(command("clock_step -5"), "FAIL could not advance time");
}

TEST_F(QtestServerTest, IrqInterceptionReportsChangesAsynchronously) {
  EXPECT_EQ(command("irq_intercept_in /machine/none"), "FAIL Unknown device");
  EXPECT_EQ(command("irq_intercept_in /machine/nvme named"),
            "FAIL Interception of named in-GPIOs not yet supported");
  EXPECT_EQ(command("irq_intercept_out /machine/nvme"), "OK");
  EXPECT_EQ(target->intercepted_direction, IrqDirection::kOut);
  EXPECT_EQ(command("irq_intercept_out /machine/nvme"), "OK");  // same device again
  EXPECT_EQ(command("irq_intercept_in /machine/other"), "FAIL IRQ intercept already enabled");

  ASSERT_TRUE(target->irq);
  target->irq(3, true);
  EXPECT_EQ(next_line(), "IRQ raise 3");
  target->irq(3, true);  // no change: nothing sent
  target->irq(3, false);
  EXPECT_EQ(next_line(), "IRQ lower 3");
  // A timer raising an interrupt during clock_step: the IRQ line precedes the reply.
  loop->add_timer(target->clock, 10, [&] { target->irq(0, true); });
  send_text("clock_step 20\n");
  EXPECT_EQ(next_line(), "IRQ raise 0");
  EXPECT_EQ(next_line(), "OK 20");
}

TEST_F(QtestServerTest, IrqHandlerOutlivingTheServerIsHarmless) {
  EXPECT_EQ(command("irq_intercept_in /machine/nvme"), "OK");
  server.reset();
  target->irq(1, true);  // must not touch the destroyed server
}

TEST_F(QtestServerTest, MalformedLinesFailAndTheServerKeepsGoing) {
  EXPECT_EQ(command("frobnicate 1 2"), "FAIL Unknown command 'frobnicate'");
  EXPECT_EQ(command(""), "FAIL empty command");
  EXPECT_EQ(command("readl"), "FAIL readl: missing argument ADDR");
  EXPECT_EQ(command("readl zz"), "FAIL readl: ADDR 'zz' is not a number");
  EXPECT_EQ(command("writel 0x10"), "FAIL writel: missing argument VALUE");
  EXPECT_EQ(command("read 0x10 0"), "FAIL read: SIZE must not be 0");
  EXPECT_EQ(command("read 0x10 0x100000000"),
            "FAIL read: size 4294967296 is above the limit of 67108864 bytes");
  EXPECT_EQ(command("write 0x10 2 0x"), "ERR invalid argument size");
  EXPECT_EQ(command("write 0x10 2 0xzz11"), "FAIL write: DATA has a non-hex digit at byte 0");
  EXPECT_EQ(command("write 0x10 2 1234"), "FAIL write: DATA must start with 0x, found '1234'");
  EXPECT_EQ(command("b64write 0x10 2 !!!!"),
            "FAIL b64write: invalid base64 character '!' at offset 0");
  EXPECT_EQ(command("memset 0x10 4"), "FAIL memset: missing argument VALUE");
  EXPECT_EQ(command("clock_set"), "FAIL clock_set: missing argument NS");
  EXPECT_EQ(command("clock_step x"), "FAIL clock_step: NS 'x' is not a 64-bit integer");
  EXPECT_EQ(command("irq_intercept_in"), "FAIL irq_intercept_in: missing argument QOM-PATH");
  // Still serving.
  EXPECT_EQ(command("endianness"), "OK little");
}

TEST_F(QtestServerTest, LinesSplitAcrossWritesAndSeveralPerWrite) {
  send_text("writeb 0x10 0x");
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  send_text("42\r\nreadb 0x10\nreadb 0x11\n");
  EXPECT_EQ(next_line(), "OK");
  EXPECT_EQ(next_line(), "OK 0x0000000000000042");
  EXPECT_EQ(next_line(), "OK 0x0000000000000000");
}

TEST_F(QtestServerTest, PeerCloseDisconnects) {
  send_text("readb 0x10");  // half a line, then gone
  test_end.reset();
  ASSERT_TRUE(loop->run_until([&] { return !server->connected(); }, milliseconds(5000)).ok());
}

TEST(QtestConnect, ConnectsAsClientToTheTestsSocket) {
  auto l = EventLoop::create();
  ASSERT_TRUE(l.ok());
  auto& loop = **l;
  FakeTarget target(loop);
  std::string path = "/tmp/ferry_qtest_" + std::to_string(getpid()) + ".sock";
  auto listener = unix_listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();

  auto server = QtestServer::connect(loop, "unix:" + path, target);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  int accepted = -1;
  ASSERT_TRUE(
      loop.run_until([&] { return (accepted = accept(listener->get(), nullptr, nullptr)) >= 0; },
                     milliseconds(5000))
          .ok());
  UniqueFd test_end(accepted);
  std::string line = "writel 0x40 7\nreadl 0x40\n";
  ASSERT_EQ(::write(test_end.get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
  ASSERT_TRUE(set_nonblocking(test_end.get()).ok());
  std::string got;
  ASSERT_TRUE(loop.run_until(
                      [&] {
                        char buf[256];
                        ssize_t n;
                        while ((n = ::read(test_end.get(), buf, sizeof(buf))) > 0)
                          got.append(buf, n);
                        return got.size() >= 3 + 22;
                      },
                      milliseconds(5000))
                  .ok());
  EXPECT_EQ(got, "OK\nOK 0x0000000000000007\n");
  unlink(path.c_str());

  auto missing = QtestServer::connect(loop, "unix:/nonexistent/dir/q.sock", target);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/q.sock"), std::string_view::npos);
  auto tcp = QtestServer::connect(loop, "tcp:localhost:1", target);
  ASSERT_FALSE(tcp.ok());
}

// The protocol over a real machine (16 MiB of RAM, nothing else): accesses at the very top
// of the address space once crashed it (a range ending at 2^64 looked mapped). QEMU's
// replies: unassigned memory reads as zero, writes there are ignored with OK.
class QtestOnMachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = EventLoop::create();
    ASSERT_TRUE(l.ok());
    loop = std::move(l).value();
    MachineConfig config;
    config.ram_size = 16 << 20;
    auto m = Machine::create(*loop, std::move(config));
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    machine = std::move(m).value();
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    peer = UniqueFd(fds[0]);
    auto s = QtestServer::attach(*loop, UniqueFd(fds[1]), *machine);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server = std::move(s).value();
  }
  void TearDown() override {
    server.reset();  // holds the machine as its target
    machine.reset();
  }
  std::string run(std::string_view line) { return server->execute(line); }

  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<Machine> machine;
  UniqueFd peer;
  std::unique_ptr<QtestServer> server;
};

TEST_F(QtestOnMachineTest, TopOfTheAddressSpaceReadsZeroAndIgnoresWrites) {
  EXPECT_EQ(run("readb 0xffffffffffffffff"), "OK 0x0000000000000000\n");
  EXPECT_EQ(run("readw 0xfffffffffffffffe"), "OK 0x0000000000000000\n");
  EXPECT_EQ(run("readl 0xfffffffffffffffc"), "OK 0x0000000000000000\n");
  EXPECT_EQ(run("readq 0xfffffffffffffff8"), "OK 0x0000000000000000\n");
  EXPECT_EQ(run("readq 0xfffffffffffffffd"), "OK 0x0000000000000000\n");  // passes 2^64
  EXPECT_EQ(run("read 0xffffffffffffffff 1"), "OK 0x00\n");
  EXPECT_EQ(run("read 0xfffffffffffffffe 4"), "OK 0x00000000\n");
  EXPECT_EQ(run("b64read 0xffffffffffffffff 1"), "OK AA==\n");
  EXPECT_EQ(run("writeb 0xffffffffffffffff 0x5a"), "OK\n");
  EXPECT_EQ(run("writeq 0xfffffffffffffffc 0x5a5a5a5a5a5a5a5a"), "OK\n");
  EXPECT_EQ(run("write 0xffffffffffffffff 1 0x5a"), "OK\n");
  EXPECT_EQ(run("write 0xfffffffffffffffe 4 0x5a5a5a5a"), "OK\n");
  EXPECT_EQ(run("b64write 0xffffffffffffffff 1 Wg=="), "OK\n");
  EXPECT_EQ(run("memset 0xffffffffffffffff 1 0x5a"), "OK\n");
  EXPECT_EQ(run("memset 0xfffffffffffff000 4096 0x5a"), "OK\n");
  EXPECT_EQ(run("memset 0xffffffffffffff00 4096 0x5a"), "OK\n");
  // Nothing wrapped around into RAM at 0 (QEMU would continue at address 0 there).
  EXPECT_EQ(run("readq 0x0"), "OK 0x0000000000000000\n");
  EXPECT_EQ(machine->main_ram().dirty().count(), 0u);
}

TEST_F(QtestOnMachineTest, RangesPartlyInRamTransferTheirRamPart) {
  const uint64_t end = 16 << 20;
  EXPECT_EQ(run(fmt::format("write 0x{:x} 4 0xa1a2a3a4", end - 2)), "OK\n");
  EXPECT_EQ(run(fmt::format("read 0x{:x} 4", end - 2)), "OK 0xa1a20000\n");
  EXPECT_EQ(run(fmt::format("readl 0x{:x}", end - 2)), "OK 0x000000000000a2a1\n")
      << "a sized access partly in RAM reads its RAM bytes";
  EXPECT_EQ(run(fmt::format("writel 0x{:x} 0xb1b2b3b4", end - 2)), "OK\n");
  EXPECT_EQ(run(fmt::format("read 0x{:x} 2", end - 2)), "OK 0xb4b3\n");
  EXPECT_EQ(run(fmt::format("memset 0x{:x} 0x100 0x77", end - 0x80)), "OK\n");
  EXPECT_EQ(run(fmt::format("readb 0x{:x}", end - 1)), "OK 0x0000000000000077\n");
  // The MSI window reads as nothing; a write there is an interrupt, not memory.
  EXPECT_EQ(run("readl 0xfee00000"), "OK 0x0000000000000000\n");
  EXPECT_EQ(run("writel 0xfee00000 0x41"), "OK\n");
  EXPECT_EQ(machine->cpu_interrupts().take_msi(0x41), 1u);
}

}  // namespace
}  // namespace ferry::vm
