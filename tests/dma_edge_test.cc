// NVMe data pointers at the very top of the guest-physical address space, through the guest
// driver over qtest. A transfer ending exactly at 2^64 once looked mapped to the address
// space (its end wrapped to 0) and crashed ferry-vm; every such command must now fail with
// Data Transfer Error and leave the VM answering.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "guest/nvme/command.h"
#include "spec/nvme.h"
#include "support/nvme_rig.h"

namespace ferry::testing {
namespace {

namespace sn = spec::nvme;
namespace commands = guest::nvme::commands;
using guest::nvme::Completion;
using guest::nvme::Transfer;

constexpr uint64_t kTop = ~uint64_t{0};
constexpr uint64_t kLastPage = kTop - 0xfff;  // 0xfffffffffffff000

class DmaEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = std::make_unique<TempImage>(16 << 20);
    std::vector<std::string> args = drive_args("d0", *image_);
    args.insert(args.end(), {"-device", "nvme,serial=EDGE0,drive=d0"});
    rig_ = start_rig(FERRY_VM_PATH, args);
    ASSERT_NE(rig_, nullptr);
    ASSERT_TRUE(rig_->c().create_io_queue_pair(1, 16).ok());
  }

  // Sends `sqe` as it is (with a fresh CID) and returns its completion.
  Completion raw(uint16_t qid, guest::nvme::Sqe sqe) {
    sqe.set_cid(next_cid_++);
    auto cid = rig_->c().submit_raw(qid, sqe);
    EXPECT_TRUE(cid.ok()) << cid.status().to_string();
    auto done = rig_->c().wait(qid, *cid);
    EXPECT_TRUE(done.ok()) << done.status().to_string() << "\n"
                           << rig_->vm->process().stderr_text();
    return done.ok() ? *done : Completion{};
  }

  void expect_data_transfer_error(const Completion& c, const std::string& what) {
    EXPECT_EQ(c.code(), sn::kDataTransferError)
        << what << ": " << guest::nvme::describe_status(c.status);
    EXPECT_TRUE(rig_->vm_answers()) << what << ": ferry-vm must keep running\n"
                                    << rig_->vm->process().stderr_text();
  }

  std::unique_ptr<TempImage> image_;
  std::unique_ptr<NvmeRig> rig_;
  uint16_t next_cid_ = 0x100;
};

TEST_F(DmaEdgeTest, IdentifyIntoTheLastPage) {
  auto done = rig_->c().execute(0, commands::identify(sn::kCnsController),
                                Transfer::prp(kLastPage, sn::kIdentifySize));
  ASSERT_TRUE(done.ok()) << done.status().to_string();
  expect_data_transfer_error(*done, "identify, PRP1 0xfffffffffffff000");
  // The controller is fine afterwards.
  auto identify = rig_->c().identify(sn::kCnsController);
  EXPECT_TRUE(identify.ok()) << identify.status().to_string();
}

TEST_F(DmaEdgeTest, ReadAndWriteIntoTheLastBytes) {
  expect_data_transfer_error(raw(1, commands::read(1, 0, 1).set_prp1(kLastPage)),
                             "read, PRP1 0xfffffffffffff000");
  expect_data_transfer_error(raw(1, commands::read(1, 0, 1).set_prp1(kTop - 511)),
                             "read of 512 bytes ending at 2^64");
  expect_data_transfer_error(raw(1, commands::write(1, 0, 1).set_prp1(kTop - 511)),
                             "write of 512 bytes ending at 2^64");
  // PRP1 at the last page with an offset: the transfer continues in PRP2's page.
  uint64_t page = rig_->alloc(4096);
  expect_data_transfer_error(raw(1, commands::read(1, 0, 2).set_prp1(kTop - 255).set_prp2(page)),
                             "read starting 256 bytes below 2^64");
}

TEST_F(DmaEdgeTest, SecondPageAtTheTop) {
  uint64_t page = rig_->alloc(4096);
  // 8 KiB: PRP1 a good page, PRP2 the last page of the address space.
  expect_data_transfer_error(raw(1, commands::read(1, 0, 16).set_prp1(page).set_prp2(kLastPage)),
                             "read, PRP2 0xfffffffffffff000");
  expect_data_transfer_error(raw(1, commands::write(1, 0, 16).set_prp1(page).set_prp2(kLastPage)),
                             "write, PRP2 0xfffffffffffff000");
}

TEST_F(DmaEdgeTest, PrpListAtTheTop) {
  uint64_t page = rig_->alloc(4096);
  // 12 KiB: PRP2 points to a list of two entries; the list itself lies at the top, ending
  // exactly at 2^64 or running past it.
  expect_data_transfer_error(raw(1, commands::read(1, 0, 24).set_prp1(page).set_prp2(kTop - 15)),
                             "PRP list ending at 2^64");
  expect_data_transfer_error(raw(1, commands::read(1, 0, 24).set_prp1(page).set_prp2(kTop - 7)),
                             "PRP list running past 2^64");
  // A list in RAM whose entries name the last page.
  uint64_t list = rig_->alloc(4096);
  std::vector<uint8_t> entries(16, 0);
  for (unsigned i = 0; i < 8; ++i) entries[i] = static_cast<uint8_t>(kLastPage >> (8 * i));
  for (unsigned i = 0; i < 8; ++i) entries[8 + i] = static_cast<uint8_t>(kLastPage >> (8 * i));
  rig_->put(list, entries);
  expect_data_transfer_error(raw(1, commands::read(1, 0, 24).set_prp1(page).set_prp2(list)),
                             "PRP list entries at the last page");
  // Good commands still work.
  auto good = rig_->c().execute(1, commands::read(1, 0, 8), Transfer::prp(page, 4096));
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(good->ok()) << guest::nvme::describe_status(good->status);
}

}  // namespace
}  // namespace ferry::testing
