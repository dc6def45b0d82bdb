// What a person sees when `ferry demo` runs on a terminal (ctest demo_terminal): the demo
// runs in a detached tmux session of fixed width, and the screen tmux holds afterwards is
// checked line by line. Every result line must read exactly as the demo printed it: no
// remains of the progress bar it drew in place ('\r') before. Off a terminal the demo must
// not redraw at all (no '\r', no terminal escapes in its output).
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "support/run_command.h"

namespace {

constexpr const char* kTmux = "/usr/bin/tmux";
// Narrower than the progress bar, so the bar must be cut to fit instead of wrapping.
constexpr int kColumns = 100;

using ferry::testing::CommandResult;
using ferry::testing::run_command;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A tmux server of its own (-L), without the user's configuration, killed at the end.
class TmuxServer {
 public:
  TmuxServer() : socket_(fmt::format("ferry-demo-terminal-{}", ::getpid())) {}
  ~TmuxServer() { (void)run_command(command("kill-server") + " 2>/dev/null"); }
  std::string command(const std::string& args) const {
    return fmt::format("{} -L '{}' -f /dev/null {}", kTmux, socket_, args);
  }

 private:
  std::string socket_;
};

TEST(DemoTerminal, ResultLinesCarryNoRemainsOfTheProgressBar) {
  if (::access(kTmux, X_OK) != 0)
    GTEST_SKIP() << kTmux << " is not installed (scripts/install-deps.sh installs it)";
  TmuxServer tmux;
  // A script keeps the pane open after the demo and says how the demo exited (a file, so
  // no quoting passes through two shells).
  std::string script = fmt::format("/tmp/ferry-demo-terminal-{}.sh", ::getpid());
  {
    std::ofstream out(script);
    out << fmt::format("'{}' demo --ram 64 --round-trips 1\necho \"demo exited with $?\"\n"
                       "exec sleep 100000\n",
                       FERRY_PATH);
  }
  CommandResult started = run_command(tmux.command(fmt::format(
      "new-session -d -s demo -x {} -y 50 \"sh {}\" 2>&1", kColumns, script)));
  ASSERT_EQ(started.exit_code, 0) << started.out;

  // Poll the screen (and its scrollback) until the demo has ended; the deadline is generous
  // because a busy machine runs the demo slowly.
  std::string screen;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (screen.find("demo exited with ") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the demo did not end:\n" << screen;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CommandResult captured = run_command(tmux.command("capture-pane -p -t demo -S -2000"));
    ASSERT_EQ(captured.exit_code, 0);
    screen = captured.out;
  }
  SCOPED_TRACE("the terminal shows:\n" + screen);
  EXPECT_NE(screen.find("demo exited with 0"), std::string::npos);

  std::vector<std::string> lines = lines_of(screen);
  int completed = 0;
  bool result_ok = false;
  for (const std::string& line : lines) {
    // Nothing of the progress bar is left anywhere once the demo has ended.
    EXPECT_EQ(line.find("expected downtime"), std::string::npos) << line;
    EXPECT_EQ(line.find("MiB/s  dirty"), std::string::npos) << line;
    EXPECT_EQ(line.find("] active"), std::string::npos) << line;
    EXPECT_LE(line.size(), static_cast<size_t>(kColumns)) << line;
    // The line that used to carry the bar's end: exactly what the demo printed.
    if (line.starts_with("    completed: total ")) {
      ++completed;
      EXPECT_TRUE(line.ends_with("ms (source stop -> destination running)")) << line;
    }
    if (line == "result: OK") result_ok = true;
  }
  EXPECT_EQ(completed, 2) << "one round trip: two migrations";
  EXPECT_TRUE(result_ok);
  std::remove(script.c_str());
}

TEST(DemoTerminal, OffATerminalNothingIsRedrawn) {
  CommandResult r = run_command(fmt::format("'{}' demo --ram 64 --round-trips 1", FERRY_PATH));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out.find('\r'), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.ends_with("result: OK\n")) << r.out;
}

}  // namespace
