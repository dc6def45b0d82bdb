// virtio_net_downtime_bench: the virtio-net-pci device's share of stop-and-copy downtime,
// for one queue pair and for a multiqueue NIC (4 pairs by default), next to the size QEMU
// 7.2 writes for an idle one-pair NIC.
//
// In process, as the device's unit tests build it: a fake PCI machine with the real
// VirtioPci + VirtioNet (hw/virtio/net) and a backend that records what the NIC sends, and
// the guest's virtio-net driver (guest/virtio/net_driver.h) over that machine's bus. The
// driver negotiates (MQ for more than one pair, MRG_RXBUF, EVENT_IDX, the control queue),
// sets up every ring and switches to all pairs, keeps every RX queue full of buffers, and
// leaves traffic state behind: frames received on pair 0 and sent on every pair, promiscuous
// off, a MAC table and VLANs in the filter. Each repetition then times
//   quiesce   VirtioPci::quiesce() (what Machine::set_run_state(paused) calls per device),
//   save      the section into a ByteWriter with its vmdesc JSON (pre_save included),
//   transfer  the section's bytes over a unix socket pair to a reader thread,
//   load      into a fresh destination device configured alike whose RAM already holds the
//             source's (RAM precedes devices in the stream): fields, validation and
//             post_load (ring checks against guest RAM, queues and filters applied),
// and resumes the source. Prints best and median of each phase, their sum, and the section's
// encoded size, also as a stream record (section start and footer, as QEMU's count has them).
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "guest/dma_memory.h"
#include "guest/pci.h"
#include "guest/virtio/net_driver.h"
#include "guest/virtio/virtio_pci_driver.h"
#include "hw/pci/test_fakes.h"
#include "hw/pci/test_machine_bus.h"
#include "hw/virtio/net/virtio_net.h"
#include "hw/virtio/net/virtio_net_migration.h"
#include "hw/virtio/virtio_pci.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"
#include "net/net_backend.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"
#include "vmstate/vmstate.h"

namespace ferry {
namespace {

namespace vn = spec::virtio_net;
namespace vr = spec::virtio;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "virtio_net_downtime_bench: %s\n", what.c_str());
  std::exit(1);
}

struct Options {
  unsigned mq_pairs = 4;
  unsigned frames = 64;  // received on pair 0 and sent on every pair before the measurement
  unsigned reps = 200;
  bool packed = false;
};

// QEMU 7.2.22's record for an idle default virtio-net-pci: section start (type, id, the
// 23-byte name "0000:00:01.0/virtio-net", instance, version: 37 bytes), the 46,143-byte
// body, the footer (5 bytes).
constexpr size_t kQemuIdleOnePairRecord = 46185;
// What Ferry adds around the body in the same record (section start + footer).
constexpr size_t kRecordOverhead = kQemuIdleOnePairRecord - 46143;
constexpr uint64_t kRamSize = 16ull << 20;  // 4 pairs' rings and 2 KiB buffers fit
constexpr uint64_t kDriverMemoryBegin = 1ull << 20;
constexpr uint16_t kTransitionalNetId = 0x1000;  // virtio-net-pci keeps its legacy ID

using Clock = std::chrono::steady_clock;
int64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
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

// Counts what the NIC sends; offers frames to the NIC when it can take them.
class CountingBackend final : public net::NetBackend {
 public:
  CountingBackend() : NetBackend("n0", "hubport") {}
  net::SendResult transmit(std::span<const iovec>) override {
    ++sent;
    return net::SendResult::kSent;
  }
  void receive_ready() override {}
  bool offer(std::span<const uint8_t> frame) {
    if (!nic_can_receive()) return false;
    deliver(frame);
    return true;
  }
  size_t sent = 0;
};

// One side: guest RAM, a fake PCI machine, a backend and the NIC at 00:01.0.
struct Side {
  Side(unsigned pairs, bool packed) {
    auto block = memory::RamBlock::anonymous("pc.ram", kRamSize);
    if (!block.ok()) die(block.status().to_string());
    if (auto mapped = ram.add_ram(0, std::move(*block)); !mapped.ok()) die(mapped.status().to_string());
    virtio::net::VirtioNetOptions options;
    if (pairs > 1) options.property_features |= vn::bit(vn::kFMq);
    if (packed) options.property_features |= vr::feature(vr::kFRingPacked);
    auto device = virtio::net::VirtioNet::create(options, &backend, pairs);
    if (!device.ok()) die(device.status().to_string());
    net = device->get();
    auto pci = virtio::VirtioPci::create(std::move(*device), {.type_name = "virtio-net-pci"});
    if (!pci.ok()) die(pci.status().to_string());
    auto added = machine.bus.add(std::move(*pci), "1.0");
    if (!added.ok()) die(added.status().to_string());
    vpci = static_cast<virtio::VirtioPci*>(*added);
    vpci->attach_dma(ram);
  }
  memory::AddressSpace ram;
  pci::test::Machine machine;
  CountingBackend backend;
  virtio::net::VirtioNet* net = nullptr;
  virtio::VirtioPci* vpci = nullptr;
};

std::vector<uint8_t> frame_to(const guest::virtio::MacAddress& dst, uint8_t fill) {
  std::vector<uint8_t> f(128, fill);
  std::copy(dst.begin(), dst.end(), f.begin());
  f[12] = 0x08;
  f[13] = 0x00;
  return f;
}

// The guest brings the NIC up with `pairs` pairs and leaves traffic and filter state behind.
std::unique_ptr<guest::virtio::NetDriver> drive(Side& side, pci::test::MachineBus& bus,
                                                guest::DmaMemory& dma, unsigned pairs,
                                                const Options& o) {
  guest::MmioWindow window = guest::MmioWindow::standard();
  auto pci = guest::virtio::VirtioPciDriver::probe(bus, dma, window, {.device_id = kTransitionalNetId});
  if (!pci.ok()) die(pci.status().to_string());
  auto started = guest::virtio::NetDriver::start(
      std::move(*pci), dma,
      {.packed = o.packed, .multiqueue = pairs > 1, .queue_pairs = static_cast<uint16_t>(pairs)});
  if (!started.ok()) die(started.status().to_string());
  std::unique_ptr<guest::virtio::NetDriver> g = std::move(*started);
  if (g->queue_pairs() != pairs)
    die(fmt::format("the driver uses {} queue pairs, {} asked", g->queue_pairs(), pairs));
  if (side.net->state().queue_pairs.curr != pairs)
    die(fmt::format("the device steers to {} queue pairs, {} asked",
                    side.net->state().queue_pairs.curr, pairs));

  auto acked = [](const Result<uint8_t>& ack, const char* what) {
    if (!ack.ok()) die(fmt::format("{}: {}", what, ack.status().to_string()));
    if (*ack != vn::kCtrlOk) die(fmt::format("{}: the device answered {}", what, *ack));
  };
  acked(g->set_rx_mode(vn::kCtrlRxPromisc, false), "promiscuous off");
  const std::vector<guest::virtio::MacAddress> unicast{{0x52, 0x54, 0x00, 0xaa, 0x00, 0x01},
                                                      {0x52, 0x54, 0x00, 0xaa, 0x00, 0x02}};
  const std::vector<guest::virtio::MacAddress> multicast{{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}};
  acked(g->set_mac_table(unicast, multicast), "MAC table");
  for (uint16_t vid : {100, 200, 300}) acked(g->vlan_add(vid), "VLAN add");

  for (unsigned i = 0; i < o.frames; ++i) {
    if (!side.backend.offer(frame_to(g->mac(), static_cast<uint8_t>(i))))
      die("the NIC cannot take a frame");
    auto got = g->receive(0);
    if (!got.ok() || !got->has_value()) die("a delivered frame did not reach the guest");
    for (uint16_t p = 0; p < pairs; ++p) {
      if (Status st = g->send(frame_to({0x52, 0x54, 0x00, 0xbb, 0, 1}, 0x5a), p); !st.ok())
        die(st.to_string());
      if (auto r = g->reclaim_tx(p); !r.ok()) die(r.status().to_string());
    }
  }
  if (side.backend.sent != size_t{o.frames} * pairs)
    die(fmt::format("the NIC sent {} frames, {} expected", side.backend.sent, o.frames * pairs));
  return g;
}

// The section's bytes through a unix socket to a reader thread; ns until it has them all.
int64_t transfer(const std::vector<uint8_t>& bytes, std::vector<uint8_t>& received) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) die("socketpair failed");
  received.assign(bytes.size(), 0);
  Clock::time_point done;
  bool ok = true;
  std::thread reader([&] {
    size_t got = 0;
    while (got < received.size()) {
      ssize_t n = ::read(fds[1], received.data() + got, received.size() - got);
      if (n <= 0) {
        ok = false;
        break;
      }
      got += static_cast<size_t>(n);
    }
    done = Clock::now();
  });
  const Clock::time_point start = Clock::now();
  size_t put = 0;
  while (put < bytes.size()) {
    ssize_t n = ::write(fds[0], bytes.data() + put, bytes.size() - put);
    if (n <= 0) die("write to the socket failed");
    put += static_cast<size_t>(n);
  }
  reader.join();
  ::close(fds[0]);
  ::close(fds[1]);
  if (!ok) die("the reader lost bytes");
  return ns_between(start, done);
}

struct Phases {
  Stats quiesce, save, transfer, load, total;
  size_t body = 0;
};

// The body an idle default NIC (no driver yet) saves: the figure QEMU 7.2's record holds.
size_t idle_body() {
  Side idle(1, false);
  idle.vpci->quiesce();
  ByteWriter w;
  if (Status st = virtio::net::kVirtioNetState.save(*idle.vpci, w); !st.ok()) die(st.to_string());
  return w.position();
}

Phases measure(unsigned pairs, const Options& o) {
  Side src(pairs, o.packed);
  pci::test::MachineBus bus(src.machine, src.ram);
  auto dma = guest::DmaMemory::create(kDriverMemoryBegin, kRamSize);
  if (!dma.ok()) die(dma.status().to_string());
  std::unique_ptr<guest::virtio::NetDriver> g = drive(src, bus, *dma, pairs, o);

  Phases out;
  std::vector<uint8_t> ram(kRamSize);
  std::vector<uint8_t> received;
  for (unsigned rep = 0; rep < o.reps; ++rep) {
    // The destination, set up before the downtime as an incoming QEMU is.
    auto dst = std::make_unique<Side>(pairs, o.packed);

    const Clock::time_point t0 = Clock::now();
    src.vpci->quiesce();
    const Clock::time_point t1 = Clock::now();
    ByteWriter w;
    vmstate::Json vmdesc = vmstate::Json::object();
    if (Status st = virtio::net::kVirtioNetState.save(*src.vpci, w, vmdesc); !st.ok())
      die(st.to_string());
    const Clock::time_point t2 = Clock::now();
    const std::vector<uint8_t> section = w.to_vector();
    out.body = section.size();

    const int64_t transfer_ns = transfer(section, received);

    // RAM arrives before the device section: outside the device's share.
    if (Status st = src.ram.read(0, ram); !st.ok()) die(st.to_string());
    if (Status st = dst->ram.write(0, ram); !st.ok()) die(st.to_string());

    ByteReader r(received);
    const Clock::time_point t3 = Clock::now();
    if (Status st = virtio::net::kVirtioNetState.load(*dst->vpci, r, 11); !st.ok())
      die(st.to_string());
    const Clock::time_point t4 = Clock::now();
    if (r.remaining() != 0) die("bytes left after the section");
    src.vpci->resume();

    // The destination carries the source's state.
    if (dst->net->state().queue_pairs.curr != pairs) die("the destination lost the queue pairs");
    for (uint16_t q = 0; q < 2 * pairs; ++q)
      if (dst->net->queue(q).last_avail_idx() != src.net->queue(q).last_avail_idx())
        die(fmt::format("queue {}: the destination's ring position differs", q));
    if (dst->net->state().rx.vlans != src.net->state().rx.vlans) die("the VLAN table differs");
    if (dst->net->state().rx.promisc != 0) die("promiscuous mode came back on");

    out.quiesce.v.push_back(ns_between(t0, t1));
    out.save.v.push_back(ns_between(t1, t2));
    out.transfer.v.push_back(transfer_ns);
    out.load.v.push_back(ns_between(t3, t4));
    out.total.v.push_back(ns_between(t0, t2) + transfer_ns + ns_between(t3, t4));
    dst->vpci->quiesce();  // stops the destination before its backend goes away
  }
  g.reset();  // resets the device before its memory goes
  return out;
}

void print(unsigned pairs, const Phases& m, const Options& o) {
  std::printf("virtio-net-pci, %u queue pair%s%s (%s rings, RX queues full, %u frames in and "
              "out per pair, filters set), %u reps\n",
              pairs, pairs == 1 ? "" : "s", pairs > 1 ? " (mq=on, all pairs in use)" : "",
              o.packed ? "packed" : "split", o.frames, o.reps);
  auto line = [](const char* what, const Stats& s) {
    std::printf("  %-38s best %8.1f us   median %8.1f us\n", what, s.best() / 1e3,
                s.median() / 1e3);
  };
  line("quiesce", m.quiesce);
  line("save", m.save);
  line("transfer (unix socket)", m.transfer);
  line("load (incl. validation, post_load)", m.load);
  line("total", m.total);
  const size_t record = m.body + kRecordOverhead;
  std::printf("  encoded section: %zu bytes body, %zu bytes as a stream record", m.body, record);
  std::printf("\n");
  if (pairs == 1) {
    std::printf("  idle one-pair NIC: %zu bytes as a stream record (QEMU 7.2: %zu)\n",
                idle_body() + kRecordOverhead, kQemuIdleOnePairRecord);
  }
}

int run(const Options& o) {
  print(1, measure(1, o), o);
  print(o.mq_pairs, measure(o.mq_pairs, o), o);
  return 0;
}

}  // namespace
}  // namespace ferry

int main(int argc, char** argv) {
  ferry::Options o;
  CLI::App app{"virtio-net-pci device share of migration downtime"};
  app.add_option("--pairs", o.mq_pairs, "queue pairs of the multiqueue run (2..8)")
      ->check(CLI::Range(2, 8));
  app.add_option("--frames", o.frames, "frames received and sent per pair before measuring")
      ->check(CLI::Range(0, 100000));
  app.add_option("--reps", o.reps, "repetitions")->check(CLI::Range(1, 100000));
  app.add_flag("--packed", o.packed, "packed rings (RING_PACKED) instead of split");
  CLI11_PARSE(app, argc, argv);
  return ferry::run(o);
}
