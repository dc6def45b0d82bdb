// The emulated NVMe controller (NVM Express Base 1.4, NVM command set), shaped after
// QEMU 7.2's `-device nvme`: the same PCI identity, BAR0 layout (registers, doorbells with
// stride 4, MSI-X table and PBA after them), register semantics, identify data and
// command statuses. Deviations from QEMU are listed in controller.cc.
//
// Work flow: a doorbell write only records the new tail/head and schedules a bottom half
// (EventLoop::schedule); the bottom half fetches SQEs round robin and runs commands.
// Block I/O goes to the namespace's BlockBackend tagged with the request's table index;
// its completion (main loop) advances the request and queues the CQE on its CQ. A CQE is
// written only into a free slot (the controller never overwrites an entry the host has not
// consumed): completions that do not fit wait, in order, until the head doorbell moves.
//
// State: all of it lives in ControllerState (controller_state.h) as plain data, so that a
// migration description can save and load it.
//
// Threading: every member runs on the main loop thread or under the machine lock
// (design.md §3), like the rest of the PCI layer.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/event_loop.h"
#include "base/status.h"
#include "block/block_backend.h"
#include "hw/nvme/controller_state.h"
#include "hw/nvme/namespace.h"
#include "hw/nvme/nvme_properties.h"
#include "hw/pci/pci_device.h"
#include "memory/address_space.h"

namespace ferry::nvme {

struct ControllerEnv {
  EventLoop& loop;
  memory::AddressSpace& memory;
  const Clock& clock;  // timers (interrupt coalescing), timestamp, power-on hours
};

// Status value a command handler returns when the command completes later.
inline constexpr uint16_t kNoCompletion = 0xffff;

class Controller : public pci::PciDevice {
 public:
  static constexpr uint16_t kVendorId = 0x1b36;  // Red Hat (QEMU devices)
  static constexpr uint16_t kDeviceId = 0x0010;
  static constexpr uint32_t kRegisterBlockSize = 0x1000;

  static Result<std::unique_ptr<Controller>> create(const ControllerConfig& config,
                                                    block::BlockBackend* drive,
                                                    ControllerEnv env);
  ~Controller() override;

  // -device nvme-ns: another namespace (nsid 0 = the lowest free id). Refuses an id in
  // use or above 256.
  Status attach_namespace(uint32_t nsid, block::BlockBackend& backend,
                          uint32_t logical_block_size);

  // VM stopped: fetch no SQEs; wait for every block request at the backends, posting the
  // completions that fit in their CQs (the rest wait in order in the CQ's pending list)
  // without raising an interrupt, so that no request is in flight while stopped (what
  // migration saves; see controller_migration.h). Once it returns, nothing is posted and no
  // interrupt is raised until resume().
  void quiesce() override;
  // Posts what is pending, raises the interrupts held back or owed, fetches again. After an
  // incoming migration it also rebases the timestamp and power-on time on this clock.
  void resume() override;
  // How long the last quiesce() waited for the backends.
  int64_t last_drain_ns() const override { return last_drain_ns_; }

  size_t requests_in_flight() const;

  // ---- for tests and the migration description ----
  const ControllerState& state() const { return state_; }
  const ControllerConfig& config() const { return config_; }
  const Namespace* find_namespace(uint32_t nsid) const;
  // BAR0 layout.
  uint32_t msix_table_offset() const { return msix_table_offset_; }
  uint32_t msix_pba_offset() const { return msix_pba_offset_; }
  uint64_t bar0_size() const { return bar0_size_; }
  bool quiesced() const { return quiesced_; }

 protected:
  void on_reset() override;
  void on_config_write(uint32_t offset, uint32_t value, unsigned size) override;

 private:
  friend struct ControllerMigration;  // the migration description (controller_migration.h)

  Controller(const ControllerConfig& config, ControllerEnv env);
  Status realize(block::BlockBackend* drive);

  class Bar0 final : public pci::MmioHandler {
   public:
    explicit Bar0(Controller& ctrl) : ctrl_(ctrl) {}
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;

   private:
    Controller& ctrl_;
  };

  // ---- registers and the CC state machine (controller.cc) ----
  uint8_t register_byte(uint64_t offset) const;
  void write_register(uint64_t offset, uint64_t value, unsigned size);
  void write_cc(uint32_t value);
  bool start();                // CC.EN 0 -> 1; false: CSTS.CFS
  void shutdown_namespaces();  // CC.SHN: flush every backend
  // Controller reset (CC.EN 1 -> 0, PCI reset): waits for the backends, drops queues,
  // requests and events. `power_on` also restores features and the timestamp origin.
  void reset_controller(bool power_on);
  void set_fatal();
  bool enabled() const;
  bool running() const;  // enabled, not fatal, not quiesced
  uint32_t page_size() const;
  DmaLimits dma_limits() const;

  // ---- doorbells, SQ processing, completions, interrupts (queues.cc) ----
  void write_doorbell(uint64_t offset, uint32_t value);
  void schedule_processing();
  void process_queues();
  // Fetches and starts at most `budget` commands from `sq`; returns how many.
  unsigned process_sq(SubmissionQueue& sq, unsigned budget);
  bool sq_has_work(const SubmissionQueue& sq) const;
  bool sq_tail_overruns(const SubmissionQueue& sq, uint32_t tail) const;
  void refresh_shadow_sq_tail(SubmissionQueue& sq);
  void refresh_shadow_cq_head(CompletionQueue& cq);
  Request& allocate_request(SubmissionQueue& sq, std::span<const uint8_t, 64> sqe);
  // Frees the request's slot. `still_outstanding`: the command is held for a retry, so its
  // SQ keeps counting it in flight.
  void release_request(Request& request, bool still_outstanding = false);
  // Queues the request's completion (unless orphaned) and frees its slot.
  void complete_request(Request& request, uint16_t status);
  void enqueue_completion(uint16_t cq_id, const PendingCompletion& completion);
  void post_completions(CompletionQueue& cq);
  void post_all_completions();
  bool cq_full(const CompletionQueue& cq) const;
  void signal_cq(CompletionQueue& cq, unsigned posted);
  // Completions posted while quiesce() drains: their interrupt is raised by resume().
  void owe_interrupt(const CompletionQueue& cq, unsigned posted);
  void notify_vector(uint16_t vector);
  void on_coalescing_timer(uint16_t vector);
  void update_intx();
  bool dma_read(uint64_t addr, std::span<uint8_t> out) const;
  bool dma_write(uint64_t addr, std::span<const uint8_t> data);
  bool dma_write_u32(uint64_t addr, uint32_t value);
  bool dma_read_u32(uint64_t addr, uint32_t& value) const;
  void delete_sq(uint16_t qid);
  void delete_cq(uint16_t qid);

  // ---- admin commands (admin_commands.cc) ----
  uint16_t execute_admin(Request& request);
  uint16_t admin_create_cq(const Request& request);
  uint16_t admin_create_sq(const Request& request);
  uint16_t admin_delete_cq(const Request& request);
  uint16_t admin_delete_sq(const Request& request);
  uint16_t admin_identify(Request& request);
  uint16_t admin_abort(Request& request);
  uint16_t admin_async_event_request(const Request& request);
  uint16_t admin_doorbell_buffer_config(const Request& request);
  void identify_controller(std::span<uint8_t, 4096> out) const;
  // Moves `data` to the host buffer of an admin command (PRP).
  uint16_t send_to_host(const Request& request, std::span<const uint8_t> data);
  uint16_t receive_from_host(const Request& request, std::span<uint8_t> data);

  // ---- features (features.cc) ----
  uint16_t admin_get_features(Request& request);
  uint16_t admin_set_features(Request& request);
  uint64_t current_timestamp_ms() const;

  // ---- log pages (log_pages.cc) ----
  uint16_t admin_get_log_page(Request& request);
  void smart_log(uint32_t nsid, std::span<uint8_t, 512> out) const;

  // ---- error information log (error_log.cc) ----
  // Adds an entry (its error count assigned here), dropping the oldest beyond the log size.
  void record_error(ErrorLogEntry entry);
  // A command completing with `status`: logs it when the status is worth it and returns
  // the status to post (with the More bit then).
  uint16_t log_command_error(const Request& request, uint16_t status);
  // A doorbell write the controller refused (`info`: the asynchronous event information,
  // invalid register or invalid value): an error log entry, and an error event when an
  // Asynchronous Event Request is outstanding.
  void invalid_doorbell_write(uint8_t info);

  // ---- asynchronous events (async_events.cc) ----
  void enqueue_event(uint8_t type, uint8_t info, uint8_t log_page);
  void process_events();
  void clear_event_mask(uint8_t type);
  void check_temperature();

  // ---- NVM commands (io_commands.cc) ----
  uint16_t execute_io(Request& request);
  uint16_t io_read_write(Request& request, const Namespace& ns, bool write);
  uint16_t io_compare(Request& request, const Namespace& ns);
  uint16_t io_flush(Request& request);
  uint16_t io_write_zeroes(Request& request, const Namespace& ns);
  uint16_t io_dataset_management(Request& request, const Namespace& ns);
  void submit_block(Request& request, const Namespace& ns, block::BlockOp op,
                    uint64_t offset, uint64_t length, std::span<const iovec> iov = {});
  void on_block_completion(uint32_t nsid, uint64_t tag, int result);
  void finish_io(Request& request);
  uint16_t block_error_status(const Request& request, int result) const;
  // The error policy (-drive werror=/rerror=) for a failed block operation of `request`.
  void apply_error_policy(Request& request, uint32_t nsid, int result);
  // Moves a request whose I/O failed under a stop policy to state_.held.
  void hold_request(Request& request);
  // Runs the held commands again from their SQEs, in order (resume()).
  void retry_held_requests();
  void account_io(const Request& request);

  ControllerConfig config_;
  EventLoop& loop_;
  memory::AddressSpace& memory_;  // load-time checks only: DMA goes through dma()
  const Clock& clock_;
  Bar0 bar0_{*this};
  uint32_t msix_table_offset_ = 0;
  uint32_t msix_pba_offset_ = 0;
  uint64_t bar0_size_ = 0;

  ControllerState state_;

  // ---- runtime only (not migrated) ----
  std::array<std::unique_ptr<Namespace>, kMaxNamespaces + 1> namespaces_{};
  std::vector<uint32_t> free_tags_;           // derived from state_.requests
  // Released request objects kept for reuse (no allocation per command); at most this many.
  static constexpr size_t kMaxSpareRequests = 1024;
  std::vector<std::unique_ptr<Request>> spare_requests_;
  std::vector<EventLoop::TimerId> coalescing_timers_;  // per vector; 0 when none
  std::vector<iovec> scratch_iov_;  // a command's iovecs until submit copies them
  // Per SQ: the invalid shadow tail last reported (UINT32_MAX: none), so that a shadow
  // value that stays wrong is reported once.
  std::vector<uint32_t> rejected_shadow_tail_;
  bool quiesced_ = false;
  bool quiescing_ = false;  // inside quiesce(): completions that fit are posted
  int64_t last_drain_ns_ = 0;
  // Set by an incoming migration: durations to rebase on this process's clock at resume().
  struct ClockRebase {
    int64_t timestamp_elapsed_ns = 0;
    int64_t powered_on_ns = 0;
  };
  std::optional<ClockRebase> clock_rebase_;
  bool processing_scheduled_ = false;
  bool resetting_ = false;
  // Bottom halves and timers hold a weak reference: they do nothing once the controller
  // is gone.
  std::shared_ptr<Controller*> alive_;
};

}  // namespace ferry::nvme
