#include "guest/nvme/command.h"

#include <gtest/gtest.h>

namespace ferry::guest::nvme {
namespace {

namespace sn = spec::nvme;

TEST(Sqe, CreateIoCqEncodesZeroBasedSizeAndFlags) {
  Sqe s = commands::create_io_cq(3, 64, 0x12345000, true, 7);
  s.set_cid(0xbeef);
  EXPECT_EQ(s.bytes[0], sn::kAdminCreateCq);
  EXPECT_EQ(s.bytes[2], 0xef);
  EXPECT_EQ(s.bytes[3], 0xbe);
  EXPECT_EQ(s.cid(), 0xbeef);
  EXPECT_EQ(s.prp1(), 0x12345000u);
  EXPECT_EQ(s.cdw(10), 3u | 63u << 16);
  EXPECT_EQ(s.cdw(11), 0x1u | 0x2u | 7u << 16);
  EXPECT_EQ(s.bytes[40], 3);
  EXPECT_EQ(s.bytes[43], 0);
  EXPECT_EQ(s.bytes[42], 63);
}

TEST(Sqe, ReadWriteAndFlags) {
  Sqe s = commands::read(1, 0x1122334455ull, 8);
  EXPECT_EQ(s.opcode(), sn::kNvmRead);
  EXPECT_EQ(s.nsid(), 1u);
  EXPECT_EQ(s.cdw(10), 0x22334455u);
  EXPECT_EQ(s.cdw(11), 0x11u);
  EXPECT_EQ(s.cdw(12), 7u);
  s.set_psdt(sn::kPsdtSglMptrContiguous).set_fuse(1);
  EXPECT_EQ(s.bytes[1], 0x41);
  EXPECT_EQ(s.psdt(), 1);
  s.set_psdt(0);
  EXPECT_EQ(s.bytes[1], 0x01);
  auto d = sgl_descriptor(0xaabbccdd00ull, 0x200, sn::kSglLastSegment);
  s.set_sgl1(d);
  EXPECT_EQ(s.prp1(), 0xaabbccdd00ull);
  EXPECT_EQ(s.bytes[32], 0x00);
  EXPECT_EQ(s.bytes[33], 0x02);
  EXPECT_EQ(s.bytes[39], 0x30);
}

TEST(Sqe, AdminBuilders) {
  Sqe id = commands::identify(sn::kCnsController, 0, 5);
  EXPECT_EQ(id.cdw(10), 0x00050001u);
  Sqe nq = commands::set_number_of_queues(4, 2);
  EXPECT_EQ(nq.cdw(10), sn::kFeatNumberOfQueues);
  EXPECT_EQ(nq.cdw(11), 3u | 1u << 16);
  Sqe log = commands::get_log_page(sn::kLogSmartHealth, 512);
  EXPECT_EQ(log.cdw(10), 2u | 127u << 16);
  EXPECT_EQ(log.nsid(), 0xffffffffu);
  Sqe sq = commands::create_io_sq(2, 16, 0x9000, 1, 2);
  EXPECT_EQ(sq.cdw(10), 2u | 15u << 16);
  EXPECT_EQ(sq.cdw(11), 1u | 2u << 1 | 1u << 16);
}

TEST(Completion, ParsesFieldsPhaseAndStatus) {
  std::array<uint8_t, 16> raw = {0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0,
                                 0x05, 0x00, 0x01, 0x00, 0x34, 0x12, 0x03, 0x82};
  Completion c = Completion::parse(raw);
  EXPECT_EQ(c.dw0, 0x12345678u);
  EXPECT_EQ(c.sq_head, 5);
  EXPECT_EQ(c.sq_id, 1);
  EXPECT_EQ(c.cid, 0x1234);
  EXPECT_TRUE(c.phase);
  EXPECT_EQ(c.status, 0x4101);  // DNR | SCT 1 SC 1
  EXPECT_EQ(c.code(), sn::kInvalidQueueIdentifier);
  EXPECT_TRUE(c.dnr());
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(describe_status(c.status), "SCT 1 SC 0x01 (Invalid Queue Identifier) DNR");
  EXPECT_EQ(describe_status(0), "success");
}

}  // namespace
}  // namespace ferry::guest::nvme
