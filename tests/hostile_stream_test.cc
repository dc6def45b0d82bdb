// A destination ferry-vm (-incoming) fed bytes it cannot use, by a client that is not a
// Ferry source: a section name with bytes that are not text, and a second stream's header
// where a record was expected. It must refuse, exit non-zero, and say so in one finished
// sentence on stderr naming the offset and what was expected, with the bytes escaped
// (\xNN) and bounded: never raw control bytes on the operator's terminal.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/ferry_vm.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// The stream header and the configuration record for ferry-vm's machine: 22 bytes.
std::vector<uint8_t> stream_start() {
  std::vector<uint8_t> out;
  put_be32(out, 0x5145564d);  // "QEVM"
  put_be32(out, 3);
  out.push_back(0x07);
  std::string machine = "ferry-1.0";
  put_be32(out, static_cast<uint32_t>(machine.size()));
  out.insert(out.end(), machine.begin(), machine.end());
  return out;
}

// Connects to the destination's unix socket and sends `bytes`, then closes.
void send_to(const std::string& path, const std::vector<uint8_t>& bytes) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the destination may stop reading once it refused
    sent += static_cast<size_t>(n);
  }
  ::close(fd);
}

// Feeds `bytes` to a fresh destination; returns its stderr once it has exited with 1.
std::string refused(const std::vector<uint8_t>& bytes) {
  std::string sock = unique_base("hostile") + ".sock";
  auto dst = FerryVm::start(kFerryVm, {"-m", "64M", "-incoming", "unix:" + sock});
  EXPECT_TRUE(dst);
  if (!dst) return "";
  send_to(sock, bytes);
  std::optional<int> code = dst->process().wait(Millis(30000));
  EXPECT_EQ(code, 1) << dst->process().stderr_text();
  return dst->process().stderr_text();
}

// Nothing but text and newlines: no raw control bytes reach the terminal.
bool printable(const std::string& text) {
  for (char c : text)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f) return false;
  return true;
}

TEST(HostileStream, SectionNameThatIsNotTextIsPrintedEscaped) {
  std::vector<uint8_t> bytes = stream_start();
  bytes.push_back(0x04);  // FULL
  put_be32(bytes, 0);     // section id
  std::string name = std::string("dev\0ice\x1b[2J\xff", 12) + std::string(200, 'x');
  bytes.push_back(static_cast<uint8_t>(name.size()));
  bytes.insert(bytes.end(), name.begin(), name.end());
  put_be32(bytes, 0);  // instance
  put_be32(bytes, 1);  // version
  std::string err = refused(bytes);
  EXPECT_TRUE(printable(err)) << err;
  EXPECT_NE(err.find("Unknown savevm section or instance 'dev\\x00ice\\x1b[2J\\xff"),
            std::string::npos)
      << err;
  // Bounded: 64 bytes shown, then the full length.
  EXPECT_NE(err.find("... (212 bytes)' 0 at offset 22."), std::string::npos) << err;
  EXPECT_EQ(err.find(std::string(100, 'x')), std::string::npos) << err;
}

TEST(HostileStream, SecondStreamWhereARecordWasExpectedIsNamed) {
  std::vector<uint8_t> bytes = stream_start();
  std::vector<uint8_t> second = stream_start();
  bytes.insert(bytes.end(), second.begin(), second.end());
  std::string err = refused(bytes);
  EXPECT_TRUE(printable(err)) << err;
  EXPECT_NE(err.find("unknown record type 0x51 at offset 22, where a section, command or EOF "
                     "record was expected: the bytes there are "
                     "'QEVM\\x00\\x00\\x00\\x03\\x07\\x00\\x00\\x00\\x09ferry-1.0', the start of "
                     "a second migration stream."),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace ferry::testing
