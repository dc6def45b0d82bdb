// White-box tests of the NVMe controller, driven through BAR0 like a host driver: registers
// are written, SQEs placed in guest RAM, doorbells rung, CQEs read back. The controller
// sits on a PCI bus with fake interrupt and MSI sinks; namespaces are temp-file backends.
#include "hw/nvme/controller.h"
#include "hw/nvme/error_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>

#include <gtest/gtest.h>

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

struct Sqe {
  std::array<uint8_t, 64> b{};
  Sqe(uint8_t opcode, uint32_t nsid = 0) {
    b[0] = opcode;
    set32(4, nsid);
  }
  Sqe& set32(unsigned at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
    return *this;
  }
  Sqe& set64(unsigned at, uint64_t v) {
    set32(at, static_cast<uint32_t>(v));
    return set32(at + 4, static_cast<uint32_t>(v >> 32));
  }
  Sqe& cdw(unsigned n, uint32_t v) { return set32(sn::sqe_cdw(n), v); }
  Sqe& prp(uint64_t p1, uint64_t p2 = 0) { return set64(24, p1).set64(32, p2); }
  Sqe& flags(uint8_t f) {
    b[1] = f;
    return *this;
  }
};

struct Cqe {
  uint32_t dw0 = 0;
  uint16_t sq_head = 0, sq_id = 0, cid = 0, status = 0;  // status without phase
  bool phase = false;
};

// The host's view of one queue pair.
struct HostQueues {
  uint16_t qid = 0;
  uint64_t sq_base = 0, cq_base = 0;
  uint32_t sq_size = 0, cq_size = 0;
  uint32_t sq_tail = 0, cq_head = 0;
  bool phase = true;
  uint16_t next_cid = 0;
};

class NvmeTest : public ::testing::Test {
 protected:
  void SetUp() override { build({.serial = "F0"}); }

  void build(ControllerConfig config, bool read_only = false) {
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
    ctrl_->config_write(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster, 2);
    admin_ = HostQueues{};
  }

  void TearDown() override { machine_.reset(); }

  // ---- registers ----
  uint64_t reg(uint64_t offset, unsigned size = 4) {
    return ctrl_->bar_handler(0).read(offset, size);
  }
  void set_reg(uint64_t offset, uint64_t value, unsigned size = 4) {
    ctrl_->bar_handler(0).write(offset, value, size);
  }
  uint32_t csts() { return static_cast<uint32_t>(reg(sn::kRegCsts)); }

  void enable(uint32_t entries = 32) {
    set_reg(sn::kRegAqa, (entries - 1) << 16 | (entries - 1));
    set_reg(sn::kRegAsq, kAsq, 8);
    set_reg(sn::kRegAcq, kAcq, 8);
    set_reg(sn::kRegCc, 6u << sn::kCcIosqesShift | 4u << sn::kCcIocqesShift | sn::kCcEn);
    ASSERT_EQ(csts(), sn::kCstsRdy);
    admin_ = HostQueues{.qid = 0, .sq_base = kAsq, .cq_base = kAcq, .sq_size = entries,
                        .cq_size = entries};
    zero(kAcq, 16 * entries);
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

  // ---- queues ----
  uint16_t submit(HostQueues& q, Sqe sqe, bool ring = true) {
    uint16_t cid = q.next_cid++;
    sqe.b[2] = static_cast<uint8_t>(cid);
    sqe.b[3] = static_cast<uint8_t>(cid >> 8);
    poke(q.sq_base + 64ull * q.sq_tail, sqe.b);
    q.sq_tail = (q.sq_tail + 1) % q.sq_size;
    if (ring) set_reg(sn::sq_tail_doorbell(q.qid), q.sq_tail);
    return cid;
  }
  Cqe read_cqe(const HostQueues& q, uint32_t slot) {
    auto b = peek(q.cq_base + 16ull * slot, 16);
    Cqe c;
    c.dw0 = b[0] | b[1] << 8 | b[2] << 16 | uint32_t{b[3]} << 24;
    c.sq_head = static_cast<uint16_t>(b[8] | b[9] << 8);
    c.sq_id = static_cast<uint16_t>(b[10] | b[11] << 8);
    c.cid = static_cast<uint16_t>(b[12] | b[13] << 8);
    uint16_t st = static_cast<uint16_t>(b[14] | b[15] << 8);
    c.phase = st & 1;
    c.status = st >> 1;
    return c;
  }
  bool cqe_ready(const HostQueues& q) { return read_cqe(q, q.cq_head).phase == q.phase; }
  // Runs the loop until the next CQE is there (or gives up), consumes it.
  Cqe wait(HostQueues& q, bool ring_head = true) {
    Status st = loop_->run_until([&] { return cqe_ready(q); }, 5s);
    EXPECT_TRUE(st.ok()) << "no completion on CQ " << q.qid;
    Cqe c = read_cqe(q, q.cq_head);
    if (++q.cq_head == q.cq_size) {
      q.cq_head = 0;
      q.phase = !q.phase;
    }
    if (ring_head) set_reg(sn::cq_head_doorbell(q.qid), q.cq_head);
    return c;
  }
  // Runs the loop until `n` requests wait for the block layer.
  void fetched(size_t n) {
    ASSERT_TRUE(loop_->run_until([&] { return ctrl_->requests_in_flight() == n; }, 5s).ok());
  }
  void settle() {
    for (int i = 0; i < 20; ++i) (void)loop_->run_once(1ms);
  }
  Cqe admin(Sqe sqe) {
    uint16_t cid = submit(admin_, sqe);
    Cqe c = wait(admin_);
    EXPECT_EQ(c.cid, cid);
    return c;
  }
  uint16_t admin_status(Sqe sqe) { return admin(sqe).status; }

  HostQueues create_io_queues(uint16_t qid, uint32_t size, uint16_t vector = 0,
                              bool ien = true, uint32_t cq_size = 0) {
    if (!cq_size) cq_size = size;
    HostQueues q{.qid = qid, .sq_base = kIoSq + 0x4000ull * qid, .cq_base = kIoCq + 0x4000ull * qid,
                 .sq_size = size, .cq_size = cq_size};
    zero(q.cq_base, 16ull * cq_size);
    EXPECT_EQ(admin_status(Sqe(sn::kAdminCreateCq)
                               .prp(q.cq_base)
                               .cdw(10, (cq_size - 1) << 16 | qid)
                               .cdw(11, uint32_t{vector} << 16 | (ien ? 2u : 0u) | 1u)),
              0);
    EXPECT_EQ(admin_status(Sqe(sn::kAdminCreateSq)
                               .prp(q.sq_base)
                               .cdw(10, (size - 1) << 16 | qid)
                               .cdw(11, uint32_t{qid} << 16 | 1u)),
              0);
    return q;
  }

  Sqe rw(uint8_t opcode, uint64_t slba, uint32_t nlb, uint64_t buffer, uint32_t nsid = 1) {
    return Sqe(opcode, nsid).prp(buffer).cdw(10, static_cast<uint32_t>(slba))
        .cdw(11, static_cast<uint32_t>(slba >> 32)).cdw(12, nlb - 1);
  }

  std::vector<uint8_t> identify(uint8_t cns, uint32_t nsid = 0, uint16_t* status = nullptr,
                                uint8_t csi = 0) {
    zero(kData, 4096);
    uint16_t st = admin_status(Sqe(sn::kAdminIdentify, nsid).prp(kData).cdw(10, cns)
                                   .cdw(11, uint32_t{csi} << 24));
    if (status) *status = st;
    else EXPECT_EQ(st, 0);
    return peek(kData, 4096);
  }

  Cqe get_feature(uint8_t fid, uint32_t sel = 0, uint32_t dw11 = 0, uint32_t nsid = 0) {
    return admin(Sqe(sn::kAdminGetFeatures, nsid).prp(kData).cdw(10, sel << 8 | fid).cdw(11, dw11));
  }
  Cqe set_feature(uint8_t fid, uint32_t dw11, uint32_t nsid = 0, bool save = false) {
    return admin(Sqe(sn::kAdminSetFeatures, nsid).prp(kData)
                     .cdw(10, fid | (save ? 1u << 31 : 0)).cdw(11, dw11));
  }
  Cqe get_log(uint8_t lid, uint32_t bytes, uint32_t nsid = 0xffffffff, uint64_t offset = 0,
              bool rae = false) {
    zero(kData, 4096);
    uint32_t numd = bytes / 4 - 1;
    return admin(Sqe(sn::kAdminGetLogPage, nsid).prp(kData)
                     .cdw(10, (numd & 0xffff) << 16 | (rae ? 1u << 15 : 0) | lid)
                     .cdw(11, numd >> 16)
                     .cdw(12, static_cast<uint32_t>(offset))
                     .cdw(13, static_cast<uint32_t>(offset >> 32)));
  }

  void enable_msix() {
    auto cap = ctrl_->find_capability(pci::kCapMsix);
    ASSERT_TRUE(cap.has_value());
    ctrl_->config_write(*cap + pci::kMsixControl, pci::kMsixEnable, 2);
    for (unsigned v = 0; v < 8; ++v) {
      uint64_t entry = ctrl_->msix_table_offset() + 16ull * v;
      set_reg(entry + pci::kMsixEntryAddrLo, kMsiAddress);
      set_reg(entry + pci::kMsixEntryAddrHi, 0);
      set_reg(entry + pci::kMsixEntryData, 0x40 + v);
      set_reg(entry + pci::kMsixEntryControl, 0);
    }
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
  Controller* ctrl_ = nullptr;
  HostQueues admin_;
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
  EXPECT_EQ(admin(Sqe(sn::kAdminIdentify).prp(kData).cdw(10, 1)).status, 0);
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
  EXPECT_EQ(admin_status(Sqe(sn::kAdminFirmwareCommit)), sn::kInvalidOpcode | sn::kStatusDnr);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminKeepAlive)), sn::kInvalidOpcode | sn::kStatusDnr);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminFormatNvm, 1)), sn::kInvalidOpcode | sn::kStatusDnr);
  // SGLs are not allowed for admin commands; fused commands are refused.
  EXPECT_EQ(admin_status(Sqe(sn::kAdminIdentify).prp(kData).cdw(10, 1).flags(0x40)),
            sn::kInvalidField | sn::kStatusDnr);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminIdentify).prp(kData).cdw(10, 1).flags(0x01)),
            sn::kInvalidField);
  // Abort never aborts (dw0 bit 0), and checks the SQ id.
  Cqe abort = admin(Sqe(sn::kAdminAbort).cdw(10, 0));
  EXPECT_EQ(abort.status, 0);
  EXPECT_EQ(abort.dw0, 1u);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminAbort).cdw(10, 1)), sn::kInvalidField | sn::kStatusDnr);
}

TEST_F(NvmeTest, QueueCreationAndDeletionStatuses) {
  enable();
  auto create_cq = [&](uint16_t qid, uint32_t qsize, uint64_t base, uint32_t dw11) {
    return admin_status(Sqe(sn::kAdminCreateCq).prp(base).cdw(10, qsize << 16 | qid).cdw(11, dw11));
  };
  auto create_sq = [&](uint16_t qid, uint32_t qsize, uint16_t cqid, uint32_t flags = 1) {
    return admin_status(Sqe(sn::kAdminCreateSq).prp(kIoSq)
                            .cdw(10, qsize << 16 | qid).cdw(11, uint32_t{cqid} << 16 | flags));
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
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteCq).cdw(10, 1)), sn::kInvalidQueueDeletion);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteCq).cdw(10, 2)), sn::kCompletionQueueInvalid | dnr);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteSq).cdw(10, 2)), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteSq).cdw(10, 0)), sn::kInvalidQueueIdentifier | dnr);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteSq).cdw(10, 1)), 0);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteCq).cdw(10, 1)), 0);
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
  Cqe queues = set_feature(sn::kFeatNumberOfQueues, 0x30003);
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
  HostQueues q = create_io_queues(1, 16);
  // Read LBAs 8..15 and compare with the image.
  Cqe c = (submit(q, rw(sn::kNvmRead, 8, 8, kData)), wait(q));
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
  c = (submit(q, Sqe(sn::kNvmFlush, 1)), wait(q));
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
  HostQueues q = create_io_queues(1, 16);
  // 16 KiB read through a PRP list: PRP1 at an offset, the rest listed.
  uint64_t first = kData + 0x200;
  std::array<uint64_t, 4> pages{kData + 0x10000, kData + 0x20000, kData + 0x30000,
                                kData + 0x40000};
  std::vector<uint8_t> list(32);
  for (size_t i = 0; i < pages.size(); ++i)
    for (int b = 0; b < 8; ++b) list[8 * i + b] = static_cast<uint8_t>(pages[i] >> (8 * b));
  poke(kPrpList, list);
  Sqe read = rw(sn::kNvmRead, 0, 32, first);
  read.prp(first, kPrpList);
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
  Sqe sgl(sn::kNvmRead, 1);
  sgl.flags(sn::kPsdtSglMptrContiguous << sn::kPsdtShift).set64(24, kData + 0x50000)
      .set32(32, 1024).set32(36, 0).cdw(10, 4).cdw(12, 1);
  ASSERT_EQ((submit(q, sgl), wait(q)).status, 0);
  auto got = peek(kData + 0x50000, 1024);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), img.begin() + 4 * 512));
}

TEST_F(NvmeTest, IoCommandErrors) {
  enable();
  HostQueues q = create_io_queues(1, 16);
  const uint16_t dnr = sn::kStatusDnr;
  auto status = [&](Sqe sqe) { return (submit(q, sqe), wait(q)).status; };
  EXPECT_EQ(status(rw(sn::kNvmRead, kImageSize / 512, 1, kData)), sn::kLbaOutOfRange | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData, 0)), sn::kInvalidNamespaceOrFormat | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData, 5)), sn::kInvalidField | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData, 0xffffffff)), sn::kInvalidField | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1025, kData)), sn::kInvalidField | dnr);  // > MDTS
  EXPECT_EQ(status(Sqe(0x7f, 1)), sn::kInvalidOpcode | dnr);
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, kData).flags(1)), sn::kInvalidField);
  // No RAM there: a Data Transfer Error, logged (More).
  EXPECT_EQ(status(rw(sn::kNvmRead, 0, 1, 0x10000000)), sn::kDataTransferError | sn::kStatusMore);
  EXPECT_EQ(status(Sqe(sn::kNvmFlush, 0xffffffff)), 0);
}

TEST_F(NvmeTest, CompareWriteZeroesAndDeallocate) {
  enable();
  HostQueues q = create_io_queues(1, 16);
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
  EXPECT_EQ(status(Sqe(sn::kNvmDatasetManagement, 1).prp(kData).cdw(10, 2).cdw(11, 4)), 0);
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
  HostQueues q = create_io_queues(1, 16);
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
  HostQueues q = create_io_queues(1, 16);
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
  HostQueues q = create_io_queues(1, 16);
  // One range: 8 blocks at LBA 16.
  std::array<uint8_t, 16> range{};
  range[4] = 8;
  range[8] = 16;
  poke(kData, range);
  backend_->faults().add({.op = block::BlockOp::kDiscard, .error = EIO});
  auto dsm = Sqe(sn::kNvmDatasetManagement, 1).prp(kData).cdw(10, 0).cdw(11, 1u << 2);
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
  HostQueues q = create_io_queues(1, 16);
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
  HostQueues q = create_io_queues(1, 16);
  ASSERT_EQ((submit(q, rw(sn::kNvmRead, 3, 1, kData, 2)), wait(q)).status, 0);
  auto got = peek(kData, 4096);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), second.initial().begin() + 3 * 4096));
  machine_.reset();  // the controller goes before the backend it uses
}

// ---- completion queue flow control -----------------------------------------------------------

TEST_F(NvmeTest, FullCqHoldsCompletionsAndNeverOverwrites) {
  enable();
  HostQueues q = create_io_queues(1, 16, 0, true, 4);  // CQ of 4 entries: 3 usable
  for (int i = 0; i < 7; ++i) submit(q, Sqe(sn::kNvmFlush, 1), i == 6);
  // Wait for the outcome itself: before the doorbell is seen nothing is in flight either.
  const auto& pending = ctrl_->state().cqs[1]->pending;
  ASSERT_TRUE(loop_->run_until([&] {
    return pending.size() == 4 && ctrl_->requests_in_flight() == 0;
  }, 5s).ok()) << pending.size() << " pending";
  settle();  // nothing more may arrive
  // Three posted with phase 1, the fourth slot untouched, four pending.
  for (uint32_t slot = 0; slot < 3; ++slot) EXPECT_TRUE(read_cqe(q, slot).phase) << slot;
  EXPECT_FALSE(read_cqe(q, 3).phase);
  ASSERT_EQ(ctrl_->state().cqs[1]->pending.size(), 4u);
  // Posted in the order they completed: the three in the queue, then the pending ones.
  std::vector<uint16_t> expected;
  for (uint32_t slot = 0; slot < 3; ++slot) expected.push_back(read_cqe(q, slot).cid);
  for (const auto& c : ctrl_->state().cqs[1]->pending) expected.push_back(c.cid);
  std::vector<uint16_t> cids;
  for (int i = 0; i < 7; ++i) cids.push_back(wait(q).cid);
  EXPECT_EQ(cids, expected);
  std::sort(cids.begin(), cids.end());
  EXPECT_EQ(cids, (std::vector<uint16_t>{0, 1, 2, 3, 4, 5, 6}));  // none lost, none twice
  EXPECT_EQ(ctrl_->state().cqs[1]->pending.size(), 0u);
  EXPECT_FALSE(q.phase);  // wrapped: the host now expects phase 0
}

// ---- interrupts -------------------------------------------------------------------------------

TEST_F(NvmeTest, MsixVectorPerCompletionQueue) {
  enable_msix();
  enable();
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{}));
  admin(Sqe(sn::kAdminIdentify).prp(kData).cdw(10, 1));
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x40}));  // admin CQ: vector 0
  HostQueues q = create_io_queues(1, 16, 3);
  msi_data();
  submit(q, Sqe(sn::kNvmFlush, 1));
  wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x43}));
  // Vector beyond msix_qsize.
  EXPECT_EQ(admin_status(Sqe(sn::kAdminCreateCq).prp(kIoCq + 0x20000).cdw(10, 15u << 16 | 2)
                             .cdw(11, 3 | 65u << 16)),
            sn::kInvalidInterruptVector | sn::kStatusDnr);
}

TEST_F(NvmeTest, IntxLevelFollowsUnconsumedEntriesAndMask) {
  enable();
  EXPECT_FALSE(intx());
  submit(admin_, Sqe(sn::kAdminIdentify).prp(kData).cdw(10, 1));
  ASSERT_TRUE(loop_->run_until([&] { return cqe_ready(admin_); }, 5s).ok());
  EXPECT_TRUE(intx());
  set_reg(sn::kRegIntms, 1);
  EXPECT_FALSE(intx());
  EXPECT_EQ(reg(sn::kRegIntms), 1u);
  EXPECT_EQ(reg(sn::kRegIntmc), 1u);
  set_reg(sn::kRegIntmc, 1);
  EXPECT_TRUE(intx());
  wait(admin_);  // consumes and rings the head doorbell
  EXPECT_FALSE(intx());
}

TEST_F(NvmeTest, InterruptCoalescing) {
  enable_msix();
  enable();
  HostQueues q = create_io_queues(1, 16, 2);
  // Threshold 4 entries (0's based 3), time 1 ms (10 x 100 us).
  ASSERT_EQ(set_feature(sn::kFeatInterruptCoalescing, 10u << 8 | 3).status, 0);
  msi_data();
  submit(q, Sqe(sn::kNvmFlush, 1));
  submit(q, Sqe(sn::kNvmFlush, 1));
  wait(q);
  wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{}));  // aggregated
  loop_->advance_clock(clock_, clock_.now_ns() + 1'000'000);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x42}));  // time reached
  for (int i = 0; i < 4; ++i) submit(q, Sqe(sn::kNvmFlush, 1));
  for (int i = 0; i < 4; ++i) wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x42}));  // threshold reached
  // Coalescing disabled on the vector: every completion interrupts.
  ASSERT_EQ(set_feature(sn::kFeatInterruptVectorConfig, 1u << 16 | 2).status, 0);
  EXPECT_EQ(get_feature(sn::kFeatInterruptVectorConfig, 0, 2).dw0, 0x10002u);
  msi_data();
  submit(q, Sqe(sn::kNvmFlush, 1));
  wait(q);
  EXPECT_EQ(msi_data(), (std::vector<uint32_t>{0x42}));
}

// ---- asynchronous events --------------------------------------------------------------------

TEST_F(NvmeTest, AsyncEventsLimitMaskingAndLogRead) {
  enable();
  for (int i = 0; i < 4; ++i) submit(admin_, Sqe(sn::kAdminAsyncEventRequest));
  settle();
  Cqe over = (submit(admin_, Sqe(sn::kAdminAsyncEventRequest)), wait(admin_));
  EXPECT_EQ(over.status, sn::kAsyncEventRequestLimitExceeded);
  EXPECT_EQ(ctrl_->state().aer.outstanding.size(), 4u);
  // A doorbell for a queue that does not exist: error event, invalid doorbell register.
  set_reg(sn::sq_tail_doorbell(9), 1);
  Cqe event = wait(admin_);
  EXPECT_EQ(event.status, 0);
  EXPECT_EQ(event.cid, 3);  // the newest AER first
  EXPECT_EQ(event.dw0, sn::aer_result(sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbell,
                                      sn::kLogErrorInformation));
  // Masked until the error log is read: the next one waits.
  set_reg(sn::sq_tail_doorbell(0), 999);  // beyond the queue size
  settle();
  EXPECT_FALSE(cqe_ready(admin_));
  EXPECT_EQ(ctrl_->state().aer.queued.size(), 1u);
  // Reading with RAE keeps the mask; without it the queued event goes out.
  EXPECT_EQ(get_log(sn::kLogErrorInformation, 64, 0, 0, true).status, 0);
  EXPECT_FALSE(cqe_ready(admin_));
  uint16_t log_cid = submit(admin_, Sqe(sn::kAdminGetLogPage).prp(kData).cdw(10, 15u << 16 | 1));
  Cqe first = wait(admin_), second = wait(admin_);
  Cqe log = first.cid == log_cid ? first : second;
  Cqe aer = first.cid == log_cid ? second : first;
  EXPECT_EQ(log.status, 0);
  EXPECT_EQ(aer.cid, 2);
  EXPECT_EQ(aer.dw0, sn::aer_result(sn::kAerTypeError, sn::kAerInfoErrorInvalidDoorbellValue,
                                       sn::kLogErrorInformation));
}

TEST_F(NvmeTest, AsyncEventQueueIsBounded) {
  build({.serial = "F0", .aer_max_queued = 2});
  enable();
  submit(admin_, Sqe(sn::kAdminAsyncEventRequest));
  settle();  // the AER must be outstanding for the error to be reported
  set_reg(sn::sq_tail_doorbell(9), 1);
  wait(admin_);
  submit(admin_, Sqe(sn::kAdminAsyncEventRequest));
  settle();
  for (int i = 0; i < 5; ++i) set_reg(sn::sq_tail_doorbell(9), 1);  // masked: queued
  EXPECT_EQ(ctrl_->state().aer.queued.size(), 2u);
}

TEST_F(NvmeTest, TemperatureThresholdRaisesSmartEvent) {
  enable();
  ASSERT_EQ(set_feature(sn::kFeatAsyncEventConfig, sn::kSmartWarnTemperature).status, 0);
  submit(admin_, Sqe(sn::kAdminAsyncEventRequest));
  settle();
  uint16_t cid = submit(admin_, Sqe(sn::kAdminSetFeatures).cdw(10, sn::kFeatTemperatureThreshold)
                                    .cdw(11, 0x100));  // below the current 0x143
  Cqe a = wait(admin_), b = wait(admin_);
  Cqe event = a.cid == cid ? b : a;
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
  HostQueues q = create_io_queues(1, 16);
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
  submit(q, Sqe(sn::kNvmFlush, 1));
  wait(q);
  set_reg(sn::sq_tail_doorbell(1), q.sq_tail);
  settle();
  EXPECT_FALSE(cqe_ready(q));
}

TEST_F(NvmeTest, SqTailOverrunningUnfetchedEntriesIsRefusedAndLogged) {
  enable();
  submit(admin_, Sqe(sn::kAdminAsyncEventRequest));
  settle();
  HostQueues q = create_io_queues(1, 8);
  ctrl_->quiesce();  // as when the VM is stopped: nothing is fetched
  for (int i = 0; i < 7; ++i) submit(q, Sqe(sn::kNvmFlush, 1));
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 7u) << "7 entries: the SQ is full";
  EXPECT_TRUE(ctrl_->state().error_log.empty());
  submit(q, Sqe(sn::kNvmFlush, 1));  // an 8th: the tail would land on the unfetched head
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
  Cqe event = wait(admin_);
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
  ASSERT_EQ(admin_status(Sqe(sn::kAdminDoorbellBufferConfig).prp(kShadow, kEventIdx)), 0);
  HostQueues q = create_io_queues(1, 8);
  ctrl_->quiesce();
  for (int i = 0; i < 8; ++i) {
    submit(q, Sqe(sn::kNvmFlush, 1), /*ring=*/false);
    poke32(kShadow + 8, q.sq_tail);
    set_reg(sn::sq_tail_doorbell(1), q.sq_tail);
  }
  set_reg(sn::sq_tail_doorbell(1), q.sq_tail);  // the same wrong value, rung again
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 7u);
  EXPECT_EQ(ctrl_->state().error_log.size(), 1u) << "one entry for one wrong value";
  ctrl_->resume();
  // Once the controller has fetched the 7, the shadow's 0 is one entry ahead: legal.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(wait(q).status, 0);
  EXPECT_EQ(ctrl_->state().error_log.size(), 1u);
}

TEST_F(NvmeTest, UnbackedCompletionQueueIsFatal) {
  enable();
  ASSERT_EQ(admin_status(Sqe(sn::kAdminCreateCq).prp(0x40000000).cdw(10, 15u << 16 | 1).cdw(11, 3)), 0);
  ASSERT_EQ(admin_status(Sqe(sn::kAdminCreateSq).prp(kIoSq).cdw(10, 15u << 16 | 1)
                             .cdw(11, 1u << 16 | 1)),
            0);
  HostQueues q{.qid = 1, .sq_base = kIoSq, .cq_base = 0x40000000, .sq_size = 16, .cq_size = 16};
  submit(q, Sqe(sn::kNvmFlush, 1));
  loop_->run_until([&] { return csts() & sn::kCstsCfs; }, 5s).ok();
  EXPECT_EQ(csts(), sn::kCstsCfs);
}

TEST_F(NvmeTest, BusMasterOffStopsDma) {
  enable();
  ctrl_->config_write(pci::kCommand, pci::kCommandMemory, 2);
  submit(admin_, Sqe(sn::kAdminIdentify).prp(kData).cdw(10, 1));
  settle();
  EXPECT_EQ(csts(), sn::kCstsCfs);  // the SQE could not be fetched
  EXPECT_FALSE(cqe_ready(admin_));
}

// ---- shadow doorbells -------------------------------------------------------------------------

TEST_F(NvmeTest, ShadowDoorbellsAndEventIndexes) {
  enable();
  zero(kShadow, 4096);
  zero(kEventIdx, 4096);
  ASSERT_EQ(admin_status(Sqe(sn::kAdminDoorbellBufferConfig).prp(kShadow + 8, kEventIdx)),
            sn::kInvalidField | sn::kStatusDnr);
  ASSERT_EQ(admin_status(Sqe(sn::kAdminDoorbellBufferConfig).prp(kShadow, kEventIdx)), 0);
  EXPECT_EQ(peek32(kShadow), admin_.sq_tail);  // admin doorbells mirrored
  HostQueues q = create_io_queues(1, 16);
  // The host writes the shadow tail and rings once; later submissions only update the
  // shadow buffer, and the controller picks them up while it is working.
  submit(q, Sqe(sn::kNvmFlush, 1), false);
  poke32(kShadow + 8, q.sq_tail);
  set_reg(sn::sq_tail_doorbell(1), q.sq_tail);
  wait(q, false);
  poke32(kShadow + 12, q.cq_head);
  EXPECT_EQ(peek32(kEventIdx + 8), 1u);  // event index = tail seen
  for (int i = 0; i < 3; ++i) submit(q, Sqe(sn::kNvmFlush, 1), false);
  poke32(kShadow + 8, q.sq_tail);
  set_reg(sn::sq_tail_doorbell(1), q.sq_tail);
  for (int i = 0; i < 3; ++i) {
    wait(q, false);
    poke32(kShadow + 12, q.cq_head);
  }
  EXPECT_EQ(peek32(kEventIdx + 8), 4u);
  EXPECT_EQ(ctrl_->state().sqs[1]->tail, 4u);
}

// ---- run state and reset ----------------------------------------------------------------------

TEST_F(NvmeTest, QuiescePostsWhatFitsAndHoldsInterruptsUntilResume) {
  enable_msix();
  enable();
  HostQueues q = create_io_queues(1, 16, 1);
  backend_->faults().add({.op = block::BlockOp::kFlush, .hold = true});  // until the drain
  submit(q, Sqe(sn::kNvmFlush, 1));
  fetched(1);  // fetched, waiting for the block layer
  msi_data();
  ctrl_->quiesce();  // drains: the flush's completion fits, so it is posted, no interrupt
  EXPECT_EQ(ctrl_->requests_in_flight(), 0u);
  backend_->faults().clear();  // the next flush goes through
  submit(q, Sqe(sn::kNvmFlush, 1));  // not fetched while quiesced
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
  HostQueues q = create_io_queues(1, 16);
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
  ctrl_->config_write(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster, 2);
  EXPECT_EQ(csts(), 0u);
  EXPECT_EQ(ctrl_->state().features.interrupt_coalescing, 0u);
  enable();
  EXPECT_EQ(get_feature(sn::kFeatNumberOfQueues).dw0, 0x3f003fu);
}

TEST_F(NvmeTest, DeleteSqWithRequestsInFlight) {
  enable();
  HostQueues q = create_io_queues(1, 16);
  backend_->faults().add({.op = block::BlockOp::kWrite, .hold = true});  // until the drain
  submit(q, rw(sn::kNvmWrite, 0, 8, kData));
  submit(q, rw(sn::kNvmWrite, 8, 8, kData));
  fetched(2);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteSq).cdw(10, 1)), 0);
  EXPECT_EQ(ctrl_->requests_in_flight(), 0u);
  EXPECT_EQ(backend_->in_flight(), 0u);
  EXPECT_EQ(admin_status(Sqe(sn::kAdminDeleteCq).cdw(10, 1)), 0);
  // The queue id can be used again.
  HostQueues again = create_io_queues(1, 16);
  submit(again, Sqe(sn::kNvmFlush, 1));
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

  auto ns = namespace_config(*parse_opts(namespace_schema(), "nvme-ns,drive=d1,nsid=3"));
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(ns->nsid, 3u);
  EXPECT_FALSE(namespace_config(*parse_opts(namespace_schema(), "nvme-ns,drive=d1,nsid=257")).ok());
  EXPECT_FALSE(namespace_config(*parse_opts(namespace_schema(), "nvme-ns,nsid=1")).ok());
  EXPECT_FALSE(namespace_config(*parse_opts(namespace_schema(),
                                            "nvme-ns,drive=d,logical_block_size=1024")).ok());
}

}  // namespace
}  // namespace ferry::nvme
