#include "base/event_loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace ferry {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<EventLoop> make_loop() {
  auto loop = EventLoop::create();
  EXPECT_TRUE(loop.ok()) << loop.status().to_string();
  return std::move(loop).value();
}

struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0); }
  ~SocketPair() {
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
  }
};

TEST(EventLoop, ReadableFdRunsItsCallback) {
  auto loop = make_loop();
  SocketPair sp;
  std::string got;
  ASSERT_TRUE(loop->watch_fd(sp.fds[0], EventLoop::kReadable,
                             [&](uint32_t events) {
                               EXPECT_TRUE(events & EventLoop::kReadable);
                               char buf[16];
                               ssize_t n = read(sp.fds[0], buf, sizeof(buf));
                               if (n > 0) got.append(buf, n);
                             })
                  .ok());
  ASSERT_EQ(write(sp.fds[1], "hi", 2), 2);
  ASSERT_TRUE(loop->run_until([&] { return got == "hi"; }, milliseconds(5000)).ok());
}

TEST(EventLoop, WatchingAnFdTwiceIsAnError) {
  auto loop = make_loop();
  SocketPair sp;
  ASSERT_TRUE(loop->watch_fd(sp.fds[0], EventLoop::kReadable, [](uint32_t) {}).ok());
  Status again = loop->watch_fd(sp.fds[0], EventLoop::kReadable, [](uint32_t) {});
  EXPECT_EQ(again.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(again.message().find("already watched"), std::string_view::npos);
}

TEST(EventLoop, ModifyAndUnwatchChangeWhatIsReported) {
  auto loop = make_loop();
  SocketPair sp;
  int writable = 0;
  ASSERT_TRUE(loop->watch_fd(sp.fds[0], 0,
                             [&](uint32_t events) {
                               if (events & EventLoop::kWritable) ++writable;
                             })
                  .ok());
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  EXPECT_EQ(writable, 0);
  ASSERT_TRUE(loop->modify_fd(sp.fds[0], EventLoop::kWritable).ok());
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  EXPECT_EQ(writable, 1);
  loop->unwatch_fd(sp.fds[0]);
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  EXPECT_EQ(writable, 1);
  EXPECT_FALSE(loop->modify_fd(sp.fds[0], EventLoop::kWritable).ok());
}

TEST(EventLoop, CallbackMayUnwatchItself) {
  auto loop = make_loop();
  SocketPair sp;
  int calls = 0;
  ASSERT_TRUE(loop->watch_fd(sp.fds[0], EventLoop::kWritable,
                             [&](uint32_t) {
                               ++calls;
                               loop->unwatch_fd(sp.fds[0]);
                             })
                  .ok());
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  EXPECT_EQ(calls, 1);
}

TEST(EventLoop, EventsOfAnFdUnwatchedByAnEarlierCallbackAreDropped) {
  auto loop = make_loop();
  SocketPair a, b;
  int calls = 0;
  // Both are writable in the same iteration; whichever runs first removes the other.
  ASSERT_TRUE(loop->watch_fd(a.fds[0], EventLoop::kWritable,
                             [&](uint32_t) {
                               ++calls;
                               loop->unwatch_fd(b.fds[0]);
                             })
                  .ok());
  ASSERT_TRUE(loop->watch_fd(b.fds[0], EventLoop::kWritable,
                             [&](uint32_t) {
                               ++calls;
                               loop->unwatch_fd(a.fds[0]);
                             })
                  .ok());
  auto ran = loop->run_once(milliseconds(0));
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(*ran, 1);
}

TEST(EventLoop, HangupIsReported) {
  auto loop = make_loop();
  SocketPair sp;
  uint32_t seen = 0;
  ASSERT_TRUE(
      loop->watch_fd(sp.fds[0], EventLoop::kReadable, [&](uint32_t events) { seen |= events; })
          .ok());
  close(sp.fds[1]);
  sp.fds[1] = -1;
  ASSERT_TRUE(loop->run_until([&] { return seen != 0; }, milliseconds(5000)).ok());
  EXPECT_TRUE(seen & (EventLoop::kHangup | EventLoop::kReadable));
}

TEST(EventLoop, RealClockTimerFiresAfterItsDeadline) {
  auto loop = make_loop();
  MonotonicClock clock;
  int64_t deadline = clock.now_ns() + 2'000'000;
  int64_t fired_at = 0;
  loop->add_timer(clock, deadline, [&] { fired_at = clock.now_ns(); });
  ASSERT_TRUE(loop->run_until([&] { return fired_at != 0; }, milliseconds(5000)).ok());
  EXPECT_GE(fired_at, deadline);
}

TEST(EventLoop, CancelledTimerNeverFires) {
  auto loop = make_loop();
  VirtualClock clock;
  bool fired = false;
  auto id = loop->add_timer(clock, 10, [&] { fired = true; });
  EXPECT_TRUE(loop->cancel_timer(id));
  EXPECT_FALSE(loop->cancel_timer(id));
  loop->advance_clock(clock, 100);
  EXPECT_FALSE(fired);
}

TEST(EventLoop, TimerMayCancelAnotherDueTimer) {
  auto loop = make_loop();
  VirtualClock clock;
  bool second_fired = false;
  EventLoop::TimerId second = 0;
  loop->add_timer(clock, 5, [&] { EXPECT_TRUE(loop->cancel_timer(second)); });
  second = loop->add_timer(clock, 6, [&] { second_fired = true; });
  loop->advance_clock(clock, 10);
  EXPECT_FALSE(second_fired);
  EXPECT_EQ(loop->next_deadline(clock), std::nullopt);
}

TEST(EventLoop, DueTimersRunInRunOnce) {
  auto loop = make_loop();
  VirtualClock clock(100);
  bool fired = false;
  loop->add_timer(clock, 100, [&] { fired = true; });  // already due
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  EXPECT_TRUE(fired);
}

TEST(EventLoop, VirtualClockTimersFireOnlyWhenTheClockIsMoved) {
  auto loop = make_loop();
  VirtualClock clock(1000);
  std::vector<std::pair<int, int64_t>> fired;
  loop->add_timer(clock, 1500, [&] { fired.push_back({2, clock.now_ns()}); });
  loop->add_timer(clock, 1200, [&] { fired.push_back({1, clock.now_ns()}); });
  loop->add_timer(clock, 3000, [&] { fired.push_back({3, clock.now_ns()}); });
  // The loop does not wait for virtual deadlines: a poll returns at once, nothing fires.
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  EXPECT_TRUE(fired.empty());
  EXPECT_EQ(loop->next_deadline(clock), 1200);

  EXPECT_EQ(loop->advance_clock(clock, 2000), 2000);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0], (std::pair<int, int64_t>{1, 1200}));  // each sees its own deadline
  EXPECT_EQ(fired[1], (std::pair<int, int64_t>{2, 1500}));
  EXPECT_EQ(loop->next_deadline(clock), 3000);
  // Never backwards.
  EXPECT_EQ(loop->advance_clock(clock, 10), 2000);
  EXPECT_EQ(fired.size(), 2u);
}

TEST(EventLoop, TimerAddedByATimerFiresInTheSameAdvanceIfDue) {
  auto loop = make_loop();
  VirtualClock clock;
  std::vector<int64_t> fired;
  loop->add_timer(clock, 10, [&] {
    fired.push_back(clock.now_ns());
    loop->add_timer(clock, 20, [&] { fired.push_back(clock.now_ns()); });
  });
  loop->advance_clock(clock, 50);
  EXPECT_EQ(fired, (std::vector<int64_t>{10, 20}));
}

TEST(EventLoop, BottomHalvesRunInOrder) {
  auto loop = make_loop();
  std::vector<int> order;
  loop->schedule([&] { order.push_back(1); });
  loop->schedule([&] {
    order.push_back(2);
    loop->schedule([&] { order.push_back(3); });  // next iteration
  });
  auto ran = loop->run_once(milliseconds(0));
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(*ran, 2);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  ASSERT_TRUE(loop->run_once(milliseconds(0)).ok());
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(EventLoop, OtherThreadsScheduleBottomHalvesSafely) {
  auto loop = make_loop();
  constexpr int kPerThread = 2000;
  int counter = 0;  // touched only on the loop thread
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) loop->schedule([&] { ++counter; });
    });
  }
  ASSERT_TRUE(loop->run_until([&] { return counter == 2 * kPerThread; }, milliseconds(20000)).ok());
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, 2 * kPerThread);
}

TEST(EventLoop, NotifierWakesTheLoopFromAnotherThread) {
  auto loop = make_loop();
  auto notifier = EventNotifier::create();
  ASSERT_TRUE(notifier.ok());
  int wakeups = 0;
  ASSERT_TRUE(loop->watch_notifier(**notifier, [&] { ++wakeups; }).ok());
  std::thread other([&] { (*notifier)->notify(); });
  ASSERT_TRUE(loop->run_until([&] { return wakeups > 0; }, milliseconds(5000)).ok());
  other.join();
  EXPECT_EQ(wakeups, 1);
}

TEST(EventLoop, QuitFromAnotherThreadEndsRun) {
  auto loop = make_loop();
  std::thread other([&] { loop->quit(); });
  // Blocks until quit arrives; a hang here fails the test by ctest's timeout.
  EXPECT_TRUE(loop->run().ok());
  other.join();
}

TEST(EventLoop, RunUntilGivesUpAfterItsLimit) {
  auto loop = make_loop();
  Status s = loop->run_until([] { return false; }, milliseconds(1));
  EXPECT_EQ(s.code(), ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ferry
