// SectionHandler: what one section of the migration stream does in each phase, like
// QEMU's SaveVMHandlers. RAM (ram_section.h) and vmstate-described devices (below) are
// two implementations; stream.cc's run_save() decides the order they go on the wire in.
//
//   setup     while the VM runs, before RAM goes: may send records (RAM's START, an
//             early-setup device's FULL)
//   iterate   iterative sections only, while the VM runs: bytes pending, PART records
//   complete  stop-and-copy: the last records (RAM's END, a device's FULL)
//   load      the destination reads one record's body
//
// Iterative sections are saved by the thread that writes the stream; the others hold
// device state and are saved where the machine's devices may be read (its main loop).
#pragma once

#include <cstdint>
#include <memory>

#include "base/status.h"
#include "migration/stream_reader.h"
#include "migration/stream_writer.h"
#include "vmstate/binding.h"
#include "vmstate/vmdesc.h"

namespace ferry::migration {

struct SectionEntry;

// What a save gives every section: where device sections put their vmdesc entries (a
// JSON array; null when no vmdesc is written).
struct SaveContext {
  vmstate::Json* vmdesc_devices = nullptr;
};

class SectionHandler {
 public:
  virtual ~SectionHandler() = default;

  virtual bool iterative() const { return false; }

  virtual Status save_setup(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) {
    (void)w, (void)entry, (void)ctx;
    return {};
  }
  // Takes what changed since the last sync as pending (RAM's dirty-bitmap sync) and
  // returns the bytes pending now.
  virtual uint64_t sync_pending() { return 0; }
  // Bytes still to send of what the last sync found.
  virtual uint64_t pending_bytes() const { return 0; }
  // One PART record of about `byte_budget` bytes; true once nothing of the last sync is
  // pending.
  virtual Result<bool> save_iterate(StreamWriter& w, const SectionEntry& entry,
                                    uint64_t byte_budget) {
    (void)w, (void)entry, (void)byte_budget;
    return true;
  }
  virtual Status save_complete(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) = 0;

  // The versions a START/FULL record of this section may carry.
  virtual int version() const = 0;
  virtual int minimum_version() const { return version(); }
  // Loads the body of one record (`record_type` from wire.h) and nothing past it.
  virtual Status load(StreamReader& r, uint8_t record_type, int version) = 0;

  // The destination must acknowledge this section before switchover (QEMU's
  // switchover-ack); no section needs it yet.
  virtual bool needs_switchover_ack() const { return false; }
};

// A device described by a vmstate description: one FULL record, at setup when it is an
// early-setup device (sent before RAM, as QEMU >= 10 does for some), else at complete.
class VmstateSection final : public SectionHandler {
 public:
  VmstateSection(std::unique_ptr<vmstate::StateBinding> state, bool early_setup)
      : state_(std::move(state)), early_setup_(early_setup) {}

  Status save_setup(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) override;
  Status save_complete(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) override;
  int version() const override { return state_->version(); }
  int minimum_version() const override { return state_->minimum_version(); }
  Status load(StreamReader& r, uint8_t record_type, int version) override;

  vmstate::StateBinding& state() { return *state_; }
  bool early_setup() const { return early_setup_; }

 private:
  std::unique_ptr<vmstate::StateBinding> state_;
  bool early_setup_;
};

}  // namespace ferry::migration
