// Black-box tests of Ferry's emulated NVMe controller: ferry-vm runs `-device nvme`, the
// guest NVMe driver (src/guest/nvme) runs in this process and reaches the controller over
// qtest. Every check looks only at what a guest or an operator can see: guest memory,
// registers, interrupts, the backing image file, QMP and the process's exit status.
//
// The command statuses QEMU 7.2 and the specification name for malformed commands are
// covered by nvme_qemu_diff_test; this file covers behaviour over time: data integrity
// across PRP and SGL layouts, namespaces, full completion queues, interrupts, reset during
// I/O, injected block errors, asynchronous events, logs, features, shadow doorbells, a
// misbehaving host (including an overfilled SQ and the error log), the virtual clock
// (-accel qtest: timestamp, coalescing, power-on hours) and bad command lines.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "support/nvme_rig.h"
#include "support/qemu_vm.h"

namespace ferry::testing {
namespace {

namespace sn = spec::nvme;
namespace commands = guest::nvme::commands;
using guest::nvme::Completion;
using guest::nvme::Controller;
using guest::nvme::DataSegment;
using guest::nvme::Sqe;
using guest::nvme::Transfer;
using Millis = std::chrono::milliseconds;

constexpr uint64_t kPage = 4096;
constexpr uint16_t kIoQueue = 1;

std::unique_ptr<NvmeRig> start(const std::vector<std::string>& args, bool enable = true) {
  return start_rig(FERRY_VM_PATH, args, enable);
}

// One controller on drive d0 backed by `image`, plus `extra` options.
std::vector<std::string> nvme_args(const TempImage& image, const std::string& device_extra = "",
                                   std::vector<std::string> extra = {}) {
  std::vector<std::string> args = drive_args("d0", image);
  args.push_back("-device");
  args.push_back("nvme,serial=BBTEST,drive=d0" + device_extra);
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t b = 0; b < 8 && i + b < n; ++b) out[i + b] = static_cast<uint8_t>(v >> (8 * b));
  }
  return out;
}

std::vector<uint8_t> pattern(uint32_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  return random_bytes(rng, n);
}

std::string status_text(uint16_t status) {
  return fmt::format("0x{:04x} ({})", status, guest::nvme::describe_status(status));
}

// Runs one command and returns its completion; a transport error or a timeout is a test
// failure and gives a completion with status 0xffff.
Completion run(NvmeRig& rig, uint16_t qid, const Sqe& sqe, const Transfer& data = {},
               Millis timeout = Millis(30000)) {
  auto done = rig.c().execute(qid, sqe, data, timeout);
  EXPECT_TRUE(done.ok()) << done.status().to_string();
  if (!done.ok()) {
    Completion failed;
    failed.status = 0xffff;
    return failed;
  }
  return *done;
}

// ---- 1. data integrity --------------------------------------------------------------------

// Where a command's data sits in guest memory and how the command points at it.
struct Placement {
  enum Kind { kPrpContiguous, kPrpScattered, kPrpChainedLists, kSglBlock, kSglChain,
              kSglBitBucket, kKinds };
  Kind kind = kPrpContiguous;
  std::vector<DataSegment> pieces;  // transfer order; bit buckets have no memory
  Transfer transfer;                // used unless `raw`
  bool raw = false;                 // PRP1/PRP2 written by hand into the SQE
  uint64_t prp1 = 0, prp2 = 0;
  std::vector<uint64_t> list_pages;  // hand-built PRP lists, freed after the command
};

const char* kind_name(int kind) {
  static const char* kNames[] = {"prp-contiguous", "prp-scattered", "prp-chained-lists",
                                 "sgl-block", "sgl-chain", "sgl-bit-bucket"};
  return kNames[kind];
}

// Builds placements for transfers of up to `max_bytes` inside a pool of guest pages.
class PlacementMaker {
 public:
  PlacementMaker(NvmeRig& rig, std::mt19937_64& rng, uint64_t pool, uint64_t pool_pages)
      : rig_(rig), rng_(rng), pool_(pool), pool_pages_(pool_pages) {}

  Placement make(Placement::Kind kind, uint64_t bytes) {
    Placement p;
    p.kind = kind;
    switch (kind) {
      case Placement::kPrpContiguous: {
        // A dword-aligned start anywhere in a page: one page (PRP1), two pages (PRP2 is a
        // page) or more (PRP2 points to a list), depending on offset and size.
        uint64_t offset = pick(0, 3) == 0 ? 0 : 4 * pick(0, 1023);
        uint64_t start = pool_ + kPage * pick(0, pool_pages_ - 10) + offset;
        p.pieces = {{start, bytes}};
        p.transfer = Transfer::prp(start, bytes);
        break;
      }
      case Placement::kPrpScattered:
        p.pieces = scattered_pages(bytes, 4 * pick(0, 1023));
        p.transfer = Transfer{Transfer::Kind::kPrp, p.pieces, {}};
        break;
      case Placement::kPrpChainedLists:
        if (!chained_lists(bytes, p)) return make(Placement::kPrpScattered, bytes);
        break;
      case Placement::kSglBlock: {
        uint64_t start = pool_ + kPage * pick(0, pool_pages_ - 10) + pick(0, kPage - 1);
        p.pieces = {{start, bytes}};
        p.transfer = Transfer::sgl_block(start, bytes);
        p.transfer.sgl.always_use_segment_list = pick(0, 1) == 1;
        break;
      }
      case Placement::kSglChain:
      case Placement::kSglBitBucket: {
        p.pieces = byte_pieces(bytes, kind == Placement::kSglBitBucket);
        p.transfer = Transfer{Transfer::Kind::kSgl, p.pieces, {}};
        p.transfer.sgl.max_descriptors_per_segment = static_cast<unsigned>(pick(2, 5));
        p.transfer.sgl.always_use_segment_list = pick(0, 1) == 1;
        break;
      }
      case Placement::kKinds: break;
    }
    return p;
  }

  void release(Placement& p) {
    for (uint64_t page : p.list_pages) EXPECT_TRUE(rig_.memory->free(page).ok());
    p.list_pages.clear();
  }

 private:
  uint64_t pick(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  // Distinct random pool pages, in random order.
  std::vector<uint64_t> distinct_pages(size_t n) {
    std::vector<uint64_t> all(pool_pages_);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng_);
    all.resize(n);
    for (auto& page : all) page = pool_ + kPage * page;
    return all;
  }
  // PRP-shaped pieces: the first from `offset` to its page end, then whole pages, each on a
  // page of its own somewhere in the pool.
  std::vector<DataSegment> scattered_pages(uint64_t bytes, uint64_t offset) {
    uint64_t pages = (offset + bytes + kPage - 1) / kPage;
    std::vector<uint64_t> where = distinct_pages(pages);
    std::vector<DataSegment> pieces;
    uint64_t left = bytes;
    for (uint64_t i = 0; i < pages; ++i) {
      uint64_t start = where[i] + (i == 0 ? offset : 0);
      uint64_t len = std::min(left, kPage - (i == 0 ? offset : 0));
      pieces.push_back({start, len});
      left -= len;
    }
    return pieces;
  }
  // Byte-granular pieces for SGLs (at least 256 bytes each, so a 32 KiB transfer needs at
  // most 128), each inside a pool page of its own; some become bit buckets.
  std::vector<DataSegment> byte_pieces(uint64_t bytes, bool with_bit_buckets) {
    std::vector<DataSegment> pieces;
    std::vector<uint64_t> where = distinct_pages(160);
    uint64_t left = bytes;
    for (size_t i = 0; left > 0; ++i) {
      uint64_t offset = pick(0, kPage - 256);
      uint64_t room = kPage - offset;
      uint64_t len = std::min(left, pick(256, room));
      bool bucket = with_bit_buckets && pick(0, 2) == 0;
      pieces.push_back({bucket ? 0 : where[i] + offset, len, bucket});
      left -= len;
    }
    return pieces;
  }
  // PRP2 points into the last few qwords of a list page, so the list must continue on a
  // second list page: [data entries..., pointer] -> [data entries...].
  bool chained_lists(uint64_t bytes, Placement& p) {
    uint64_t offset = 4 * pick(0, 1023);
    p.pieces = scattered_pages(bytes, offset);
    if (p.pieces.size() < 4) return false;  // needs PRP1 + at least 3 list entries
    std::vector<uint64_t> entries;
    for (size_t i = 1; i < p.pieces.size(); ++i) entries.push_back(p.pieces[i].address);
    // Slots in the first list page: at least 2 (one entry + the pointer), fewer than needed.
    uint64_t first_slots = pick(2, std::min<uint64_t>(entries.size() - 1, 6));
    uint64_t list1 = rig_.alloc(kPage), list2 = rig_.alloc(kPage);
    p.list_pages = {list1, list2};
    uint64_t first_at = list1 + kPage - 8 * first_slots;
    std::vector<uint64_t> first(entries.begin(), entries.begin() + (first_slots - 1));
    first.push_back(list2);
    std::vector<uint64_t> second(entries.begin() + (first_slots - 1), entries.end());
    rig_.put(first_at, as_bytes(first));
    rig_.put(list2, as_bytes(second));
    p.raw = true;
    p.prp1 = p.pieces[0].address;
    p.prp2 = first_at;
    return true;
  }
  static std::vector<uint8_t> as_bytes(const std::vector<uint64_t>& values) {
    std::vector<uint8_t> out(values.size() * 8);
    for (size_t i = 0; i < values.size(); ++i)
      for (unsigned b = 0; b < 8; ++b) out[8 * i + b] = static_cast<uint8_t>(values[i] >> (8 * b));
    return out;
  }

  NvmeRig& rig_;
  std::mt19937_64& rng_;
  uint64_t pool_;
  uint64_t pool_pages_;
};

uint32_t sgls_of(NvmeRig& rig) {
  auto id = rig.c().identify(sn::kCnsController);
  EXPECT_TRUE(id.ok()) << id.status().to_string();
  return id.ok() ? static_cast<uint32_t>(le_field(*id, sn::kIdCtrlSgls, 4)) : 0;
}

// Random reads and writes (1..64 blocks) through every data pointer layout, checked against
// an in-test model after every read and against the image file after a flush.
TEST(NvmeData, RandomReadsAndWritesMatchTheModelAndTheImage) {
  constexpr uint64_t kLba = 512;
  constexpr uint64_t kRegionBlocks = 8192;  // 4 MiB of the 32 MiB image take the traffic
  constexpr int kOperations = 2000;
  TempImage image(32 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 64).ok());
  const bool bit_bucket = (sgls_of(*rig) & sn::kSglsBitBucket) != 0;
  EXPECT_TRUE(bit_bucket) << "SGLS does not advertise bit buckets: reads skip that layout";

  const uint64_t seed = 0x5eed0001;
  std::mt19937_64 rng(seed);
  constexpr uint64_t kPoolPages = 256;
  uint64_t pool = rig->alloc(kPoolPages * kPage);
  PlacementMaker maker(*rig, rng, pool, kPoolPages);
  // The driver's PRP-list and SGL-segment pages come from here and go back at completion.
  const uint64_t dma_in_use = rig->memory->bytes_in_use();
  std::vector<uint8_t> model(kRegionBlocks * kLba, 0);
  std::map<std::string, int> done;  // "write prp-scattered" -> count

  for (int op = 0; op < kOperations && !HasFatalFailure(); ++op) {
    int what = static_cast<int>(rng() % 20);  // 0..8 write, 9 write zeroes, 10..19 read
    uint64_t blocks = 1 + rng() % 64;
    uint64_t slba = rng() % (kRegionBlocks - blocks + 1);
    uint64_t bytes = blocks * kLba;
    SCOPED_TRACE(fmt::format("operation {} (seed 0x{:x}): slba {} blocks {}", op, seed, slba,
                             blocks));
    if (what == 9) {
      Completion c =
          run(*rig, kIoQueue, commands::write_zeroes(1, slba, static_cast<uint32_t>(blocks)));
      ASSERT_EQ(c.code(), 0) << "write zeroes: " << status_text(c.status);
      std::fill(model.begin() + slba * kLba, model.begin() + (slba + blocks) * kLba, 0);
      ++done["write-zeroes"];
      continue;
    }
    bool write = what < 9;
    int kinds = bit_bucket && !write ? Placement::kKinds : Placement::kSglBitBucket;
    auto kind = static_cast<Placement::Kind>(rng() % kinds);
    Placement p = maker.make(kind, bytes);
    std::vector<uint8_t> data = write ? random_bytes(rng, bytes) : std::vector<uint8_t>();
    // Writes: the data goes into the pieces. Reads: the pieces are poisoned first.
    uint64_t at = 0;
    for (const DataSegment& piece : p.pieces) {
      if (!piece.bit_bucket) {
        if (write) {
          rig->put(piece.address, std::span<const uint8_t>(data.data() + at, piece.length));
        } else {
          rig->fill(piece.address, piece.length, 0xa5);
        }
      }
      at += piece.length;
    }
    Sqe sqe = write ? commands::write(1, slba, static_cast<uint32_t>(blocks))
                    : commands::read(1, slba, static_cast<uint32_t>(blocks));
    Completion c;
    if (p.raw) {
      sqe.set_prp1(p.prp1).set_prp2(p.prp2);
      c = run(*rig, kIoQueue, sqe);
    } else {
      c = run(*rig, kIoQueue, sqe, p.transfer);
    }
    maker.release(p);
    ASSERT_EQ(c.code(), 0) << (write ? "write " : "read ") << kind_name(p.kind) << ": "
                           << status_text(c.status);
    ++done[fmt::format("{} {}", write ? "write" : "read", kind_name(p.kind))];
    if (write) {
      std::copy(data.begin(), data.end(), model.begin() + slba * kLba);
      continue;
    }
    at = 0;
    for (const DataSegment& piece : p.pieces) {
      if (!piece.bit_bucket) {
        std::vector<uint8_t> got = rig->get(piece.address, piece.length);
        auto expected = model.begin() + slba * kLba + at;
        ASSERT_TRUE(std::equal(got.begin(), got.end(), expected))
            << "read " << kind_name(p.kind) << ": bytes [" << at << ", " << at + piece.length
            << ") of the transfer differ from what was written";
      }
      at += piece.length;
    }
  }

  Completion flush = run(*rig, kIoQueue, commands::flush(1));
  ASSERT_EQ(flush.code(), 0) << status_text(flush.status);
  EXPECT_EQ(rig->c().in_flight(kIoQueue), 0u);
  EXPECT_EQ(rig->memory->bytes_in_use(), dma_in_use) << "list pages kept after completion";
  std::vector<uint8_t> on_disk = image.read(0, model.size());
  for (uint64_t block = 0; block < kRegionBlocks; ++block) {
    ASSERT_TRUE(std::equal(on_disk.begin() + block * kLba, on_disk.begin() + (block + 1) * kLba,
                           model.begin() + block * kLba))
        << "image block " << block << " differs from the model";
  }
  std::string summary;
  for (const auto& [name, count] : done) summary += fmt::format("  {:<28} {}\n", name, count);
  std::cout << "operations by data pointer layout:\n" << summary;
  for (int kind = 0; kind < Placement::kKinds; ++kind) {
    if (kind == Placement::kSglBitBucket && !bit_bucket) continue;
    EXPECT_GT(done[fmt::format("read {}", kind_name(kind))], 0) << kind_name(kind);
    if (kind != Placement::kSglBitBucket) {
      EXPECT_GT(done[fmt::format("write {}", kind_name(kind))], 0) << kind_name(kind);
    }
  }
}

// Bit buckets: SGLS advertises them (bit 16), and a read through an SGL with bit buckets
// delivers exactly the bytes around them — each bucket takes its share of the blocks, so
// what follows it lands at the right offset (QEMU withdrew bit buckets before 7.2 because
// its buckets did not advance the disk offset) — while memory past the transfer stays
// untouched. A bit bucket on a write is refused (it describes no data to send) and the
// image is not changed.
TEST(NvmeData, SglBitBucketsFollowWhatSglsAdvertises) {
  TempImage image(16 << 20);
  const std::vector<uint8_t> blocks = pattern(7, 8192);
  image.write(0, blocks);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 16).ok());
  ASSERT_NE(sgls_of(*rig) & sn::kSglsBitBucket, 0u) << "SGLS does not advertise bit buckets";
  uint64_t buf = rig->alloc(2 * kPage);
  rig->fill(buf, 2 * kPage, 0xee);
  // Blocks 0..15 (8 KiB): drop 300, keep 1000, drop 2000, keep 1096, drop the rest (3796).
  Transfer read{Transfer::Kind::kSgl,
                {{0, 300, true}, {buf, 1000}, {0, 2000, true}, {buf + 1000, 1096},
                 {0, 3796, true}},
                {}};
  read.sgl.max_descriptors_per_segment = 2;  // buckets inside chained segments too
  Completion c = run(*rig, kIoQueue, commands::read(1, 0, 16), read);
  ASSERT_EQ(c.code(), 0) << status_text(c.status);
  std::vector<uint8_t> expected(2096);
  std::copy(blocks.begin() + 300, blocks.begin() + 1300, expected.begin());
  std::copy(blocks.begin() + 3300, blocks.begin() + 4396, expected.begin() + 1000);
  EXPECT_EQ(rig->get(buf, 2096), expected) << "the kept bytes, each from its own offset";
  EXPECT_EQ(rig->get(buf + 2096, 2 * kPage - 2096), std::vector<uint8_t>(2 * kPage - 2096, 0xee))
      << "a bit bucket's bytes reached guest memory";
  // A read that is all bit bucket moves nothing and succeeds.
  Transfer all_bucket{Transfer::Kind::kSgl, {{0, 4096, true}}, {}};
  all_bucket.sgl.always_use_segment_list = true;
  EXPECT_EQ(run(*rig, kIoQueue, commands::read(1, 0, 8), all_bucket).code(), 0);

  Transfer write{Transfer::Kind::kSgl, {{buf, 1000}, {0, 2000, true}, {buf + 1000, 1096}}, {}};
  Completion w = run(*rig, kIoQueue, commands::write(1, 0, 8), write);
  EXPECT_EQ(w.code(), sn::kSglDescriptorTypeInvalid) << status_text(w.status);
  EXPECT_TRUE(w.dnr());
  ASSERT_EQ(run(*rig, kIoQueue, commands::flush(1)).code(), 0);
  EXPECT_EQ(image.read(0, 8192), blocks) << "a refused write changed the image";
}

// ---- 2. LBA formats and namespaces ---------------------------------------------------------

TEST(NvmeNamespaces, FourKibFormatSeveralNamespacesIsolationAndInactiveIds) {
  TempImage small(16 << 20), big(32 << 20), third(16 << 20);
  std::vector<std::string> args = drive_args("d0", small);
  for (const auto& a : drive_args("d1", big)) args.push_back(a);
  for (const auto& a : drive_args("d2", third)) args.push_back(a);
  for (const char* a : {"-device", "nvme,serial=BBNS,drive=d0", "-device",
                        "nvme-ns,drive=d1,nsid=2,logical_block_size=4096", "-device",
                        "nvme-ns,drive=d2,nsid=4"})
    args.push_back(a);
  auto rig = start(args);
  ASSERT_NE(rig, nullptr);

  auto active = rig->c().identify(sn::kCnsActiveNamespaces, 0);
  ASSERT_TRUE(active.ok()) << active.status().to_string();
  std::vector<uint32_t> ids;
  for (size_t at = 0; at < 4096 && le_field(*active, at, 4) != 0; at += 4)
    ids.push_back(static_cast<uint32_t>(le_field(*active, at, 4)));
  EXPECT_EQ(ids, (std::vector<uint32_t>{1, 2, 4}));
  auto after_two = rig->c().identify(sn::kCnsActiveNamespaces, 2);
  ASSERT_TRUE(after_two.ok());
  EXPECT_EQ(le_field(*after_two, 0, 4), 4u) << "the list starts above the NSID given";
  EXPECT_EQ(le_field(*after_two, 4, 4), 0u);

  struct Expect { uint32_t nsid; uint64_t lba; uint64_t image_bytes; };
  for (const Expect& e : {Expect{1, 512, 16 << 20}, Expect{2, 4096, 32 << 20},
                          Expect{4, 512, 16 << 20}}) {
    auto id = rig->c().identify(sn::kCnsNamespace, e.nsid);
    ASSERT_TRUE(id.ok()) << id.status().to_string();
    unsigned format = (*id)[sn::kIdNsFlbas] & 0xf;
    uint32_t lbaf = static_cast<uint32_t>(le_field(*id, sn::kIdNsLbaf0 + 4 * format, 4));
    EXPECT_EQ(uint64_t{1} << ((lbaf >> sn::kLbafLbadsShift) & 0xff), e.lba) << "nsid " << e.nsid;
    EXPECT_EQ(le_field(*id, sn::kIdNsNsze, 8), e.image_bytes / e.lba) << "nsid " << e.nsid;
  }
  auto inactive = rig->c().identify(sn::kCnsNamespace, 3);
  ASSERT_TRUE(inactive.ok()) << "identify of an inactive NSID succeeds with zeroes: "
                             << inactive.status().to_string();
  EXPECT_TRUE(std::all_of(inactive->begin(), inactive->end(), [](uint8_t b) { return b == 0; }));

  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 32).ok());
  uint64_t buf = rig->alloc(64 << 10);
  // Namespace 2, 4 KiB blocks: three blocks at LBA 5 (bytes 20480..32767 of its image).
  std::vector<uint8_t> four_k = pattern(2, 3 * 4096);
  rig->put(buf, four_k);
  Completion w2 = run(*rig, kIoQueue, commands::write(2, 5, 3), Transfer::prp(buf, 3 * 4096));
  ASSERT_EQ(w2.code(), 0) << status_text(w2.status);
  // Namespace 1 and 4, 512-byte blocks, same LBA numbers: different bytes, other images.
  std::vector<uint8_t> ns1 = pattern(1, 3 * 512), ns4 = pattern(4, 3 * 512);
  rig->put(buf, ns1);
  ASSERT_EQ(run(*rig, kIoQueue, commands::write(1, 5, 3), Transfer::prp(buf, 1536)).code(), 0);
  rig->put(buf, ns4);
  ASSERT_EQ(run(*rig, kIoQueue, commands::write(4, 5, 3), Transfer::prp(buf, 1536)).code(), 0);
  ASSERT_EQ(run(*rig, kIoQueue, commands::flush(0xffffffff)).code(), 0);

  EXPECT_EQ(big.read(5 * 4096, 3 * 4096), four_k) << "nsid 2 writes 4 KiB blocks at 5 * 4096";
  EXPECT_EQ(small.read(5 * 512, 1536), ns1);
  EXPECT_EQ(third.read(5 * 512, 1536), ns4);
  EXPECT_EQ(small.read(5 * 4096, 4096), std::vector<uint8_t>(4096, 0))
      << "a namespace 2 write reached namespace 1's image";
  EXPECT_EQ(big.read(5 * 512, 1536), std::vector<uint8_t>(1536, 0))
      << "a namespace 1 or 4 write reached namespace 2's image";

  // Read back through the controller with an SGL into an odd address.
  rig->fill(buf, 3 * 4096 + 8, 0);
  Completion r2 = run(*rig, kIoQueue, commands::read(2, 5, 3),
                      Transfer::sgl_block(buf + 3, 3 * 4096));
  ASSERT_EQ(r2.code(), 0) << status_text(r2.status);
  EXPECT_EQ(rig->get(buf + 3, 3 * 4096), four_k);

  // Ranges are in the namespace's own blocks.
  uint64_t nsze2 = (32 << 20) / 4096;
  EXPECT_EQ(run(*rig, kIoQueue, commands::read(2, nsze2 - 1, 1), Transfer::prp(buf, 4096)).code(),
            0);
  EXPECT_EQ(run(*rig, kIoQueue, commands::read(2, nsze2, 1), Transfer::prp(buf, 4096)).code(),
            sn::kLbaOutOfRange);
  EXPECT_EQ(run(*rig, kIoQueue, commands::read(1, nsze2, 1), Transfer::prp(buf, 512)).code(), 0)
      << "LBA 8192 is inside namespace 1 (32768 blocks of 512 bytes)";

  // I/O to the inactive NSID 3 (between two active ones) and above NN.
  Completion gap = run(*rig, kIoQueue, commands::read(3, 0, 1), Transfer::prp(buf, 512));
  EXPECT_EQ(gap.code(), sn::kInvalidField) << status_text(gap.status);
  Completion gap_write = run(*rig, kIoQueue, commands::write(3, 0, 1), Transfer::prp(buf, 512));
  EXPECT_EQ(gap_write.code(), sn::kInvalidField) << status_text(gap_write.status);
  Completion beyond = run(*rig, kIoQueue, commands::read(0xfffe, 0, 1), Transfer::prp(buf, 512));
  EXPECT_EQ(beyond.code(), sn::kInvalidNamespaceOrFormat) << status_text(beyond.status);
}

// ---- 3. a full completion queue ------------------------------------------------------------

// An I/O queue pair set up by hand (not through the driver's bookkeeping): a CQ of
// `cq_entries` and a bigger SQ bound to it, so more commands can be outstanding than the
// CQ holds.
struct RawPair {
  uint16_t qid = 0;
  uint64_t sq = 0, cq = 0;
  uint32_t sq_entries = 0, cq_entries = 0;
  uint32_t sq_tail = 0;
};

RawPair create_raw_pair(NvmeRig& rig, uint16_t qid, uint32_t sq_entries, uint32_t cq_entries) {
  RawPair q{qid, rig.alloc(sq_entries * sn::kSqeSize), rig.alloc(cq_entries * sn::kCqeSize),
            sq_entries, cq_entries, 0};
  rig.fill(q.cq, kPage, 0);
  rig.fill(q.sq, sq_entries * sn::kSqeSize, 0);
  Completion cq = run(rig, 0, commands::create_io_cq(qid, cq_entries, q.cq, false, 0));
  EXPECT_EQ(cq.code(), 0) << status_text(cq.status);
  Completion sq = run(rig, 0, commands::create_io_sq(qid, sq_entries, q.sq, qid));
  EXPECT_EQ(sq.code(), 0) << status_text(sq.status);
  return q;
}

void push_raw(NvmeRig& rig, RawPair& q, Sqe sqe, uint16_t cid) {
  sqe.set_cid(cid);
  rig.put(q.sq + uint64_t{q.sq_tail} * sn::kSqeSize, sqe.bytes);
  q.sq_tail = (q.sq_tail + 1) % q.sq_entries;
}

// Ten commands into a 4-entry CQ (3 usable slots), nothing consumed: the free slot is never
// written. Then the head advances one entry at a time: each completion arrives once, in
// order, in the next slot, with the phase tag flipping on every wrap.
TEST(NvmeQueues, FullCompletionQueueIsNeverOverwrittenAndWrapsWithThePhaseTag) {
  TempImage image(16 << 20);
  std::vector<uint8_t> blocks = pattern(9, 10 * 512);
  image.write(0, blocks);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  RawPair q = create_raw_pair(*rig, 3, 16, 4);
  ASSERT_FALSE(HasFailure());

  uint32_t consumed = 0;  // completions taken so far, over both rounds
  auto expected_phase = [&](uint32_t index) { return (index / q.cq_entries) % 2 == 0; };
  auto slot_of = [&](uint32_t index) { return index % q.cq_entries; };

  // Round 1: commands that complete at once (an invalid opcode), so the posting order is
  // the submission order.
  for (uint16_t i = 0; i < 10; ++i) {
    Sqe bad;
    bad.set_opcode(0x7f).set_nsid(1);
    push_raw(*rig, q, bad, static_cast<uint16_t>(100 + i));
  }
  ASSERT_TRUE(rig->c().write_sq_doorbell(q.qid, q.sq_tail).ok());
  ASSERT_TRUE(wait_for_phase(*rig, q.cq, 2, true)) << "three completions fit";
  std::this_thread::sleep_for(Millis(50));  // room for a misbehaving controller to overwrite
  auto untouched = rig->get(q.cq + 3 * sn::kCqeSize, sn::kCqeSize);
  EXPECT_EQ(untouched, std::vector<uint8_t>(16, 0)) << "the CQ's free slot was written while full";
  for (uint32_t i = 0; i < 10; ++i) {
    uint32_t index = consumed++;
    Completion c = read_cqe(*rig, q.cq, slot_of(index));
    ASSERT_EQ(c.phase, expected_phase(index)) << "completion " << i << " is not posted";
    EXPECT_EQ(c.cid, 100 + i) << "completion " << i << " out of order";
    EXPECT_EQ(c.code(), sn::kInvalidOpcode) << status_text(c.status);
    EXPECT_EQ(c.sq_id, q.qid);
    EXPECT_LT(c.sq_head, q.sq_entries);
    // Before the head moves past this entry, the slot after the last posted one (which
    // holds the entry consumed before this one) must be unchanged.
    if (i + 3 < 10) {
      Completion old = read_cqe(*rig, q.cq, slot_of(index + 3));
      if (index == 0) {
        EXPECT_FALSE(old.phase) << "slot " << slot_of(index + 3) << " written early";
      } else {
        EXPECT_EQ(old.phase, expected_phase(index - 1)) << "slot overwritten before consumed";
        EXPECT_EQ(old.cid, 100 + i - 1) << "slot overwritten before consumed";
      }
    }
    ASSERT_TRUE(rig->c().write_cq_doorbell(q.qid, slot_of(index + 1)).ok());
  }
  std::this_thread::sleep_for(Millis(20));
  EXPECT_NE(read_cqe(*rig, q.cq, slot_of(consumed)).phase, expected_phase(consumed))
      << "an eleventh completion appeared";

  // Round 2: reads (completing in any order through the block layer), 10 again.
  uint64_t bufs = rig->alloc(10 * kPage);
  rig->fill(bufs, 10 * kPage, 0xee);
  for (uint16_t i = 0; i < 10; ++i) {
    Sqe read = commands::read(1, i, 1);
    read.set_prp1(bufs + i * kPage);
    push_raw(*rig, q, read, static_cast<uint16_t>(200 + i));
  }
  ASSERT_TRUE(rig->c().write_sq_doorbell(q.qid, q.sq_tail).ok());
  ASSERT_TRUE(wait_for_phase(*rig, q.cq, slot_of(consumed + 2), expected_phase(consumed + 2)));
  std::this_thread::sleep_for(Millis(100));
  Completion free_slot = read_cqe(*rig, q.cq, slot_of(consumed + 3));
  EXPECT_NE(free_slot.phase, expected_phase(consumed + 3)) << "free slot written while full";
  std::multiset<uint16_t> seen;
  for (uint32_t i = 0; i < 10; ++i) {
    uint32_t index = consumed++;
    ASSERT_TRUE(wait_for_phase(*rig, q.cq, slot_of(index), expected_phase(index)))
        << "read completion " << i << " never posted";
    Completion c = read_cqe(*rig, q.cq, slot_of(index));
    EXPECT_EQ(c.code(), 0) << status_text(c.status);
    seen.insert(c.cid);
    ASSERT_TRUE(rig->c().write_cq_doorbell(q.qid, slot_of(index + 1)).ok());
  }
  std::multiset<uint16_t> expected;
  for (uint16_t i = 0; i < 10; ++i) expected.insert(static_cast<uint16_t>(200 + i));
  EXPECT_EQ(seen, expected) << "every read completes exactly once";
  for (uint16_t i = 0; i < 10; ++i) {
    EXPECT_EQ(rig->get(bufs + i * kPage, 512),
              std::vector<uint8_t>(blocks.begin() + i * 512, blocks.begin() + (i + 1) * 512))
        << "read " << i;
  }
  std::this_thread::sleep_for(Millis(20));
  EXPECT_NE(read_cqe(*rig, q.cq, slot_of(consumed)).phase, expected_phase(consumed))
      << "a completion beyond the twenty submitted appeared";
  EXPECT_EQ(rig->csts() & sn::kCstsCfs, 0u);
}

// ---- 4. interrupts -------------------------------------------------------------------------

size_t count_lines(std::deque<std::string>& irqs, const std::string& line) {
  return static_cast<size_t>(std::count(irqs.begin(), irqs.end(), line));
}

// Each CQ signals its own MSI-X vector (one message per posting), a CQ without IEN none;
// a masked vector keeps its message pending until unmasked.
TEST(NvmeInterrupts, MsixVectorPerCompletionQueue) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().enable_msix().ok());
  ASSERT_TRUE(rig->c().create_io_queue_pair(1, 16, {true, 1}).ok());
  ASSERT_TRUE(rig->c().create_io_queue_pair(2, 16, {true, 2}).ok());
  ASSERT_TRUE(rig->c().create_io_queue_pair(3, 16, {false, 3}).ok());
  uint64_t buf = rig->alloc(kPage);
  auto words = [&] {
    std::vector<uint32_t> out;
    for (uint16_t v = 1; v <= 3; ++v) {
      auto w = rig->c().interrupt_word(v);
      EXPECT_TRUE(w.ok());
      out.push_back(w.ok() ? *w : 0xdead);
    }
    return out;
  };
  auto clear = [&] {
    for (uint16_t v = 0; v <= 3; ++v) ASSERT_TRUE(rig->c().clear_interrupt(v).ok());
  };
  clear();
  ASSERT_EQ(run(*rig, 1, commands::read(1, 0, 1), Transfer::prp(buf, 512)).code(), 0);
  EXPECT_EQ(words(), (std::vector<uint32_t>{0x10001, 0, 0})) << "queue 1 signals vector 1 only";
  clear();
  ASSERT_EQ(run(*rig, 2, commands::read(1, 0, 1), Transfer::prp(buf, 512)).code(), 0);
  EXPECT_EQ(words(), (std::vector<uint32_t>{0, 0x10002, 0})) << "queue 2 signals vector 2 only";
  clear();
  ASSERT_EQ(run(*rig, 3, commands::read(1, 0, 1), Transfer::prp(buf, 512)).code(), 0);
  EXPECT_EQ(words(), (std::vector<uint32_t>{0, 0, 0})) << "queue 3 has interrupts disabled";

  // Count the messages: vector 1 now targets the MSI window, which qtest reports.
  auto intercepted = rig->vm->qtest().command("irq_intercept_in msi");
  ASSERT_TRUE(intercepted.ok() && *intercepted == "OK") << (intercepted.ok() ? *intercepted : "");
  guest::Msix& msix = *rig->c().msix();
  ASSERT_TRUE(msix.set_vector(*rig->bus, 1, 0xfee00000, 0x61).ok());
  ASSERT_TRUE(msix.set_vector(*rig->bus, 2, 0xfee00000, 0x62).ok());
  auto& irqs = rig->bus->irqs();
  irqs.clear();
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(run(*rig, 1, commands::read(1, i, 1), Transfer::prp(buf, 512)).code(), 0);
  (void)rig->csts();  // a round trip: every message sent before it has arrived
  EXPECT_EQ(count_lines(irqs, "raise 97"), 5u) << "one message per completion on vector 1";
  EXPECT_EQ(count_lines(irqs, "raise 98"), 0u);

  ASSERT_TRUE(msix.mask_vector(*rig->bus, 1, true).ok());
  irqs.clear();
  ASSERT_EQ(run(*rig, 1, commands::read(1, 0, 1), Transfer::prp(buf, 512)).code(), 0);
  (void)rig->csts();
  EXPECT_EQ(count_lines(irqs, "raise 97"), 0u) << "a masked vector sends nothing";
  auto pending = msix.pending(*rig->bus, 1);
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(*pending) << "the masked message waits in the PBA";
  ASSERT_TRUE(msix.mask_vector(*rig->bus, 1, false).ok());
  (void)rig->csts();
  EXPECT_EQ(count_lines(irqs, "raise 97"), 1u) << "unmasking delivers the pending message";
  pending = msix.pending(*rig->bus, 1);
  ASSERT_TRUE(pending.ok());
  EXPECT_FALSE(*pending);
}

// Without MSI-X: the INTx line is up while an interrupt-enabled CQ holds unconsumed
// entries, down once the head catches up; INTMS masks it, INTMC unmasks it.
TEST(NvmeInterrupts, IntxFollowsUnconsumedEntriesAndTheMaskRegisters) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  auto intercepted = rig->vm->qtest().command("irq_intercept_in ioapic");
  ASSERT_TRUE(intercepted.ok() && *intercepted == "OK") << (intercepted.ok() ? *intercepted : "");
  const guest::PciFunction& fn = rig->c().pci();
  auto line = rig->bus->config_read(fn.slot, fn.function, guest::pci_config::kInterruptLine, 1);
  ASSERT_TRUE(line.ok());
  const std::string raise = fmt::format("raise {}", *line), lower = fmt::format("lower {}", *line);
  ASSERT_TRUE(rig->c().create_io_queue_pair(1, 16, {true, 0}).ok());
  ASSERT_TRUE(rig->c().create_io_queue_pair(2, 16, {false, 0}).ok());
  uint64_t buf = rig->alloc(kPage);
  auto& irqs = rig->bus->irqs();
  auto interrupt_status = [&] {
    auto status = rig->bus->config_read(fn.slot, fn.function, guest::pci_config::kStatus, 2);
    return status.ok() && (*status & (1u << 3)) != 0;
  };

  // Submits a read on `qid` and waits until its CQE is in memory, without consuming it.
  auto post_one = [&](uint16_t qid) {
    guest::nvme::QueuePair* q = rig->c().queue(qid);
    uint32_t slot = q->cq_head();
    bool phase = q->expected_phase();
    auto cid = rig->c().submit(qid, commands::read(1, 0, 1), Transfer::prp(buf, 512));
    EXPECT_TRUE(cid.ok());
    EXPECT_TRUE(wait_for_phase(*rig, q->layout().cq_address, slot, phase));
    (void)rig->csts();
  };
  auto consume = [&](uint16_t qid) {
    auto taken = rig->c().reap(qid, 1);
    ASSERT_TRUE(taken.ok());
    ASSERT_EQ(taken->size(), 1u);
    (void)rig->csts();
  };

  irqs.clear();
  post_one(1);
  EXPECT_EQ(std::vector<std::string>(irqs.begin(), irqs.end()), std::vector<std::string>{raise})
      << "an unconsumed entry raises the line once";
  EXPECT_TRUE(interrupt_status()) << "PCI status Interrupt Status follows the line";
  irqs.clear();
  consume(1);
  EXPECT_EQ(std::vector<std::string>(irqs.begin(), irqs.end()), std::vector<std::string>{lower})
      << "the head catching up lowers the line";
  EXPECT_FALSE(interrupt_status());

  irqs.clear();
  post_one(2);
  EXPECT_TRUE(irqs.empty()) << "a CQ without IEN leaves the line alone";
  consume(2);

  ASSERT_TRUE(rig->c().write32(sn::kRegIntms, 1).ok());
  auto intms = rig->c().read32(sn::kRegIntms);
  ASSERT_TRUE(intms.ok());
  EXPECT_EQ(*intms & 1, 1u) << "INTMS reads the mask";
  irqs.clear();
  post_one(1);
  EXPECT_TRUE(irqs.empty()) << "INTMS bit 0 masks vector 0";
  ASSERT_TRUE(rig->c().write32(sn::kRegIntmc, 1).ok());
  (void)rig->csts();
  EXPECT_EQ(std::vector<std::string>(irqs.begin(), irqs.end()), std::vector<std::string>{raise})
      << "INTMC unmasks: the entry is still unconsumed";
  auto intmc = rig->c().read32(sn::kRegIntmc);
  ASSERT_TRUE(intmc.ok());
  EXPECT_EQ(*intmc & 1, 0u);
  irqs.clear();
  consume(1);
  EXPECT_EQ(std::vector<std::string>(irqs.begin(), irqs.end()), std::vector<std::string>{lower});
}

// ---- 5. reset during I/O -------------------------------------------------------------------

// CC.EN = 0 while 32 writes are held by the block layer (released by the reset's drain, then
// 50 ms more): the controller settles them before RDY drops, posts nothing afterwards, comes
// back up, and keeps the data.
TEST(NvmeReset, DisableDuringHeldWritesSettlesAndRecovers) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 64).ok());
  uint64_t buf = rig->alloc(40 * kPage);
  std::vector<uint8_t> before = pattern(11, 8 * 512);
  rig->put(buf, before);
  ASSERT_EQ(run(*rig, kIoQueue, commands::write(1, 0, 8), Transfer::prp(buf, 4096)).code(), 0);

  rig->vm->ok("x-blkdebug-inject",
              {{"drive", "d0"}, {"op", "write"}, {"hold", true}, {"delay-ms", 50}});
  constexpr int kWrites = 32;
  for (int i = 0; i < kWrites; ++i) {
    rig->put(buf + kPage * (i + 1), pattern(100 + i, 4096));
    auto cid = rig->c().submit(kIoQueue, commands::write(1, 1000 + 8 * i, 8),
                               Transfer::prp(buf + kPage * (i + 1), 4096), /*ring=*/false);
    ASSERT_TRUE(cid.ok()) << cid.status().to_string();
  }
  const guest::nvme::QueueLayout old = rig->c().queue(kIoQueue)->layout();
  ASSERT_TRUE(rig->c().ring_sq(kIoQueue).ok());
  // Every write has reached the backend and waits there (the controller fetches them on its
  // own time: a deadline no busy machine reaches).
  Json held;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
       std::chrono::steady_clock::now() < end;) {
    held = rig->vm->ok("x-blkdebug-query", {{"drive", "d0"}});
    if (held.value("held", 0) == kWrites) break;
    std::this_thread::sleep_for(Millis(2));
  }
  ASSERT_EQ(held.value("held", 0), kWrites) << held.dump();
  ASSERT_TRUE(rig->c().write32(sn::kRegCc, 0).ok());  // CC.EN = 0 while the writes wait
  uint32_t csts = rig->csts();
  EXPECT_EQ(csts & (sn::kCstsRdy | sn::kCstsCfs), 0u) << fmt::format("CSTS 0x{:x}", csts);
  auto old_cq = rig->get(old.cq_address, 64 * sn::kCqeSize);
  // Nothing is left at the backend that could complete later.
  held = rig->vm->ok("x-blkdebug-query", {{"drive", "d0"}});
  EXPECT_EQ(held.value("in-flight", -1), 0) << held.dump();
  EXPECT_EQ(held.value("held", -1), 0) << held.dump();
  std::this_thread::sleep_for(Millis(50));  // room for a misbehaving controller to post
  EXPECT_EQ(rig->get(old.cq_address, 64 * sn::kCqeSize), old_cq)
      << "a completion was posted into the CQ after the reset";
  EXPECT_TRUE(rig->vm_answers());

  rig->vm->ok("x-blkdebug-clear", {{"drive", "d0"}});
  Status enabled = rig->c().enable();
  ASSERT_TRUE(enabled.ok()) << enabled.to_string();
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 64).ok());
  uint64_t in = rig->alloc(40 * kPage);
  ASSERT_EQ(run(*rig, kIoQueue, commands::read(1, 0, 8), Transfer::prp(in, 4096)).code(), 0);
  EXPECT_EQ(rig->get(in, 4096), before) << "data written before the reset";
  // Each interrupted write either happened or did not, block by block: no other bytes.
  int landed = 0;
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_EQ(run(*rig, kIoQueue, commands::read(1, 1000 + 8 * i, 8), Transfer::prp(in, 4096))
                  .code(), 0);
    std::vector<uint8_t> got = rig->get(in, 4096), want = pattern(100 + i, 4096);
    for (int b = 0; b < 8; ++b) {
      auto g = got.begin() + 512 * b;
      bool zero = std::all_of(g, g + 512, [](uint8_t x) { return x == 0; });
      bool written = std::equal(g, g + 512, want.begin() + 512 * b);
      EXPECT_TRUE(zero || written) << "write " << i << " block " << b << " is torn";
      landed += written ? 1 : 0;
    }
  }
  std::cout << "blocks of the interrupted writes that reached the image: " << landed << " of "
            << kWrites * 8 << "\n";
  ASSERT_EQ(run(*rig, kIoQueue, commands::flush(1)).code(), 0);
  EXPECT_EQ(image.read(0, 4096), before);
  // A fresh write after the reset works and completes normally.
  rig->put(in, pattern(12, 4096));
  ASSERT_EQ(run(*rig, kIoQueue, commands::write(1, 16, 8), Transfer::prp(in, 4096)).code(), 0);
  EXPECT_EQ(image.read(16 * 512, 4096), pattern(12, 4096));
}

// ---- 6. injected block errors --------------------------------------------------------------

uint64_t smart_counter(NvmeRig& rig, unsigned offset, uint32_t nsid = 0xffffffff) {
  auto log = rig.c().get_log_page(sn::kLogSmartHealth, 512, nsid);
  EXPECT_TRUE(log.ok()) << log.status().to_string();
  return log.ok() ? le_field(*log, offset, 8) : 0;
}

TEST(NvmeErrors, InjectedBlockErrorsBecomeNvmeStatuses) {
  TempImage image(16 << 20);
  std::vector<uint8_t> original = pattern(21, 64 * 512);
  image.write(0, original);
  // werror=report: every failure reaches the guest (the default, enospc, would pause the VM
  // on the ENOSPC case; tests/block_error_policy_test.cc covers the policies).
  std::vector<std::string> args = nvme_args(image, "", {"-blkdebug", "drive=d0,op=flush,errno=EIO,once=on"});
  args[1] += ",werror=report";
  auto rig = start(args);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 16).ok());
  uint64_t media_before = smart_counter(*rig, sn::kSmartMediaErrors);
  int media_errors = 0;
  uint64_t buf = rig->alloc(8 * kPage);
  auto read = [&](uint64_t slba, uint32_t n) {
    return run(*rig, kIoQueue, commands::read(1, slba, n), Transfer::prp(buf, n * 512ull));
  };
  auto write = [&](uint64_t slba, uint32_t n, uint32_t seed) {
    rig->put(buf, pattern(seed, n * 512ull));
    return run(*rig, kIoQueue, commands::write(1, slba, n), Transfer::prp(buf, n * 512ull));
  };
  auto inject = [&](Json rule) {
    rule["drive"] = "d0";
    rig->vm->ok("x-blkdebug-inject", rule);
  };
  auto clear = [&] { rig->vm->ok("x-blkdebug-clear", {{"drive", "d0"}}); };

  // From the command line: the first flush fails (Write Fault), the second does not.
  Completion f1 = run(*rig, kIoQueue, commands::flush(1));
  EXPECT_EQ(f1.code(), sn::kWriteFault) << status_text(f1.status);
  media_errors += f1.code() == sn::kWriteFault;
  EXPECT_EQ(run(*rig, kIoQueue, commands::flush(1)).code(), 0) << "once=on: spent";

  inject({{"op", "read"}, {"errno", "EIO"}});
  Completion r = read(0, 4);
  EXPECT_EQ(r.code(), sn::kUnrecoveredReadError) << status_text(r.status);
  media_errors += r.code() == sn::kUnrecoveredReadError;
  EXPECT_EQ(write(8, 1, 1).code(), 0) << "a read rule leaves writes alone";
  clear();
  EXPECT_EQ(read(0, 4).code(), 0) << "cleared";

  inject({{"op", "write"}, {"errno", "EIO"}});
  Completion w = write(16, 4, 2);
  EXPECT_EQ(w.code(), sn::kWriteFault) << status_text(w.status);
  media_errors += w.code() == sn::kWriteFault;
  EXPECT_EQ(read(16, 4).code(), 0) << "a write rule leaves reads alone";
  EXPECT_EQ(rig->get(buf, 2048), std::vector<uint8_t>(original.begin() + 16 * 512,
                                                      original.begin() + 20 * 512))
      << "a failed write must not change the blocks";
  clear();

  inject({{"op", "write"}, {"errno", "ENOSPC"}});
  Completion full = write(24, 2, 3);
  EXPECT_EQ(full.code(), sn::kCapacityExceeded) << status_text(full.status);
  clear();

  // after=2, once=on: two writes pass, the third fails, the fourth passes again.
  inject({{"op", "write"}, {"errno", "EIO"}, {"after", 2}, {"once", true}});
  std::vector<uint16_t> codes;
  for (uint32_t i = 0; i < 4; ++i) codes.push_back(write(32 + i, 1, 40 + i).code());
  EXPECT_EQ(codes, (std::vector<uint16_t>{0, 0, sn::kWriteFault, 0}));
  media_errors += static_cast<int>(std::count(codes.begin(), codes.end(), sn::kWriteFault));
  clear();

  // offset/length: only requests overlapping block 50 fail.
  inject({{"op", "write"}, {"errno", "EIO"}, {"offset", 50 * 512}, {"length", 512}});
  EXPECT_EQ(write(48, 2, 5).code(), 0);
  Completion overlap = write(49, 2, 6);
  EXPECT_EQ(overlap.code(), sn::kWriteFault) << status_text(overlap.status);
  media_errors += overlap.code() == sn::kWriteFault;
  EXPECT_EQ(write(51, 2, 7).code(), 0);
  clear();

  ASSERT_EQ(run(*rig, kIoQueue, commands::flush(1)).code(), 0);
  EXPECT_EQ(image.read(16 * 512, 2048), std::vector<uint8_t>(original.begin() + 16 * 512,
                                                             original.begin() + 20 * 512));
  // Blocks 48..49 hold the successful write; the failed one (49..50) changed neither.
  std::vector<uint8_t> first_ok = pattern(5, 1024);
  EXPECT_EQ(image.read(49 * 512, 512), std::vector<uint8_t>(first_ok.begin() + 512, first_ok.end()))
      << "the failed write at 49..50 reached the image";
  EXPECT_EQ(image.read(50 * 512, 512), std::vector<uint8_t>(original.begin() + 50 * 512,
                                                            original.begin() + 51 * 512))
      << "the failed write at 49..50 reached the image";
  EXPECT_EQ(image.read(34 * 512, 512), std::vector<uint8_t>(original.begin() + 34 * 512,
                                                            original.begin() + 35 * 512))
      << "the failed third write (after=2) reached the image";
  EXPECT_EQ(image.read(35 * 512, 512), pattern(43, 512));
  EXPECT_EQ(smart_counter(*rig, sn::kSmartMediaErrors) - media_before,
            static_cast<uint64_t>(media_errors))
      << "SMART Media and Data Integrity Errors counts every Write Fault / Unrecovered Read";
  EXPECT_TRUE(rig->vm_answers());
}

// ---- 7. admin: asynchronous events, logs, features, shadow doorbells -----------------------

// Outstanding Asynchronous Event Requests, kept topped up.
class AerPool {
 public:
  explicit AerPool(NvmeRig& rig) : rig_(rig) {}
  void submit() {
    auto cid = rig_.c().submit(0, commands::async_event_request());
    ASSERT_TRUE(cid.ok()) << cid.status().to_string();
    cids_.push_back(*cid);
  }
  // The next AER completion within `timeout`; replaces the request that completed.
  std::optional<Completion> next(Millis timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    do {
      for (size_t i = 0; i < cids_.size(); ++i) {
        auto done = rig_.c().wait(0, cids_[i], Millis(0));
        if (!done.ok()) continue;
        cids_.erase(cids_.begin() + static_cast<std::ptrdiff_t>(i));
        submit();
        return *done;
      }
      std::this_thread::sleep_for(Millis(2));
    } while (std::chrono::steady_clock::now() < deadline);
    return std::nullopt;
  }
  const std::vector<uint16_t>& cids() const { return cids_; }

 private:
  NvmeRig& rig_;
  std::vector<uint16_t> cids_;
};

uint8_t aerl_of(NvmeRig& rig) {
  auto id = rig.c().identify(sn::kCnsController);
  EXPECT_TRUE(id.ok());
  return id.ok() ? (*id)[sn::kIdCtrlAerl] : 0;
}

TEST(NvmeAdmin, AsyncEventsCompleteWithTheEventAndStayMaskedUntilTheLogIsRead) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  unsigned limit = aerl_of(*rig) + 1u;
  AerPool pool(*rig);
  for (unsigned i = 0; i < limit; ++i) pool.submit();
  Completion over = run(*rig, 0, commands::async_event_request(), {}, Millis(30000));
  EXPECT_EQ(over.code(), sn::kAsyncEventRequestLimitExceeded) << status_text(over.status);
  EXPECT_FALSE(pool.next(Millis(100))) << "no event yet";

  // SMART temperature: report it, then drop the over-temperature threshold below the
  // current temperature.
  ASSERT_EQ(run(*rig, 0, commands::set_features(sn::kFeatAsyncEventConfig,
                                                sn::kSmartWarnTemperature)).code(), 0);
  ASSERT_EQ(run(*rig, 0, commands::set_features(sn::kFeatTemperatureThreshold, 0x100)).code(), 0);
  const uint32_t smart_event =
      sn::aer_result(sn::kAerTypeSmart, sn::kAerInfoSmartTemperature, sn::kLogSmartHealth);
  auto event = pool.next(Millis(30000));
  ASSERT_TRUE(event) << "no asynchronous event for the temperature threshold";
  EXPECT_EQ(event->code(), 0);
  EXPECT_EQ(event->dw0, smart_event) << fmt::format("dw0 0x{:08x}", event->dw0);
  // Same type again: masked until the SMART log is read without RAE.
  ASSERT_EQ(run(*rig, 0, commands::set_features(sn::kFeatTemperatureThreshold, 0x101)).code(), 0);
  EXPECT_FALSE(pool.next(Millis(200))) << "SMART events must stay masked until the log is read";
  uint64_t page = rig->alloc(kPage);
  Completion retained = run(*rig, 0, commands::get_log_page(sn::kLogSmartHealth, 512, 0xffffffff,
                                                            0, /*retain_async_event=*/true),
                            Transfer::prp(page, 512));
  ASSERT_EQ(retained.code(), 0);
  EXPECT_EQ(rig->get(page, 1)[0] & sn::kSmartWarnTemperature, sn::kSmartWarnTemperature);
  EXPECT_FALSE(pool.next(Millis(200))) << "reading with RAE keeps the event type masked";
  auto smart = rig->c().get_log_page(sn::kLogSmartHealth, 512);
  ASSERT_TRUE(smart.ok());
  // Unmasked: the event queued meanwhile arrives now, or a new trigger brings one.
  auto again = pool.next(Millis(300));
  if (!again) {
    ASSERT_EQ(run(*rig, 0, commands::set_features(sn::kFeatTemperatureThreshold, 0x102)).code(),
              0);
    again = pool.next(Millis(30000));
  }
  ASSERT_TRUE(again) << "no SMART event after the log page was read";
  EXPECT_EQ(again->dw0, smart_event);

  // An error event: a doorbell write to a queue that does not exist.
  ASSERT_TRUE(rig->c().write_sq_doorbell(9, 1).ok());
  auto error = pool.next(Millis(30000));
  ASSERT_TRUE(error) << "no asynchronous event for a doorbell of a missing queue";
  EXPECT_EQ(error->dw0, sn::aer_result(sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbell,
                                       sn::kLogErrorInformation))
      << fmt::format("dw0 0x{:08x}", error->dw0);
  ASSERT_TRUE(rig->c().write_cq_doorbell(9, 1).ok());
  EXPECT_FALSE(pool.next(Millis(200))) << "error events stay masked until the error log is read";
  ASSERT_TRUE(rig->c().get_log_page(sn::kLogErrorInformation, 64).ok());
  auto error_again = pool.next(Millis(300));
  if (!error_again) {
    ASSERT_TRUE(rig->c().write_sq_doorbell(9, 1).ok());
    error_again = pool.next(Millis(30000));
  }
  ASSERT_TRUE(error_again) << "no error event after the error log was read";
  EXPECT_EQ(error_again->dw0 & 0x7, sn::kAerTypeError);
  EXPECT_TRUE(rig->vm_answers());
}

TEST(NvmeAdmin, SmartCountersFollowTheIo) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 16).ok());
  auto log = [&] {
    auto l = rig->c().get_log_page(sn::kLogSmartHealth, 512);
    EXPECT_TRUE(l.ok()) << l.status().to_string();
    return l.ok() ? *l : std::vector<uint8_t>(512);
  };
  std::vector<uint8_t> before = log();
  EXPECT_NE(le_field(before, sn::kSmartTemperature, 2), 0u) << "a composite temperature";
  uint64_t buf = rig->alloc(64 * 512);
  // 40 reads of 50 blocks (2000 units of 512 bytes) and 40 writes of 25 (1000).
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(run(*rig, kIoQueue, commands::read(1, 100 * i, 50), Transfer::prp(buf, 50 * 512))
                  .code(), 0);
    ASSERT_EQ(run(*rig, kIoQueue, commands::write(1, 100 * i, 25), Transfer::prp(buf, 25 * 512))
                  .code(), 0);
  }
  // Commands that fail do not count as host commands.
  EXPECT_EQ(run(*rig, kIoQueue, commands::read(1, 1ull << 40, 1), Transfer::prp(buf, 512)).code(),
            sn::kLbaOutOfRange);
  std::vector<uint8_t> after = log();
  auto delta = [&](unsigned offset) {
    return le_field(after, offset, 8) - le_field(before, offset, 8);
  };
  EXPECT_EQ(delta(sn::kSmartHostReads), 40u);
  EXPECT_EQ(delta(sn::kSmartHostWrites), 40u);
  EXPECT_EQ(delta(sn::kSmartDataUnitsRead), 2u) << "thousands of 512-byte units";
  EXPECT_EQ(delta(sn::kSmartDataUnitsWritten), 1u);
  auto ns1 = rig->c().get_log_page(sn::kLogSmartHealth, 512, 1);
  ASSERT_TRUE(ns1.ok()) << ns1.status().to_string();
  EXPECT_EQ(le_field(*ns1, sn::kSmartHostReads, 8), le_field(after, sn::kSmartHostReads, 8))
      << "one namespace: its log is the controller's";
}

// Get Features Timestamp (into the guest buffer `buf`): the whole 8-byte attribute.
uint64_t get_timestamp(NvmeRig& rig, uint64_t buf) {
  rig.fill(buf, 8, 0);
  Completion c = run(rig, 0, commands::get_features(sn::kFeatTimestamp), Transfer::prp(buf, 8));
  EXPECT_EQ(c.code(), 0) << status_text(c.status);
  return le_field(rig.get(buf, 8), 0, 8);
}

TEST(NvmeAdmin, TimestampKeepsCountingFromTheValueSet) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  uint64_t buf = rig->alloc(kPage);
  auto get = [&] { return get_timestamp(*rig, buf); };
  uint64_t initial = get();
  EXPECT_EQ((initial >> 49) & 7, 0u) << "origin 0: not set by the host since reset";
  constexpr uint64_t kSet = 1'700'000'000'000ull;  // ms
  std::vector<uint8_t> value(8);
  for (int i = 0; i < 8; ++i) value[i] = static_cast<uint8_t>(kSet >> (8 * i));
  rig->put(buf, value);
  Completion set = run(*rig, 0, commands::set_features(sn::kFeatTimestamp, 0),
                       Transfer::prp(buf, 8));
  ASSERT_EQ(set.code(), 0) << status_text(set.status);
  uint64_t first = get();
  uint64_t t1 = first & 0xffffffffffffull;
  EXPECT_EQ((first >> 49) & 7, 1u) << "origin 1: set by the host";
  EXPECT_GE(t1, kSet);
  EXPECT_LT(t1, kSet + 60'000) << "the timestamp starts from the value set";
  std::this_thread::sleep_for(Millis(30));
  uint64_t t2 = get() & 0xffffffffffffull;
  EXPECT_GE(t2, t1 + 30) << "the timestamp keeps counting in milliseconds";
}

TEST(NvmeAdmin, ShadowDoorbellsAreReadAndEventIndexesWritten) {
  TempImage image(16 << 20);
  image.write(0, pattern(31, 8 * 512));
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  auto id = rig->c().identify(sn::kCnsController);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(le_field(*id, sn::kIdCtrlOacs, 2) & sn::kOacsDoorbellBufferConfig)
      << "OACS does not offer Doorbell Buffer Config";
  uint64_t shadow = rig->alloc(kPage), events = rig->alloc(kPage);
  rig->fill(shadow, kPage, 0);
  rig->fill(events, kPage, 0);
  Sqe dbbuf;
  dbbuf.set_opcode(sn::kAdminDoorbellBufferConfig).set_prp1(shadow).set_prp2(events);
  Completion configured = run(*rig, 0, dbbuf);
  ASSERT_EQ(configured.code(), 0) << status_text(configured.status);
  Sqe misaligned = dbbuf;
  misaligned.set_prp1(shadow + 8);
  EXPECT_EQ(run(*rig, 0, misaligned).code(), sn::kInvalidField) << "buffers are page aligned";

  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 16).ok());
  guest::nvme::QueuePair& q = *rig->c().queue(kIoQueue);
  uint64_t buf = rig->alloc(kPage);
  auto shadow_store = [&](uint64_t offset, uint32_t value) {
    ASSERT_TRUE(rig->bus->memory_store(shadow + offset, value, 4).ok());
  };
  auto event_index = [&](uint64_t offset) {
    auto v = rig->bus->memory_load(events + offset, 4);
    EXPECT_TRUE(v.ok());
    return v.ok() ? static_cast<uint32_t>(*v) : 0xffffffffu;
  };
  // Updates the shadow CQ head the way a driver does after consuming.
  auto consume = [&](uint16_t cid) {
    auto c = rig->c().wait(kIoQueue, cid);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c->code(), 0) << status_text(c->status);
    shadow_store(8 * kIoQueue + 4, q.cq_head());
  };

  for (uint32_t i = 0; i < 3; ++i) {
    auto cid = rig->c().submit(kIoQueue, commands::read(1, i, 1), Transfer::prp(buf, 512),
                               /*ring=*/false);
    ASSERT_TRUE(cid.ok());
    shadow_store(8 * kIoQueue, q.sq_tail());
    ASSERT_TRUE(rig->c().ring_sq(kIoQueue).ok());
    consume(*cid);
    EXPECT_EQ(event_index(8 * kIoQueue), q.sq_tail()) << "SQ event index after command " << i;
  }
  const std::vector<uint8_t> blocks = pattern(31, 8 * 512);
  EXPECT_EQ(rig->get(buf, 512), std::vector<uint8_t>(blocks.begin() + 1024, blocks.begin() + 1536));

  // The shadow tail wins over a stale MMIO doorbell value: write the shadow one entry
  // ahead, ring the MMIO doorbell with the old tail.
  uint32_t stale = q.sq_tail();
  auto cid = rig->c().submit(kIoQueue, commands::read(1, 7, 1), Transfer::prp(buf, 512), false);
  ASSERT_TRUE(cid.ok());
  shadow_store(8 * kIoQueue, q.sq_tail());
  ASSERT_TRUE(rig->c().write_sq_doorbell(kIoQueue, stale).ok());
  consume(*cid);
  EXPECT_EQ(rig->get(buf, 512), std::vector<uint8_t>(blocks.begin() + 3584, blocks.end()));
  EXPECT_EQ(event_index(8 * kIoQueue), q.sq_tail());
  // Admin commands keep working with the buffer configured.
  EXPECT_TRUE(rig->c().identify(sn::kCnsController).ok());

  // A full CQ writes its CQ head event index: the host must ring the head doorbell once it
  // consumes past it. Queue 3: a 4-entry CQ behind a 16-entry SQ.
  RawPair r = create_raw_pair(*rig, 3, 16, 4);
  auto submit_invalid = [&](int n, uint16_t first_cid) {
    for (int i = 0; i < n; ++i) {
      Sqe bad;
      bad.set_opcode(0x7f).set_nsid(1);
      push_raw(*rig, r, bad, static_cast<uint16_t>(first_cid + i));
    }
    shadow_store(8 * r.qid, r.sq_tail);
    ASSERT_TRUE(rig->c().write_sq_doorbell(r.qid, r.sq_tail).ok());
  };
  submit_invalid(2, 300);
  ASSERT_TRUE(wait_for_phase(*rig, r.cq, 1, true));
  shadow_store(8 * r.qid + 4, 2);
  ASSERT_TRUE(rig->c().write_cq_doorbell(r.qid, 2).ok());
  submit_invalid(5, 310);  // slots 2, 3, 0 fill the CQ; two completions wait
  ASSERT_TRUE(wait_for_phase(*rig, r.cq, 0, false));
  EXPECT_EQ(event_index(8 * r.qid), r.sq_tail) << "SQ event index of queue 3";
  EXPECT_EQ(event_index(8 * r.qid + 4), 2u) << "CQ event index of a full CQ: its head";
  EXPECT_EQ(read_cqe(*rig, r.cq, 1).cid, 301) << "the free slot was overwritten";
  shadow_store(8 * r.qid + 4, 3);
  ASSERT_TRUE(rig->c().write_cq_doorbell(r.qid, 3).ok());
  ASSERT_TRUE(wait_for_phase(*rig, r.cq, 1, false)) << "consuming one entry posts the next";
  EXPECT_EQ(read_cqe(*rig, r.cq, 1).cid, 313);
}

// ---- 8. a misbehaving host ------------------------------------------------------------------

TEST(NvmeMisbehavingHost, InvalidDoorbellsRaiseErrorEventsAndNothingBreaks) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 16).ok());
  AerPool pool(*rig);
  for (unsigned i = 0, n = aerl_of(*rig) + 1u; i < n; ++i) pool.submit();
  const uint32_t invalid_doorbell = sn::aer_result(
      sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbell, sn::kLogErrorInformation);
  const uint32_t invalid_value = sn::aer_result(
      sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbellValue, sn::kLogErrorInformation);
  struct Case {
    const char* what;
    bool cq;
    uint16_t qid;
    uint32_t value;
    uint32_t dw0;
  };
  constexpr uint32_t kAheadOfTail = 0xffffffff;  // three entries past the current head
  const Case cases[] = {
      {"SQ doorbell of a missing queue", false, 7, 1, invalid_doorbell},
      {"CQ doorbell of a missing queue", true, 7, 1, invalid_doorbell},
      {"SQ doorbell beyond max_ioqpairs", false, 100, 1, invalid_doorbell},
      {"SQ tail beyond the queue size", false, kIoQueue, 16 + 5, invalid_value},
      {"SQ tail equal to the queue size", false, kIoQueue, 16, invalid_value},
      {"CQ head beyond the queue size", true, kIoQueue, 200, invalid_value},
      {"CQ head beyond the tail (nothing unconsumed)", true, kIoQueue, kAheadOfTail,
       invalid_value},
  };
  uint64_t buf = rig->alloc(kPage);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    uint32_t value = c.value;
    if (value == kAheadOfTail) value = (rig->c().queue(kIoQueue)->cq_head() + 3) % 16;
    Status rung = c.cq ? rig->c().write_cq_doorbell(c.qid, value)
                       : rig->c().write_sq_doorbell(c.qid, value);
    ASSERT_TRUE(rung.ok());
    auto event = pool.next(Millis(30000));
    ASSERT_TRUE(event) << "no error event";
    EXPECT_EQ(event->dw0, c.dw0) << fmt::format("dw0 0x{:08x}", event->dw0);
    EXPECT_TRUE(rig->vm_answers());
    EXPECT_EQ(rig->csts() & sn::kCstsCfs, 0u);
    // Reading the error log unmasks error events for the next case.
    ASSERT_TRUE(rig->c().get_log_page(sn::kLogErrorInformation, 64).ok());
    // The queue pair still works: the bad value was ignored.
    ASSERT_EQ(run(*rig, kIoQueue, commands::read(1, 0, 1), Transfer::prp(buf, 512)).code(), 0);
  }
}

// The newest Error Information log entry (64 bytes), read without RAE.
std::vector<uint8_t> newest_error_entry(NvmeRig& rig) {
  auto log = rig.c().get_log_page(sn::kLogErrorInformation, 64);
  EXPECT_TRUE(log.ok()) << log.status().to_string();
  return log.ok() ? *log : std::vector<uint8_t>(64, 0);
}

// An SQ tail doorbell that would put more commands in the queue than it holds. While the VM
// is stopped the controller fetches nothing, so the host really fills the queue: 15 entries
// in a 16-entry SQ are accepted, a 16th (tail onto the unfetched head) is refused with an
// Invalid Doorbell Write Value event and an error log entry, and nothing it would have
// covered runs twice or gets lost: after `cont` the 15 complete, and once the controller
// has caught up, ringing the same tail again is an ordinary submission of the 16th.
TEST(NvmeMisbehavingHost, SqTailOverrunningAFullQueueIsRefusedWithAnErrorEvent) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image));
  ASSERT_NE(rig, nullptr);
  AerPool pool(*rig);
  for (unsigned i = 0, n = aerl_of(*rig) + 1u; i < n; ++i) pool.submit();
  RawPair q = create_raw_pair(*rig, 3, 16, 16);
  rig->vm->ok("stop");
  for (uint16_t i = 0; i < 15; ++i) push_raw(*rig, q, commands::flush(1), static_cast<uint16_t>(500 + i));
  ASSERT_TRUE(rig->c().write_sq_doorbell(q.qid, q.sq_tail).ok());  // 15 queued: full
  push_raw(*rig, q, commands::flush(1), 515);
  ASSERT_EQ(q.sq_tail, 0u);
  ASSERT_TRUE(rig->c().write_sq_doorbell(q.qid, q.sq_tail).ok());  // tail 15 -> 0: overrun
  rig->vm->ok("cont");

  ASSERT_TRUE(wait_for_phase(*rig, q.cq, 14, true)) << "the 15 queued commands did not complete";
  std::set<uint16_t> cids, expected_cids;
  for (uint32_t slot = 0; slot < 15; ++slot) {
    Completion c = read_cqe(*rig, q.cq, slot);
    cids.insert(c.cid);  // flushes complete in any order
    expected_cids.insert(static_cast<uint16_t>(500 + slot));
    EXPECT_EQ(c.code(), 0) << status_text(c.status);
  }
  EXPECT_EQ(cids, expected_cids) << "each of the 15 queued commands completes once";
  ASSERT_TRUE(rig->c().write_cq_doorbell(q.qid, 15).ok());  // consumed them all
  auto event = pool.next(Millis(30000));
  ASSERT_TRUE(event) << "no error event for the overrunning tail";
  EXPECT_EQ(event->dw0, sn::aer_result(sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbellValue,
                                       sn::kLogErrorInformation))
      << fmt::format("dw0 0x{:08x}", event->dw0);
  std::this_thread::sleep_for(Millis(100));
  EXPECT_FALSE(read_cqe(*rig, q.cq, 15).phase) << "the refused tail ran a command";
  std::vector<uint8_t> entry = newest_error_entry(*rig);
  EXPECT_GE(le_field(entry, 0, 8), 1u) << "error count";
  EXPECT_EQ(le_field(entry, 8, 2), 0xffffu) << "not a command: SQ id FFFFh";
  EXPECT_EQ(le_field(entry, 10, 2), 0xffffu) << "not a command: command id FFFFh";
  EXPECT_EQ(rig->csts() & sn::kCstsCfs, 0u);

  // Caught up: the same tail is now one entry ahead of the head, which is legal.
  ASSERT_TRUE(rig->c().write_sq_doorbell(q.qid, q.sq_tail).ok());
  ASSERT_TRUE(wait_for_phase(*rig, q.cq, 15, true));
  EXPECT_EQ(read_cqe(*rig, q.cq, 15).cid, 515);
  EXPECT_TRUE(rig->vm_answers());
}

// Enabling with CC values the controller does not support sets CSTS.CFS (RDY stays 0);
// disabling clears it and a correct enable works again. Checked on `bus` so the same steps
// can run against QEMU 7.2 for reference. Returns CSTS after each bad enable.
std::vector<uint32_t> bad_enables(guest::GuestBus& bus) {
  auto memory = guest::DmaMemory::create(kRigDmaBase, kRigRamBytes);
  EXPECT_TRUE(memory.ok());
  guest::MmioWindow window = guest::MmioWindow::standard();
  auto ctrl = Controller::probe(bus, *memory, window);
  EXPECT_TRUE(ctrl.ok()) << ctrl.status().to_string();
  if (!ctrl.ok()) return {};
  Controller& c = **ctrl;
  std::vector<uint32_t> results;
  auto asq = memory->allocate(kPage), acq = memory->allocate(kPage);
  EXPECT_TRUE(asq.ok() && acq.ok());
  const uint32_t good = sn::kCcEn | 6u << sn::kCcIosqesShift | 4u << sn::kCcIocqesShift;
  const uint32_t bad[] = {
      good | 5u << sn::kCcMpsShift,                                   // MPS above MPSMAX
      (good & ~(0xfu << sn::kCcIosqesShift)) | 5u << sn::kCcIosqesShift,  // 32-byte SQEs
      (good & ~(0xfu << sn::kCcIocqesShift)) | 3u << sn::kCcIocqesShift,  // 8-byte CQEs
  };
  for (uint32_t cc : bad) {
    EXPECT_TRUE(c.write32(sn::kRegCc, 0).ok());
    for (int i = 0; i < 100; ++i) {
      auto csts = c.read32(sn::kRegCsts);
      if (csts.ok() && (*csts & sn::kCstsRdy) == 0) break;
    }
    EXPECT_TRUE(c.write32(sn::kRegAqa, 15u << 16 | 15u).ok());
    EXPECT_TRUE(c.write64(sn::kRegAsq, *asq).ok());
    EXPECT_TRUE(c.write64(sn::kRegAcq, *acq).ok());
    EXPECT_TRUE(c.write32(sn::kRegCc, cc).ok());
    uint32_t csts = 0;
    for (int i = 0; i < 200; ++i) {  // CFS or RDY, whichever comes
      auto v = c.read32(sn::kRegCsts);
      csts = v.ok() ? *v : 0xffffffffu;
      if (csts & (sn::kCstsCfs | sn::kCstsRdy)) break;
      std::this_thread::sleep_for(Millis(1));
    }
    results.push_back(csts);
  }
  EXPECT_TRUE(c.write32(sn::kRegCc, 0).ok());
  Status recovered = c.enable();
  EXPECT_TRUE(recovered.ok()) << "enable after a refused one: " << recovered.to_string();
  if (recovered.ok()) {
    EXPECT_TRUE(c.identify(sn::kCnsController).ok());
  }
  return results;
}

TEST(NvmeMisbehavingHost, UnsupportedControllerConfigurationSetsFatalStatus) {
  TempImage image(16 << 20);
  auto rig = start(nvme_args(image), /*enable=*/false);
  ASSERT_NE(rig, nullptr);
  std::vector<uint32_t> csts = bad_enables(*rig->bus);
  ASSERT_EQ(csts.size(), 3u);
  const char* what[] = {"CC.MPS above CAP.MPSMAX", "CC.IOSQES 5 (SQES requires 6)",
                        "CC.IOCQES 3 (CQES requires 4)"};
  for (size_t i = 0; i < csts.size(); ++i) {
    EXPECT_EQ(csts[i] & (sn::kCstsCfs | sn::kCstsRdy), sn::kCstsCfs)
        << what[i] << fmt::format(": CSTS 0x{:x}, expected CFS set and RDY clear", csts[i]);
  }
  EXPECT_TRUE(rig->vm_answers());
}

// The same steps against QEMU 7.2, so a difference above can be judged.
TEST(NvmeMisbehavingHost, UnsupportedControllerConfigurationOnQemuForReference) {
  if (!qemu_installed()) GTEST_SKIP() << kQemuBinary << " is not installed";
  TempImage image(16 << 20);
  auto vm = QemuVm::start({"-m", "256M", "-drive",
                           "if=none,id=d0,file=" + image.path() + ",format=raw", "-device",
                           "nvme,serial=BBTEST,drive=d0"});
  ASSERT_TRUE(vm.ok()) << vm.status().to_string();
  client::QtestBus bus((*vm)->qtest());
  std::vector<uint32_t> csts = bad_enables(bus);
  ASSERT_EQ(csts.size(), 3u);
  std::cout << fmt::format(
      "QEMU 7.2 CSTS after MPS=5: 0x{:x}, IOSQES=5: 0x{:x}, IOCQES=3: 0x{:x}\n", csts[0],
      csts[1], csts[2]);
  // QEMU 7.2 refuses all three with CFS (its start checks CC.IOSQES/IOCQES against the
  // SQES/CQES identify fields as well as MPS against CAP).
  for (uint32_t value : csts) {
    EXPECT_EQ(value & (sn::kCstsCfs | sn::kCstsRdy), sn::kCstsCfs) << fmt::format("0x{:x}", value);
  }
}

// ---- 9. the virtual clock ----------------------------------------------------------------
// With -accel qtest, time moves only when the test says so (qtest clock_step): the
// timestamp, interrupt coalescing and power-on hours can be checked to the nanosecond.

std::unique_ptr<NvmeRig> start_with_virtual_clock(const TempImage& image) {
  return start(nvme_args(image, "", {"-accel", "qtest"}));
}

int64_t step(NvmeRig& rig, int64_t ns) {
  auto now = rig.vm->qtest().clock_step(ns);
  EXPECT_TRUE(now.ok()) << now.status().to_string();
  return now.ok() ? *now : -1;
}

TEST(NvmeClock, TimestampAdvancesExactlyWithTheVirtualClock) {
  TempImage image(16 << 20);
  auto rig = start_with_virtual_clock(image);
  ASSERT_NE(rig, nullptr);
  uint64_t buf = rig->alloc(kPage);
  auto get = [&] { return get_timestamp(*rig, buf) & 0xffffffffffffull; };
  uint64_t before = get();
  std::this_thread::sleep_for(Millis(30));
  EXPECT_EQ(get(), before) << "real time passed, virtual time did not: the timestamp must not move";
  constexpr uint64_t kSet = 1'700'000'000'000ull;
  std::vector<uint8_t> value(8);
  for (int i = 0; i < 8; ++i) value[i] = static_cast<uint8_t>(kSet >> (8 * i));
  rig->put(buf, value);
  ASSERT_EQ(run(*rig, 0, commands::set_features(sn::kFeatTimestamp, 0), Transfer::prp(buf, 8))
                .code(), 0);
  EXPECT_EQ(get(), kSet);
  step(*rig, 1'234'567'890);  // 1234.56789 ms
  EXPECT_EQ(get(), kSet + 1234);
  step(*rig, 432'100'000);    // 1666.66789 ms in all
  EXPECT_EQ(get(), kSet + 1666);
  step(*rig, 3'600'000'000'000);
  EXPECT_EQ(get(), kSet + 1666 + 3'600'000);
}

TEST(NvmeClock, CoalescingTimeThresholdFiresOnlyWhenTheClockGetsThere) {
  TempImage image(16 << 20);
  auto rig = start_with_virtual_clock(image);
  ASSERT_NE(rig, nullptr);
  ASSERT_TRUE(rig->c().enable_msix().ok());
  ASSERT_TRUE(rig->c().create_io_queue_pair(kIoQueue, 32, {true, 1}).ok());
  // Aggregation threshold 8 completions (0's based 7), time 300 us (3 x 100 us).
  ASSERT_EQ(run(*rig, 0, commands::set_features(sn::kFeatInterruptCoalescing, 3u << 8 | 7u))
                .code(), 0);
  uint64_t buf = rig->alloc(kPage);
  auto fired = [&] {
    auto word = rig->c().interrupt_word(1);
    EXPECT_TRUE(word.ok()) << word.status().to_string();
    return word.ok() && *word != 0;
  };
  ASSERT_TRUE(rig->c().clear_interrupt(1).ok());
  // One completion: below the threshold, so only the timer may raise the interrupt.
  ASSERT_EQ(run(*rig, kIoQueue, commands::read(1, 0, 1), Transfer::prp(buf, 512)).code(), 0);
  std::this_thread::sleep_for(Millis(50));
  EXPECT_FALSE(fired()) << "the interrupt came before the aggregation time";
  step(*rig, 299'999);
  EXPECT_FALSE(fired()) << "the interrupt came 1 ns before the aggregation time";
  step(*rig, 1);
  EXPECT_TRUE(fired()) << "no interrupt once the aggregation time passed";

  // Eight completions reach the threshold: the interrupt comes with no time passing.
  ASSERT_TRUE(rig->c().clear_interrupt(1).ok());
  std::vector<uint16_t> cids;
  for (uint32_t i = 0; i < 8; ++i) {
    auto cid = rig->c().submit(kIoQueue, commands::read(1, i, 1), Transfer::prp(buf, 512), false);
    ASSERT_TRUE(cid.ok());
    cids.push_back(*cid);
  }
  ASSERT_TRUE(rig->c().ring_sq(kIoQueue).ok());
  for (uint16_t cid : cids) {
    auto c = rig->c().wait(kIoQueue, cid);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c->code(), 0);
  }
  EXPECT_TRUE(fired()) << "eight completions did not raise the interrupt";
}

TEST(NvmeClock, SmartPowerOnHoursCountVirtualHours) {
  TempImage image(16 << 20);
  auto rig = start_with_virtual_clock(image);
  ASSERT_NE(rig, nullptr);
  constexpr int64_t kHour = 3'600'000'000'000;
  EXPECT_EQ(smart_counter(*rig, sn::kSmartPowerOnHours), 0u);
  step(*rig, kHour - 1);
  EXPECT_EQ(smart_counter(*rig, sn::kSmartPowerOnHours), 0u) << "one nanosecond short of an hour";
  step(*rig, 1);
  EXPECT_EQ(smart_counter(*rig, sn::kSmartPowerOnHours), 1u);
  step(*rig, 5 * kHour / 2);
  EXPECT_EQ(smart_counter(*rig, sn::kSmartPowerOnHours), 3u) << "3.5 hours";
  // A controller reset is not a power cycle: the hours keep counting.
  ASSERT_TRUE(rig->c().disable().ok());
  ASSERT_TRUE(rig->c().enable().ok());
  EXPECT_EQ(smart_counter(*rig, sn::kSmartPowerOnHours), 3u);
}

// ---- 10. bad -device nvme command lines ---------------------------------------------------

struct Refusal {
  int exit_code = -1;
  std::string stderr_text;
};

Refusal run_ferry_vm(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {FERRY_VM_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = client::ChildProcess::spawn(argv, unique_base("nvme-cli") + ".stderr");
  EXPECT_TRUE(child.ok()) << child.status().to_string();
  if (!child.ok()) return {};
  auto code = child->wait(Millis(10000));
  EXPECT_TRUE(code.has_value()) << "ferry-vm kept running with a bad command line";
  return {code.value_or(-1), child->stderr_text()};
}

// Each part of a refusal message is said once ("-device nvme: mqes must be ...").
TEST(NvmeCommandLine, RefusalsNameTheOptionOnce) {
  TempImage image(16 << 20), other(16 << 20);
  std::vector<std::string> d0d1 = drive_args("d0", image);
  for (const auto& a : drive_args("d1", other)) d0d1.push_back(a);
  const std::vector<std::vector<std::string>> cases = {
      {"-device", "nvme,drive=d0"},
      {"-device", "nvme,serial=A,drive=d0,mqes=0"},
      {"-device", "nvme,serial=A,drive=d0", "-device", "nvme-ns,nsid=2"},
      {"-device", "nvme,serial=A,drive=d0", "-device", "nvme-ns,drive=d1,nsid=1"},
      {"-device", "nvme,serial=A,drive=d0", "-device", "nvme-ns,drive=d1,logical_block_size=1000"},
  };
  for (const auto& devices : cases) {
    std::vector<std::string> args = d0d1;
    args.insert(args.end(), devices.begin(), devices.end());
    Refusal r = run_ferry_vm(args);
    EXPECT_NE(r.exit_code, 0);
    for (const char* twice : {"-device nvme: -device nvme", "-device nvme-ns: -device nvme-ns",
                              "nvme-ns: nvme-ns:"})
      EXPECT_EQ(r.stderr_text.find(twice), std::string::npos) << r.stderr_text;
  }
}

TEST(NvmeCommandLine, BadDevicesAreRefusedNamingThePropertyAndValue) {
  TempImage image(16 << 20), other(16 << 20);
  std::vector<std::string> d0 = drive_args("d0", image);
  std::vector<std::string> d0d1 = d0;
  for (const auto& a : drive_args("d1", other)) d0d1.push_back(a);
  auto with = [](std::vector<std::string> base, std::vector<std::string> more) {
    base.insert(base.end(), more.begin(), more.end());
    return base;
  };
  struct Case {
    const char* what;
    std::vector<std::string> args;
    std::vector<std::string> mentions;  // all must appear in stderr
  };
  const std::vector<Case> cases = {
      {"missing serial", with(d0, {"-device", "nvme,drive=d0"}), {"serial"}},
      {"unknown drive", with(d0, {"-device", "nvme,serial=X,drive=nosuch"}), {"drive", "nosuch"}},
      {"drive used twice",
       with(d0, {"-device", "nvme,serial=A,drive=d0", "-device", "nvme,serial=B,drive=d0"}),
       {"d0", "in use"}},
      {"drive used by a namespace too",
       with(d0, {"-device", "nvme,serial=A,drive=d0", "-device", "nvme-ns,drive=d0,nsid=2"}),
       {"d0", "in use"}},
      {"nvme-ns without a controller", with(d0, {"-device", "nvme-ns,drive=d0"}),
       {"nvme-ns", "controller"}},
      {"nvme-ns without drive", with(d0, {"-device", "nvme,serial=A,drive=d0", "-device",
                                          "nvme-ns,nsid=2"}),
       {"nvme-ns", "drive"}},
      {"namespace id in use", with(d0d1, {"-device", "nvme,serial=A,drive=d0", "-device",
                                          "nvme-ns,drive=d1,nsid=1"}),
       {"nsid", "1"}},
      {"bad logical block size", with(d0d1, {"-device", "nvme,serial=A,drive=d0", "-device",
                                             "nvme-ns,drive=d1,logical_block_size=1000"}),
       {"logical_block_size", "1000"}},
      {"mqes 0", with(d0, {"-device", "nvme,serial=A,drive=d0,mqes=0"}), {"mqes", "0"}},
      {"msix_qsize too big", with(d0, {"-device", "nvme,serial=A,drive=d0,msix_qsize=5000"}),
       {"msix_qsize", "5000"}},
      {"max_ioqpairs 0", with(d0, {"-device", "nvme,serial=A,drive=d0,max_ioqpairs=0"}),
       {"max_ioqpairs", "0"}},
      {"unknown property", with(d0, {"-device", "nvme,serial=A,drive=d0,bogus=1"}), {"bogus"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Refusal r = run_ferry_vm(c.args);
    EXPECT_NE(r.exit_code, 0) << "accepted";
    EXPECT_LT(r.exit_code, 128) << "crashed (signal " << r.exit_code - 128 << ")\n"
                                << r.stderr_text;
    for (const std::string& word : c.mentions)
      EXPECT_NE(r.stderr_text.find(word), std::string::npos)
          << "stderr does not mention '" << word << "':\n" << r.stderr_text;
  }
}

}  // namespace
}  // namespace ferry::testing
