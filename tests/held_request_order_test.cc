// Issue 8, black box: commands held on a block error (-drive werror=stop) are retried in the
// order they failed, and before any command the host queued while the VM was paused — after
// `cont` on the same VM, and after `cont` on a migration's destination.
//
// The order is made observable in the image: three held writes and the write the host
// queues during the pause all target LBA 40, with different data, so a retry out of order
// (or the new write run before the held ones) leaves another block there; three more held
// writes target LBA 41 alone, so the last of them must win. The six held writes go to the
// SQ in one doorbell (one burst), interleaved 40, 41, 40, 41, ...; the injected error
// completes them in submission order, so they fail, and are held, in that order.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

#include "support/nvme_rig.h"

namespace ferry::testing {
namespace {

namespace commands = guest::nvme::commands;
using guest::nvme::Transfer;
using Millis = std::chrono::milliseconds;

constexpr const char* kFerryVm = FERRY_VM_PATH;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kLbaShared = 40, kLbaHeldOnly = 41;

std::vector<uint8_t> block(uint32_t seed) {
  std::vector<uint8_t> out(512);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 3;
  for (auto& b : out) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    b = static_cast<uint8_t>(x >> 33);
  }
  return out;
}

std::vector<std::string> machine(const TempImage& image, const std::string& extra = "") {
  return {"-drive", "if=none,id=d0,file=" + image.path() + ",format=raw,werror=stop" + extra,
          "-device", "nvme,serial=ORDER,drive=d0,addr=4"};
}

std::string run_state(FerryVm& vm) { return vm.ok("query-status")["status"]; }

// A source paused in io-error: writes 1..3 to LBA 40 interleaved with writes 11..13 to LBA 41
// all failed (EIO) and are held; then, paused, the host queues write 4 to LBA 40.
struct PausedSource {
  std::unique_ptr<NvmeRig> rig;
  std::vector<uint16_t> cids;  // the six held writes, then the one queued while paused
};

PausedSource paused_source(const TempImage& image) {
  PausedSource out;
  std::vector<std::string> args = machine(image);
  args.insert(args.end(), {"-blkdebug", "drive=d0,op=write,errno=EIO"});
  out.rig = start_rig(kFerryVm, args);
  if (!out.rig) return out;
  NvmeRig& rig = *out.rig;
  EXPECT_TRUE(rig.c().create_io_queue_pair(1, 32).ok());
  uint64_t bufs = rig.alloc(8 * kPage);
  auto queue = [&](uint64_t lba, uint32_t seed, unsigned slot, bool ring) {
    rig.put(bufs + slot * kPage, block(seed));
    auto cid = rig.c().submit(1, commands::write(1, lba, 1), Transfer::prp(bufs + slot * kPage, 512),
                              ring);
    EXPECT_TRUE(cid.ok()) << cid.status().to_string();
    if (cid.ok()) out.cids.push_back(*cid);
  };
  for (unsigned i = 0; i < 3; ++i) {
    queue(kLbaShared, 1 + i, 2 * i, false);
    queue(kLbaHeldOnly, 11 + i, 2 * i + 1, false);
  }
  EXPECT_TRUE(rig.c().write_sq_doorbell(1, rig.c().queue(1)->sq_tail()).ok());
  EXPECT_TRUE(rig.vm->qmp().wait_event("STOP", Millis(30000)).ok());
  EXPECT_EQ(run_state(*rig.vm), "io-error");
  queue(kLbaShared, 4, 6, true);  // queued (doorbell rung) while paused
  return out;
}

// Nothing ran while paused: no completion, nothing in the image.
void expect_nothing_ran(NvmeRig& rig, const TempImage& image) {
  std::this_thread::sleep_for(Millis(100));
  auto early = rig.c().poll(1);
  ASSERT_TRUE(early.ok()) << early.status().to_string();
  EXPECT_FALSE(early->has_value()) << "a write completed while paused";
  EXPECT_EQ(image.read(kLbaShared * 512, 512), std::vector<uint8_t>(512, 0));
  EXPECT_EQ(image.read(kLbaHeldOnly * 512, 512), std::vector<uint8_t>(512, 0));
}

// After `cont`: all seven writes complete, without error, once each, and the image holds
// the last write to each LBA.
void expect_order_kept(NvmeRig& rig, const TempImage& image, const std::vector<uint16_t>& cids) {
  ASSERT_EQ(cids.size(), 7u);
  for (uint16_t cid : cids) {
    auto c = rig.c().wait(1, cid);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_TRUE(c->ok()) << "cid " << cid << " status " << c->status;
  }
  std::this_thread::sleep_for(Millis(50));
  auto extra = rig.c().poll(1);
  ASSERT_TRUE(extra.ok());
  EXPECT_FALSE(extra->has_value()) << "a write completed twice";
  EXPECT_EQ(image.read(kLbaShared * 512, 512), block(4))
      << "LBA 40: the write queued during the pause must run after the held ones";
  EXPECT_EQ(image.read(kLbaHeldOnly * 512, 512), block(13))
      << "LBA 41: the held writes must run in the order they failed";
}

TEST(HeldRequestOrder, ContRetriesHeldWritesInOrderBeforeNewOnes) {
  TempImage image(16 << 20);
  PausedSource src = paused_source(image);
  ASSERT_NE(src.rig, nullptr);
  ASSERT_FALSE(HasFailure());
  NvmeRig& rig = *src.rig;
  expect_nothing_ran(rig, image);
  rig.vm->ok("x-blkdebug-clear", Json{{"drive", "d0"}});
  rig.vm->ok("cont");
  expect_order_kept(rig, image, src.cids);
  EXPECT_EQ(run_state(*rig.vm), "running");
}

TEST(HeldRequestOrder, ContOnTheDestinationRetriesHeldWritesInOrderBeforeNewOnes) {
  TempImage image(16 << 20);
  PausedSource src = paused_source(image);
  ASSERT_NE(src.rig, nullptr);
  ASSERT_FALSE(HasFailure());
  NvmeRig& rig = *src.rig;
  // The destination has no injected fault.
  std::string sock = unique_base("held-order") + ".sock";
  std::vector<std::string> args = {"-m", "256M"};
  auto dst_machine = machine(image);
  args.insert(args.end(), dst_machine.begin(), dst_machine.end());
  args.insert(args.end(), {"-incoming", "unix:" + sock});
  auto dst = FerryVm::start(kFerryVm, args);
  ASSERT_TRUE(dst);
  rig.vm->ok("migrate", Json{{"uri", "unix:" + sock}});
  std::string status;
  for (int i = 0; i < 1500; ++i) {
    status = rig.vm->ok("query-migrate").value("status", "");
    if (status == "completed" || status == "failed" || status == "cancelled") break;
    std::this_thread::sleep_for(Millis(20));
  }
  ASSERT_EQ(status, "completed") << dst->process().stderr_text();
  EXPECT_EQ(run_state(*rig.vm), "postmigrate");
  for (int i = 0; i < 3000 && run_state(*dst) == "inmigrate"; ++i)
    std::this_thread::sleep_for(Millis(10));
  EXPECT_EQ(run_state(*dst), "io-error");
  auto bus = std::make_unique<client::QtestBus>(dst->qtest());
  rig.ctrl->rebind(*bus);
  rig.bus = std::move(bus);
  std::swap(rig.vm, dst);
  expect_nothing_ran(rig, image);
  rig.vm->ok("cont");
  expect_order_kept(rig, image, src.cids);
  EXPECT_EQ(run_state(*rig.vm), "running");
}

}  // namespace
}  // namespace ferry::testing
