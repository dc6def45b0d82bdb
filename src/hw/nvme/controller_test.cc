// White-box tests of the NVMe controller, driven by the guest's NVMe driver (test_host.h)
// through BAR0 as a host would; commands that misbehave on purpose are raw SQEs and
// doorbell writes through the same driver. The controller sits on a PCI bus with fake
// interrupt and MSI sinks; namespaces are temp-file backends.
#include "hw/nvme/controller.h"
#include "hw/nvme/error_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>

#include <gtest/gtest.h>

#include "hw/nvme/test_host.h"
#include "hw/pci/pci_regs.h"
#include "hw/pci/test_fakes.h"
#include "memory/ram_block.h"
#include "spec/nvme.h"

namespace ferry::nvme {
namespace {

namespace sn = spec::nvme;
using namespace std::chrono_literals;

constexpr uint64_t kRamSize = 16 << 20;
constexpr uint64_t kAsq = 0x10000, kAcq = 0x20000;
constexpr uint64_t kIoSq = 0x40000, kIoCq = 0x60000;
constexpr uint64_t kData = 0x100000;     // 1 MiB of data buffers
constexpr uint64_t kPrpList = 0x80000;
constexpr uint64_t kShadow = 0x90000, kEventIdx = 0x91000;
constexpr uint64_t kImageSize = 1 << 20;
constexpr uint64_t kMsiAddress = 0xfee00000;

class TempImage {
 public:
  explicit TempImage(uint64_t size) {
    path_ = "/tmp/ferry-nvme-test-XXXXXX";
    int fd = mkstemp(path_.data());
    contents_.resize(size);
    for (uint64_t i = 0; i < size; ++i) contents_[i] = static_cast<uint8_t>(i * 13 + (i >> 9));
    if (fd >= 0) {
      EXPECT_EQ(pwrite(fd, contents_.data(), size, 0), static_cast<ssize_t>(size));
      close(fd);
    }
  }
  ~TempImage() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  const std::vector<uint8_t>& initial() const { return contents_; }
  std::vector<uint8_t> read_back() const {
    std::vector<uint8_t> out(contents_.size());
    int fd = open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    close(fd);
    return out;
  }

 private:
  std::string path_;
  std::vector<uint8_t> contents_;
};

using guest::nvme::Completion;
using guest::nvme::Sqe;
using test::command;

constexpr uint16_t kAdmin = 0;

class NvmeTest : public ::testing::Test {
 protected:
  void SetUp() override { build({.serial = "F0"}); }

  void build(ControllerConfig config, bool read_only = false) {
    host_.reset();
    machine_.reset();
    backend_.reset();
    image_ = std::make_unique<TempImage>(kImageSize);
    if (!loop_) {
      auto loop = EventLoop::create();
      ASSERT_TRUE(loop.ok());
      loop_ = std::move(*loop);
      memory_ = std::make_unique<memory::AddressSpace>();
      auto ram = memory::RamBlock::anonymous("ram", kRamSize);
      ASSERT_TRUE(ram.ok());
      ASSERT_TRUE(memory_->add_ram(0, std::move(*ram)).ok());
    }
    // werror=report: these tests check the statuses a failure maps to.
    block::DriveConfig drive{.id = "d0", .file = image_->path(), .read_only = read_only,
                             .werror = block::ErrorPolicy::kReport};
    auto backend = block::BlockBackend::open(*loop_, drive);
    ASSERT_TRUE(backend.ok()) << backend.status().to_string();
    backend_ = std::move(*backend);
    auto ctrl = Controller::create(config, backend_.get(),
                                   ControllerEnv{*loop_, *memory_, clock_});
    ASSERT_TRUE(ctrl.ok()) << ctrl.status().to_string();
    ctrl_ = ctrl->get();
    machine_ = std::make_unique<pci::test::Machine>();
    ASSERT_TRUE(machine_->bus.add(std::move(*ctrl), "4").ok());
    host_ = std::make_unique<test::Host>(*machine_, *memory_, *loop_, kRamSize);
    Status probed = host_->probe();  // BAR0 placed, memory decoding and bus mastering on
    ASSERT_TRUE(probed.ok()) << probed.to_string();
  }

  void TearDown() override {
    host_.reset();
    machine_.reset();
  }

  guest::nvme::Controller& driver() { return host_->driver(); }

  // ---- registers ----
  uint64_t reg(uint32_t offset, unsigned size = 4) {
    auto v = host_->reg(offset, size);
    EXPECT_TRUE(v.ok()) << v.status().to_string();
    return v.ok() ? *v : 0;
  }
  void set_reg(uint32_t offset, uint64_t value, unsigned size = 4) {
    Status st = host_->set_reg(offset, value, size);
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  uint32_t csts() { return static_cast<uint32_t>(reg(sn::kRegCsts)); }

  void enable(uint32_t entries = 32) {
    Status st = driver().enable({.admin_queue_entries = entries});
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_EQ(csts(), sn::kCstsRdy);
  }

  // ---- guest memory ----
  void zero(uint64_t addr, uint64_t len) { ASSERT_TRUE(memory_->fill(addr, 0, len).ok()); }
  void poke(uint64_t addr, std::span<const uint8_t> data) {
    ASSERT_TRUE(memory_->write(addr, data).ok());
  }
  std::vector<uint8_t> peek(uint64_t addr, uint64_t len) {
    std::vector<uint8_t> out(len);
    EXPECT_TRUE(memory_->read(addr, out).ok());
    return out;
  }
  uint32_t peek32(uint64_t addr) { return static_cast<uint32_t>(*memory_->load(addr, 4)); }
  void poke32(uint64_t addr, uint32_t v) { ASSERT_TRUE(memory_->store(addr, v, 4).ok()); }

  // ---- queues (the driver's) ----
  uint16_t submit(uint16_t qid, const Sqe& sqe, bool ring = true) {
    auto cid = driver().submit(qid, sqe, {}, ring);
    EXPECT_TRUE(cid.ok()) << cid.status().to_string();
    return cid.ok() ? *cid : 0xffff;
  }
  // The next completion of the queue (waiting for it), whatever its command.
  Completion wait(uint16_t qid, bool ring_head = true) {
    auto c = host_->next(qid, ring_head);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? *c : Completion{};
  }
  Completion cqe(uint16_t qid, uint32_t slot) {
    auto c = host_->cqe_at(qid, slot);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? *c : Completion{};
  }
  bool cqe_ready(uint16_t qid) { return host_->completion_ready(qid); }
  uint32_t sq_tail(uint16_t qid) { return driver().queue(qid)->sq_tail(); }
  uint32_t cq_head(uint16_t qid) { return driver().queue(qid)->cq_head(); }
  bool phase(uint16_t qid) { return driver().queue(qid)->expected_phase(); }
  // Runs the loop until `n` requests wait for the block layer.
  void fetched(size_t n) {
    ASSERT_TRUE(loop_->run_until([&] { return ctrl_->requests_in_flight() == n; }, 5s).ok());
  }
  void settle() {
    for (int i = 0; i < 20; ++i) (void)loop_->run_once(1ms);
  }
  // The next admin completion, which must be this command's.
  Completion admin(const Sqe& sqe) {
    uint16_t cid = submit(kAdmin, sqe);
    Completion c = wait(kAdmin);
    EXPECT_EQ(c.cid, cid);
    return c;
  }
  uint16_t admin_status(const Sqe& sqe) { return admin(sqe).status; }

  uint16_t create_io_queues(uint16_t qid, uint32_t size, uint16_t vector = 0,
                            bool ien = true, uint32_t cq_size = 0) {
    Status st = driver().create_io_queue_pair(qid, size, {.enabled = ien, .vector = vector},
                                              cq_size ? cq_size : size);
    EXPECT_TRUE(st.ok()) << st.to_string();
    return qid;
  }

  Sqe rw(uint8_t opcode, uint64_t slba, uint32_t nlb, uint64_t buffer, uint32_t nsid = 1) {
    return command(opcode, nsid).set_prp1(buffer).set_cdw(10, static_cast<uint32_t>(slba))
        .set_cdw(11, static_cast<uint32_t>(slba >> 32)).set_cdw(12, nlb - 1);
  }

  std::vector<uint8_t> identify(uint8_t cns, uint32_t nsid = 0, uint16_t* status = nullptr,
                                uint8_t csi = 0) {
    zero(kData, 4096);
    uint16_t st = admin_status(command(sn::kAdminIdentify, nsid).set_prp1(kData)
                                   .set_cdw(10, cns).set_cdw(11, uint32_t{csi} << 24));
    if (status) *status = st;
    else EXPECT_EQ(st, 0);
    return peek(kData, 4096);
  }

  Completion get_feature(uint8_t fid, uint32_t sel = 0, uint32_t dw11 = 0, uint32_t nsid = 0) {
    return admin(command(sn::kAdminGetFeatures, nsid).set_prp1(kData)
                     .set_cdw(10, sel << 8 | fid).set_cdw(11, dw11));
  }
  Completion set_feature(uint8_t fid, uint32_t dw11, uint32_t nsid = 0, bool save = false) {
    return admin(command(sn::kAdminSetFeatures, nsid).set_prp1(kData)
                     .set_cdw(10, fid | (save ? 1u << 31 : 0)).set_cdw(11, dw11));
  }
  Completion get_log(uint8_t lid, uint32_t bytes, uint32_t nsid = 0xffffffff, uint64_t offset = 0,
                     bool rae = false) {
    zero(kData, 4096);
    uint32_t numd = bytes / 4 - 1;
    return admin(command(sn::kAdminGetLogPage, nsid).set_prp1(kData)
                     .set_cdw(10, (numd & 0xffff) << 16 | (rae ? 1u << 15 : 0) | lid)
                     .set_cdw(11, numd >> 16)
                     .set_cdw(12, static_cast<uint32_t>(offset))
                     .set_cdw(13, static_cast<uint32_t>(offset >> 32)));
  }

  // MSI-X on, vector v sending data 0x40 + v (recorded by the fake MSI sink).
  void enable_msix() {
    Status st = host_->use_msix();
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  std::vector<uint32_t> msi_data() {
    std::vector<uint32_t> out;
    for (const auto& m : machine_->msi.take()) out.push_back(m.data);
    return out;
  }
  bool intx() { return ctrl_->irq_level(); }

  VirtualClock clock_{1'000'000'000};
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<memory::AddressSpace> memory_;
  std::unique_ptr<TempImage> image_;
  std::unique_ptr<block::BlockBackend> backend_;
  std::unique_ptr<pci::test::Machine> machine_;
  std::unique_ptr<test::Host> host_;
  Controller* ctrl_ = nullptr;
};

// ---- PCI function and registers ------------------------------------------------------------

TEST_F(NvmeTest, PciIdentityAndBarLayoutMatchQemu) {
  EXPECT_EQ(ctrl_->vendor_id(), 0x1b36);
  EXPECT_EQ(ctrl_->device_id(), 0x0010);
  EXPECT_EQ(ctrl_->class_code(), 0x010802u);
  EXPECT_EQ(ctrl_->interrupt_pin(), 1);
  EXPECT_EQ(ctrl_->bar_size(0), 0x4000u);
  EXPECT_EQ(ctrl_->bar_type(0), pci::BarType::kMem64);
  EXPECT_EQ(ctrl_->msix_table_offset(), 0x2000u);
  EXPECT_EQ(ctrl_->msix_pba_offset(), 0x3000u);
  EXPECT_EQ(ctrl_->msix_vectors(), 65u);
  EXPECT_TRUE(ctrl_->find_capability(pci::kCapMsix).has_value());
  EXPECT_TRUE(ctrl_->is_express());
}

TEST_F(NvmeTest, RegistersReadAsQemu) {
  EXPECT_EQ(reg(sn::kRegCap, 8), 0x004018200f0107ffull);
  EXPECT_EQ(reg(sn::kRegCap + 4), 0x00401820u);
  EXPECT_EQ(reg(sn::kRegVs), 0x00010400u);
  EXPECT_EQ(reg(2, 2), 0x0f01u);  // narrow reads see the bytes
  EXPECT_EQ(reg(1, 1), 0x07u);
  EXPECT_EQ(reg(0xf00), 0u);
  EXPECT_EQ(reg(0x1000), 0u);  // doorbells read 0
  set_reg(sn::kRegCap, 0);     // read-only
  EXPECT_EQ(reg(sn::kRegCap, 8), 0x004018200f0107ffull);
  set_reg(sn::kRegAsq, 0x1234000, 4);
  set_reg(sn::kRegAsq + 4, 0x1);
  EXPECT_EQ(reg(sn::kRegAsq, 8), 0x101234000ull);
}

TEST_F(NvmeTest, EnableShutdownDisableTransitions) {
  EXPECT_EQ(csts(), 0u);
  enable();
  set_reg(sn::kRegCc, reg(sn::kRegCc) | 1u << sn::kCcShnShift);
  EXPECT_EQ(csts(), sn::kCstsRdy | sn::kShstComplete << sn::kCstsShstShift);
  set_reg(sn::kRegCc, reg(sn::kRegCc) & ~(3u << sn::kCcShnShift));
  EXPECT_EQ(csts(), sn::kCstsRdy);
  set_reg(sn::kRegCc, 0);
  EXPECT_EQ(csts(), 0u);
  EXPECT_EQ(reg(sn::kRegCc), 0u);
  enable();  // and again
  EXPECT_EQ(admin(command(sn::kAdminIdentify).set_prp1(kData).set_cdw(10, 1)).status, 0);
}

TEST_F(NvmeTest, BadConfigurationSetsFatalStatus) {
  struct Case {
    const char* what;
    uint32_t aqa;
    uint64_t asq;
    uint32_t cc;
  };
  const uint32_t en = 6u << 16 | 4u << 20 | 1;
  for (const Case& c : {Case{"zero ASQS", 31u << 16, kAsq, en},
                        Case{"zero ACQS", 31, kAsq, en},
                        Case{"misaligned ASQ", 31u << 16 | 31, kAsq + 64, en},
                        Case{"MPS too large", 31u << 16 | 31, kAsq, en | 5u << 7},
                        Case{"unsupported CSS", 31u << 16 | 31, kAsq, en | 1u << 4},
                        Case{"AMS not round robin", 31u << 16 | 31, kAsq, en | 1u << 11}}) {
    set_reg(sn::kRegAqa, c.aqa);
    set_reg(sn::kRegAsq, c.asq, 8);
    set_reg(sn::kRegAcq, kAcq, 8);
    set_reg(sn::kRegCc, c.cc);
    EXPECT_EQ(csts(), sn::kCstsCfs) << c.what;
    set_reg(sn::kRegCc, 0);
    EXPECT_EQ(csts(), 0u) << c.what;
  }
  // CSS = 7 (admin only) and 6 (all I/O command sets) are supported.
  set_reg(sn::kRegAqa, 31u << 16 | 31);
  set_reg(sn::kRegAsq, kAsq, 8);
  set_reg(sn::kRegCc, en | 7u << 4);
  EXPECT_EQ(csts(), sn::kCstsRdy);
}

// ---- admin commands ---------------------------------------------------------------------------

TEST_F(NvmeTest, IdentifyControllerMatchesQemu) {
  enable();
  auto id = identify(sn::kCnsController);
  EXPECT_EQ(id[0], 0x36);
  EXPECT_EQ(id[1], 0x1b);
  EXPECT_EQ(id[2], 0xf4);
  EXPECT_EQ(id[3], 0x1a);
  EXPECT_EQ(std::string(id.begin() + 4, id.begin() + 24), "F0                  ");
  EXPECT_EQ(std::string(id.begin() + 24, id.begin() + 38), "QEMU NVMe Ctrl");
  EXPECT_EQ(id[sn::kIdCtrlRab], 6);
  EXPECT_EQ(id[sn::kIdCtrlMdts], 7);
  EXPECT_EQ(id[sn::kIdCtrlVer + 2], 1);
  EXPECT_EQ(id[sn::kIdCtrlVer + 1], 4);
  EXPECT_EQ(id[sn::kIdCtrlCntrltype], 1);
  EXPECT_EQ(id[sn::kIdCtrlOacs + 1], 0x01);  // doorbell buffer config
  EXPECT_EQ(id[sn::kIdCtrlAerl], 3);
  EXPECT_EQ(id[sn::kIdCtrlFrmw], 3);
  EXPECT_EQ(id[sn::kIdCtrlLpa], 7);
  EXPECT_EQ(id[sn::kIdCtrlWctemp], 0x57);
  EXPECT_EQ(id[sn::kIdCtrlSqes], 0x66);
  EXPECT_EQ(id[sn::kIdCtrlCqes], 0x44);
  EXPECT_EQ(id[sn::kIdCtrlNn + 1], 1);  // 256 namespaces
  EXPECT_EQ(id[sn::kIdCtrlVwc], 7);
  EXPECT_EQ(id[sn::kIdCtrlSgls], 1);
  EXPECT_EQ(id[sn::kIdCtrlSgls + 2], 1) << "bit 16: bit buckets (QEMU 7.2: none)";
  EXPECT_EQ(id[sn::kIdCtrlElpe], 63) << "64 error log entries (QEMU 7.2: ELPE 0)";
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&id[sn::kIdCtrlSubnqn])),
            "nqn.2019-08.org.qemu:F0");
  EXPECT_EQ(id[sn::kIdCtrlPsd0], 0xc4);
}

TEST_F(NvmeTest, IdentifyNamespacesAndErrors) {
  enable();
  auto ns = identify(sn::kCnsNamespace, 1);
  uint64_t nsze = 0;
  for (int i = 0; i < 8; ++i) nsze |= uint64_t{ns[i]} << (8 * i);
  EXPECT_EQ(nsze, kImageSize / 512);
  auto list = identify(sn::kCnsActiveNamespaces, 0);
  EXPECT_EQ(list[0], 1);
  EXPECT_EQ(list[4], 0);
  list = identify(sn::kCnsActiveNamespaces, 1);  // ids above 1: none
  EXPECT_EQ(list[0], 0);
  list = identify(sn::kCnsCsiActiveNamespaces, 0);
  EXPECT_EQ(list[0], 1);
  auto descriptors = identify(sn::kCnsNamespaceDescriptors, 1);
  EXPECT_NE(descriptors[0], 0);
  auto nvm = identify(sn::kCnsCsiController, 0);
  EXPECT_EQ(nvm[0], 7);                  // VSL
  EXPECT_EQ(nvm[4] | nvm[5] << 8 | nvm[6] << 16, 0x3fffff);  // DMRSL, 512-byte LBAs
  identify(sn::kCnsCsiNamespace, 1);
  auto inactive = identify(sn::kCnsNamespace, 5);
  EXPECT_TRUE(std::all_of(inactive.begin(), inactive.end(), [](uint8_t b) { return b == 0; }));

  uint16_t status = 0;
  identify(sn::kCnsNamespace, 0, &status);
  EXPECT_EQ(status, sn::kInvalidNamespaceOrFormat | sn::kStatusDnr);
  identify(sn::kCnsNamespace, 0xffffffff, &status);
  EXPECT_EQ(status, sn::kInvalidNamespaceOrFormat | sn::kStatusDnr);
  identify(sn::kCnsNamespaceDescriptors, 5, &status);
  EXPECT_EQ(status, sn::kInvalidField | sn::kStatusDnr);
  identify(0x55, 0, &status);
  EXPECT_EQ(status, sn::kInvalidField | sn::kStatusDnr);
  identify(sn::kCnsCsiController, 0, &status, 2);
  EXPECT_EQ(status, sn::kInvalidField | sn::kStatusDnr);
  identify(sn::kCnsActiveNamespaces, 0xfffffffe, &status);
  EXPECT_EQ(status, sn::kInvalidNamespaceOrFormat | sn::kStatusDnr);
}

TEST_F(NvmeTest, AdminOpcodeAndFormatErrors) {
  enable();
  EXPECT_EQ(admin_status(command(sn::kAdminFirmwareCommit)), sn::kInvalidOpcode | sn::kStatusDnr);
  EXPECT_EQ(admin_status(command(sn::kAdminKeepAlive)), sn::kInvalidOpcode | sn::kStatusDnr);
  EXPECT_EQ(admin_status(command(sn::kAdminFormatNvm, 1)), sn::kInvalidOpcode | sn::kStatusDnr);
  // SGLs are not allowed for admin commands; fused commands are refused.
  EXPECT_EQ(admin_status(command(sn::kAdminIdentify).set_prp1(kData).set_cdw(10, 1)
      .set_psdt(sn::kPsdtSglMptrContiguous)),
            sn::kInvalidField | sn::kStatusDnr);
  EXPECT_EQ(admin_status(command(sn::kAdminIdentify).set_prp1(kData).set_cdw(10, 1).set_fuse(1)),
            sn::kInvalidField);
  // Abort never aborts (dw0 bit 0), and checks the SQ id.
  Completion abort = admin(command(sn::kAdminAbort).set_cdw(10, 0));
  EXPECT_EQ(abort.status, 0);
  EXPECT_EQ(abort.dw0, 1u);
  EXPECT_EQ(admin_status(command(sn::kAdminAbort)
      .set_cdw(10, 1)), sn::kInvalidField | sn::kStatusDnr);
}

TEST_F(NvmeTest, QueueCreationAndDeletionStatuses) {
  enable();
  auto create_cq = [&](uint16_t qid, uint32_t qsize, uint64_t base, uint32_t dw11) {
    return admin_status(command(sn::kAdminCreateCq).set_prp1(base).set_cdw(10, qsize << 16 | qid)
        .set_cdw(11, dw11));
  };
  auto create_sq = [&](uint16_t qid, uint32_t qsize, uint16_t cqid, uint32_t flags = 1) {
    return admin_status(command(sn::kAdminCreateSq).set_prp1(kIoSq)
                            .set_cdw(10, qsize << 16 | qid)
                                .set_cdw(11, uint32_t{cqid} << 16 | flags));
  };
  const uint16_t dnr = sn::kStatusDnr;
  EXPECT_EQ(create_cq(1, 15, kIoCq + 0x100, 1), sn::kPrpOffsetInvalid | dnr);
  EXPECT_EQ(create_cq(1, 15, kIoCq, 3 | 5u << 16), sn::kInvalidInterruptVector | dnr);
  EXPECT_EQ(create_cq(1, 15, kIoCq, 2), sn::kInvalidField | dnr);  // not contiguous
  EXPECT_EQ(create_cq(1, 0x800, kIoCq, 3), sn::kInvalidQueueSize | dnr);
  EXPECT_EQ(create_cq(1, 0, kIoCq, 3), sn::kInvalidQueueSize | dnr);
  EXPECT_EQ(create_cq(65, 3, kIoCq, 3), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(create_cq(0, 3, kIoCq, 3), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(create_sq(1, 15, 1), sn::kCompletionQueueInvalid | dnr);
  EXPECT_EQ(create_cq(1, 15, kIoCq, 3), 0);
  EXPECT_EQ(create_cq(1, 15, kIoCq, 3), sn::kInvalidQueueIdentifier | dnr);  // exists
  EXPECT_EQ(set_feature(sn::kFeatNumberOfQueues, 0x30003).status,
            sn::kCommandSequenceError | dnr);
  EXPECT_EQ(create_sq(1, 15, 1, 0), sn::kInvalidField | dnr);
  EXPECT_EQ(create_sq(1, 0, 1), sn::kInvalidQueueSize | dnr);
  EXPECT_EQ(create_sq(0, 15, 1), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(create_sq(1, 15, 1), 0);
  EXPECT_EQ(create_sq(1, 15, 1), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteCq).set_cdw(10, 1)), sn::kInvalidQueueDeletion);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteCq)
      .set_cdw(10, 2)), sn::kCompletionQueueInvalid | dnr);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteSq)
      .set_cdw(10, 2)), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteSq)
      .set_cdw(10, 0)), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteSq).set_cdw(10, 1)), 0);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteCq).set_cdw(10, 1)), 0);
  EXPECT_EQ(ctrl_->state().sqs[1], nullptr);
  EXPECT_EQ(ctrl_->state().cqs[1], nullptr);
}

TEST_F(NvmeTest, FeaturesAsQemu) {
  enable();
  const uint16_t dnr = sn::kStatusDnr;
  EXPECT_EQ(get_feature(sn::kFeatArbitration).dw0, 7u);
  EXPECT_EQ(get_feature(sn::kFeatTemperatureThreshold).dw0, 0x157u);
  EXPECT_EQ(get_feature(sn::kFeatTemperatureThreshold, 3).dw0, 4u);
  EXPECT_EQ(get_feature(sn::kFeatErrorRecovery, 3, 0, 1).dw0, 6u);
  EXPECT_EQ(get_feature(sn::kFeatErrorRecovery, 0, 0, 0).status,
            sn::kInvalidNamespaceOrFormat | dnr);
  EXPECT_EQ(get_feature(sn::kFeatVolatileWriteCache).dw0, 1u);
  EXPECT_EQ(get_feature(sn::kFeatVolatileWriteCache, 1).dw0, 0u);
  EXPECT_EQ(get_feature(sn::kFeatNumberOfQueues).dw0, 0x3f003fu);
  EXPECT_EQ(get_feature(sn::kFeatInterruptVectorConfig, 0, 0).dw0, 0x10000u);
  EXPECT_EQ(get_feature(sn::kFeatInterruptVectorConfig, 0, 1).dw0, 0x1u);
  EXPECT_EQ(get_feature(sn::kFeatInterruptVectorConfig, 0, 70).status, sn::kInvalidField | dnr);
  EXPECT_EQ(get_feature(sn::kFeatLbaRangeType).status, sn::kInvalidField | dnr);
  EXPECT_EQ(get_feature(0x55).status, sn::kInvalidField | dnr);

  // Arbitration and Power Management are changeable (spec; QEMU 7.2 refuses both).
  EXPECT_EQ(get_feature(sn::kFeatArbitration, 3).dw0, 4u);
  EXPECT_EQ(get_feature(sn::kFeatPowerManagement, 3).dw0, 4u);
  EXPECT_EQ(set_feature(sn::kFeatArbitration, 0x030201f5).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatArbitration).dw0, 0x03020105u) << "reserved bits 7:3 dropped";
  EXPECT_EQ(get_feature(sn::kFeatArbitration, 1).dw0, 7u) << "the default stays";
  EXPECT_EQ(set_feature(sn::kFeatPowerManagement, 1).status, sn::kInvalidField | dnr)
      << "power state 1 does not exist (NPSS 0)";
  EXPECT_EQ(set_feature(sn::kFeatPowerManagement, 3u << 5).status, sn::kInvalidField | dnr)
      << "workload hint 3 is reserved";
  EXPECT_EQ(set_feature(sn::kFeatPowerManagement, 2u << 5).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatPowerManagement).dw0, 0x40u);
  EXPECT_EQ(set_feature(sn::kFeatPowerManagement, 0, 0, true).status, sn::kFeatureNotSaveable | dnr);
  EXPECT_EQ(set_feature(sn::kFeatWriteAtomicity, 1).status, sn::kFeatureNotChangeable | dnr);
  EXPECT_EQ(set_feature(sn::kFeatTemperatureThreshold, 0x100, 0, true).status,
            sn::kFeatureNotSaveable | dnr);
  EXPECT_EQ(set_feature(sn::kFeatTemperatureThreshold, 0x100, 1).status,
            sn::kFeatureNotNamespaceSpecific | dnr);
  EXPECT_EQ(set_feature(sn::kFeatTemperatureThreshold, 0x160).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatTemperatureThreshold).dw0, 0x160u);
  EXPECT_EQ(set_feature(sn::kFeatTemperatureThreshold, 0x10 | 1u << 20).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatTemperatureThreshold, 0, 1u << 20).dw0, 0x10u);
  EXPECT_EQ(set_feature(sn::kFeatTemperatureThreshold, 3u << 20).status, sn::kInvalidField | dnr);
  Completion queues = set_feature(sn::kFeatNumberOfQueues, 0x30003);
  EXPECT_EQ(queues.status, 0);
  EXPECT_EQ(queues.dw0, 0x3f003fu);
  EXPECT_EQ(set_feature(sn::kFeatNumberOfQueues, 0xffff).status, sn::kInvalidField | dnr);
  EXPECT_EQ(set_feature(sn::kFeatAsyncEventConfig, 0x1ff).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatAsyncEventConfig).dw0, 0x1ffu);
  EXPECT_EQ(set_feature(sn::kFeatErrorRecovery, 0x20, 1).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatErrorRecovery, 0, 0, 1).dw0, 0x20u);
  EXPECT_EQ(set_feature(sn::kFeatVolatileWriteCache, 0).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatVolatileWriteCache).dw0, 0u);
}

TEST_F(NvmeTest, TimestampFeature) {
  enable();
  ASSERT_EQ(get_feature(sn::kFeatTimestamp).status, 0);
  auto ts = peek(kData, 8);
  EXPECT_EQ(ts[6], 0);  // origin 0: not set by the host
  std::array<uint8_t, 8> value{0x10, 0x27, 0, 0, 0, 0, 0, 0};  // 10000 ms
  poke(kData, value);
  ASSERT_EQ(set_feature(sn::kFeatTimestamp, 0).status, 0);
  loop_->advance_clock(clock_, clock_.now_ns() + 5'000'000);  // +5 ms
  ASSERT_EQ(get_feature(sn::kFeatTimestamp).status, 0);
  ts = peek(kData, 8);
  EXPECT_EQ(ts[0] | ts[1] << 8, 10005);
  EXPECT_EQ(ts[6], 0x02);  // origin 1 (bits 3:1)
}

TEST_F(NvmeTest, LogPages) {
  enable();
  const uint16_t dnr = sn::kStatusDnr;
  ASSERT_EQ(get_log(sn::kLogSmartHealth, 512).status, 0);
  auto smart = peek(kData, 512);
  EXPECT_EQ(smart[1] | smart[2] << 8, 0x143);
  EXPECT_EQ(smart[0], 0);
  ASSERT_EQ(get_log(sn::kLogFirmwareSlot, 512).status, 0);
  EXPECT_EQ(peek(kData, 16), (std::vector<uint8_t>{1, 0, 0, 0, 0, 0, 0, 0, '1', '.', '0', ' ',
                                                    ' ', ' ', ' ', ' '}));
  ASSERT_EQ(get_log(sn::kLogCommandsSupported, 4096).status, 0);
  auto effects = peek(kData, 4096);
  EXPECT_EQ(effects[4 * sn::kAdminIdentify], 1);
  EXPECT_EQ(effects[4 * sn::kAdminDoorbellBufferConfig], 1);
  EXPECT_EQ(effects[1024 + 4 * sn::kNvmWrite], 3);
  EXPECT_EQ(effects[1024 + 4 * sn::kNvmRead], 1);
  EXPECT_EQ(get_log(sn::kLogErrorInformation, 64).status, 0);
  EXPECT_EQ(get_log(sn::kLogChangedNamespaces, 4096).status, 0);
  // Offsets: within the page, dword aligned.
  ASSERT_EQ(get_log(sn::kLogSmartHealth, 4, 0xffffffff, 0).status, 0);
  ASSERT_EQ(get_log(sn::kLogFirmwareSlot, 8, 0xffffffff, 8).status, 0);
  EXPECT_EQ(peek(kData, 3), (std::vector<uint8_t>{'1', '.', '0'}));
  EXPECT_EQ(get_log(sn::kLogSmartHealth, 4, 0xffffffff, 512).status, sn::kInvalidField | dnr);
  EXPECT_EQ(get_log(sn::kLogSmartHealth, 4, 0xffffffff, 2).status, sn::kInvalidField | dnr);
  EXPECT_EQ(get_log(0x7f, 4).status, sn::kInvalidField | dnr);
  EXPECT_EQ(get_log(sn::kLogSmartHealth, 512, 7).status, sn::kInvalidNamespaceOrFormat | dnr);
  // Longer than MDTS (512 KiB).
  EXPECT_EQ(get_log(sn::kLogSmartHealth, 1u << 20).status, sn::kInvalidField | dnr);
}

// ---- I/O ----------------------------------------------------------------------------------------

TEST_F(NvmeTest, ReadWriteRoundTripThroughTheFile) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  // Read LBAs 8..15 and compare with the image.
  Completion c = (submit(q, rw(sn::kNvmRead, 8, 8, kData)), wait(q));
  ASSERT_EQ(c.status, 0);
  EXPECT_EQ(c.sq_id, 1);
  auto data = peek(kData, 4096);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), image_->initial().begin() + 8 * 512));
  // Write a pattern at LBA 100 and find it in the file.
  std::vector<uint8_t> pattern(4096);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i ^ 0x5a);
  poke(kData + 0x2000, pattern);
  c = (submit(q, rw(sn::kNvmWrite, 100, 8, kData + 0x2000)), wait(q));
  ASSERT_EQ(c.status, 0);
  c = (submit(q, command(sn::kNvmFlush, 1)), wait(q));
  ASSERT_EQ(c.status, 0);
  auto file = image_->read_back();
  EXPECT_TRUE(std::equal(pattern.begin(), pattern.end(), file.begin() + 100 * 512));
  // SMART counts the commands and data units.
  ASSERT_EQ(get_log(sn::kLogSmartHealth, 512).status, 0);
  auto smart = peek(kData, 512);
  EXPECT_EQ(smart[sn::kSmartDataUnitsRead], 1);     // 8 sectors -> 1 unit (rounded up)
  EXPECT_EQ(smart[sn::kSmartHostReads], 1);
  EXPECT_EQ(smart[sn::kSmartHostWrites], 1);
}

TEST_F(NvmeTest, PrpListAndSglTransfers) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  // 16 KiB read through a PRP list: PRP1 at an offset, the rest listed.
  uint64_t first = kData + 0x200;
  std::array<uint64_t, 4> pages{kData + 0x10000, kData + 0x20000, kData + 0x30000,
                                kData + 0x40000};
  std::vector<uint8_t> list(32);
  for (size_t i = 0; i < pages.size(); ++i)
    for (int b = 0; b < 8; ++b) list[8 * i + b] = static_cast<uint8_t>(pages[i] >> (8 * b));
  poke(kPrpList, list);
  Sqe read = rw(sn::kNvmRead, 0, 32, first);
  read.set_prp1(first).set_prp2(kPrpList);
  ASSERT_EQ((submit(q, read), wait(q)).status, 0);
  const auto& img = image_->initial();
  auto head = peek(first, 0xe00);
  EXPECT_TRUE(std::equal(head.begin(), head.end(), img.begin()));
  for (size_t i = 0; i < 3; ++i) {
    auto page = peek(pages[i], 4096);
    EXPECT_TRUE(std::equal(page.begin(), page.end(), img.begin() + 0xe00 + 4096 * i)) << i;
  }
  auto tail = peek(pages[3], 0x200);
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), img.begin() + 0xe00 + 3 * 4096));

  // SGL: one data block descriptor in the command.
  Sqe sgl = command(sn::kNvmRead, 1);
  sgl.set_psdt(sn::kPsdtSglMptrContiguous)
      .set_sgl1(guest::nvme::sgl_descriptor(kData + 0x50000, 1024, sn::kSglDataBlock))
      .set_cdw(10, 4).set_cdw(12, 1);
  ASSERT_EQ((submit(q, sgl), wait(q)).status, 0);
  auto got = peek(kData + 0x50000, 1024);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), img.begin() + 4 * 512));
}

TEST_F(NvmeTest, IoCommandErrors) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  const uint16_t dnr = sn::kStatusDnr;
  auto status = [&](Sqe sqe) { return (submit(q, sqe), wait(q)).status; };
  EXPECT_EQ(status(rw(sn::kNvmRead, kImageSize / 512, 1, kData)), sn::kLbaOutOfRange | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData, 0)), sn::kInvalidNamespaceOrFormat | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData, 5)), sn::kInvalidField | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData, 0xffffffff)), sn::kInvalidField | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1025, kData)), sn::kInvalidField | dnr);  // > MDTS
  EXPECT_EQ(status(command(0x7f, 1)), sn::kInvalidOpcode | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData).set_fuse(1)), sn::kInvalidField);
  // No RAM there: a Data Transfer Error, logged (More).
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, 0x10000000)), sn::kDataTransferError | sn::kStatusMore);
  EXPECT_EQ(status(command(sn::kNvmFlush, 0xffffffff)), 0);
}

TEST_F(NvmeTest, CompareWriteZeroesAndDeallocate) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  auto status = [&](Sqe sqe) { return (submit(q, sqe), wait(q)).status; };
  std::vector<uint8_t> same(image_->initial().begin() + 512, image_->initial().begin() + 1024);
  poke(kData, same);
  EXPECT_EQ(status(rw(sn::kNvmCompare, 1, 1, kData)), 0);
  same[7] ^= 1;
  poke(kData, same);
  EXPECT_EQ(status(rw(sn::kNvmCompare, 1, 1, kData)), sn::kCompareFailure);

  EXPECT_EQ(status(rw(sn::kNvmWriteZeroes, 10, 4, 0)), 0);
  // Deallocate two ranges (LBA 20, 2 blocks; LBA 40, 1 block) and one out of range.
  std::vector<uint8_t> ranges(48, 0);
  auto range = [&](size_t i, uint32_t nlb, uint64_t slba) {
    for (int b = 0; b < 4; ++b) ranges[16 * i + 4 + b] = static_cast<uint8_t>(nlb >> (8 * b));
    for (int b = 0; b < 8; ++b) ranges[16 * i + 8 + b] = static_cast<uint8_t>(slba >> (8 * b));
  };
  range(0, 2, 20);
  range(1, 1, 40);
  range(2, 8, kImageSize / 512);
  poke(kData, ranges);
  EXPECT_EQ(status(command(sn::kNvmDatasetManagement, 1).set_prp1(kData).set_cdw(10, 2)
      .set_cdw(11, 4)), 0);
  auto file = image_->read_back();
  auto zero = [](auto first, auto last) {
    return std::all_of(first, last, [](uint8_t b) { return b == 0; });
  };
  EXPECT_TRUE(zero(file.begin() + 10 * 512, file.begin() + 14 * 512));
  EXPECT_TRUE(zero(file.begin() + 20 * 512, file.begin() + 22 * 512));
  EXPECT_TRUE(zero(file.begin() + 40 * 512, file.begin() + 41 * 512));
  EXPECT_FALSE(zero(file.begin() + 22 * 512, file.begin() + 23 * 512));
}

TEST_F(NvmeTest, BlockErrorsMapToMediaStatuses) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  auto status = [&](Sqe sqe) { return (submit(q, sqe), wait(q)).status; };
  backend_->faults().add({.op = block::BlockOp::kRead, .error = EIO});
  backend_->faults().add({.op = block::BlockOp::kWrite, .offset = 0, .length = 512, .error = EIO});
  backend_->faults().add({.op = block::BlockOp::kWrite, .offset = 4096, .length = 512,
                          .error = ENOSPC});
  // Each carries More: the error log has an entry for it.
  const uint16_t more = sn::kStatusMore;
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData)), sn::kUnrecoveredReadError | more);
  EXPECT_EQ(status(rw(sn::kNvmWrite, 0, 1, kData)), sn::kWriteFault | more);
  EXPECT_EQ(status(rw(sn::kNvmWrite, 8, 1, kData)), sn::kCapacityExceeded | more);
  EXPECT_EQ(status(rw(sn::kNvmRead, 1ull << 40, 1, kData)), sn::kLbaOutOfRange | sn::kStatusDnr)
      << "a host's out-of-range command is not a logged error";
  ASSERT_EQ(get_log(sn::kLogSmartHealth, 512).status, 0);
  auto smart = peek(kData, 512);
  EXPECT_EQ(smart[sn::kSmartMediaErrors], 2);
  EXPECT_EQ(smart[sn::kSmartErrorLogEntries], 3);
  ASSERT_EQ(get_log(sn::kLogErrorInformation, 4096).status, 0);
  auto log = peek(kData, 4096);
  auto le = [&](size_t at, unsigned bytes) {
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; ++i) v |= uint64_t{log[at + i]} << (8 * i);
    return v;
  };
  // Newest first: the ENOSPC write (cid 2, LBA 8), the EIO write (cid 1), the read (cid 0).
  const uint16_t expected_status[] = {sn::kCapacityExceeded, sn::kWriteFault,
                                      sn::kUnrecoveredReadError};
  const uint64_t expected_lba[] = {8, 0, 0};
  for (size_t i = 0; i < 3; ++i) {
    size_t at = 64 * i;
    SCOPED_TRACE(i);
    EXPECT_EQ(le(at, 8), 3 - i) << "error count";
    EXPECT_EQ(le(at + 8, 2), 1u) << "SQ id";
    EXPECT_EQ(le(at + 10, 2), 2 - i) << "command id";
    EXPECT_EQ(le(at + 12, 2), static_cast<uint64_t>(expected_status[i] | more) << 1)
        << "status field";
    EXPECT_EQ(le(at + 14, 2), 0xffffu) << "parameter error location: none";
    EXPECT_EQ(le(at + 16, 8), expected_lba[i]);
    EXPECT_EQ(le(at + 24, 4), 1u) << "namespace";
  }
  EXPECT_EQ(le(3 * 64, 8), 0u) << "unused entries read as zero (error count 0: invalid)";
}

TEST_F(NvmeTest, ErrorLogIsBoundedKeepsCountingAndSurvivesReset) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  backend_->faults().add({.op = block::BlockOp::kRead, .error = EIO});
  for (int i = 0; i < 70; ++i) {
    submit(q, rw(sn::kNvmRead, 0, 1, kData));
    ASSERT_EQ(wait(q).status, sn::kUnrecoveredReadError | sn::kStatusMore);
  }
  EXPECT_EQ(ctrl_->state().error_log.size(), kErrorLogEntries);
  EXPECT_EQ(ctrl_->state().error_log.front().error_count, 70u);
  EXPECT_EQ(ctrl_->state().error_log.back().error_count, 70u - kErrorLogEntries + 1);
  EXPECT_TRUE(check_error_log(ctrl_->state().error_log).ok());
  // A controller reset keeps the log (error counts are retained across power off).
  set_reg(sn::kRegCc, 0);
  enable();
  EXPECT_EQ(ctrl_->state().error_log.front().error_count, 70u);
  ASSERT_EQ(get_log(sn::kLogErrorInformation, 64).status, 0);
  EXPECT_EQ(peek(kData, 1)[0], 70);
  // Roll-over: after FFFFFFFFh comes 1.
  EXPECT_EQ(next_error_count(0xffffffffull), 1u);
  EXPECT_EQ(next_error_count(0), 1u);
}

TEST_F(NvmeTest, ErrorLogRulesForLoadedLogs) {
  std::deque<ErrorLogEntry> log;
  EXPECT_TRUE(check_error_log(log).ok());
  log.push_back({.error_count = 5});
  log.push_back({.error_count = 4});
  EXPECT_TRUE(check_error_log(log).ok());
  log.push_back({.error_count = 2});
  Status gap = check_error_log(log);
  EXPECT_FALSE(gap.ok());
  EXPECT_NE(gap.to_string().find("error_log[2]"), std::string::npos) << gap.to_string();
  log.back().error_count = 0;
  EXPECT_FALSE(check_error_log(log).ok()) << "count 0 marks an empty slot, not an entry";
  log.back().error_count = 3;
  log.back().status = 0x8001;
  EXPECT_FALSE(check_error_log(log).ok());
  std::deque<ErrorLogEntry> rolled = {{.error_count = 1}, {.error_count = 0xffffffff}};
  EXPECT_TRUE(check_error_log(rolled).ok()) << "1 follows FFFFFFFFh";
  std::deque<ErrorLogEntry> too_many;
  for (uint64_t i = 100; i > 100 - kErrorLogEntries - 1; --i) too_many.push_back({.error_count = i});
  EXPECT_FALSE(check_error_log(too_many).ok());
}

TEST_F(NvmeTest, DeallocateErrorsGoThroughTheWritePolicy) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  // One range: 8 blocks at LBA 16.
  std::array<uint8_t, 16> range{};
  range[4] = 8;
  range[8] = 16;
  poke(kData, range);
  backend_->faults().add({.op = block::BlockOp::kDiscard, .error = EIO});
  auto dsm = command(sn::kNvmDatasetManagement, 1).set_prp1(kData).set_cdw(10, 0)
      .set_cdw(11, 1u << 2);
  submit(q, dsm);
  // werror=report: QEMU's status for a failed deallocation, and an error log entry.
  EXPECT_EQ(wait(q).status, sn::kInternalError | sn::kStatusMore);
  ASSERT_FALSE(ctrl_->state().error_log.empty());
  EXPECT_EQ(ctrl_->state().error_log.front().status & 0x7ff, sn::kInternalError);
  backend_->faults().clear();
  submit(q, dsm);
  EXPECT_EQ(wait(q).status, 0);
}

TEST_F(NvmeTest, ReadOnlyDriveWriteFaultsAsQemu) {
  build({.serial = "F0"}, true);
  enable();
  uint16_t q = create_io_queues(1, 16);
  EXPECT_EQ((submit(q, rw(sn::kNvmWrite, 0, 1, kData)), wait(q)).status,
            sn::kWriteFault | sn::kStatusMore);
  EXPECT_EQ((submit(q, rw(sn::kNvmRead, 0, 1, kData)), wait(q)).status, 0);
}

TEST_F(NvmeTest, SecondNamespaceWith4KiBBlocks) {
  TempImage second(1 << 20);
  block::DriveConfig drive{.id = "d1", .file = second.path()};
  auto backend = block::BlockBackend::open(*loop_, drive);
  ASSERT_TRUE(backend.ok());
  ASSERT_TRUE(ctrl_->attach_namespace(0, **backend, 4096).ok());
  EXPECT_FALSE(ctrl_->attach_namespace(2, **backend, 4096).ok());  // id in use
  EXPECT_FALSE(ctrl_->attach_namespace(257, **backend, 512).ok());
  enable();
  auto list = identify(sn::kCnsActiveNamespaces);
  EXPECT_EQ(list[4], 2);
  uint16_t q = create_io_queues(1, 16);
  ASSERT_EQ((submit(q, rw(sn::kNvmRead, 3, 1, kData, 2)), wait(q)).status, 0);
  auto got = peek(kData, 4096);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), second.initial().begin() + 3 * 4096));
  machine_.reset();  // the controller goes before the backend it uses
}

// ---- completion queue flow control -----------------------------------------------------------

TEST_F(NvmeTest, FullCqHoldsCompletionsAndNeverOverwrites) {
  enable();
  uint16_t q = create_io_queues(1, 16, 0, true, 4);  // CQ of 4 entries: 3 usable
  for (int i = 0; i < 7; ++i) submit(q, command(sn::kNvmFlush, 1), i == 6);
  // Wait for the outcome itself: before the doorbell is seen nothing is in flight either.
  const auto& pending = ctrl_->state().cqs[1]->pending;
  ASSERT_TRUE(loop_->run_until([&] {
    return pending.size() == 4 && ctrl_->requests_in_flight() == 0;
  }, 5s).ok()) << pending.size() << " pending";
  settle();  // nothing more may arrive
  // Three posted with phase 1, the fourth slot untouched, four pending.
  for (uint32_t slot = 0; slot < 3; ++slot) EXPECT_TRUE(cqe(q, slot).phase) << slot;
  EXPECT_FALSE(cqe(q, 3).phase);
  ASSERT_EQ(ctrl_->state().cqs[1]->pending.size(), 4u);
  // Posted in the order they completed: the three in the queue, then the pending ones.
  std::vector<uint16_t> expected;
  for (uint32_t slot = 0; slot < 3; ++slot) expected.push_back(cqe(q, slot).cid);
  for (const auto& c : ctrl_->state().cqs[1]->pending) expected.push_back(c.cid);
  std::vector<uint16_t> cids;
  for (int i = 0; i < 7; ++i) cids.push_back(wait(q).cid);
  EXPECT_EQ(cids, expected);
  std::sort(cids.begin(), cids.end());
  EXPECT_EQ(cids, (std::vector<uint16_t>{0, 1, 2, 3, 4, 5, 6}));  // none lost, none twice
  EXPECT_EQ(ctrl_->state().cqs[1]->pending.size(), 0u);
  EXPECT_FALSE(phase(q));  // wrapped: the host now expects phase 0
}

// ---- interrupts -------------------------------------------------------------------------------

TEST_F(NvmeTest, MsixVectorPerCompletionQueue) {
  enable_msix();
  enable();
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{}));
  admin(command(sn::kAdminIdentify).set_prp1(kData).set_cdw(10, 1));
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x40}));  // admin CQ: vector 0
  uint16_t q = create_io_queues(1, 16, 3);
  msi_data();
  submit(q, command(sn::kNvmFlush, 1));
  wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x43}));
  // Vector beyond msix_qsize.
  EXPECT_EQ(admin_status(command(sn::kAdminCreateCq).set_prp1(kIoCq + 0x20000)
      .set_cdw(10, 15u << 16 | 2)
                             .set_cdw(11, 3 | 65u << 16)),
            sn::kInvalidInterruptVector | sn::kStatusDnr);
}

TEST_F(NvmeTest, IntxLevelFollowsUnconsumedEntriesAndMask) {
  enable();
  EXPECT_FALSE(intx());
  submit(kAdmin, command(sn::kAdminIdentify).set_prp1(kData).set_cdw(10, 1));
  ASSERT_TRUE(loop_->run_until([&] { return cqe_ready(kAdmin); }, 5s).ok());
  EXPECT_TRUE(intx());
  set_reg(sn::kRegIntms, 1);
  EXPECT_FALSE(intx());
  EXPECT_EQ(reg(sn::kRegIntms), 1u);
  EXPECT_EQ(reg(sn::kRegIntmc), 1u);
  set_reg(sn::kRegIntmc, 1);
  EXPECT_TRUE(intx());
  wait(kAdmin);  // consumes and rings the head doorbell
  EXPECT_FALSE(intx());
}

TEST_F(NvmeTest, InterruptCoalescing) {
  enable_msix();
  enable();
  uint16_t q = create_io_queues(1, 16, 2);
  // Threshold 4 entries (0's based 3), time 1 ms (10 x 100 us).
  ASSERT_EQ(set_feature(sn::kFeatInterruptCoalescing, 10u << 8 | 3).status, 0);
  msi_data();
  submit(q, command(sn::kNvmFlush, 1));
  submit(q, command(sn::kNvmFlush, 1));
  wait(q);
  wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{}));  // aggregated
  loop_->advance_clock(clock_, clock_.now_ns() + 1'000'000);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x42}));  // time reached
  for (int i = 0; i < 4; ++i) submit(q, command(sn::kNvmFlush, 1));
  for (int i = 0; i < 4; ++i) wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x42}));  // threshold reached
  // Coalescing disabled on the vector: every completion interrupts.
  ASSERT_EQ(set_feature(sn::kFeatInterruptVectorConfig, 1u << 16 | 2).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatInterruptVectorConfig, 0, 2).dw0, 0x10002u);
  msi_data();
  submit(q, command(sn::kNvmFlush, 1));
  wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x42}));
}

// ---- asynchronous events --------------------------------------------------------------------

TEST_F(NvmeTest, AsyncEventsLimitMaskingAndLogRead) {
  enable();
  for (int i = 0; i < 4; ++i) submit(kAdmin, command(sn::kAdminAsyncEventRequest));
  settle();
  Completion over = (submit(kAdmin, command(sn::kAdminAsyncEventRequest)), wait(kAdmin));
  EXPECT_EQ(over.status, sn::kAsyncEventRequestLimitExceeded);
  EXPECT_EQ(ctrl_->state().aer.outstanding.size(), 4u);
  // A doorbell for a queue that does not exist: error event, invalid doorbell register.
  set_reg(sn::sq_tail_doorbell(9), 1);
  Completion event = wait(kAdmin);
  EXPECT_EQ(event.status, 0);
  EXPECT_EQ(event.cid, 3);  // the newest AER first
  EXPECT_EQ(event.dw0, sn::aer_result(sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbell,
                                      sn::kLogErrorInformation));
  // Masked until the error log is read: the next one waits.
  set_reg(sn::sq_tail_doorbell(0), 999);  // beyond the queue size
  settle();
  EXPECT_FALSE(cqe_ready(kAdmin));
  EXPECT_EQ(ctrl_->state().aer.queued.size(), 1u);
  // Reading with RAE keeps the mask; without it the queued event goes out.
  EXPECT_EQ(get_log(sn::kLogErrorInformation, 64, 0, 0, true).status, 0);
  EXPECT_FALSE(cqe_ready(kAdmin));
  uint16_t log_cid = submit(kAdmin, command(sn::kAdminGetLogPage).set_prp1(kData)
      .set_cdw(10, 15u << 16 | 1));
  Completion first = wait(kAdmin), second = wait(kAdmin);
  Completion log = first.cid == log_cid ? first : second;
  Completion aer = first.cid == log_cid ? second : first;
  EXPECT_EQ(log.status, 0);
  EXPECT_EQ(aer.cid, 2);
  EXPECT_EQ(aer.dw0, sn::aer_result(sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbellValue,
                                       sn::kLogErrorInformation));
}

TEST_F(NvmeTest, AsyncEventQueueIsBounded) {
  build({.serial = "F0", .aer_max_queued = 2});
  enable();
  submit(kAdmin, command(sn::kAdminAsyncEventRequest));
  settle();  // the AER must be outstanding for the error to be reported
  set_reg(sn::sq_tail_doorbell(9), 1);
  wait(kAdmin);
  submit(kAdmin, command(sn::kAdminAsyncEventRequest));
  settle();
  for (int i = 0; i < 5; ++i) set_reg(sn::sq_tail_doorbell(9), 1);  // masked: queued
  EXPECT_EQ(ctrl_->state().aer.queued.size(), 2u);
}

TEST_F(NvmeTest, TemperatureThresholdRaisesSmartEvent) {
  enable();
  ASSERT_EQ(set_feature(sn::kFeatAsyncEventConfig, sn::kSmartWarnTemperature).status, 0);
  submit(kAdmin, command(sn::kAdminAsyncEventRequest));
  settle();
  uint16_t cid = submit(kAdmin, command(sn::kAdminSetFeatures)
      .set_cdw(10, sn::kFeatTemperatureThreshold)
                                    .set_cdw(11, 0x100));  // below the current 0x143
  Completion a = wait(kAdmin), b = wait(kAdmin);
  Completion event = a.cid == cid ? b : a;
  EXPECT_EQ(event.dw0, sn::aer_result(sn::kAerTypeSmart, sn::kAerInfoSmartTemperature,
                                      sn::kLogSmartHealth));
  ASSERT_EQ(get_log(sn::kLogSmartHealth, 512).status, 0);
  EXPECT_EQ(peek(kData, 1)[0], sn::kSmartWarnTemperature);
}

// ---- misbehaving hosts ------------------------------------------------------------------------

TEST_F(NvmeTest, InvalidDoorbellsNeverCrash) {
  set_reg(sn::sq_tail_doorbell(0), 1);  // while disabled: no queue, ignored
  set_reg(sn::cq_head_doorbell(0), 1);
  settle();
  EXPECT_EQ(csts(), 0u);
  enable();
  uint16_t q = create_io_queues(1, 16);
  set_reg(sn::cq_head_doorbell(1), 5);   // head beyond the tail
  set_reg(sn::cq_head_doorbell(1), 99);  // beyond the size
  set_reg(sn::sq_tail_doorbell(1), 16);
  set_reg(sn::sq_tail_doorbell(64), 1);
  set_reg(0x1000 + 2, 1);  // misaligned
  set_reg(0x1ffc, 1);      // past the last queue
  settle();
  EXPECT_EQ(csts(), sn::kCstsRdy);
  EXPECT_EQ(ctrl_->state().cqs[1]->head, 0u);
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 0u);
  // Same tail again: nothing new to do.
  submit(q, command(sn::kNvmFlush, 1));
  wait(q);
  set_reg(sn::sq_tail_doorbell(1), sq_tail(q));
  settle();
  EXPECT_FALSE(cqe_ready(q));
}

TEST_F(NvmeTest, SqTailOverrunningUnfetchedEntriesIsRefusedAndLogged) {
  enable();
  submit(kAdmin, command(sn::kAdminAsyncEventRequest));
  settle();
  uint16_t q = create_io_queues(1, 8);
  ctrl_->quiesce();  // as when the VM is stopped: nothing is fetched
  for (int i = 0; i < 7; ++i) submit(q, command(sn::kNvmFlush, 1));
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 7u) << "7 entries: the SQ is full";
  EXPECT_TRUE(ctrl_->state().error_log.empty());
  // An 8th (the driver refuses it, so by hand): the tail would land on the unfetched head.
  ASSERT_TRUE(host_->write_sqe(q, 7, command(sn::kNvmFlush, 1).set_cid(7)).ok());
  set_reg(sn::sq_tail_doorbell(1), 0);
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 7u) << "the overrunning tail is ignored";
  set_reg(sn::sq_tail_doorbell(1), 3);  // 7 -> 3 wraps past the head: 11 entries
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 7u);
  ASSERT_EQ(ctrl_->state().error_log.size(), 2u);
  const ErrorLogEntry& e = ctrl_->state().error_log.front();
  EXPECT_EQ(e.sq_id, 0xffff) << "no command";
  EXPECT_EQ(e.cid, 0xffff);
  EXPECT_EQ(e.status, sn::kInvalidField);
  ctrl_->resume();
  for (int i = 0; i < 7; ++i) EXPECT_EQ(wait(q).status, 0);
  Completion event = wait(kAdmin);
  EXPECT_EQ(event.dw0, sn::aer_result(sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbellValue,
                                      sn::kLogErrorInformation));
  settle();
  EXPECT_FALSE(cqe_ready(q)) << "the refused tail fetched nothing";
  // Caught up (head = tail = 7): a tail one ahead is a plain submission again.
  set_reg(sn::sq_tail_doorbell(1), 0);
  EXPECT_EQ(wait(q).status, 0);
  EXPECT_EQ(ctrl_->state().error_log.size(), 2u);
}

TEST_F(NvmeTest, ShadowSqTailOverrunIsRefusedOncePerValue) {
  enable();
  zero(kShadow, 4096);
  zero(kEventIdx, 4096);
  ASSERT_EQ(admin_status(command(sn::kAdminDoorbellBufferConfig).set_prp1(kShadow)
      .set_prp2(kEventIdx)), 0);
  uint16_t q = create_io_queues(1, 8);
  ctrl_->quiesce();
  for (uint32_t i = 0; i < 8; ++i) {
    if (i < 7) {
      submit(q, command(sn::kNvmFlush, 1), /*ring=*/false);
    } else {  // an 8th overruns the unfetched head: the driver refuses it, so by hand
      ASSERT_TRUE(host_->write_sqe(q, 7, command(sn::kNvmFlush, 1).set_cid(7)).ok());
    }
    poke32(kShadow + 8, (i + 1) % 8);
    set_reg(sn::sq_tail_doorbell(1), (i + 1) % 8);
  }
  set_reg(sn::sq_tail_doorbell(1), 0);  // the same wrong value, rung again
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 7u);
  EXPECT_EQ(ctrl_->state().error_log.size(), 1u) << "one entry for one wrong value";
  ctrl_->resume();
  // Once the controller has fetched the 7, the shadow's 0 is one entry ahead: legal.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(wait(q).status, 0);
  EXPECT_EQ(ctrl_->state().error_log.size(), 1u);
}

TEST_F(NvmeTest, UnbackedCompletionQueueIsFatal) {
  enable();
  ASSERT_EQ(admin_status(command(sn::kAdminCreateCq).set_prp1(0x40000000).set_cdw(10, 15u << 16 | 1)
      .set_cdw(11, 3)), 0);
  ASSERT_EQ(admin_status(command(sn::kAdminCreateSq).set_prp1(kIoSq).set_cdw(10, 15u << 16 | 1)
                             .set_cdw(11, 1u << 16 | 1)),
            0);
  // Queues the driver does not know: the SQE and the doorbell by hand.
  poke(kIoSq, command(sn::kNvmFlush, 1).bytes);
  set_reg(sn::sq_tail_doorbell(1), 1);
  loop_->run_until([&] { return csts() & sn::kCstsCfs; }, 5s).ok();
  EXPECT_EQ(csts(), sn::kCstsCfs);
}

TEST_F(NvmeTest, BusMasterOffStopsDma) {
  enable();
  ctrl_->config_write(pci::kCommand, pci::kCommandMemory, 2);
  submit(kAdmin, command(sn::kAdminIdentify).set_prp1(kData).set_cdw(10, 1));
  settle();
  EXPECT_EQ(csts(), sn::kCstsCfs);  // the SQE could not be fetched
  EXPECT_FALSE(cqe_ready(kAdmin));
}

// ---- shadow doorbells -------------------------------------------------------------------------

TEST_F(NvmeTest, ShadowDoorbellsAndEventIndexes) {
  enable();
  zero(kShadow, 4096);
  zero(kEventIdx, 4096);
  ASSERT_EQ(admin_status(command(sn::kAdminDoorbellBufferConfig).set_prp1(kShadow + 8)
      .set_prp2(kEventIdx)),
            sn::kInvalidField | sn::kStatusDnr);
  ASSERT_EQ(admin_status(command(sn::kAdminDoorbellBufferConfig).set_prp1(kShadow)
      .set_prp2(kEventIdx)), 0);
  EXPECT_EQ(peek32(kShadow), sq_tail(kAdmin));  // admin doorbells mirrored
  uint16_t q = create_io_queues(1, 16);
  // The host writes the shadow tail and rings once; later submissions only update the
  // shadow buffer, and the controller picks them up while it is working.
  submit(q, command(sn::kNvmFlush, 1), false);
  poke32(kShadow + 8, sq_tail(q));
  set_reg(sn::sq_tail_doorbell(1), sq_tail(q));
  wait(q, false);
  poke32(kShadow + 12, cq_head(q));
  EXPECT_EQ(peek32(kEventIdx + 8), 1u);  // event index = tail seen
  for (int i = 0; i < 3; ++i) submit(q, command(sn::kNvmFlush, 1), false);
  poke32(kShadow + 8, sq_tail(q));
  set_reg(sn::sq_tail_doorbell(1), sq_tail(q));
  for (int i = 0; i < 3; ++i) {
    wait(q, false);
    poke32(kShadow + 12, cq_head(q));
  }
  EXPECT_EQ(peek32(kEventIdx + 8), 4u);
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 4u);
}

// ---- run state and reset ----------------------------------------------------------------------

TEST_F(NvmeTest, QuiescePostsWhatFitsAndHoldsInterruptsUntilResume) {
  enable_msix();
  enable();
  uint16_t q = create_io_queues(1, 16, 1);
  backend_->faults().add({.op = block::BlockOp::kFlush, .hold = true});  // until the drain
  submit(q, command(sn::kNvmFlush, 1));
  fetched(1);  // fetched, waiting for the block layer
  msi_data();
  ctrl_->quiesce();  // drains: the flush's completion fits, so it is posted, no interrupt
  EXPECT_EQ(ctrl_->requests_in_flight(), 0u);
  backend_->faults().clear();  // the next flush goes through
  submit(q, command(sn::kNvmFlush, 1));  // not fetched while quiesced
  settle();
  EXPECT_EQ(wait(q).cid, 0);
  EXPECT_TRUE(ctrl_->state().cqs[1]->pending.empty());
  EXPECT_EQ(ctrl_->state().sqs[1]->head, 1u);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{}));
  ctrl_->resume();
  EXPECT_EQ(wait(q).cid, 1);
  EXPECT_FALSE(msi_data().empty());
}

TEST_F(NvmeTest, ResetMidIoDrainsAndForgets) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  backend_->faults().add({.op = block::BlockOp::kWrite, .hold = true});  // until the drain
  submit(q, rw(sn::kNvmWrite, 0, 8, kData));
  fetched(1);
  set_reg(sn::kRegCc, 0);
  EXPECT_EQ(ctrl_->requests_in_flight(), 0u);
  EXPECT_EQ(backend_->in_flight(), 0u);
  EXPECT_EQ(csts(), 0u);
  EXPECT_FALSE(cqe_ready(q));
  EXPECT_EQ(ctrl_->state().sqs[1], nullptr);
  // PCI reset: back to power-on state, features included.
  enable();
  ASSERT_EQ(set_feature(sn::kFeatInterruptCoalescing, 0x101).status, 0);
  ctrl_->reset();
  ASSERT_TRUE(host_->probe().ok());  // BARs and the command register were reset too
  EXPECT_EQ(csts(), 0u);
  EXPECT_EQ(ctrl_->state().features.interrupt_coalescing, 0u);
  enable();
  EXPECT_EQ(get_feature(sn::kFeatNumberOfQueues).dw0, 0x3f003fu);
}

TEST_F(NvmeTest, DeleteSqWithRequestsInFlight) {
  enable();
  uint16_t q = create_io_queues(1, 16);
  backend_->faults().add({.op = block::BlockOp::kWrite, .hold = true});  // until the drain
  submit(q, rw(sn::kNvmWrite, 0, 8, kData));
  submit(q, rw(sn::kNvmWrite, 8, 8, kData));
  fetched(2);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteSq).set_cdw(10, 1)), 0);
  EXPECT_EQ(ctrl_->requests_in_flight(), 0u);
  EXPECT_EQ(backend_->in_flight(), 0u);
  EXPECT_EQ(admin_status(command(sn::kAdminDeleteCq).set_cdw(10, 1)), 0);
  ASSERT_TRUE(driver().forget_io_queue(1).ok());
  // The queue id can be used again.
  uint16_t again = create_io_queues(1, 16);
  submit(again, command(sn::kNvmFlush, 1));
  EXPECT_EQ(wait(again).status, 0);
}

TEST_F(NvmeTest, SmartPowerOnHoursFollowTheClock) {
  enable();
  loop_->advance_clock(clock_, clock_.now_ns() + 2 * 3'600'000'000'000ll + 1);
  ASSERT_EQ(get_log(sn::kLogSmartHealth, 512).status, 0);
  EXPECT_EQ(peek(kData, 512)[sn::kSmartPowerOnHours], 2);
}

// ---- properties -------------------------------------------------------------------------------

TEST(NvmeProperties, ControllerOptions) {
  auto opts = parse_opts(controller_schema(), "nvme,serial=F0,drive=d0,max_ioqpairs=8,mdts=5");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  auto config = controller_config(*opts);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->serial, "F0");
  EXPECT_EQ(config->drive, "d0");
  EXPECT_EQ(config->max_ioqpairs, 8u);
  EXPECT_EQ(config->msix_qsize, 65u);
  EXPECT_EQ(config->mdts, 5);
  EXPECT_EQ(config->mqes, 0x7ff);

  auto missing = controller_config(*parse_opts(controller_schema(), "nvme"));
  EXPECT_FALSE(missing.ok());
  auto bad = controller_config(*parse_opts(controller_schema(), "nvme,serial=x,msix_qsize=0"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("msix_qsize"), std::string_view::npos);
  EXPECT_NE(bad.status().message().find("found 0"), std::string_view::npos);

  // The properties' widths are QEMU's: mdts is a uint8, refused by the parser.
  auto wide = parse_opts(controller_schema(), "nvme,serial=x,mdts=300");
  ASSERT_FALSE(wide.ok());
  EXPECT_EQ(wide.status().message(), "-device nvme: Parameter 'mdts' expects uint8_t, found '300'");
  // logical_block_size 0 (QEMU's default) is the drive's own: 512 for a raw file.
  EXPECT_EQ(config->logical_block_size, 512u);

  auto ns = namespace_config(*parse_opts(namespace_schema(), "nvme-ns,drive=d1,nsid=3"));
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(ns->nsid, 3u);
  EXPECT_EQ(ns->logical_block_size, 512u);
  EXPECT_FALSE(namespace_config(*parse_opts(namespace_schema(), "nvme-ns,drive=d1,nsid=257")).ok());
  EXPECT_FALSE(namespace_config(*parse_opts(namespace_schema(), "nvme-ns,nsid=1")).ok());
  EXPECT_FALSE(namespace_config(*parse_opts(namespace_schema(),
                                            "nvme-ns,drive=d,logical_block_size=1024")).ok());
}

}  // namespace
}  // namespace ferry::nvme
