// The verify guest program migrating with its VM (issue: guest programs that migrate):
// migrations that stop it in every phase (bring-up, prefill, run, final pass) with commands
// in flight, ping-pong at varied moments of its I/O loop, a deep queue whose CQ is nearly
// always full, and migrations that die half-way (destination killed during precopy or after
// stop-and-copy began) — after which the source workload goes on and the next migration
// succeeds. Every run ends with the program's own final pass re-reading and checking every
// block it wrote.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "support/ferry_vm.h"
#include "support/temp_image.h"
#include "support/vm_waits.h"

namespace ferry::testing {
namespace {

constexpr const char* kFerryVm = FERRY_VM_PATH;

// The disk both ends of every migration share, as on shared storage.
using SharedDisk = TempImage;

std::vector<std::string> vm_args(const SharedDisk& disk, const std::string& guest,
                                 std::vector<std::string> extra = {}, const char* ram = "128M") {
  std::vector<std::string> args = {
      "-m", ram, "-drive", "if=none,id=d0,file=" + disk.path() + ",format=raw",
      "-device", "nvme,id=n0,serial=MIG0,drive=d0", "-guest", guest};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// What the workload was doing when its VM stopped: the status its vCPU published on parking.
struct StopPoint {
  std::string phase;
  int64_t in_flight = 0;        // I/O commands
  int64_t admin_in_flight = 0;  // bring-up's admin command
  int64_t ops = 0;
};

StopPoint parked_status(FerryVm& vm) {
  Json g = vm.ok("query-guest");
  // (A program that ended before the stop stays "finished".)
  if (g["state"] != "finished") {
    EXPECT_EQ(g["state"], "parked") << g.dump();
  }
  const Json& st = g["status"];
  return {st.value("phase", ""), st.value("in_flight", int64_t{0}),
          st.value("admin_in_flight", int64_t{0}), st.value("ops", int64_t{0})};
}

// The first status a resumed vCPU publishes carries the state it resumed with: on a
// destination, the source's I/O count, never the count from before the load.
void expect_fresh_status_after_resume(FerryVm& dst, int64_t ops_at_stop) {
  for (int i = 0; i < 30000; ++i) {  // 60 s and more
    Json g = dst.ok("query-guest");
    if (g["state"] != "parked") {
      EXPECT_GE(g["status"].value("ops", int64_t{0}), ops_at_stop) << g.dump();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ADD_FAILURE() << "the destination's vCPU did not resume";
}

// Migrates `src` into a fresh destination and returns it, checking the workload is intact;
// `stop` receives what the workload was doing when the source stopped. A paused source
// leaves the destination paused (globalstate) until `cont`.
std::unique_ptr<FerryVm> migrate(FerryVm& src, const SharedDisk& disk, const std::string& guest,
                                 StopPoint* stop = nullptr, std::vector<std::string> extra = {},
                                 const char* ram = "128M") {
  bool was_running = src.ok("query-status")["status"] == "running";
  std::string uri = "unix:" + unique_base("guest-mig") + ".sock";
  extra.insert(extra.end(), {"-incoming", uri});
  auto dst = FerryVm::start(kFerryVm, vm_args(disk, guest, extra, ram));
  if (!dst) return nullptr;
  src.ok("migrate", Json{{"uri", uri}});
  Json result = wait_migration_end(src);
  EXPECT_EQ(result["status"], "completed") << result.dump();
  if (result["status"] != "completed") return nullptr;
  StopPoint at_stop = parked_status(src);
  if (stop) *stop = at_stop;
  if (was_running) {
    EXPECT_TRUE(dst->qmp().wait_event("RESUME", Millis(10000)).ok());
    expect_fresh_status_after_resume(*dst, at_stop.ops);
  } else {
    for (int i = 0; i < 12000 && dst->ok("query-status")["status"] == "inmigrate"; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(dst->ok("query-status")["status"], "paused");
    // query-guest on the paused destination shows the program it loaded.
    StopPoint loaded = parked_status(*dst);
    EXPECT_EQ(loaded.phase, at_stop.phase);
    EXPECT_EQ(loaded.ops, at_stop.ops);
    EXPECT_EQ(loaded.in_flight, at_stop.in_flight);
  }
  Json g = dst->ok("query-guest");
  EXPECT_NE(g["state"], "failed") << g.dump();
  src.ok("quit");
  return dst;
}

TEST(GuestMigration, PingPongAtVariedMomentsOfTheIoLoop) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randrw,bs=4k,iodepth=16,size=16M,loops=100000";
  auto vm = FerryVm::start(kFerryVm, vm_args(disk, guest));
  ASSERT_TRUE(vm);
  std::mt19937 rng(11);
  int caught_in_flight = 0;
  for (int hop = 0; hop < 8; ++hop) {
    wait_ops_beyond(*vm, guest_ops(*vm));
    // Between 0 and 40 ms into a stretch of I/O: submissions, completions and reaping
    // are caught at different points each time.
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
    StopPoint stop;
    auto next = migrate(*vm, disk, guest, &stop);
    ASSERT_TRUE(next) << "hop " << hop;
    EXPECT_EQ(stop.phase, "run") << "hop " << hop;
    caught_in_flight += stop.in_flight > 0;
    vm = std::move(next);
  }
  // iodepth=16 keeps commands in flight nearly all the time: the stops must have caught some
  // (they travel as the controller's pending completions and the program's slots).
  EXPECT_GE(caught_in_flight, 4);
  wait_ops_beyond(*vm, guest_ops(*vm));
  Json end = finish_and_verify(*vm);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_GT(end["status"]["phases"]["final"]["ops"].get<int64_t>(), 0);
  // Every migration shows as a stall the guest measured itself.
  EXPECT_EQ(end["status"]["stalls"].size(), 8u) << end.dump();
}

bool bring_up_phase(const std::string& phase) {
  return phase != "prefill" && phase != "run" && phase != "final" && phase != "finished" &&
         phase != "failed";
}

// Lets a stopped VM run for `delay`, then stops it again.
void run_for(FerryVm& vm, std::chrono::microseconds delay) {
  vm.ok("cont");
  std::this_thread::sleep_for(delay);
  vm.ok("stop");
}

// Lets a stopped VM run for at most one program step: `cont`, `padding` cheap commands and
// `stop` go out in one write. The main loop holds the machine lock while it works through
// them, so the vCPU, if it wakes up in time, gets no device access before the stop lets it
// finish the step it is in. (Nor does the controller work meanwhile: a step that waits for
// it needs run_for.)
void run_one_step(FerryVm& vm, int padding) {
  std::string batch = "{\"execute\":\"cont\"}\n";
  for (int i = 0; i < padding; ++i) batch += "{\"execute\":\"query-status\"}\n";
  batch += "{\"execute\":\"stop\"}\n";
  auto reply = vm.qmp().send_raw(batch);
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  // Commands are handled in order: once this answers, the stop has happened.
  ASSERT_NE(vm.ok("query-status")["status"], "running");
}

// Where a stepping test stopped the program, phase by phase.
struct StopLog {
  std::map<std::string, int> stops;          // per phase
  std::map<std::string, int> stops_with_io;  // ... with a command in flight
  std::string trail;                         // every stop, for failure messages

  void add(const StopPoint& at) {
    ++stops[at.phase];
    if (at.in_flight > 0 || at.admin_in_flight > 0) ++stops_with_io[at.phase];
    trail += at.phase + (at.admin_in_flight ? "(admin)" : "") +
             (at.in_flight ? "(" + std::to_string(at.in_flight) + ")" : "") + " ";
  }
  int bring_up_phases() const {
    int n = 0;
    for (auto& [phase, count] : stops) n += bring_up_phase(phase);
    return n;
  }
  int bring_up_with_io() const {
    int n = 0;
    for (auto& [phase, count] : stops_with_io) n += bring_up_phase(phase) ? count : 0;
    return n;
  }
};

// The program is stopped — and its VM migrated — at varied moments of every phase: the
// controller bring-up (register waits, each admin command in flight), the prefill, the run,
// and the final verification pass after x-guest-finish. Each migration carries whatever the
// program and the controller had in flight at that moment; the destination stays paused
// (the source was) until the next `cont`.
TEST(GuestMigration, MigratesFromEveryPhaseFromBringUpToTheFinalPass) {
  SharedDisk disk(16 << 20);
  // randread writes its whole region first (prefill), then reads it (run), then the final
  // pass re-reads it.
  const std::string guest = "verify,device=n0,rw=randread,bs=4k,iodepth=16,size=4M,loops=100000";
  std::mt19937 rng(23);
  StopLog log;
  std::unique_ptr<FerryVm> vm;
  std::string phase;
  auto stop_and_migrate = [&]() -> bool {
    StopPoint at = parked_status(*vm);
    if (at.phase == "failed" || at.phase == "finished") {
      phase = at.phase;
      return at.phase == "finished";
    }
    log.add(at);
    auto next = migrate(*vm, disk, guest, nullptr, {}, "32M");
    if (!next) return false;
    vm = std::move(next);
    phase = at.phase;
    return true;
  };

  // Bring-up lasts about a millisecond: step by step (run_one_step); when that makes no
  // progress (the vCPU did not wake in time, or the step waits for the controller), runs
  // growing by 50 us. The moments are timing-dependent, so a fresh VM tries again (at most
  // four) until stops caught two bring-up phases and an admin command in flight.
  for (int attempt = 0; attempt < 4 && (log.bring_up_phases() < 2 || log.bring_up_with_io() < 1);
       ++attempt) {
    if (vm) vm->ok("quit");
    vm = FerryVm::start(kFerryVm, vm_args(disk, guest, {"-S"}, "32M"));
    ASSERT_TRUE(vm);
    phase = "probe";
    int64_t admin = 0;
    int stuck = 0;  // stops in a row that found the program where the previous one did
    for (int hop = 0; hop < 30 && bring_up_phase(phase); ++hop) {
      if (stuck < 2) {
        run_one_step(*vm, 50);
      } else {
        run_for(*vm, std::chrono::microseconds(50 * (stuck - 2)));
      }
      StopPoint at = parked_status(*vm);
      stuck = at.phase == phase && at.admin_in_flight == admin ? stuck + 1 : 0;
      admin = at.admin_in_flight;
      ASSERT_TRUE(stop_and_migrate()) << log.trail;
    }
  }
  // The I/O phases: runs of up to 2 ms (the prefill and the final pass last about 10-20 ms
  // each, much longer under sanitizers: once the prefill or the final pass has had three
  // stops, runs grow by 20 ms so the workload moves on); after three stops in the run
  // phase, x-guest-finish ends it (and the runs stay short, to stop in the final pass).
  // A run in which the program did nothing (a busy machine left the vCPU unscheduled) is
  // followed by one twice as long, up to 64 ms more, so the program always gets on.
  bool finish_requested = false;
  int idle_runs = 0;
  for (int hop = 0; hop < 60 && phase != "finished"; ++hop) {
    bool phase_done = phase != "run" && log.stops[phase] >= 3;
    int64_t ops_before = guest_ops(*vm);
    std::string phase_before = phase;
    run_for(*vm, std::chrono::microseconds(rng() % 2000 + (phase_done ? 20000 : 0) +
                                           (idle_runs ? (1000 << std::min(idle_runs, 6)) : 0)));
    ASSERT_TRUE(stop_and_migrate()) << log.trail;
    bool moved = phase != phase_before || (phase != "finished" && guest_ops(*vm) != ops_before);
    idle_runs = moved ? 0 : idle_runs + 1;
    if (phase == "run" && log.stops["run"] >= 3 && !finish_requested) {
      vm->ok("x-guest-finish");  // while stopped: the migrated state carries it
      finish_requested = true;
    }
  }
  SCOPED_TRACE("stops: " + log.trail);
  EXPECT_GE(log.bring_up_phases(), 2);
  EXPECT_GE(log.bring_up_with_io(), 1) << "no stop caught an admin command in flight";
  EXPECT_GE(log.stops["prefill"], 1);
  EXPECT_GE(log.stops["run"], 3);
  EXPECT_GE(log.stops["final"], 1);
  // iodepth=16: stops in the I/O phases catch commands in flight.
  EXPECT_GE(log.stops_with_io["prefill"] + log.stops_with_io["run"] + log.stops_with_io["final"],
            3);
  Json end = phase == "finished" ? vm->ok("query-guest") : (vm->ok("cont"), finish_and_verify(*vm));
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_EQ(end["status"]["phases"]["final"]["ops"], 1024) << end.dump();
}

// x-guest-finish asked of a destination that has not run yet is in the state it migrates
// on: however soon the VM moves again, the request is not lost. (It was kept beside the
// program until the vCPU's next step, and a migration before that step dropped it.)
TEST(GuestMigration, AFinishAskedOfADestinationThatHasNotRunMigratesWithIt) {
  SharedDisk disk(16 << 20);
  const std::string guest = "verify,device=n0,rw=randread,bs=4k,iodepth=16,size=4M,loops=100000";
  auto vm = FerryVm::start(kFerryVm, vm_args(disk, guest, {}, "32M"));
  ASSERT_TRUE(vm);
  auto phase = [](FerryVm& v) { return v.ok("query-guest")["status"].value("phase", ""); };
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
       std::chrono::steady_clock::now() < end && phase(*vm) != "run";)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(phase(*vm), "run");
  vm->ok("stop");
  auto paused = migrate(*vm, disk, guest, nullptr, {}, "32M");
  ASSERT_TRUE(paused);
  ASSERT_EQ(paused->ok("query-status")["status"], "paused");
  paused->ok("x-guest-finish");
  auto onwards = migrate(*paused, disk, guest, nullptr, {}, "32M");  // before any step
  ASSERT_TRUE(onwards);
  onwards->ok("cont");
  Json g;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
       std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(std::chrono::milliseconds(10))) {
    g = onwards->ok("query-guest");
    if (g["state"] != "running" && g["state"] != "parked") break;
  }
  EXPECT_EQ(g["state"], "finished") << g.dump();
  EXPECT_EQ(g["status"]["errors"], 0) << g.dump();
  EXPECT_EQ(g["status"]["phases"]["final"]["ops"], 1024) << g.dump();
}

// Live migrations (the VM running through precopy) that stop the program inside its prefill
// and inside its final pass: every request takes 4 ms more on every host, so each pass over
// the 8,192 blocks lasts about two seconds.
TEST(GuestMigration, LiveMigrationsStopThePrefillAndTheFinalPass) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randread,bs=4k,iodepth=16,size=32M,loops=100000";
  const std::vector<std::string> slow = {"-blkdebug", "drive=d0,op=write,delay-ms=4",
                                         "-blkdebug", "drive=d0,op=read,delay-ms=4"};
  auto vm = FerryVm::start(kFerryVm, vm_args(disk, guest, slow, "64M"));
  ASSERT_TRUE(vm);
  auto wait_phase = [](FerryVm& v, const std::string& want) {
    for (int i = 0; i < 12000; ++i) {
      if (v.ok("query-guest")["status"].value("phase", "") == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  };
  ASSERT_TRUE(wait_phase(*vm, "prefill"));
  wait_ops_beyond(*vm, 100);
  StopPoint stop;
  auto next = migrate(*vm, disk, guest, &stop, slow, "64M");
  ASSERT_TRUE(next);
  vm = std::move(next);
  EXPECT_EQ(stop.phase, "prefill");
  EXPECT_GT(stop.in_flight, 0);
  ASSERT_TRUE(wait_phase(*vm, "run"));
  wait_ops_beyond(*vm, guest_ops(*vm) + 100);
  vm->ok("x-guest-finish");
  ASSERT_TRUE(wait_phase(*vm, "final"));
  wait_ops_beyond(*vm, guest_ops(*vm) + 100);
  next = migrate(*vm, disk, guest, &stop, slow, "64M");
  ASSERT_TRUE(next);
  vm = std::move(next);
  EXPECT_EQ(stop.phase, "final");
  EXPECT_GT(stop.in_flight, 0);
  Json end = finish_and_verify(*vm);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_EQ(end["status"]["phases"]["final"]["ops"], 8192) << end.dump();
  EXPECT_EQ(end["status"]["stalls"].size(), 2u) << end.dump();
}

TEST(GuestMigration, DeepQueueWithTheCompletionQueueNearlyFull) {
  SharedDisk disk(64 << 20);
  // The program's I/O queues have iodepth + 1 entries: the CQ is one entry from full.
  const std::string guest = "verify,device=n0,rw=randwrite,bs=4k,iodepth=255,size=32M,loops=100000";
  auto vm = FerryVm::start(kFerryVm, vm_args(disk, guest));
  ASSERT_TRUE(vm);
  for (int hop = 0; hop < 4; ++hop) {
    wait_ops_beyond(*vm, guest_ops(*vm) + 500);
    auto next = migrate(*vm, disk, guest);
    ASSERT_TRUE(next) << "hop " << hop;
    vm = std::move(next);
  }
  Json end = finish_and_verify(*vm);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
}

TEST(GuestMigration, ADestinationKilledHalfWayLeavesTheSourceWorkloadIntact) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randrw,bs=4k,iodepth=16,size=16M,loops=100000";
  auto src = FerryVm::start(kFerryVm, vm_args(disk, guest));
  ASSERT_TRUE(src);
  wait_ops_beyond(*src, 1000);
  // Slow enough to be caught half-way.
  src->ok("migrate-set-parameters", Json{{"max-bandwidth", 64 * 1024}});
  std::string uri = "unix:" + unique_base("guest-mig") + ".sock";
  {
    auto doomed = FerryVm::start(kFerryVm, vm_args(disk, guest, {"-incoming", uri}));
    ASSERT_TRUE(doomed);
    src->ok("migrate", Json{{"uri", uri}});
    // Some RAM is on its way (at 64 KiB/s the precopy lasts minutes): half-way.
    Json q;
    for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
         std::chrono::steady_clock::now() < end;) {
      q = src->ok("query-migrate");
      if (q["status"] == "active" && q["ram"].value("transferred", int64_t{0}) > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(q["status"], "active") << q.dump();
    ::kill(doomed->process().pid(), SIGKILL);
    Json failed = wait_migration_end(*src);
    EXPECT_EQ(failed["status"], "failed") << failed.dump();
  }
  EXPECT_EQ(src->ok("query-status")["status"], "running");
  int64_t before = guest_ops(*src);
  wait_ops_beyond(*src, before + 500);  // the source workload goes on
  EXPECT_NE(src->ok("query-guest")["state"], "failed");
  src->ok("migrate-set-parameters", Json{{"max-bandwidth", 0}});
  auto dst = migrate(*src, disk, guest);
  ASSERT_TRUE(dst);
  wait_ops_beyond(*dst, guest_ops(*dst));
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_GT(end["status"]["phases"]["final"]["ops"].get<int64_t>(), 0) << end.dump();
}

// The destination dies after the source stopped for stop-and-copy: while the source drains
// the controller, or once it has sent everything and waits on the return path (the
// destination stopped with SIGSTOP, then killed). The source runs again, its workload goes
// on without an error, and the next migration succeeds.
//
// The moment is created, not raced: the source's writes are held at its backend before the
// migration starts, so its stop-time drain must release them and then wait out the rule's
// delay. The MIGRATION "device" event is sent before the stop (one loop, in order), so a
// signal that lands within the delay after that event's timestamp lands before the drain
// ends, before any device state left the source: the destination can never have said
// "loaded", and the source never told it to start. A test stalled longer than the delay (the
// one thing left to the scheduler) did not create the moment: that attempt is not judged
// and is run again. So is one where the destination froze before it had read the stream sent
// before the stop, and the source, its socket full, never got to wait on the return path.
TEST(GuestMigration, ADestinationKilledAfterStopAndCopyBeganLeavesTheSourceRunning) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randrw,bs=4k,iodepth=16,size=16M,loops=100000";
  auto src = FerryVm::start(kFerryVm, vm_args(disk, guest, {}, "64M"));
  ASSERT_TRUE(src);
  wait_ops_beyond(*src, 1000);
  constexpr int64_t kDrainAtLeastMs = 3000;
  int stalls = 0;  // pauses the guest measures: one per migration attempt
  for (bool on_the_return_path : {false, true}) {
    SCOPED_TRACE(on_the_return_path ? "waiting for the return path" : "draining");
    bool judged = false;
    for (int attempt = 0; attempt < 3 && !judged; ++attempt) {
      std::string uri = "unix:" + unique_base("guest-mig") + ".sock";
      auto doomed = FerryVm::start(kFerryVm, vm_args(disk, guest, {"-incoming", uri}, "64M"));
      ASSERT_TRUE(doomed);
      src->ok("x-blkdebug-inject", Json{{"drive", "d0"}, {"op", "write"}, {"hold", true},
                                        {"delay-ms", kDrainAtLeastMs}});
      Json held;
      for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
           std::chrono::steady_clock::now() < end;) {
        held = src->ok("x-blkdebug-query", Json{{"drive", "d0"}});
        if (held.value("held", 0) > 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      ASSERT_GT(held.value("held", 0), 0) << "no write reached the backend: " << held.dump();
      src->ok("migrate", Json{{"uri", uri}});
      ++stalls;
      // This migration's events start at "setup" (the last attempt's "failed" may be queued).
      Json event = Json::object();
      for (bool this_one = false; !this_one || event["data"].value("status", "") != "device";) {
        auto next = src->qmp().wait_event("MIGRATION", Millis(120000));
        ASSERT_TRUE(next.ok()) << next.status().to_string();
        event = *next;
        std::string status = event["data"].value("status", "");
        this_one = this_one || status == "setup";
        ASSERT_FALSE(this_one && status == "failed") << event.dump();
      }
      auto realtime_us = [] {
        timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return int64_t{now.tv_sec} * 1'000'000 + now.tv_nsec / 1000;
      };
      int64_t event_us = event["timestamp"].value("seconds", int64_t{0}) * 1'000'000 +
                         event["timestamp"].value("microseconds", int64_t{0});
      if (on_the_return_path) {
        // A destination frozen with the start of the stream still unread in its socket
        // would leave the source blocked writing, not waiting on the return path: give it
        // a third of the drain to read what the source sent before the stop.
        int64_t wait_us = event_us + kDrainAtLeastMs * 1000 / 3 - realtime_us();
        if (wait_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(wait_us));
      }
      ::kill(doomed->process().pid(), on_the_return_path ? SIGSTOP : SIGKILL);
      judged = realtime_us() - event_us < kDrainAtLeastMs * 1000;
      if (on_the_return_path) {
        // Everything is sent (the device records' transfer time is known) and the source
        // waits for the destination to confirm. A source still writing long after the
        // drain ended found the frozen destination's socket full: the moment was not
        // created, and the attempt is run again.
        Json q;
        auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDrainAtLeastMs) +
                   std::chrono::seconds(15);
        for (; std::chrono::steady_clock::now() < end;
             std::this_thread::sleep_for(std::chrono::milliseconds(1))) {
          q = src->ok("query-migrate");
          if (q["status"] != "device" || q["device-breakdown"].value("transfer-us", 0) > 0) break;
        }
        if (q["status"] == "device" && q["device-breakdown"].value("transfer-us", 0) == 0) {
          std::fprintf(stderr, "attempt %d not judged: the source was still writing to the "
                       "frozen destination: %s\n", attempt, q.dump().c_str());
          judged = false;
        }
        if (judged) {
          ASSERT_EQ(q["status"], "device") << q.dump();
          ASSERT_GT(q["device-breakdown"].value("transfer-us", 0), 0) << q.dump();
        }
        ::kill(doomed->process().pid(), SIGKILL);
      }
      Json failed = wait_migration_end(*src);
      if (judged) {
        EXPECT_EQ(failed["status"], "failed") << failed.dump();
        // The drain that held the source back is what the breakdown reports.
        Json devices = failed["device-breakdown"]["devices"];
        int64_t drain_us = 0;
        for (const Json& d : devices) drain_us = std::max(drain_us, d.value("drain-us", int64_t{0}));
        EXPECT_GE(drain_us, kDrainAtLeastMs * 1000) << failed.dump();
      }
      // (Had the destination said "loaded" before it froze, the source would have told it
      // "go" and, unable to know it never started, stayed paused until `cont`.)
      bool told_to_start = failed.value("error-desc", "").find("stays paused") != std::string::npos;
      if (judged) {
        EXPECT_FALSE(told_to_start) << failed.dump();
      } else if (failed["status"] == "completed") {
        ADD_FAILURE() << "the destination was signalled too late and the migration completed";
        return;
      }
      if (told_to_start) {
        EXPECT_EQ(src->ok("query-status")["status"], "paused");
        src->ok("cont");  // the destination is gone: this copy may run
      }
      EXPECT_EQ(src->ok("query-status")["status"], "running");
      // Removes the rule and lets go the writes held since the VM resumed.
      src->ok("x-blkdebug-clear", Json{{"drive", "d0"}});
      EXPECT_EQ(src->ok("x-blkdebug-query", Json{{"drive", "d0"}}).value("held", -1), 0);
      wait_ops_beyond(*src, guest_ops(*src) + 500);  // the source workload goes on
      Json g = src->ok("query-guest");
      EXPECT_EQ(g["state"], "running") << g.dump();
      EXPECT_EQ(g["status"]["errors"], 0) << g.dump();
    }
    ASSERT_TRUE(judged) << "three times the moment was not created: the test took over "
                        << kDrainAtLeastMs << " ms to signal the destination after the stop "
                        << "began, or the frozen destination left the source writing";
  }
  auto dst = migrate(*src, disk, guest, nullptr, {}, "64M");
  ASSERT_TRUE(dst);
  wait_ops_beyond(*dst, guest_ops(*dst));
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  // The failed attempts and the migration that succeeded are pauses the guest measured.
  EXPECT_EQ(end["status"]["stalls"].size(), static_cast<size_t>(stalls + 1)) << end.dump();
}

}  // namespace
}  // namespace ferry::testing

namespace ferry::testing {
namespace {

// A write error under werror=stop pauses the source in io-error with the failed writes
// held; the paused VM migrates; the destination (whose storage works) stays in io-error
// until `cont`, then retries the held writes: the workload never sees an error and its
// final pass re-reads every block it wrote.
TEST(GuestMigration, AVmPausedOnAWriteErrorMigratesAndContinuesWithoutAnError) {
  SharedDisk disk(64 << 20);
  const std::string guest = "verify,device=n0,rw=randwrite,bs=4k,iodepth=16,size=16M,loops=100000";
  auto with_stop = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = vm_args(disk, guest, std::move(extra));
    for (std::string& a : args)
      if (a.starts_with("if=none,id=d0")) a += ",werror=stop";
    return args;
  };
  auto src = FerryVm::start(kFerryVm, with_stop({"-blkdebug", "drive=d0,op=write,errno=EIO,after=1500"}));
  ASSERT_TRUE(src);
  auto stopped = src->qmp().wait_event("STOP", Millis(20000));
  ASSERT_TRUE(stopped.ok()) << stopped.status().to_string();
  EXPECT_EQ(src->ok("query-status")["status"], "io-error");
  Json paused = src->ok("query-guest");
  EXPECT_NE(paused["state"], "failed") << paused.dump();
  EXPECT_EQ(paused["status"]["errors"], 0) << paused.dump();

  std::string uri = "unix:" + unique_base("guest-mig") + ".sock";
  auto dst = FerryVm::start(kFerryVm, with_stop({"-incoming", uri}));
  ASSERT_TRUE(dst);
  src->ok("migrate", Json{{"uri", uri}});
  Json result = wait_migration_end(*src);
  ASSERT_EQ(result["status"], "completed") << result.dump();
  for (int i = 0; i < 6000 && dst->ok("query-status")["status"] == "inmigrate"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(dst->ok("query-status")["status"], "io-error") << "the destination must not run";
  src->ok("quit");
  int64_t before = guest_ops(*dst);
  dst->ok("cont");
  wait_ops_beyond(*dst, before + 500);
  Json end = finish_and_verify(*dst);
  EXPECT_EQ(end["state"], "finished") << end.dump();
  EXPECT_EQ(end["status"]["errors"], 0) << end.dump();
  EXPECT_GT(end["status"]["phases"]["final"]["ops"].get<int64_t>(), 0) << end.dump();
}

}  // namespace
}  // namespace ferry::testing
