// `-guest verify`: a crc32c-verifying NVMe I/O workload (modeled on fio's verify=crc32c) that
// drives one controller through the GuestBus and migrates with the VM.
//
// What it does: brings the controller up (PCI probe, BAR0, disable, admin queue, enable,
// Identify, Number of Queues, one I/O queue pair of iodepth+1 entries, polled, no
// interrupts), then keeps `iodepth` commands in flight over [LBA 0, size): writes carry a
// header and a payload (verify_block.h); reads check them against the model of what this
// run last wrote to each block; a final pass re-reads and checks every block it wrote. The
// first error — a failed command, a mismatch, a command outstanding longer than the timeout
// (running time, pauses excluded) — ends the program with LBA, expected and found. A
// machine reset (system_reset) restarts the bring-up and then the interrupted phase; the
// disk model stays valid (disks keep their content), except that a write dropped by the
// reset leaves its block holding either generation until it is read or written again.
//
// Which blocks are verified: a block is known once this run has written it. read and
// randread first fill the whole region sequentially (the "prefill" phase), so every read
// is checked; randrw does not, and its reads of blocks it has not written yet are counted
// as unverified (their content is whatever the disk held). The final pass skips blocks
// never written (randwrite may leave some).
//
// Steps never wait: a register poll or a command in flight returns kWaiting and is checked
// again next step. All state between steps is in VerifyState (verify_state.h) and migrates
// as the "guest-verify" section; guest RAM (rings, buffers, PRP lists) migrates with RAM.
//
// Guest memory, all inside [dma_base, dma_base + dma_size), fixed so that no allocator
// state exists: admin SQ, admin CQ, identify page, I/O SQ, I/O CQ, one bs-sized buffer per
// slot (page-aligned), and, when bs > 8 KiB, one PRP list page per slot.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/qemu_opts.h"
#include "base/status.h"
#include "guest/nvme/command.h"
#include "guest/program.h"
#include "guest/programs/verify_state.h"

namespace ferry::guest {

inline constexpr uint8_t kAnyPciSlot = 0xff;
// The program's name in its error messages, and the guest page its DMA memory is counted in.
inline constexpr std::string_view kVerifyOption = "-guest verify";
inline constexpr uint64_t kVerifyPage = 4096;

struct VerifyConfig {
  std::string device;                      // device=ID as given; the VM resolves it
  uint8_t pci_slot = kAnyPciSlot;          // bus-0 slot of the controller; any: first NVMe
  uint8_t pci_function = 0;
  uint32_t nsid = 1;
  verify::Mode rw = verify::Mode::kRandWrite;
  uint32_t block_size = 4096;              // multiple of the LBA size, >= 512
  uint32_t iodepth = 16;                   // 1..1023
  uint64_t size = 0;                       // bytes from LBA 0; 0: whole namespace up to 1 GiB
  uint64_t runtime_ms = 0;                 // 0: no time limit
  uint64_t loops = 0;                      // the run phase submits loops x blocks commands
                                           // (sequential modes: loops passes); 0 and no
                                           // runtime: 1; with runtime, whichever ends first
  uint64_t seed = 1;
  uint64_t bar_base = 0xe0000000;          // where BAR0 (and any other memory BAR) is placed
  uint64_t dma_base = 0;                   // guest RAM the program owns (page-aligned)
  uint64_t dma_size = 0;
  uint64_t command_timeout_ms = 30000;     // running time a command may stay outstanding
};

std::string_view verify_mode_name(verify::Mode mode);
// The option schema of `-guest verify,...` (implied key "program").
OptSchema verify_schema();
// Options to a config; errors name the property and the value. `device` is kept as text;
// pci_slot/function and the DMA range are for the VM to fill in.
Result<VerifyConfig> verify_config(const Opts& opts);
// Bytes of guest RAM the program needs for `config` (rings, buffers, PRP lists).
uint64_t verify_dma_bytes(const VerifyConfig& config);
// The rules verify_config enforces, for configs built in code (VerifyProgram::create checks).
Status verify_check_config(const VerifyConfig& config);

// The fixed guest-physical layout inside the DMA range.
struct VerifyLayout {
  uint64_t admin_sq = 0;
  uint64_t admin_cq = 0;
  uint64_t identify = 0;
  uint64_t io_sq = 0;
  uint64_t io_cq = 0;
  uint64_t buffers = 0;       // slot i at buffers + i * buffer_stride
  uint64_t buffer_stride = 0;
  uint64_t prp_lists = 0;     // slot i at prp_lists + i * 4096; 0 when bs <= 8 KiB
  uint64_t end = 0;
};
VerifyLayout verify_layout(const VerifyConfig& config);

class VerifyProgram final : public GuestProgram {
 public:
  static Result<std::unique_ptr<VerifyProgram>> create(const VerifyConfig& config);

  std::string_view name() const override { return "verify"; }
  Result<StepResult> step(GuestBus& bus) override;
  nlohmann::ordered_json status() const override;
  std::unique_ptr<vmstate::StateBinding> migration_state() override;
  void note_parked() override;
  // Ends the run phase at the next submission (then the final pass verifies everything).
  void request_finish() override { state_.finish_requested = true; }
  void note_resumed() override;
  // The controller was reset under the program: commands in flight are dropped (a write
  // among them leaves its block uncertain: old or new generation), and the program starts
  // again from probe, keeping its model of the disk, then resumes the I/O phase it was in
  // (the dropped commands are submitted again).
  void note_reset() override;
  // Records a pause of `ns` nanoseconds (note_resumed does, with the time since parking).
  void note_pause(int64_t ns);

  const VerifyConfig& config() const { return config_; }
  const VerifyLayout& layout() const { return layout_; }
  const verify::VerifyState& state() const { return state_; }
  verify::Phase phase() const { return state_.phase; }

 private:
  explicit VerifyProgram(const VerifyConfig& config);

  Result<StepResult> advance(GuestBus& bus);
  int64_t running_ns() const;
  int64_t ready_timeout_ns() const;  // CAP.TO

  // bring-up
  Result<StepResult> probe(GuestBus& bus);
  Result<StepResult> wait_disabled(GuestBus& bus);
  Result<StepResult> wait_ready(GuestBus& bus);
  Result<StepResult> identify_controller(GuestBus& bus);
  Result<StepResult> identify_namespace(GuestBus& bus);
  Result<StepResult> set_queues(GuestBus& bus);
  Result<StepResult> create_cq(GuestBus& bus);
  Result<StepResult> create_sq(GuestBus& bus);
  Result<uint32_t> read_register(GuestBus& bus, uint32_t offset);
  Status write_register(GuestBus& bus, uint32_t offset, uint32_t value);
  Status zero(GuestBus& bus, uint64_t address, uint64_t length);

  // rings (verify::Ring holds the state; these are the arithmetic)
  uint64_t doorbell(uint16_t qid, bool completion) const;
  Status push(GuestBus& bus, verify::Ring& ring, const nvme::Sqe& sqe);
  Status ring_sq(GuestBus& bus, const verify::Ring& ring);
  Status ring_cq(GuestBus& bus, const verify::Ring& ring);
  // Up to `max` new completions into reaped_ (replacing its contents).
  Status reap(GuestBus& bus, verify::Ring& ring, size_t max);

  // admin commands: submit, then poll until the completion (or the deadline)
  Status submit_admin(GuestBus& bus, nvme::Sqe sqe);
  Result<std::optional<nvme::Completion>> poll_admin(GuestBus& bus, std::string_view what);

  // the I/O phases
  void start_io_phase(verify::Phase phase);
  Result<StepResult> io_step(GuestBus& bus);
  bool more_to_submit();
  // The next (block, op) to submit, or nothing when the choice is blocked this step.
  std::optional<std::pair<uint64_t, verify::IoOp>> choose();
  Status submit_io(GuestBus& bus, uint32_t slot, uint64_t block, verify::IoOp op);
  Status complete_io(GuestBus& bus, const nvme::Completion& completion);
  Status check_timeouts() const;
  uint8_t stats_index() const;

  Status fail(Status status);

  VerifyConfig config_;
  VerifyLayout layout_;
  verify::VerifyState state_;
  Status error_;                              // the error that ended the program
  std::vector<uint8_t> scratch_;              // one block, reused (no state between steps)
  std::vector<nvme::Completion> reaped_;      // reused
  uint32_t next_free_hint_ = 0;               // where the free-slot search starts
};

}  // namespace ferry::guest
