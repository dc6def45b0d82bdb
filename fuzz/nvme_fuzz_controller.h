// A real NVMe controller for the vmstate load fuzzer and its seed generator: an event loop,
// 16 MiB of guest RAM, a 1 MiB image (a temp file, unlinked at once) as namespace 1, a
// PCI bus with fake interrupt sinks. The clock is virtual and never moves, so a save is a
// function of the state alone. `populate()` drives the controller with the guest's NVMe
// driver (hw/nvme/test_host.h) into a busy state worth seeding from.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <memory>
#include <string>

#include "base/event_loop.h"
#include "base/status.h"
#include "block/block_backend.h"
#include "hw/nvme/controller_migration.h"
#include "hw/nvme/test_host.h"
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
  std::unique_ptr<nvme::test::Host> host;  // made by populate()

  static constexpr uint64_t kRamSize = 16 << 20;

  FuzzController() = default;
  FuzzController(const FuzzController&) = delete;
  FuzzController& operator=(const FuzzController&) = delete;
  ~FuzzController() {
    host.reset();
    machine.reset();  // the controller first, then the drive it uses
    drive.reset();
  }

  static Result<std::unique_ptr<FuzzController>> make() {
    auto f = std::make_unique<FuzzController>();
    auto loop = EventLoop::create();
    if (!loop.ok()) return loop.take_status();
    f->loop = std::move(*loop);
    f->memory = std::make_unique<memory::AddressSpace>();
    auto ram = memory::RamBlock::anonymous("ram", kRamSize);
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

  // ---- a host, for seeds: the guest's NVMe driver (hw/nvme/test_host.h) ----
  void run() {
    for (int i = 0; i < 20; ++i) (void)loop->run_once(std::chrono::milliseconds(1));
  }

  // Enabled with MSI-X, `io_queues` I/O pairs (CQ 4 entries, SQ 16), `commands` invalid
  // commands per queue (so CQs overflow into pending lists), `aers` AER commands,
  // optionally shadow doorbells, and `held` commands on SQ 1 (writes, the last a flush)
  // that fail with EIO under werror=stop, so they are held, and `errors` doorbell writes
  // to a queue that does not exist (each an Error Information log entry). Resumed to run,
  // then quiesced again for saving. Failures of the driver are returned: a seed from a
  // state that was not reached would be a lie.
  Status populate(unsigned io_queues, unsigned commands, unsigned aers, bool shadow,
                  unsigned held = 0, unsigned errors = 0) {
    namespace sn = spec::nvme;
    using nvme::test::command;
    ctrl->resume();
    host = std::make_unique<nvme::test::Host>(*machine, *memory, *loop, kRamSize);
    FERRY_RETURN_IF_ERROR(host->probe());
    guest::nvme::Controller& driver = host->driver();
    FERRY_RETURN_IF_ERROR(driver.enable());
    FERRY_RETURN_IF_ERROR(host->use_msix());
    for (uint16_t q = 1; q <= io_queues; ++q) {
      FERRY_RETURN_IF_ERROR(driver.create_io_queue_pair(q, 16, {.enabled = true, .vector = q}, 4));
      for (unsigned i = 0; i < commands; ++i) {
        FERRY_RETURN_IF_ERROR(driver.submit(q, command(0x7f, 1), {}, /*ring=*/false).take_status());
      }
      FERRY_RETURN_IF_ERROR(driver.ring_sq(q));
      run();
    }
    if (held && io_queues) {
      drive->faults().add({.op = block::BlockOp::kWrite, .error = EIO});
      drive->faults().add({.op = block::BlockOp::kFlush, .error = EIO});
      for (unsigned i = 0; i < held; ++i) {
        uint8_t opcode = i + 1 == held ? sn::kNvmFlush : sn::kNvmWrite;
        auto sqe = command(opcode, 1).set_prp1(0x200000 + 0x1000ull * i).set_cdw(10, i);
        FERRY_RETURN_IF_ERROR(driver.submit(1, sqe, {}, /*ring=*/false).take_status());
      }
      FERRY_RETURN_IF_ERROR(driver.ring_sq(1));
      run();
      drive->faults().clear();
    }
    if (shadow) {
      auto done = driver.execute(0, command(sn::kAdminDoorbellBufferConfig).set_prp1(0x300000));
      if (!done.ok()) return done.take_status();
      FERRY_RETURN_IF_ERROR(guest::nvme::Controller::check(*done, "doorbell buffer config"));
    }
    for (unsigned i = 0; i < errors; ++i)
      FERRY_RETURN_IF_ERROR(driver.write_sq_doorbell(30, i + 1));  // no queue 30: logged
    for (unsigned i = 0; i < aers; ++i) {
      auto cid = driver.submit(0, guest::nvme::commands::async_event_request());
      FERRY_RETURN_IF_ERROR(cid.take_status());
      run();
    }
    ctrl->quiesce();
    return {};
  }
};

}  // namespace ferry::fuzz
