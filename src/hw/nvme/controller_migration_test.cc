// The NVMe controller's migration description, in process: a busy source controller
// (I/O queues, a full CQ with completions waiting, AER commands and queued events, SMART
// counters, a timestamp) is quiesced, saved, and loaded into a second controller over a
// copy of its RAM and the same image; the host then carries on against the destination.
// Also: quiesce drains the backends, a save refuses requests in flight, the load-time
// validation rules (by patching a valid stream at offsets its vmdesc gives), configuration
// mismatches, and the allowlist against the property schemas.
#include "hw/nvme/controller_migration.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <set>

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
constexpr uint64_t kData = 0x100000;
constexpr uint64_t kImageSize = 1 << 20;

class TempImage {
 public:
  explicit TempImage(uint64_t size) {
    path_ = "/tmp/ferry-nvme-mig-XXXXXX";
    int fd = mkstemp(path_.data());
    EXPECT_GE(fd, 0);
    if (fd >= 0) {
      EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
      close(fd);
    }
  }
  ~TempImage() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

using guest::nvme::Completion;
using guest::nvme::Sqe;
using test::command;

constexpr uint16_t kAdmin = 0;

// One VM's worth: RAM, drives over the shared images, a PCI bus, the controller. Members
// go in reverse order (controller, drives, RAM), so a Side is never moved or assigned.
struct Side {
  Side() = default;
  Side(const Side&) = delete;
  Side& operator=(const Side&) = delete;
  std::unique_ptr<memory::AddressSpace> memory;
  std::vector<std::unique_ptr<block::BlockBackend>> drives;
  std::unique_ptr<pci::test::Machine> machine;
  Controller* ctrl = nullptr;
};

class NvmeMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    images_.push_back(std::make_unique<TempImage>(kImageSize));
    images_.push_back(std::make_unique<TempImage>(kImageSize));
  }
  void TearDown() override {
    host_.reset();
    dst_.reset();
    src_.reset();
  }

  // A controller on image 0 (namespace 1) and, when `second_lbs`, image 1 as namespace 2.
  std::unique_ptr<Side> make_side(const VirtualClock& clock,
                                  ControllerConfig config = {.serial = "MIG"},
                                  uint32_t second_lbs = 4096,
                                  uint64_t first_image_bytes = kImageSize) {
    auto owned = std::make_unique<Side>();
    Side& side = *owned;
    side.memory = std::make_unique<memory::AddressSpace>();
    auto ram = memory::RamBlock::anonymous("ram", kRamSize);
    EXPECT_TRUE(ram.ok());
    EXPECT_TRUE(side.memory->add_ram(0, std::move(*ram)).ok());
    for (size_t i = 0; i < images_.size(); ++i) {
      if (i == 0 && first_image_bytes != kImageSize) {
        EXPECT_EQ(truncate(images_[0]->path().c_str(), static_cast<off_t>(first_image_bytes)), 0);
      }
      // A destination opens the images inactive, as ferry-vm -incoming does: the source
      // holds their write lock until the hand-over in load().
      auto backend = block::BlockBackend::open(
          *loop_, block::DriveConfig{.id = fmt::format("d{}", i), .file = images_[i]->path()},
          block::BackendTuning{},
          src_ ? block::Activation::kInactive : block::Activation::kActive);
      EXPECT_TRUE(backend.ok()) << backend.status().to_string();
      side.drives.push_back(std::move(*backend));
    }
    auto ctrl = Controller::create(config, side.drives[0].get(),
                                   ControllerEnv{*loop_, *side.memory, clock});
    EXPECT_TRUE(ctrl.ok()) << ctrl.status().to_string();
    side.ctrl = ctrl->get();
    if (second_lbs) {
      EXPECT_TRUE(side.ctrl->attach_namespace(2, *side.drives[1], second_lbs).ok());
    }
    side.machine = std::make_unique<pci::test::Machine>();
    EXPECT_TRUE(side.machine->bus.add(std::move(*ctrl), "4").ok());
    return owned;
  }

  // ---- the host (the guest's driver), against `side_` ----
  Controller& c() { return *side_->ctrl; }
  guest::nvme::Controller& driver() { return host_->driver(); }
  uint64_t reg(uint32_t offset, unsigned size = 4) {
    auto v = host_->reg(offset, size);
    EXPECT_TRUE(v.ok()) << v.status().to_string();
    return v.ok() ? *v : 0;
  }
  void set_reg(uint32_t offset, uint64_t value, unsigned size = 4) {
    Status st = host_->set_reg(offset, value, size);
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  void poke(uint64_t addr, std::span<const uint8_t> data) {
    ASSERT_TRUE(side_->memory->write(addr, data).ok());
  }
  std::vector<uint8_t> peek(uint64_t addr, uint64_t len) {
    std::vector<uint8_t> out(len);
    EXPECT_TRUE(side_->memory->read(addr, out).ok());
    return out;
  }

  // The driver finds and enables the controller of `side_` (MSI-X: vector v sends 0x40 + v).
  void bring_up(bool msix = true) {
    host_ = std::make_unique<test::Host>(*side_->machine, *side_->memory, *loop_, kRamSize);
    Status st = host_->probe();
    if (st.ok()) st = driver().enable();
    if (st.ok() && msix) st = host_->use_msix();
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_EQ(reg(sn::kRegCsts), sn::kCstsRdy);
  }
  // The host carries on against `side` (the destination, once its state loaded).
  void use(Side& side) {
    side_ = &side;
    host_->move_to(*side.machine, *side.memory);
  }

  uint16_t submit(uint16_t qid, const Sqe& sqe, bool ring = true) {
    auto cid = driver().submit(qid, sqe, {}, ring);
    EXPECT_TRUE(cid.ok()) << cid.status().to_string();
    return cid.ok() ? *cid : 0xffff;
  }
  Completion cqe(uint16_t qid, uint32_t slot) {
    auto c = host_->cqe_at(qid, slot);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? *c : Completion{};
  }
  bool cqe_ready(uint16_t qid) { return host_->completion_ready(qid); }
  // Consumes the next completion of the queue, whatever its command.
  Completion take(uint16_t qid) {
    auto c = host_->next(qid);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? *c : Completion{};
  }
  void settle() {
    for (int i = 0; i < 20; ++i) (void)loop_->run_once(1ms);
  }
  // The next admin completion, which must be this command's.
  Completion admin(const Sqe& sqe) {
    uint16_t cid = submit(kAdmin, sqe);
    Completion c = take(kAdmin);
    EXPECT_EQ(c.cid, cid);
    return c;
  }
  // Interrupts on vector `qid`.
  uint16_t create_io_queues(uint16_t qid, uint32_t sq_size, uint32_t cq_size) {
    Status st = driver().create_io_queue_pair(qid, sq_size, {.enabled = true, .vector = qid},
                                              cq_size);
    EXPECT_TRUE(st.ok()) << st.to_string();
    return qid;
  }
  const guest::nvme::QueueLayout& layout(uint16_t qid) { return driver().queue(qid)->layout(); }
  Sqe rw(uint8_t opcode, uint64_t slba, uint32_t nlb, uint64_t buffer, uint32_t nsid = 1) {
    return command(opcode, nsid).set_prp1(buffer).set_cdw(10, static_cast<uint32_t>(slba))
        .set_cdw(11, static_cast<uint32_t>(slba >> 32)).set_cdw(12, nlb - 1);
  }
  SmartCounters smart(uint32_t nsid) { return c().state().namespaces[nsid].smart; }
  // Guest RAM's dirty bitmap: cleared, and asked about the page holding `addr`.
  memory::DirtyBitmap& dirty() { return side_->memory->ram_blocks()[0]->dirty(); }
  void clear_dirty() {
    memory::PageBitmap taken;
    dirty().sync(taken);
  }
  bool is_dirty(uint64_t addr) { return dirty().test(addr / 4096); }
  // MSI-X messages the side's controller sent since the last call (data = 0x40 + vector).
  std::vector<uint32_t> msi_data(Side& side) {
    std::vector<uint32_t> out;
    for (const auto& m : side.machine->msi.take()) out.push_back(m.data);
    return out;
  }

  // ---- migration ----
  std::vector<uint8_t> save(Side& side, vmstate::Json* vmdesc = nullptr) {
    side.ctrl->quiesce();
    ByteWriter w;
    vmstate::Json desc = vmstate::Json::object();
    Status st = kControllerState.save(*side.ctrl, w, desc);
    EXPECT_TRUE(st.ok()) << st.to_string();
    if (vmdesc) *vmdesc = desc;
    return w.to_vector();
  }
  // RAM first (as the stream carries it), then the device section. The images change hands
  // as in a migration (QEMU's inactivate/activate): the source lets go of them, the
  // destination takes them once its state has loaded, and a refused load gives them back to
  // the source if it held them.
  Status load(Side& from, Side& to, std::span<const uint8_t> bytes) {
    std::vector<uint8_t> ram(kRamSize);
    EXPECT_TRUE(from.memory->read(0, ram).ok());
    EXPECT_TRUE(to.memory->write(0, ram).ok());
    const bool source_held_images = from.drives[0]->active();
    for (auto& drive : from.drives) EXPECT_TRUE(drive->inactivate().ok());
    Status loaded = load_state(to, bytes);
    if (loaded.ok() || source_held_images) {
      for (auto& drive : (loaded.ok() ? to : from).drives) {
        Status taken = drive->activate();
        EXPECT_TRUE(taken.ok()) << taken.to_string();
      }
    }
    return loaded;
  }
  Status load_state(Side& to, std::span<const uint8_t> bytes) {
    to.ctrl->quiesce();  // a destination waits for its stream stopped
    ByteReader r(bytes);
    FERRY_RETURN_IF_ERROR(kControllerState.load(*to.ctrl, r));
    if (r.remaining() != 0)
      return Error(ErrorCode::kCorrupt, "{} bytes left after the section", r.remaining());
    return {};
  }

  // A busy source: 4 I/O queue pairs, data written, CQ 2 full with 3 completions waiting,
  // one masked SMART event queued and two AER commands outstanding, a timestamp.
  void make_busy_source() {
    src_ = make_side(src_clock_);
    side_ = src_.get();
    bring_up();
    for (uint16_t qid = 1; qid <= 4; ++qid)
      io_[qid] = create_io_queues(qid, 16, qid == 2 ? 4 : 16);
    std::vector<uint8_t> data(4096);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
    poke(kData, data);
    submit(io_[1], rw(sn::kNvmWrite, 8, 8, kData));
    EXPECT_EQ(take(io_[1]).status, 0);
    submit(io_[3], rw(sn::kNvmWrite, 0, 1, kData, 2));
    EXPECT_EQ(take(io_[3]).status, 0);
    // Timestamp set by the host.
    poke(kData + 0x3000, std::vector<uint8_t>{0x10, 0x27, 0, 0, 0, 0, 0, 0});  // 10000 ms
    EXPECT_EQ(admin(command(sn::kAdminSetFeatures).set_prp1(kData + 0x3000)
        .set_cdw(10, sn::kFeatTimestamp))
                  .status, 0);
    // Events: temperature warnings on; over-threshold below the temperature fires one.
    EXPECT_EQ(admin(command(sn::kAdminSetFeatures).set_cdw(10, sn::kFeatAsyncEventConfig)
                        .set_cdw(11, sn::kSmartWarnTemperature)).status, 0);
    EXPECT_EQ(admin(command(sn::kAdminSetFeatures).set_cdw(10, sn::kFeatTemperatureThreshold)
                        .set_cdw(11, 0x100)).status, 0);
    ASSERT_EQ(c().state().aer.queued.size(), 1u);
    uint16_t first_aer = submit(kAdmin, command(sn::kAdminAsyncEventRequest));
    Completion event = take(kAdmin);
    EXPECT_EQ(event.cid, first_aer);  // delivered at once; SMART now masked
    EXPECT_EQ(admin(command(sn::kAdminSetFeatures).set_cdw(10, sn::kFeatTemperatureThreshold)
                        .set_cdw(11, 0x101)).status, 0);
    aer_cids_ = {submit(kAdmin, command(sn::kAdminAsyncEventRequest)),
                 submit(kAdmin, command(sn::kAdminAsyncEventRequest))};
    settle();
    ASSERT_EQ(c().state().aer.outstanding.size(), 2u);
    ASSERT_EQ(c().state().aer.queued.size(), 1u);
    // CQ 2 holds 3 entries; 6 reads: 3 posted, 3 wait for room.
    for (int i = 0; i < 6; ++i) submit(io_[2], rw(sn::kNvmRead, 8, 1, kData + 0x1000 + 512 * i));
    ASSERT_TRUE(loop_->run_until([&] { return c().requests_in_flight() == 0 &&
                                              c().state().cqs[2]->pending.size() == 3; }, 5s).ok());
  }

  VirtualClock src_clock_{1'000'000'000};
  VirtualClock dst_clock_{77'000'000'000};
  std::unique_ptr<EventLoop> loop_;
  std::vector<std::unique_ptr<TempImage>> images_;
  std::unique_ptr<Side> src_, dst_;
  Side* side_ = nullptr;
  std::unique_ptr<test::Host> host_;
  std::map<uint16_t, uint16_t> io_;  // qid -> qid, as the tests name them
  std::vector<uint16_t> aer_cids_;
};

TEST_F(NvmeMigrationTest, DescriptionPassesItsRegistrationCheck) {
  Status st = kControllerState.check();
  EXPECT_TRUE(st.ok()) << st.to_string();
}

TEST_F(NvmeMigrationTest, BusyControllerContinuesOnTheDestination) {
  make_busy_source();
  SmartCounters ns1 = smart(1), ns2 = smart(2);
  EXPECT_EQ(ns1.host_write_commands, 1u);
  EXPECT_EQ(ns1.host_read_commands, 6u);
  EXPECT_EQ(ns2.host_write_commands, 1u);
  src_clock_.advance_to(src_clock_.now_ns() + 5'000'000'000);  // 5 s after the set

  std::vector<uint8_t> bytes = save(*src_);
  dst_ = make_side(dst_clock_);
  Status st = load(*src_, *dst_, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  // Saved again before it runs, the destination gives the same bytes (clock aside: the
  // last 24 bytes are durations measured on each side's clock).
  std::vector<uint8_t> again = save(*dst_);
  ASSERT_EQ(again.size(), bytes.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end() - 24, again.begin()));

  use(*dst_);
  dst_->ctrl->resume();
  // CQ 2: the 3 posted before, then the 3 that waited, in order, each once.
  for (uint16_t cid = 0; cid < 6; ++cid) {
    Completion cqe = take(io_[2]);
    EXPECT_EQ(cqe.cid, cid);
    EXPECT_EQ(cqe.sq_id, 2);
    EXPECT_EQ(cqe.status, 0);
  }
  settle();
  EXPECT_FALSE(cqe_ready(io_[2]));
  // Reading the SMART log (no RAE) unmasks SMART events: the queued one completes the
  // newest outstanding AER command, exactly once.
  uint16_t log_cid = submit(kAdmin, command(sn::kAdminGetLogPage, 0xffffffff)
      .set_prp1(kData + 0x2000)
                                        .set_cdw(10, (512 / 4 - 1) << 16 | sn::kLogSmartHealth));
  Completion event = take(kAdmin);  // queued while the log page command runs
  Completion log = take(kAdmin);
  EXPECT_EQ(log.cid, log_cid);
  EXPECT_EQ(log.status, 0);
  EXPECT_EQ(event.cid, aer_cids_[1]);
  EXPECT_EQ(event.dw0 & 0x7, sn::kAerTypeSmart);
  settle();
  EXPECT_FALSE(cqe_ready(kAdmin));
  EXPECT_EQ(c().state().aer.outstanding, std::vector<uint16_t>{aer_cids_[0]});
  // SMART counters carried on; data written on the source reads back on the destination.
  EXPECT_EQ(smart(1).host_read_commands, ns1.host_read_commands);
  EXPECT_EQ(smart(2).host_write_commands, ns2.host_write_commands);
  submit(io_[1], rw(sn::kNvmRead, 8, 8, kData + 0x8000));
  EXPECT_EQ(take(io_[1]).status, 0);
  EXPECT_EQ(peek(kData + 0x8000, 4096), peek(kData, 4096));
  EXPECT_EQ(smart(1).host_read_commands, ns1.host_read_commands + 1);
  // The timestamp continues from the host's value plus the 5 s that had passed.
  poke(kData + 0x3000, std::vector<uint8_t>(8, 0));
  EXPECT_EQ(admin(command(sn::kAdminGetFeatures).set_prp1(kData + 0x3000)
      .set_cdw(10, sn::kFeatTimestamp))
                .status, 0);
  auto ts = peek(kData + 0x3000, 8);
  uint64_t value = 0;
  for (int i = 0; i < 6; ++i) value |= uint64_t{ts[i]} << (8 * i);
  EXPECT_EQ(value, 10000u + 5000u);
  // New queues and I/O keep working.
  uint16_t q5 = create_io_queues(5, 8, 8);
  submit(q5, rw(sn::kNvmRead, 0, 8, kData + 0x9000, 2));
  EXPECT_EQ(take(q5).status, 0);
}

// Issue 6: at stop-and-copy "drain requests already submitted to the backend, post
// completions that fit, keep the rest pending". No interrupt while the VM stops: the one
// owed travels (state/vectors) and the destination raises it when it runs.
TEST_F(NvmeMigrationTest, QuiescePostsTheCompletionsThatFitAndOwesTheirInterrupt) {
  src_ = make_side(src_clock_);
  side_ = src_.get();
  bring_up();
  io_[1] = create_io_queues(1, 16, 4);  // 3 usable CQ slots
  // Held until the drain releases them (a bare delay could run out while the six are still
  // being fetched on a busy machine), then 20 ms more: the drain certainly waits for them.
  src_->drives[0]->faults().add(block::FaultRule{.op = block::BlockOp::kWrite,
                                                .delay_ns = 20'000'000, .hold = true});
  for (int i = 0; i < 6; ++i) submit(io_[1], rw(sn::kNvmWrite, i, 1, kData));
  ASSERT_TRUE(loop_->run_until([&] { return c().requests_in_flight() == 6; }, 5s).ok());
  msi_data(*src_);
  clear_dirty();
  c().quiesce();
  EXPECT_EQ(c().requests_in_flight(), 0u);
  EXPECT_GE(c().last_drain_ns(), 20'000'000);  // waited for the released writes
  EXPECT_EQ(c().state().cqs[1]->tail, 3u);     // three posted: as many as fit
  EXPECT_EQ(c().state().cqs[1]->pending.size(), 3u);
  EXPECT_TRUE(is_dirty(layout(io_[1]).cq_address)) << "the final RAM pass must carry the CQEs";
  EXPECT_EQ(msi_data(*src_), std::vector<uint32_t>{}) << "an interrupt while stopping";
  EXPECT_EQ(c().state().vectors[1].aggregated, 3u) << "the interrupt is owed";
  for (uint16_t cid = 0; cid < 3; ++cid) EXPECT_EQ(cqe(io_[1], cid).cid, cid);
  settle();
  EXPECT_EQ(msi_data(*src_), std::vector<uint32_t>{});

  std::vector<uint8_t> bytes = save(*src_);
  dst_ = make_side(dst_clock_);
  Status st = load(*src_, *dst_, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  use(*dst_);
  dst_->ctrl->resume();
  EXPECT_EQ(msi_data(*dst_), std::vector<uint32_t>{0x41}) << "the owed interrupt, once";
  for (uint16_t cid = 0; cid < 6; ++cid) EXPECT_EQ(take(io_[1]).cid, cid);
  settle();
  EXPECT_FALSE(cqe_ready(io_[1]));
}

// Issue 6: "pages the controller writes (CQEs, shadow doorbell event indexes, read data)
// are marked dirty so the final RAM pass carries them". Pages it only reads stay clean.
TEST_F(NvmeMigrationTest, PagesTheControllerWritesAreMarkedDirty) {
  src_ = make_side(src_clock_);
  side_ = src_.get();
  bring_up();
  io_[1] = create_io_queues(1, 16, 16);
  const uint16_t q = io_[1];
  constexpr uint64_t kWriteBuf = kData, kReadBuf = kData + 0x5000;
  std::vector<uint8_t> block(512);
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<uint8_t>(i * 13 + 1);
  poke(kWriteBuf, block);
  submit(q, rw(sn::kNvmWrite, 5, 1, kWriteBuf));
  ASSERT_EQ(take(q).status, 0);
  constexpr uint64_t kShadow = 0x300000, kEvents = 0x301000;
  ASSERT_EQ(admin(command(sn::kAdminDoorbellBufferConfig).set_prp1(kShadow)
      .set_prp2(kEvents)).status,
            0);
  // The host puts a write (elsewhere) and a read of the block in the SQ and their tail in
  // the shadow doorbell: its own stores dirty those pages, so the bitmap is cleared before
  // the controller runs.
  for (const Sqe& sqe : {rw(sn::kNvmWrite, 9, 1, kWriteBuf), rw(sn::kNvmRead, 5, 1, kReadBuf)})
    submit(q, sqe, /*ring=*/false);
  const uint32_t tail = driver().queue(q)->sq_tail();
  poke(kShadow + 8, std::vector<uint8_t>{static_cast<uint8_t>(tail), 0, 0, 0});
  clear_dirty();
  ASSERT_FALSE(is_dirty(layout(q).cq_address));
  set_reg(sn::sq_tail_doorbell(1), tail);
  ASSERT_TRUE(loop_->run_until([&] { return cqe(q, 2).phase; }, 5s).ok());
  ASSERT_TRUE(loop_->run_until([&] { return c().requests_in_flight() == 0; }, 5s).ok());
  EXPECT_EQ(peek(kReadBuf, 512), block);
  EXPECT_TRUE(is_dirty(kReadBuf)) << "read data DMA";
  EXPECT_TRUE(is_dirty(layout(q).cq_address)) << "CQE posting";
  EXPECT_TRUE(is_dirty(kEvents)) << "shadow doorbell event index";
  EXPECT_FALSE(is_dirty(kWriteBuf)) << "write data is only read";
  EXPECT_FALSE(is_dirty(layout(q).sq_address)) << "SQEs are only read";
  EXPECT_FALSE(is_dirty(kShadow)) << "the shadow doorbells are only read for I/O queues";
  EXPECT_FALSE(is_dirty(layout(kAdmin).cq_address)) << "nothing was posted on the admin CQ";
}

TEST_F(NvmeMigrationTest, SaveRefusesRequestsInFlight) {
  src_ = make_side(src_clock_);
  side_ = src_.get();
  bring_up();
  io_[1] = create_io_queues(1, 16, 16);
  src_->drives[0]->faults().add(block::FaultRule{.op = block::BlockOp::kWrite, .hold = true});
  submit(io_[1], rw(sn::kNvmWrite, 0, 1, kData));
  ASSERT_TRUE(loop_->run_until([&] { return c().requests_in_flight() == 1; }, 5s).ok());
  ByteWriter w;
  Status st = kControllerState.save(c(), w);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("in flight"), std::string::npos) << st.to_string();
  c().quiesce();
}

// ---- validation: a valid stream patched at one field ------------------------------------------

// Byte range of every field of a saved section, from its vmdesc: "state/sqs[1]/head" -> range.
void locate(const vmstate::Json& fields, uint64_t& at, const std::string& prefix,
            std::map<std::string, std::pair<uint64_t, uint64_t>>& out) {
  for (const auto& f : fields) {
    std::string name = prefix + f["name"].get<std::string>();
    if (f.contains("index")) name += fmt::format("[{}]", f["index"].get<uint64_t>());
    uint64_t size = f["size"].get<uint64_t>();
    if (f["type"] == "ptr-marker") {
      out[name + "#marker"] = {at, size};
      at += size;
      continue;
    }
    uint64_t count = f.contains("array_len") ? f["array_len"].get<uint64_t>() : 1;
    for (uint64_t k = 0; k < count; ++k) {
      std::string element = count > 1 ? fmt::format("{}[{}]", name, k) : name;
      out[element] = {at, size};
      uint64_t inner = at;
      if (f.contains("struct")) locate(f["struct"]["fields"], inner, element + "/", out);
      else if (f.contains("fields")) locate(f["fields"], inner, element + "/", out);
      at += size;
    }
  }
}

void put_be(std::vector<uint8_t>& bytes, std::pair<uint64_t, uint64_t> range, uint64_t value) {
  for (uint64_t i = 0; i < range.second; ++i)
    bytes[range.first + i] = static_cast<uint8_t>(value >> (8 * (range.second - 1 - i)));
}

struct Patch {
  std::string field;
  uint64_t value;
  std::string expected;  // in the error
};

using FieldMap = std::map<std::string, std::pair<uint64_t, uint64_t>>;

// Each patch alone must make `load` refuse the stream, naming what it broke (and `also`).
void expect_each_refused(const std::vector<Patch>& patches, const std::vector<uint8_t>& bytes,
                         FieldMap& at,
                         const std::function<Status(const std::vector<uint8_t>&)>& load,
                         std::string_view also = {}) {
  for (const Patch& p : patches) {
    SCOPED_TRACE(p.field);
    ASSERT_TRUE(at.contains(p.field));
    std::vector<uint8_t> patched = bytes;
    put_be(patched, at[p.field], p.value);
    Status st = load(patched);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.to_string().find(p.expected), std::string::npos) << st.to_string();
    if (!also.empty()) {
      EXPECT_NE(st.to_string().find(also), std::string::npos) << st.to_string();
    }
  }
}

TEST_F(NvmeMigrationTest, EveryValidationRuleRefusesAPatchedStream) {
  make_busy_source();
  // A second controller-wide feature in use: shadow doorbells.
  ASSERT_EQ(admin(command(sn::kAdminDoorbellBufferConfig).set_prp1(0x300000)
                      .set_prp2(0x301000)).status, 0);
  vmstate::Json desc;
  std::vector<uint8_t> bytes = save(*src_, &desc);
  FieldMap at;
  uint64_t offset = 0;
  locate(desc["fields"], offset, "", at);
  ASSERT_EQ(offset, bytes.size());
  ASSERT_TRUE(at.contains("state/sqs[1]/head")) << desc.dump();

  const std::vector<Patch> patches = {
      {"state/sqs[1]/id", 3, "does not match its slot"},
      {"state/cqs[2]/id", 1, "does not match its slot"},
      {"state/sqs[3]/cq_id", 9, "completion queue 9 does not exist"},
      {"state/sqs[3]/cq_id", 0, "only the admin SQ uses the admin CQ"},
      {"state/sqs[1]/size", 1, "outside [2, 2048]"},
      {"state/cqs[1]/size", 4096, "outside [2, 2048]"},
      {"state/sqs[1]/head", 16, "head 16 is not below size 16"},
      {"state/cqs[3]/tail", 200, "tail 200 is not below size 16"},
      {"state/sqs[2]/base", layout(2).sq_address + 64, "not aligned"},
      {"state/cqs[4]/base", 0x7ffff000ull, "not inside guest RAM"},
      {"state/cqs[1]/vector", 65, "MSI-X vector 65 is not below the table size 65"},
      {"state/cqs[0]/irq_enabled", 0, "admin CQ always interrupts"},
      {"state/aer/outstanding/count", 300, "count 300 is outside the declared maximum 256"},
      {"state/regs/cap", 0x1234, "must equal the local value"},
      {"state/regs/vs", 0x10300, "must equal the local value"},
      {"state/regs/cc", 0, "CC.EN"},
      {"state/shadow/doorbells", 0x300100, "not aligned"},
      {"state/shadow/event_indexes", 0x7ffff000ull, "not inside guest RAM"},
      {"state/next_sq_to_serve", 65, "not below the 65 queue slots"},
      {"config/max_ioqpairs", 4, "must equal the local value"},
      {"config/aerl", 0, "must equal the local value"},
      {"namespaces/entries[1]/lba_size", 4096,
       "namespace 1 has 4096-byte LBAs on the source, 512 here"},
      {"namespaces/entries[2]/lba_count", 7, "has 7 LBAs on the source"},
      {"namespaces/entries[2]/nsid", 3, "namespace 3 is attached on the source but not here"},
      {"state/sqs[0]/size", 31, "differs from ASQ"},
      {"state/cqs[2]/phase", 2, "phase tag must be 0 or 1"},
      {"parent_obj/irq_state[0]", 1, "INTx is asserted while MSI-X is enabled"},
  };
  auto load_patched = [&](const std::vector<uint8_t>& patched) {
    return load(*src_, *make_side(dst_clock_), patched);
  };
  expect_each_refused(patches, bytes, at, load_patched);
  // The pending completion from an SQ that does not post to its CQ.
  {
    std::vector<uint8_t> patched = bytes;
    auto cq = at["state/cqs[2]/pending"];
    // qtailq: 0x01, dw0 (4), sq_id (2): patch the first element's sq_id.
    put_be(patched, {cq.first + 1 + 4, 2}, 3);
    auto dst = make_side(dst_clock_);
    Status st = load(*src_, *dst, patched);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.to_string().find("completion for SQ 3, which does not post to CQ 2"),
              std::string::npos)
        << st.to_string();
  }
}

// Offset of subsection `name` in a saved section (its name bytes), or npos.
size_t find_subsection(const std::vector<uint8_t>& bytes, std::string_view name) {
  auto it = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
  return it == bytes.end() ? std::string::npos : static_cast<size_t>(it - bytes.begin());
}

TEST_F(NvmeMigrationTest, ErrorLogTravelsInItsSubsectionAndBadLogsAreRefused) {
  src_ = make_side(src_clock_);
  side_ = src_.get();
  bring_up();
  io_[1] = create_io_queues(1, 16, 16);
  EXPECT_EQ(find_subsection(save(*src_), "nvme-state/error-log"), std::string::npos)
      << "an empty log sends no subsection";
  c().resume();
  src_->drives[0]->faults().add(block::FaultRule{.op = block::BlockOp::kRead, .error = EIO});
  for (int i = 0; i < 3; ++i) {
    submit(io_[1], rw(sn::kNvmRead, 40 + i, 1, kData));
    EXPECT_EQ(take(io_[1]).status, sn::kUnrecoveredReadError | sn::kStatusMore);
  }
  std::deque<ErrorLogEntry> log = c().state().error_log;
  ASSERT_EQ(log.size(), 3u);

  std::vector<uint8_t> bytes = save(*src_);
  size_t name = find_subsection(bytes, "nvme-state/error-log");
  ASSERT_NE(name, std::string::npos);
  dst_ = make_side(dst_clock_);
  Status st = load(*src_, *dst_, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  ASSERT_EQ(dst_->ctrl->state().error_log.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const ErrorLogEntry& a = log[i];
    const ErrorLogEntry& b = dst_->ctrl->state().error_log[i];
    EXPECT_EQ(a.error_count, b.error_count);
    EXPECT_EQ(a.lba, b.lba);
    EXPECT_EQ(a.cid, b.cid);
    EXPECT_EQ(a.status, b.status);
  }
  // The destination continues the count.
  use(*dst_);
  dst_->ctrl->resume();
  dst_->drives[0]->faults().add(block::FaultRule{.op = block::BlockOp::kRead, .error = EIO});
  submit(io_[1], rw(sn::kNvmRead, 50, 1, kData));
  EXPECT_EQ(take(io_[1]).status, sn::kUnrecoveredReadError | sn::kStatusMore);
  EXPECT_EQ(c().state().error_log.front().error_count, 4u);

  // Entries: after the name, be32 version, then 0x01 + 28 bytes per element. A gap in the
  // counts (entry 1 made older than it is) and a zero count are refused.
  size_t first = name + std::string_view("nvme-state/error-log").size() + 4;
  ASSERT_EQ(bytes[first], 0x01);
  size_t second_count = first + 1 + 28 + 1;
  for (uint64_t bad : {uint64_t{0}, uint64_t{1}}) {
    SCOPED_TRACE(bad);
    std::vector<uint8_t> patched = bytes;
    put_be(patched, {second_count, 8}, bad);
    auto other = make_side(dst_clock_);
    Status refused = load(*src_, *other, patched);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.to_string().find("error_log[1]"), std::string::npos)
        << refused.to_string();
  }
  // More entries than the log holds: refused by the list's bound before any allocation
  // beyond it.
  ControllerState big;
  for (uint64_t i = 200; i > 200 - kErrorLogEntries - 1; --i) big.error_log.push_back({.error_count = i});
  ByteWriter w;
  ASSERT_TRUE(kErrorLogState.save(big, w).ok());
  ControllerState loaded;
  std::vector<uint8_t> stream = w.to_vector();
  ByteReader r(stream);
  Status over = kErrorLogState.load(loaded, r);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.to_string().find("maximum of 64"), std::string::npos) << over.to_string();
}

TEST_F(NvmeMigrationTest, HeldDeallocationMigratesAndRunsOnTheDestination) {
  src_ = make_side(src_clock_);  // werror=enospc (the default): ENOSPC stops
  side_ = src_.get();
  bring_up();
  io_[1] = create_io_queues(1, 16, 16);
  std::vector<uint8_t> range(16, 0);
  range[4] = 8;   // 8 blocks
  range[8] = 32;  // at LBA 32
  poke(kData, range);
  src_->drives[0]->faults().add(block::FaultRule{.op = block::BlockOp::kDiscard, .error = ENOSPC});
  submit(io_[1], command(sn::kNvmDatasetManagement, 1).set_prp1(kData).set_cdw(10, 0)
      .set_cdw(11, 1u << 2));
  ASSERT_TRUE(loop_->run_until([&] { return c().state().held.size() == 1; }, 5s).ok());
  settle();
  EXPECT_FALSE(cqe_ready(io_[1])) << "a held deallocation must not complete";
  std::vector<uint8_t> bytes = save(*src_);
  ASSERT_NE(find_subsection(bytes, "nvme-state/held-requests"), std::string::npos);
  dst_ = make_side(dst_clock_);
  Status st = load(*src_, *dst_, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  use(*dst_);
  dst_->ctrl->resume();
  Completion done = take(io_[1]);
  EXPECT_EQ(done.status, 0);
  EXPECT_EQ(done.cid, 0);
}

TEST_F(NvmeMigrationTest, TooManyOutstandingAerCommandsAreRefused) {
  // Source allows 8 outstanding AERs, the destination 4 (aerl=3): the config check names it.
  src_ = make_side(src_clock_, {.serial = "MIG", .aerl = 7});
  side_ = src_.get();
  bring_up();
  for (int i = 0; i < 6; ++i) submit(kAdmin, command(sn::kAdminAsyncEventRequest));
  settle();
  ASSERT_EQ(c().state().aer.outstanding.size(), 6u);
  vmstate::Json desc;
  std::vector<uint8_t> bytes = save(*src_, &desc);
  dst_ = make_side(dst_clock_);
  Status st = load(*src_, *dst_, bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("config/aerl"), std::string::npos) << st.to_string();
  EXPECT_NE(st.to_string().find("expected 3"), std::string::npos) << st.to_string();
  // A stream that lies about its aerl: the outstanding count itself is checked.
  FieldMap at;
  uint64_t offset = 0;
  locate(desc["fields"], offset, "", at);
  put_be(bytes, at["config/aerl"], 3);
  auto again = make_side(dst_clock_);
  st = load(*src_, *again, bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("6 AER commands outstanding, above AERL + 1 = 4"),
            std::string::npos)
      << st.to_string();
}

// INTx (MSI-X off): the level must be one the queues call for. CQ 1 (interrupts enabled,
// vector 0) holds an entry the host has not consumed, so INTx is asserted.
TEST_F(NvmeMigrationTest, IntxMayBeAssertedOnlyWhenAQueueCallsForIt) {
  src_ = make_side(src_clock_);
  side_ = src_.get();
  bring_up(/*msix=*/false);
  const uint16_t q = 1;  // 16 entries, interrupts enabled on vector 0
  Status created = driver().create_io_queue_pair(q, 16, {.enabled = true, .vector = 0});
  ASSERT_TRUE(created.ok()) << created.to_string();
  submit(q, command(sn::kNvmFlush, 1));
  ASSERT_TRUE(loop_->run_until([&] { return cqe_ready(q); }, 5s).ok());
  ASSERT_TRUE(c().irq_level());
  vmstate::Json desc;
  std::vector<uint8_t> bytes = save(*src_, &desc);
  FieldMap at;
  uint64_t offset = 0;
  locate(desc["fields"], offset, "", at);
  {
    auto dst = make_side(dst_clock_);
    Status st = load(*src_, *dst, bytes);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(dst->ctrl->irq_level());
  }
  const std::vector<Patch> patches = {
      {"state/cqs[1]/irq_enabled", 0, "INTx is asserted, but no completion queue"},
      {"state/regs/intms", 1, "INTMS 0x1 leaves unmasked"},
      {"state/cqs[1]/head", 1, "INTx is asserted, but no completion queue"},
  };
  expect_each_refused(patches, bytes, at, [&](const std::vector<uint8_t>& patched) {
    return load(*src_, *make_side(dst_clock_), patched);
  }, "irq_state");
  // Low while the queue calls for it is an interrupt owed: it loads, and rises on resume.
  std::vector<uint8_t> low = bytes;
  put_be(low, at["parent_obj/irq_state[0]"], 0);
  dst_ = make_side(dst_clock_);
  Status st = load(*src_, *dst_, low);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_FALSE(dst_->ctrl->irq_level());
  dst_->ctrl->resume();
  EXPECT_TRUE(dst_->ctrl->irq_level());
}

// A CQ keeps its vector when the host turns MSI-X off afterwards: a state a guest reaches,
// so it migrates (it is not "IEN under INTx must use vector 0"). INTMS masks by vector 3.
TEST_F(NvmeMigrationTest, ACqVectorKeptAfterMsixIsTurnedOffMigrates) {
  src_ = make_side(src_clock_);
  side_ = src_.get();
  bring_up();
  io_[3] = create_io_queues(3, 16, 16);  // interrupts on vector 3
  auto cap = c().find_capability(pci::kCapMsix);
  ASSERT_TRUE(cap.has_value());
  c().config_write(*cap + pci::kMsixControl, 0, 2);
  ASSERT_FALSE(c().msix_enabled());
  submit(io_[3], command(sn::kNvmFlush, 1));
  ASSERT_TRUE(loop_->run_until([&] { return cqe_ready(io_[3]); }, 5s).ok());
  ASSERT_TRUE(c().irq_level());
  std::vector<uint8_t> bytes = save(*src_);
  dst_ = make_side(dst_clock_);
  Status st = load(*src_, *dst_, bytes);
  ASSERT_TRUE(st.ok()) << st.to_string();
  use(*dst_);
  c().resume();
  EXPECT_TRUE(c().irq_level());
  set_reg(sn::kRegIntms, 1u << 3);
  EXPECT_FALSE(c().irq_level());
  set_reg(sn::kRegIntmc, 1u << 3);
  EXPECT_TRUE(c().irq_level());
  EXPECT_EQ(take(io_[3]).cid, 0);
  EXPECT_FALSE(c().irq_level());
}

TEST_F(NvmeMigrationTest, DestinationWithOtherNamespacesIsRefused) {
  src_ = make_side(src_clock_);
  std::vector<uint8_t> bytes = save(*src_);
  {
    auto other = make_side(dst_clock_, {.serial = "MIG"}, 512);  // namespace 2 with 512 B LBAs
    Status st = load(*src_, *other, bytes);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.to_string().find("namespace 2 has 4096-byte LBAs on the source, 512 here"),
              std::string::npos)
        << st.to_string();
  }
  {
    auto fewer = make_side(dst_clock_, {.serial = "MIG"}, 0);  // no namespace 2
    Status st = load(*src_, *fewer, bytes);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.to_string().find("namespace 2 is attached on the source but not here"),
              std::string::npos)
        << st.to_string();
  }
  {
    auto smaller = make_side(dst_clock_, {.serial = "MIG"}, 4096, kImageSize / 2);
    Status st = load(*src_, *smaller, bytes);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.to_string().find("namespace 1 has 2048 LBAs on the source, 1024 here"),
              std::string::npos)
        << st.to_string();
  }
}

TEST_F(NvmeMigrationTest, TruncatedStreamsAreRefusedAtEveryLength) {
  make_busy_source();
  std::vector<uint8_t> bytes = save(*src_);
  auto dst = make_side(dst_clock_);
  for (size_t cut = 0; cut < bytes.size(); cut += 97) {
    Status st = load(*src_, *dst, std::span<const uint8_t>(bytes.data(), cut));
    EXPECT_FALSE(st.ok()) << "cut at " << cut;
  }
  Status st = load(*src_, *dst, bytes);  // the same controller still loads a whole stream
  EXPECT_TRUE(st.ok()) << st.to_string();
}

// ---- allowlist -------------------------------------------------------------------------------

TEST(NvmeMigrationAllowlist, EveryPropertyIsClassified) {
  for (const OptSpec& p : controller_schema().properties)
    EXPECT_NE(find_migration_item(MigrationItemKind::kControllerProperty, p.name), nullptr)
        << "-device nvme property '" << p.name << "' is not in the migration allowlist";
  for (const OptSpec& p : namespace_schema().properties)
    EXPECT_NE(find_migration_item(MigrationItemKind::kNamespaceProperty, p.name), nullptr)
        << "-device nvme-ns property '" << p.name << "' is not in the migration allowlist";
  // And the table lists nothing twice.
  auto items = migration_allowlist();
  for (size_t i = 0; i < items.size(); ++i)
    for (size_t j = i + 1; j < items.size(); ++j)
      EXPECT_FALSE(items[i].kind == items[j].kind && items[i].name == items[j].name)
          << items[i].name;
}

TEST(NvmeMigrationAllowlist, BlockingUsesNameTheItem) {
  auto opts = parse_opts(controller_schema(), "nvme,serial=X,aer_max_queued=1000");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  auto reasons = migration_blockers(MigrationItemKind::kControllerProperty, *opts, "nvme at 04.0");
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_NE(reasons[0].find("aer_max_queued=1000"), std::string::npos) << reasons[0];
  EXPECT_NE(reasons[0].find("nvme at 04.0"), std::string::npos) << reasons[0];

  auto fine = parse_opts(controller_schema(), "nvme,serial=X,aer_max_queued=256,mqes=100");
  ASSERT_TRUE(fine.ok());
  EXPECT_TRUE(migration_blockers(MigrationItemKind::kControllerProperty, *fine, "x").empty());
  auto ns = parse_opts(namespace_schema(), "nvme-ns,drive=d1,nsid=2,logical_block_size=4096");
  ASSERT_TRUE(ns.ok());
  EXPECT_TRUE(migration_blockers(MigrationItemKind::kNamespaceProperty, *ns, "x").empty());
}

// The capability and feature rows against the device: everything a host can discover on a
// created controller (config space, CAP, Identify Controller, Get Features, Get Log Page,
// Commands Supported and Effects) has a row; the walk the machine uses for blockers agrees
// with the host's, and finds nothing blocking on this configuration.
TEST_F(NvmeMigrationTest, EveryAdvertisedCapabilityAndFeatureIsClassified) {
  src_ = make_side(src_clock_);
  side_ = src_.get();
  bring_up();
  std::set<Advertised> device;  // discovered without commands
  if (c().config_read(pci::kStatus, 2) & pci::kStatusCapabilityList) {
    uint32_t at = c().config_read(pci::kCapabilityPointer, 1);
    for (int hops = 0; at != 0 && hops < 48; ++hops) {
      device.insert({ProbeKind::kPciCapability, c().config_read(at, 1)});
      at = c().config_read(at + 1, 1) & ~3u;
    }
  }
  for (uint32_t at = 0x100, hops = 0; at >= 0x100 && hops < 960; ++hops) {
    uint32_t header = c().config_read(at, 4);
    if (header == 0 || header == 0xffffffff) break;
    device.insert({ProbeKind::kPciExtendedCapability, header & 0xffff});
    at = header >> 20 & ~3u;
  }
  if (c().config_read(pci::kInterruptPin, 1)) device.insert({ProbeKind::kPciInterruptPin, 0});
  // CAP: every set bit except the size and time fields (MQES, TO, DSTRD, MPSMIN, MPSMAX).
  uint64_t cap = reg(sn::kRegCap, 8);
  for (unsigned bit = 16; bit < 64; ++bit) {
    bool value_field = (bit >= 24 && bit <= 35) || (bit >= 48 && bit <= 55);
    if (!value_field && (cap >> bit & 1)) device.insert({ProbeKind::kCapRegisterBit, bit});
  }
  ASSERT_EQ(admin(command(sn::kAdminIdentify).set_prp1(kData)
      .set_cdw(10, sn::kCnsController)).status, 0);
  for (const Advertised& a : identify_advertised(peek(kData, 4096))) device.insert(a);
  std::vector<Advertised> walked = advertised_capabilities(c());
  EXPECT_EQ(std::set<Advertised>(walked.begin(), walked.end()), device)
      << "the machine's blocker walk and the host's view differ";

  std::set<Advertised> all = device;
  for (uint32_t fid = 1; fid < 256; ++fid) {
    Completion r = admin(command(sn::kAdminGetFeatures, 1).set_prp1(kData + 0x2000)
                      .set_cdw(10, 3u << sn::kFeatSelShift | fid));
    if (r.status == 0) all.insert({ProbeKind::kFeature, fid});
  }
  for (uint32_t lid = 0; lid < 256; ++lid) {
    Completion r = admin(command(sn::kAdminGetLogPage, 0xffffffff).set_prp1(kData + 0x2000)
        .set_cdw(10, lid));
    if (r.status == 0) all.insert({ProbeKind::kLogPage, lid});
  }
  ASSERT_EQ(admin(command(sn::kAdminGetLogPage, 0xffffffff).set_prp1(kData + 0x2000)
                      .set_cdw(10, 1023u << 16 | sn::kLogCommandsSupported)).status, 0);
  std::vector<uint8_t> effects = peek(kData + 0x2000, 4096);
  for (uint32_t op = 0; op < 256; ++op) {
    if (effects[4 * op] & 1) all.insert({ProbeKind::kAdminCommand, op});
    if (effects[1024 + 4 * op] & 1) all.insert({ProbeKind::kIoCommand, op});
  }
  // Sanity: the walk sees what this controller is known to have.
  EXPECT_TRUE(all.contains({ProbeKind::kPciCapability, pci::kCapMsix}));
  EXPECT_TRUE(all.contains({ProbeKind::kIdentifyBit, identify_bit(256, 8)}));  // OACS DBBUF
  EXPECT_TRUE(all.contains({ProbeKind::kFeature, sn::kFeatTimestamp}));
  EXPECT_TRUE(all.contains({ProbeKind::kLogPage, sn::kLogSmartHealth}));
  EXPECT_TRUE(all.contains({ProbeKind::kIoCommand, sn::kNvmWriteZeroes}));
  for (const Advertised& a : all) {
    const MigrationItem* item = classify_advertised(a.kind, a.id);
    EXPECT_NE(item, nullptr) << describe_advertised(a.kind, a.id)
                             << " is advertised but has no row in the migration allowlist";
    if (item) {
      EXPECT_TRUE(item->migratable) << describe_advertised(a.kind, a.id) << " -> " << item->name;
    }
  }
  EXPECT_EQ(migration_blockers(c(), "nvme at 04.0"), std::vector<std::string>{});
}

TEST_F(NvmeMigrationTest, AnUnclassifiedCapabilityBlocksMigration) {
  src_ = make_side(src_clock_);
  ASSERT_TRUE(src_->ctrl->add_capability(0x09, 8).ok());  // vendor specific
  auto reasons = migration_blockers(*src_->ctrl, "nvme at 04.0");
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_NE(reasons[0].find("nvme at 04.0: PCI capability 0x09 is advertised but not classified"),
            std::string::npos)
      << reasons[0];
  // A blocking row names itself.
  const MigrationItem* cmb = classify_advertised(ProbeKind::kCapRegisterBit, 57);
  ASSERT_NE(cmb, nullptr);
  EXPECT_EQ(cmb->name, "controller-memory-buffer");
  EXPECT_FALSE(cmb->migratable);
}

}  // namespace
}  // namespace ferry::nvme
