// A real NVMe controller for the vmstate load fuzzer and its seed generator: an event loop,
// 16 MiB of guest RAM, a 1 MiB image (a temp file, unlinked at once) as namespace 1, a
// PCI bus with fake interrupt sinks. The clock is virtual and never moves, so a save is a
// function of the state alone. `populate()` drives the controller like a host (registers,
// SQEs in RAM, doorbells) into a busy state worth seeding from.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <array>
#include <chrono>
#include <memory>
#include <string>

#include "base/event_loop.h"
#include "base/status.h"
#include "block/block_backend.h"
#include "hw/nvme/controller_migration.h"
#include "hw/pci/pci_regs.h"
#include "hw/pci/test_fakes.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"
#include "spec/nvme.h"

namespace ferry::fuzz {

struct FuzzController {
  VirtualClock clock{1'000'000'000};
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<memory::AddressSpace> memory;
  std::unique_ptr<block::BlockBackend> drive;
  std::unique_ptr<pci::test::Machine> machine;
  nvme::Controller* ctrl = nullptr;

  FuzzController() = default;
  FuzzController(const FuzzController&) = delete;
  FuzzController& operator=(const FuzzController&) = delete;
  ~FuzzController() {
    machine.reset();  // the controller first, then the drive it uses
    drive.reset();
  }

  static Result<std::unique_ptr<FuzzController>> make() {
    auto f = std::make_unique<FuzzController>();
    auto loop = EventLoop::create();
    if (!loop.ok()) return loop.take_status();
    f->loop = std::move(*loop);
    f->memory = std::make_unique<memory::AddressSpace>();
    auto ram = memory::RamBlock::anonymous("ram", 16 << 20);
    if (!ram.ok()) return ram.take_status();
    FERRY_RETURN_IF_ERROR(f->memory->add_ram(0, std::move(*ram)).take_status());
    std::string path = "/tmp/ferry-nvme-fuzz-XXXXXX";
    int fd = mkstemp(path.data());
    if (fd < 0) return Error(ErrorCode::kIo, "cannot create a temp image");
    bool sized = ftruncate(fd, 1 << 20) == 0;
    close(fd);
    if (!sized) return Error(ErrorCode::kIo, "cannot size the temp image");
    // werror=stop: populate() can hold failed commands (nvme-state/held-requests).
    auto drive = block::BlockBackend::open(
        *f->loop, block::DriveConfig{.id = "d0", .file = path, .werror = block::ErrorPolicy::kStop});
    unlink(path.c_str());
    if (!drive.ok()) return drive.take_status();
    f->drive = std::move(*drive);
    auto ctrl = nvme::Controller::create({.serial = "FUZZ"}, f->drive.get(),
                                         nvme::ControllerEnv{*f->loop, *f->memory, f->clock});
    if (!ctrl.ok()) return ctrl.take_status();
    f->ctrl = ctrl->get();
    f->machine = std::make_unique<pci::test::Machine>();
    FERRY_RETURN_IF_ERROR(f->machine->bus.add(std::move(*ctrl), "4").take_status());
    f->ctrl->quiesce();  // as a destination waits for its stream
    return f;
  }

  // ---- a host, for seeds ----
  void reg(uint64_t offset, uint64_t value, unsigned size = 4) {
    ctrl->bar_handler(0).write(offset, value, size);
  }
  void sqe(uint64_t at, uint8_t opcode, uint16_t cid, uint32_t nsid,
           std::array<uint32_t, 6> cdw10_15 = {}, uint64_t prp1 = 0) {
    std::array<uint8_t, 64> b{};
    b[0] = opcode;
    b[2] = static_cast<uint8_t>(cid);
    b[3] = static_cast<uint8_t>(cid >> 8);
    auto put32 = [&](unsigned off, uint32_t v) {
      for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
    };
    put32(4, nsid);
    put32(24, static_cast<uint32_t>(prp1));
    put32(28, static_cast<uint32_t>(prp1 >> 32));
    for (unsigned i = 0; i < 6; ++i) put32(40 + 4 * i, cdw10_15[i]);
    (void)memory->write(at, b);
  }
  void run() {
    for (int i = 0; i < 20; ++i) (void)loop->run_once(std::chrono::milliseconds(1));
  }

  // Enabled with MSI-X, `io_queues` I/O pairs (CQ 4 entries, SQ 16), `commands` invalid
  // commands per queue (so CQs overflow into pending lists), `aers` AER commands,
  // optionally shadow doorbells, and `held` commands on SQ 1 (writes, the last a flush)
  // that fail with EIO under werror=stop, so they are held, and `errors` doorbell writes
  // to a queue that does not exist (each an Error Information log entry). Resumed to run,
  // then quiesced again for saving.
  void populate(unsigned io_queues, unsigned commands, unsigned aers, bool shadow,
                unsigned held = 0, unsigned errors = 0) {
    namespace sn = spec::nvme;
    ctrl->resume();
    ctrl->config_write(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster, 2);
    if (auto cap = ctrl->find_capability(pci::kCapMsix))
      ctrl->config_write(*cap + pci::kMsixControl, pci::kMsixEnable, 2);
    constexpr uint64_t kAsq = 0x10000, kAcq = 0x20000;
    reg(sn::kRegAqa, 31u << 16 | 31u);
    reg(sn::kRegAsq, kAsq, 8);
    reg(sn::kRegAcq, kAcq, 8);
    reg(sn::kRegCc, 6u << sn::kCcIosqesShift | 4u << sn::kCcIocqesShift | sn::kCcEn);
    uint32_t tail = 0;
    uint16_t cid = 0;
    auto admin = [&](uint8_t opcode, std::array<uint32_t, 6> cdw, uint64_t prp1 = 0) {
      sqe(kAsq + 64ull * tail, opcode, cid++, 0, cdw, prp1);
      tail = (tail + 1) % 32;
      reg(sn::sq_tail_doorbell(0), tail);
      run();
    };
    for (uint16_t q = 1; q <= io_queues; ++q) {
      uint64_t cq = 0x40000 + 0x1000ull * q, sq = 0x80000 + 0x1000ull * q;
      admin(sn::kAdminCreateCq, {3u << 16 | q, uint32_t{q} << 16 | 3u}, cq);
      admin(sn::kAdminCreateSq, {15u << 16 | q, uint32_t{q} << 16 | 1u}, sq);
      for (unsigned i = 0; i < commands; ++i)
        sqe(sq + 64ull * i, 0x7f, static_cast<uint16_t>(i), 1);
      reg(sn::sq_tail_doorbell(q), commands % 16);
      run();
    }
    if (held && io_queues) {
      drive->faults().add({.op = block::BlockOp::kWrite, .error = EIO});
      drive->faults().add({.op = block::BlockOp::kFlush, .error = EIO});
      uint64_t sq = 0x80000 + 0x1000;
      unsigned slot = commands % 16;
      for (unsigned i = 0; i < held; ++i) {
        uint8_t opcode = i + 1 == held ? sn::kNvmFlush : sn::kNvmWrite;
        sqe(sq + 64ull * slot, opcode, static_cast<uint16_t>(200 + i), 1, {i, 0, 0},
            0x200000 + 0x1000ull * i);
        slot = (slot + 1) % 16;
      }
      reg(sn::sq_tail_doorbell(1), slot);
      run();
      drive->faults().clear();
    }
    if (shadow) admin(sn::kAdminDoorbellBufferConfig, {}, 0x300000);
    for (unsigned i = 0; i < errors; ++i) reg(sn::sq_tail_doorbell(30), i + 1);
    for (unsigned i = 0; i < aers; ++i) admin(sn::kAdminAsyncEventRequest, {});
    ctrl->quiesce();
  }
};

}  // namespace ferry::fuzz
