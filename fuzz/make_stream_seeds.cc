// Writes the seed corpus of stream_load_fuzzer: whole migration streams saved by
// save_stream from the VM of stream_load_vm.h, and broken ones close to valid (cut,
// renamed, flipped) so that mutations start near the loader's error paths. Every seed is
// checked to load, or to fail, as intended.
//
// The seeds from before the VM had its virtio-net-pci are made without the NIC's section
// (they stay small and byte-identical); the virtio-net-* seeds carry it: an idle NIC, and
// a NIC a driver brought up with split or packed rings in RAM page 1 (8 entries each, RX
// buffers posted, one frame received and one sent, promiscuous off, VLAN 100 in the filter).
//
// Regenerate the committed seeds (output is deterministic) from the repository root:
//   cmake --preset asan && cmake --build --preset asan --target stream_make_seeds
//   rm -f fuzz/corpus/stream_load/* && build/asan/fuzz/stream_make_seeds fuzz/corpus/stream_load
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "hw/pci/pci_regs.h"
#include "migration/buffer_channel.h"
#include "migration/stream.h"
#include "spec/virtio_net.h"
#include "spec/virtio_pci.h"
#include "spec/virtio_ring.h"
#include "stream_load_vm.h"

namespace {

using ferry::Status;
using ferry::fuzz::kStreamMachine;
using ferry::fuzz::StreamVm;
namespace mig = ferry::migration;
using Bytes = std::vector<uint8_t>;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "make_stream_seeds: %s\n", why.c_str());
  std::exit(1);
}

// Only the first two RAM pages keep their content, so that seeds stay small (libFuzzer
// mutates short inputs faster); the other pages travel as ZERO records.
std::unique_ptr<StreamVm> vm(bool populated, uint32_t seed, bool with_nic_section = false) {
  auto made = StreamVm::make(populated, seed, with_nic_section);
  if (!made.ok()) die(made.status().to_string());
  auto& block = *(*made)->ram.front();
  std::memset(block.page(2), 0, block.size() - 2 * ferry::memory::kPageSize);
  return std::move(made).value();
}

Bytes save(StreamVm& source, mig::SaveOptions options = {}) {
  mig::BufferChannel channel;
  mig::StreamWriter writer(channel);
  source.nic->quiesce();  // the VM is stopped for the device sections
  mig::RamSaver saver(source.ram);
  Status st = mig::save_stream(writer, kStreamMachine, source.registry, saver, options);
  if (!st.ok()) die("save failed: " + st.to_string());
  return channel.written();
}

Status load(const Bytes& bytes) {
  auto target = vm(false, 0, true);  // the fuzzer's VM
  mig::BufferChannel channel(bytes);
  mig::StreamReader reader(channel);
  mig::RamLoader loader(target->ram);
  return mig::load_stream(reader, kStreamMachine, target->registry, loader);
}

// Offset of the first occurrence of `needle` (a section's u8 length + name, say).
size_t find(const Bytes& bytes, std::string_view needle) {
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  if (it == bytes.end()) die(fmt::format("'{}' not found", needle));
  return static_cast<size_t>(it - bytes.begin());
}

// The EOF byte: the vmdesc record (0x06, be32 length, JSON) is the stream's tail.
size_t eof_offset(const Bytes& bytes) {
  size_t json = find(bytes, "{\"page_size\"");
  if (json < 6 || bytes[json - 5] != 0x06 || bytes[json - 6] != 0x00) die("no EOF before vmdesc");
  return json - 6;
}

// ---- a driver for the NIC, its rings and buffers in RAM pages 0 and 1 --------------------

namespace vp = ferry::spec::virtio_pci;
namespace vn = ferry::spec::virtio_net;
namespace vr = ferry::spec::virtio;

struct Piece {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

// One queue of 8 entries at `base` (0x200 bytes: descriptors, then the driver area, then
// the device area), split or packed, filled as a driver does; descriptors are never reused.
class SeedRing {
 public:
  static constexpr uint16_t kSize = 8;
  SeedRing(ferry::memory::AddressSpace& ram, uint64_t base, bool packed)
      : ram_(ram), base_(base), packed_(packed) {}
  uint64_t desc() const { return base_; }
  uint64_t driver() const { return base_ + 0x80; }
  uint64_t device() const { return base_ + 0x100; }

  void add(std::span<const Piece> chain) {
    if (next_ + chain.size() > kSize) die("a seed ring ran out of descriptors");
    const uint16_t id = chains_++;
    for (size_t k = 0; k < chain.size(); ++k) {
      const uint64_t at = base_ + uint64_t{vr::kDescSize} * next_;
      uint16_t flags = chain[k].writable ? vr::kDescFWrite : 0;
      if (k + 1 < chain.size()) flags |= vr::kDescFNext;
      put(at + vr::kDescAddr, chain[k].addr, 8);
      put(at + vr::kDescLen, chain[k].len, 4);
      if (packed_) {
        put(at + vr::kPackedDescId, id, 2);
        put(at + vr::kPackedDescFlags, flags | vr::kDescFAvail, 2);  // first lap: wrap 1
      } else {
        put(at + vr::kDescFlags, flags, 2);
        put(at + vr::kDescNext, next_ + 1, 2);
      }
      ++next_;
    }
    if (!packed_) {
      const uint16_t head = static_cast<uint16_t>(next_ - chain.size());
      put(driver() + vr::kAvailRing + 2ull * (avail_ % kSize), head, 2);
      put(driver() + vr::kAvailIdx, ++avail_, 2);
    }
  }

 private:
  void put(uint64_t addr, uint64_t value, unsigned size) {
    uint8_t bytes[8];
    for (unsigned i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
    if (Status st = ram_.write(addr, std::span<const uint8_t>(bytes, size)); !st.ok())
      die(st.to_string());
  }
  ferry::memory::AddressSpace& ram_;
  uint64_t base_;
  bool packed_;
  uint16_t next_ = 0;
  uint16_t avail_ = 0;
  uint16_t chains_ = 0;
};

// Brings the NIC of `vm` up through its modern BAR as a guest driver does and leaves
// traffic and filter state behind; the NIC is quiesced again at the end.
void drive_nic(StreamVm& vm, bool packed) {
  ferry::virtio::VirtioPci& nic = *vm.nic;
  auto& bar = nic.bar_handler(ferry::virtio::VirtioPci::kModernBar);
  auto common = [&](uint32_t reg, uint64_t value, unsigned size) {
    bar.write(ferry::virtio::VirtioPci::kCommonOffset + reg, value, size);
  };
  auto kick = [&](uint16_t queue) {
    bar.write(ferry::virtio::VirtioPci::kNotifyOffset +
                  queue * ferry::virtio::VirtioPci::kNotifyMultiplier,
              queue, 2);
  };
  nic.resume();
  nic.config_write(ferry::pci::kCommand,
                   ferry::pci::kCommandMemory | ferry::pci::kCommandBusMaster, 2);
  uint64_t features = vn::bit(vn::kFMac) | vn::bit(vn::kFStatus) | vn::bit(vn::kFCtrlVq) |
                      vn::bit(vn::kFCtrlRx) | vn::bit(vn::kFCtrlVlan) | vn::bit(vn::kFMrgRxbuf) |
                      vp::feature_bit(vp::kFeatureVersion1);
  if (packed) features |= vr::feature(vr::kFRingPacked);
  const uint8_t base = vp::kStatusAcknowledge | vp::kStatusDriver;
  common(vp::kCommonStatus, base, 1);
  for (uint32_t half = 0; half < 2; ++half) {
    common(vp::kCommonGfSelect, half, 4);
    common(vp::kCommonGf, static_cast<uint32_t>(features >> (32 * half)), 4);
  }
  common(vp::kCommonStatus, base | vp::kStatusFeaturesOk, 1);
  // Page 1 holds the rings: zeroed first, as a driver allocates them.
  const std::vector<uint8_t> zero(ferry::memory::kPageSize, 0);
  if (!vm.memory.write(0x1000, zero).ok()) die("cannot clear the ring page");
  std::vector<SeedRing> rings;
  for (uint16_t q = 0; q < 3; ++q) {  // rx, tx, ctrl
    rings.emplace_back(vm.memory, 0x1000 + 0x200ull * q, packed);
    common(vp::kCommonQueueSelect, q, 2);
    common(vp::kCommonQueueSize, SeedRing::kSize, 2);
    common(vp::kCommonQueueDescLo, rings[q].desc(), 8);
    common(vp::kCommonQueueDriverLo, rings[q].driver(), 8);
    common(vp::kCommonQueueDeviceLo, rings[q].device(), 8);
    common(vp::kCommonQueueEnable, 1, 2);
  }
  common(vp::kCommonStatus, base | vp::kStatusFeaturesOk | vp::kStatusDriverOk, 1);

  // Four 256-byte RX buffers in page 0; a frame for the NIC's MAC lands in the first.
  for (uint64_t b = 0; b < 4; ++b) {
    const Piece buffer{0x100 * b, 0x100, true};
    rings[0].add(std::span(&buffer, 1));
  }
  kick(0);
  Bytes frame(64, 0x42);
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::copy(mac, mac + 6, frame.begin());
  frame[12] = 0x08;
  frame[13] = 0x00;
  if (!vm.backend.offer(frame)) die("the NIC cannot receive");

  // One frame out: a zeroed 12-byte header, then the frame.
  std::vector<uint8_t> header(12, 0);
  if (!vm.memory.write(0x800, header).ok() || !vm.memory.write(0x810, frame).ok())
    die("cannot write the TX frame");
  const Piece tx[2] = {{0x800, 12, false}, {0x810, 64, false}};
  rings[1].add(tx);
  kick(1);

  // Control requests: promiscuous off, VLAN 100 allowed; each acked with VIRTIO_NET_OK.
  auto control = [&](uint64_t at, uint8_t cls, uint8_t cmd, std::vector<uint8_t> data) {
    const uint8_t head[2] = {cls, cmd};
    if (!vm.memory.write(at, head).ok() || !vm.memory.write(at + 0x10, data).ok())
      die("cannot write a control request");
    const Piece chain[3] = {{at, 2, false},
                            {at + 0x10, static_cast<uint32_t>(data.size()), false},
                            {at + 0x40, 1, true}};
    rings[2].add(chain);
    kick(2);
    uint8_t ack[1] = {0xff};
    if (!vm.memory.read(at + 0x40, ack).ok() || ack[0] != vn::kCtrlOk)
      die(fmt::format("control {}/{} not acknowledged ({})", cls, cmd, ack[0]));
  };
  control(0xa00, vn::kCtrlRx, vn::kCtrlRxPromisc, {0});
  control(0xb00, vn::kCtrlVlan, vn::kCtrlVlanAdd, {100, 0});
  nic.quiesce();
}

struct Seed {
  std::string name;
  Bytes stream;
  bool loads;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) die("usage: make_stream_seeds OUTPUT_DIR");
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);

  // The vmdesc record (about 20 KB of JSON for the NVMe-like device) is optional: most
  // seeds end right after EOF, which is a complete stream too.
  auto without_vmdesc = [](const Bytes& b) {
    return Bytes(b.begin(), b.begin() + static_cast<long>(eof_offset(b)) + 1);
  };
  std::vector<Seed> seeds;
  auto full = vm(true, 1);
  Bytes with_vmdesc = save(*full);
  Bytes valid = without_vmdesc(with_vmdesc);
  seeds.push_back({"valid-with-vmdesc", with_vmdesc, true});
  seeds.push_back({"valid-populated", valid, true});
  seeds.push_back({"valid-all-zero", without_vmdesc(save(*vm(false, 0))), true});
  seeds.push_back({"valid-other-content", without_vmdesc(save(*vm(true, 7))), true});
  seeds.push_back({"valid-switchover-start",
                   without_vmdesc(save(*full, {.send_switchover_start = true})), true});

  // "timer" FULL record: 0x05 "timer" is its idstr; instance, version and body follow.
  const std::string timer_name = std::string("\x05", 1) + "timer";
  size_t timer = find(valid, timer_name);
  size_t timer_version = timer + 6 + 4;
  size_t timer_footer = timer_version + 4 + 12;
  const std::string nvme_name = std::string("\x11", 1) + "0000:00:02.0/nvme";
  size_t nvme_body = find(valid, nvme_name) + nvme_name.size() + 8;

  seeds.push_back({"cut-in-ram-pages", Bytes(valid.begin(), valid.begin() + timer / 2), false});
  seeds.push_back({"cut-in-device", Bytes(valid.begin(), valid.begin() + nvme_body + 40), false});
  seeds.push_back({"cut-in-vmdesc", Bytes(with_vmdesc.begin(), with_vmdesc.end() - 10), false});

  Bytes bad = valid;
  bad[timer_footer] = 0x7f;
  seeds.push_back({"bad-footer", bad, false});

  bad = valid;
  bad[timer + 5] = 'x';  // "timex": no such section here
  seeds.push_back({"unknown-section", bad, false});

  bad = valid;
  bad[timer_version + 3] = 3;  // timer v3, local is v2
  seeds.push_back({"device-version-too-new", bad, false});

  bad = valid;
  bad[8 + 1 + 4 + kStreamMachine.size() - 1] = '1';  // pc-q35-7.1
  seeds.push_back({"other-machine-type", bad, false});

  bad = valid;
  // RAM START's block list: the be64 length of "pc.ram" no longer matches the block.
  size_t block_len = find(valid, std::string("\x06", 1) + "pc.ram") + 7;
  bad[block_len + 5] ^= 0x01;
  seeds.push_back({"ram-block-size-mismatch", bad, false});

  // With the NIC's section (0000:00:03.0/virtio-net, after nvme).
  seeds.push_back({"virtio-net-idle", without_vmdesc(save(*vm(false, 0, true))), true});
  for (bool packed : {false, true}) {
    auto driven = vm(false, 0, true);  // RAM: only what the driver wrote
    drive_nic(*driven, packed);
    seeds.push_back({packed ? "virtio-net-packed" : "virtio-net-split",
                     without_vmdesc(save(*driven)), true});
  }

  for (const Seed& seed : seeds) {
    Status st = load(seed.stream);
    if (st.ok() != seed.loads)
      die(fmt::format("seed {}: expected to {}, got: {}", seed.name,
                      seed.loads ? "load" : "fail", st.ok() ? "loaded" : st.to_string()));
    std::ofstream out(dir / seed.name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(seed.stream.data()),
              static_cast<std::streamsize>(seed.stream.size()));
    if (!out) die("cannot write " + (dir / seed.name).string());
    std::printf("%-26s %6zu bytes  %s\n", seed.name.c_str(), seed.stream.size(),
                st.ok() ? "loads" : st.to_string().c_str());
  }
  return 0;
}
