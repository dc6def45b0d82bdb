// nvme_downtime_bench: the NVMe controller's share of stop-and-copy downtime (design.md §8:
// < 1 ms with 64 I/O queue pairs and 1,000+ completions pending; the backend drain is
// reported apart).
//
// In process: a Machine with `-device nvme` and the guest driver over vm::InProcessBus
// creates 64 I/O queue pairs of 1,024 entries by hand, fills every CQ without consuming it
// and then submits more, so completions wait in the controller. Each repetition then times
//   quiesce  Machine::set_run_state(paused) (every device's quiesce()), minus the drain,
//   save     the controller's description into a ByteWriter with its vmdesc JSON, as the
//            stop-and-copy does (write_device_section; pre_save included),
//   load     into a second machine configured alike, waiting as an incoming destination
//            (pre_load, fields, validation and post_load included),
// and resumes the source. Prints best and median of each, their sum against the target,
// the drain, and the encoded size of the state.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/event_loop.h"
#include "base/qemu_opts.h"
#include "guest/dma_memory.h"
#include "guest/nvme/command.h"
#include "guest/nvme/controller.h"
#include "guest/pci.h"
#include "hw/nvme/controller_migration.h"
#include "hw/nvme/nvme_properties.h"
#include "spec/nvme.h"
#include "vm/inprocess_bus.h"
#include "vm/machine.h"

namespace ferry {
namespace {

namespace sn = spec::nvme;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "nvme_downtime_bench: %s\n", what.c_str());
  std::exit(1);
}

struct Options {
  unsigned queues = 64;
  unsigned entries = 1024;
  unsigned extra_per_queue = 20;  // submitted after the CQ is full: they wait
  unsigned reps = 50;
  std::string image = "/tmp/ferry-nvme-downtime.img";
};

using Clock = std::chrono::steady_clock;
int64_t ns_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

std::unique_ptr<vm::Machine> make_machine(EventLoop& loop, const Options& o, bool incoming) {
  vm::MachineConfig config;
  config.name = incoming ? "dst" : "src";
  config.ram_size = 512ull << 20;
  config.incoming = incoming ? "defer" : "";
  auto drive = block::parse_drive_config(fmt::format("if=none,id=d0,file={},format=raw", o.image));
  if (!drive.ok()) die(drive.status().to_string());
  config.drives.push_back(*drive);
  auto opts = parse_opts(nvme::controller_schema(),
                         fmt::format("nvme,serial=DOWNTIME,drive=d0,max_ioqpairs={}", o.queues));
  if (!opts.ok()) die(opts.status().to_string());
  config.devices.push_back({"nvme", "", "", std::move(opts).value()});
  auto machine = vm::Machine::create(loop, std::move(config));
  if (!machine.ok()) die(machine.status().to_string());
  return std::move(machine).value();
}

nvme::Controller& controller_of(vm::Machine& machine) {
  for (pci::PciDevice* dev : machine.pci_bus().devices())
    if (auto* ctrl = dynamic_cast<nvme::Controller*>(dev)) return *ctrl;
  die("no nvme controller in the machine");
}

size_t pending_completions(const nvme::Controller& ctrl) {
  size_t n = 0;
  for (const auto& cq : ctrl.state().cqs)
    if (cq) n += cq->pending.size();
  return n;
}

struct Stats {
  std::vector<int64_t> v;
  int64_t best() const { return *std::min_element(v.begin(), v.end()); }
  int64_t median() const {
    std::vector<int64_t> s = v;
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
  }
};

int run(const Options& o) {
  {
    std::FILE* f = std::fopen(o.image.c_str(), "w");
    if (!f) die("cannot create " + o.image);
    std::fclose(f);
    std::filesystem::resize_file(o.image, 64ull << 20);
  }
  auto loop = EventLoop::create();
  if (!loop.ok()) die(loop.status().to_string());
  auto src = make_machine(**loop, o, false);
  auto dst = make_machine(**loop, o, true);
  nvme::Controller& src_ctrl = controller_of(*src);
  nvme::Controller& dst_ctrl = controller_of(*dst);

  // ---- the guest: 64 raw queue pairs, every CQ full, more completions waiting ----
  vm::InProcessBus bus(*src);
  auto memory = guest::DmaMemory::create(16ull << 20, 512ull << 20);
  if (!memory.ok()) die(memory.status().to_string());
  guest::MmioWindow window = guest::MmioWindow::standard();
  auto driver = guest::nvme::Controller::probe(bus, *memory, window);
  if (!driver.ok()) die(driver.status().to_string());
  guest::nvme::Controller& g = **driver;
  if (Status st = g.enable(); !st.ok()) die(st.to_string());
  if (Status st = g.enable_msix(); !st.ok()) die(st.to_string());
  namespace cmd = guest::nvme::commands;
  struct Raw {
    uint64_t sq = 0, cq = 0;
    uint32_t tail = 0;
  };
  std::vector<Raw> raw(o.queues + 1);
  for (uint16_t qid = 1; qid <= o.queues; ++qid) {
    auto sq = memory->allocate(uint64_t{o.entries} * sn::kSqeSize);
    auto cq = memory->allocate(uint64_t{o.entries} * sn::kCqeSize);
    if (!sq.ok() || !cq.ok()) die("out of DMA memory");
    raw[qid] = {*sq, *cq, 0};
    auto c = g.execute(0, cmd::create_io_cq(qid, o.entries, *cq, true, qid % 65));
    if (!c.ok() || !c->ok()) die(fmt::format("create CQ {} failed", qid));
    auto s = g.execute(0, cmd::create_io_sq(qid, o.entries, *sq, qid));
    if (!s.ok() || !s->ok()) die(fmt::format("create SQ {} failed", qid));
  }
  auto push = [&](uint16_t qid, unsigned count) {
    Raw& q = raw[qid];
    for (unsigned i = 0; i < count; ++i) {
      guest::nvme::Sqe sqe;
      sqe.set_opcode(0x7f).set_nsid(1).set_cid(static_cast<uint16_t>(q.tail));  // completes at once
      if (Status st = bus.memory_write(q.sq + uint64_t{q.tail} * sn::kSqeSize, sqe.bytes); !st.ok())
        die(st.to_string());
      q.tail = (q.tail + 1) % o.entries;
    }
    if (Status st = g.write_sq_doorbell(qid, q.tail); !st.ok()) die(st.to_string());
  };
  auto settle = [&](auto done) {
    for (int i = 0; i < 100000 && !done(); ++i) (void)bus.idle(std::chrono::microseconds(100));
    if (!done()) die("the controller did not settle");
  };
  for (uint16_t qid = 1; qid <= o.queues; ++qid) push(qid, o.entries - 1);  // fills the CQ
  settle([&] {
    for (uint16_t qid = 1; qid <= o.queues; ++qid)
      if (src_ctrl.state().sqs[qid]->head != raw[qid].tail) return false;
    return true;
  });
  for (uint16_t qid = 1; qid <= o.queues; ++qid) push(qid, o.extra_per_queue);
  size_t expected = size_t{o.queues} * o.extra_per_queue;
  settle([&] { return pending_completions(src_ctrl) == expected; });

  // ---- the measurement ----
  Stats quiesce, drain, save, load, total;
  size_t bytes = 0;
  for (unsigned rep = 0; rep < o.reps; ++rep) {
    auto t0 = Clock::now();
    if (Status st = src->set_run_state(vm::RunState::kPaused); !st.ok()) die(st.to_string());
    int64_t q_ns = ns_since(t0);
    int64_t d_ns = src_ctrl.last_drain_ns();
    ByteWriter w;
    auto t1 = Clock::now();
    vmstate::Json vmdesc = vmstate::Json::object();
    if (Status st = nvme::kControllerState.save(src_ctrl, w, vmdesc); !st.ok())
      die(st.to_string());
    int64_t s_ns = ns_since(t1);
    bytes = w.position();
    std::vector<uint8_t> stream = w.to_vector();
    ByteReader r(stream);
    auto t2 = Clock::now();
    if (Status st = nvme::kControllerState.load(dst_ctrl, r); !st.ok()) die(st.to_string());
    int64_t l_ns = ns_since(t2);
    if (r.remaining() != 0) die("bytes left after the section");
    if (pending_completions(dst_ctrl) != expected) die("the destination lost completions");
    quiesce.v.push_back(q_ns - d_ns);
    drain.v.push_back(d_ns);
    save.v.push_back(s_ns);
    load.v.push_back(l_ns);
    total.v.push_back(q_ns - d_ns + s_ns + l_ns);
    if (Status st = src->set_run_state(vm::RunState::kRunning); !st.ok()) die(st.to_string());
  }

  std::printf("NVMe device share of stop-and-copy: %u I/O queue pairs x %u entries, "
              "%zu completions pending, %u reps\n",
              o.queues, o.entries, expected, o.reps);
  auto line = [](const char* what, const Stats& s) {
    std::printf("  %-34s best %8.1f us   median %8.1f us\n", what, s.best() / 1e3,
                s.median() / 1e3);
  };
  line("quiesce (excluding backend drain)", quiesce);
  line("save", save);
  line("load (incl. validation, post_load)", load);
  line("total", total);
  line("backend drain (reported apart)", drain);
  std::printf("  encoded state: %zu bytes (%.1f KiB)\n", bytes, bytes / 1024.0);
  bool met = total.median() < 1'000'000;
  std::printf("  target < 1 ms (median): %s\n", met ? "met" : "MISSED");
  std::filesystem::remove(o.image);
  return 0;
}

}  // namespace
}  // namespace ferry

int main(int argc, char** argv) {
  ferry::Options o;
  CLI::App app{"NVMe device share of migration downtime"};
  app.add_option("--queues", o.queues, "I/O queue pairs (1..64)")->check(CLI::Range(1, 64));
  app.add_option("--entries", o.entries, "entries per queue")->check(CLI::Range(8, 2048));
  app.add_option("--extra", o.extra_per_queue, "completions left pending per queue");
  app.add_option("--reps", o.reps, "repetitions")->check(CLI::Range(1, 100000));
  app.add_option("--image", o.image, "scratch image path");
  CLI11_PARSE(app, argc, argv);
  return ferry::run(o);
}
