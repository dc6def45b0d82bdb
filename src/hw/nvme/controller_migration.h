// The NVMe controller's whole migration story, next to the device: the vmstate description
// of everything it remembers, the quiesce/drain contract, the checks a hostile stream must
// pass before the destination runs it, and the allowlist that says which properties,
// capabilities and optional features may migrate.
//
// What travels (section "<pci address>/nvme", version 1), in this order:
//   config      the configuration both ends must share (each value must equal the local one)
//   namespaces  every attached namespace (nsid, LBA size, LBA count) + its SMART counters
//               and Error Recovery value; nsid 0 carries the controller-wide counters
//   parent_obj  PCI config space, BARs, INTx levels (PciDevice)
//   msix        MSI-X table and pending bits (PciDevice)
//   state       registers; CQs then SQs as sparse pointer arrays (index = queue id,
//               allocated on load), each CQ with its completions waiting for room;
//               AER commands outstanding, events queued, masked types; per-vector
//               coalescing; features; temperature; shadow doorbell addresses; the
//               round-robin position
//   clock       the timestamp and power-on time as elapsed durations (clocks of two
//               processes are not comparable); rebased when the destination runs
//   state/held-requests (subsection nvme-state/held-requests, only when non-empty)
//               commands whose block I/O failed under a stop error policy (-drive
//               werror=/rerror=), in order: SQ id and the whole SQE. The destination runs
//               them again when it continues, before it fetches anything new.
//   state/error-log (subsection nvme-state/error-log, only when non-empty)
//               the Error Information log, newest first (at most 64 entries with
//               consecutive error counts: checked on load).
//
// Requests in progress are NOT in the stream, on purpose: the controller has no stage between fetching
// an SQE and submitting its block I/O (process_sq executes each command as it fetches it),
// and quiesce() drains every backend until the request table is empty. So at save time
// every command the host submitted is either still in its SQ (head not past it: the
// destination fetches it) or finished, its completion posted or waiting in its CQ's
// pending list — or, when its I/O failed under a stop policy, held (above) and not yet
// completed, so re-running it completes it once. Nothing that succeeded at the backend
// runs twice, nothing completes twice. pre_save
// refuses to save a controller with requests in flight.
//
// Threading: pre_save runs on the source's main loop with the VM stopped; pre_load and
// post_load run on the destination's incoming thread while the machine is in `inmigrate`
// (nothing else touches the controller then). post_load arms no timer and schedules no
// bottom half: resume() (main loop) posts pending completions, raises held interrupts,
// re-delivers events to outstanding AER commands and restarts SQ processing.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/qemu_opts.h"
#include "base/status.h"
#include "hw/allowlist/migration_allowlist.h"
#include "hw/nvme/controller.h"
#include "hw/nvme/error_log.h"
#include "hw/pci/pci_device.h"
#include "vmstate/vmstate.h"

namespace ferry::nvme {

// ---- bounds the stream is held to --------------------------------------------------------

// Events queued while no AER command is outstanding. A configuration allowing more
// (aer_max_queued above this) blocks migration.
inline constexpr size_t kMaxMigratedEvents = 256;
// AERL is 8 bits, 0's based.
inline constexpr size_t kMaxOutstandingAers = 256;
// Completions waiting in one CQ (a host that submits without consuming is bounded by the
// stream's size anyway; this caps the allocation).
inline constexpr size_t kMaxPendingCompletions = 1u << 20;
// Commands held on a block error (each is also in flight on its SQ: validate() holds every
// SQ to its size; this caps the allocation).
inline constexpr size_t kMaxHeldRequests = 1u << 20;

// ---- temporary views (wire shapes that differ from the in-memory ones) ---------------------

struct AerCommands {
  uint32_t count = 0;
  std::vector<uint16_t> cids;  // oldest first
};

struct MigratedNamespace {
  uint32_t nsid = 0;
  uint32_t lba_size = 0;   // 0 for the controller-wide entry (nsid 0)
  uint64_t lba_count = 0;
  uint32_t error_recovery = 0;
  SmartCounters smart;
};

struct NamespaceTable {
  uint32_t count = 0;
  std::vector<MigratedNamespace> entries;  // nsid 0 first, then attached ones, ascending
};

struct MigratedClock {
  uint64_t timestamp_host_value_ms = 0;  // what the host set (0: never)
  int64_t timestamp_elapsed_ns = 0;      // since it was set, at save time
  int64_t powered_on_ns = 0;             // since power on, at save time
};

// ---- element descriptions -------------------------------------------------------------------

inline constexpr auto kRegistersState = vmstate::describe<Registers>(
    "nvme-registers", {.version = 1},
    vmstate::field("cap", &Registers::cap).equal(),
    vmstate::field("vs", &Registers::vs).equal(),
    vmstate::field("intms", &Registers::intms),
    vmstate::field("cc", &Registers::cc),
    vmstate::field("csts", &Registers::csts),
    vmstate::field("aqa", &Registers::aqa),
    vmstate::field("asq", &Registers::asq),
    vmstate::field("acq", &Registers::acq));

inline constexpr auto kPendingCompletionState = vmstate::describe<PendingCompletion>(
    "nvme-pending-cqe", {.version = 1},
    vmstate::field("dw0", &PendingCompletion::dw0),
    vmstate::field("sq_id", &PendingCompletion::sq_id),
    vmstate::field("cid", &PendingCompletion::cid),
    vmstate::field("status", &PendingCompletion::status));

inline constexpr auto kCompletionQueueState = vmstate::describe<CompletionQueue>(
    "nvme-cq", {.version = 1},
    vmstate::field("id", &CompletionQueue::id),
    vmstate::field("base", &CompletionQueue::base),
    vmstate::field("size", &CompletionQueue::size),
    vmstate::field("head", &CompletionQueue::head),
    vmstate::field("tail", &CompletionQueue::tail),
    vmstate::field("phase", &CompletionQueue::phase)
        .validate([](uint8_t v) { return v <= 1; }, "phase tag must be 0 or 1"),
    vmstate::field("vector", &CompletionQueue::vector),
    vmstate::field("irq_enabled", &CompletionQueue::irq_enabled),
    vmstate::list("pending", &CompletionQueue::pending, kPendingCompletionState,
                  kMaxPendingCompletions));

inline constexpr auto kSubmissionQueueState = vmstate::describe<SubmissionQueue>(
    "nvme-sq", {.version = 1},
    vmstate::field("id", &SubmissionQueue::id),
    vmstate::field("cq_id", &SubmissionQueue::cq_id),
    vmstate::field("base", &SubmissionQueue::base),
    vmstate::field("size", &SubmissionQueue::size),
    vmstate::field("head", &SubmissionQueue::head),
    vmstate::field("tail", &SubmissionQueue::tail),
    vmstate::field("priority", &SubmissionQueue::priority)
        .validate([](uint8_t v) { return v <= 3; }, "queue priority must be 0..3"));

inline constexpr auto kAerCommandsState = vmstate::describe<AerCommands>(
    "nvme-aer-commands", {.version = 1},
    vmstate::field("count", &AerCommands::count),
    vmstate::varray("cids", &AerCommands::cids, &AerCommands::count, kMaxOutstandingAers));

inline constexpr auto kAsyncEventState = vmstate::describe<AsyncEvent>(
    "nvme-event", {.version = 1},
    vmstate::field("type", &AsyncEvent::type)
        .validate([](uint8_t v) { return v <= 7; }, "event type must be 0..7"),
    vmstate::field("info", &AsyncEvent::info),
    vmstate::field("log_page", &AsyncEvent::log_page));

inline constexpr auto kAsyncEventsState = vmstate::describe<AsyncEventState>(
    "nvme-aer", {.version = 1},
    vmstate::with_tmp<AsyncEventState>(
        "outstanding", kAerCommandsState,
        [](const AsyncEventState& s, AerCommands& tmp) -> Status {
          tmp.cids = s.outstanding;
          tmp.count = static_cast<uint32_t>(tmp.cids.size());
          return {};
        },
        [](AsyncEventState& s, const AerCommands& tmp) -> Status {
          s.outstanding = tmp.cids;
          return {};
        }),
    vmstate::list("queued", &AsyncEventState::queued, kAsyncEventState, kMaxMigratedEvents),
    vmstate::field("masked_types", &AsyncEventState::masked_types));

inline constexpr auto kVectorState = vmstate::describe<VectorState>(
    "nvme-vector", {.version = 1},
    vmstate::field("coalescing_disabled", &VectorState::coalescing_disabled),
    vmstate::field("aggregated", &VectorState::aggregated),
    // A clock reading of the source: only "a timer was running" survives (post_load).
    vmstate::field("deadline_ns", &VectorState::deadline_ns));

inline constexpr auto kFeaturesState = vmstate::describe<Features>(
    "nvme-features", {.version = 1},
    vmstate::field("arbitration", &Features::arbitration),
    vmstate::field("power_management", &Features::power_management),
    vmstate::field("temperature_over", &Features::temperature_over),
    vmstate::field("temperature_under", &Features::temperature_under),
    vmstate::field("volatile_write_cache", &Features::volatile_write_cache),
    vmstate::field("interrupt_coalescing", &Features::interrupt_coalescing),
    vmstate::field("async_event_config", &Features::async_event_config),
    vmstate::field("number_of_queues_locked", &Features::number_of_queues_locked));

inline constexpr auto kShadowDoorbellsState = vmstate::describe<ShadowDoorbells>(
    "nvme-shadow-doorbells", {.version = 1},
    vmstate::field("enabled", &ShadowDoorbells::enabled),
    vmstate::field("doorbells", &ShadowDoorbells::doorbells),
    vmstate::field("event_indexes", &ShadowDoorbells::event_indexes));

inline constexpr auto kSmartState = vmstate::describe<SmartCounters>(
    "nvme-smart", {.version = 1},
    vmstate::field("sectors_read", &SmartCounters::sectors_read),
    vmstate::field("sectors_written", &SmartCounters::sectors_written),
    vmstate::field("host_read_commands", &SmartCounters::host_read_commands),
    vmstate::field("host_write_commands", &SmartCounters::host_write_commands),
    vmstate::field("media_errors", &SmartCounters::media_errors));

inline constexpr auto kMigratedNamespaceState = vmstate::describe<MigratedNamespace>(
    "nvme-namespace", {.version = 1},
    vmstate::field("nsid", &MigratedNamespace::nsid),
    vmstate::field("lba_size", &MigratedNamespace::lba_size),
    vmstate::field("lba_count", &MigratedNamespace::lba_count),
    vmstate::field("error_recovery", &MigratedNamespace::error_recovery),
    vmstate::field("smart", &MigratedNamespace::smart, kSmartState));

inline constexpr auto kNamespaceTableState = vmstate::describe<NamespaceTable>(
    "nvme-namespaces", {.version = 1},
    vmstate::field("count", &NamespaceTable::count),
    vmstate::varray("entries", &NamespaceTable::entries, &NamespaceTable::count,
                    kMaxNamespaces + 1, kMigratedNamespaceState));

inline constexpr auto kMigratedClockState = vmstate::describe<MigratedClock>(
    "nvme-clock", {.version = 1},
    vmstate::field("timestamp_host_value_ms", &MigratedClock::timestamp_host_value_ms),
    vmstate::field("timestamp_elapsed_ns", &MigratedClock::timestamp_elapsed_ns)
        .validate([](int64_t v) { return v >= 0; }, "elapsed time must not be negative"),
    vmstate::field("powered_on_ns", &MigratedClock::powered_on_ns)
        .validate([](int64_t v) { return v >= 0; }, "power-on time must not be negative"));

inline constexpr auto kControllerConfigState = vmstate::describe<ControllerConfig>(
    "nvme-config", {.version = 1},
    vmstate::field("max_ioqpairs", &ControllerConfig::max_ioqpairs).equal(),
    vmstate::field("msix_qsize", &ControllerConfig::msix_qsize).equal(),
    vmstate::field("mdts", &ControllerConfig::mdts).equal(),
    vmstate::field("aerl", &ControllerConfig::aerl).equal(),
    vmstate::field("aer_max_queued", &ControllerConfig::aer_max_queued).equal(),
    vmstate::field("mqes", &ControllerConfig::mqes).equal(),
    vmstate::field("vsl", &ControllerConfig::vsl).equal());

inline constexpr auto kHeldRequestState = vmstate::describe<HeldRequest>(
    "nvme-held-request", {.version = 1},
    vmstate::field("sq_id", &HeldRequest::sq_id),
    vmstate::buffer("sqe", &HeldRequest::sqe));

inline constexpr auto kHeldRequestsState = vmstate::describe<ControllerState>(
    "nvme-state/held-requests", {.version = 1},
    vmstate::list("held", &ControllerState::held, kHeldRequestState, kMaxHeldRequests));

inline constexpr auto kErrorLogEntryState = vmstate::describe<ErrorLogEntry>(
    "nvme-error-log-entry", {.version = 1},
    vmstate::field("error_count", &ErrorLogEntry::error_count),
    vmstate::field("sq_id", &ErrorLogEntry::sq_id),
    vmstate::field("cid", &ErrorLogEntry::cid),
    vmstate::field("status", &ErrorLogEntry::status),
    vmstate::field("parameter_error_location", &ErrorLogEntry::parameter_error_location),
    vmstate::field("lba", &ErrorLogEntry::lba),
    vmstate::field("nsid", &ErrorLogEntry::nsid));

// The Error Information log (newest first); checked whole once loaded (error_log.h).
inline constexpr auto kErrorLogState = vmstate::describe<ControllerState>(
    "nvme-state/error-log",
    {.version = 1,
     .post_load = +[](ControllerState& s, int) { return check_error_log(s.error_log); }},
    vmstate::list("entries", &ControllerState::error_log, kErrorLogEntryState,
                  kErrorLogEntries));

inline constexpr auto kControllerStateState = vmstate::describe<ControllerState>(
    "nvme-state", {.version = 1},
    vmstate::field("regs", &ControllerState::regs, kRegistersState),
    // The queue slots (max_ioqpairs + 1) and vectors (msix_qsize) are sized by the
    // configuration, which "config" has already proven both ends share.
    // CQs before SQs: an SQ is checked against the CQ it posts to.
    vmstate::config_pointers("cqs", &ControllerState::cqs, vmstate::own_size,
                             kCompletionQueueState),
    vmstate::config_pointers("sqs", &ControllerState::sqs, vmstate::own_size,
                             kSubmissionQueueState),
    vmstate::field("aer", &ControllerState::aer, kAsyncEventsState),
    vmstate::config_array("vectors", &ControllerState::vectors, vmstate::own_size, kVectorState),
    vmstate::field("features", &ControllerState::features, kFeaturesState),
    vmstate::field("temperature", &ControllerState::temperature),
    vmstate::field("shadow", &ControllerState::shadow, kShadowDoorbellsState),
    vmstate::field("next_sq_to_serve", &ControllerState::next_sq_to_serve),
    vmstate::subsection(kHeldRequestsState,
                        [](const ControllerState& s) { return !s.held.empty(); }),
    vmstate::subsection(kErrorLogState,
                        [](const ControllerState& s) { return !s.error_log.empty(); }));

// ---- the controller's description and hooks ---------------------------------------------------

struct Advertised;  // below: one thing the controller advertises

// A friend of Controller: the description reaches its private state.
struct ControllerMigration {
  static Status pre_save(Controller& ctrl);
  static Status pre_load(Controller& ctrl);
  static Status post_load(Controller& ctrl, int version);
  // Every rule a loaded state must satisfy; errors name the field and the values.
  static Status validate(const Controller& ctrl);
  // The first CQ that calls for the INTx level (Controller::update_intx's rule: MSI-X off,
  // interrupts enabled, entries the host has not consumed, vector not masked by INTMS).
  static std::optional<size_t> intx_source(const Controller& ctrl);
  // What the created controller advertises without running a command (see
  // advertised_capabilities below).
  static std::vector<Advertised> advertised(const Controller& ctrl);

  static Status fill_namespaces(const Controller& ctrl, NamespaceTable& table);
  static Status apply_namespaces(Controller& ctrl, const NamespaceTable& table);
  static Status fill_clock(const Controller& ctrl, MigratedClock& clock);
  static Status apply_clock(Controller& ctrl, const MigratedClock& clock);

  static constexpr auto vmstate() {
    return vmstate::describe<Controller>(
        "nvme",
        {.version = 1, .pre_save = &pre_save, .pre_load = &pre_load, .post_load = &post_load},
        vmstate::field("config", &Controller::config_, kControllerConfigState),
        vmstate::with_tmp<Controller>("namespaces", kNamespaceTableState, &fill_namespaces,
                                      &apply_namespaces),
        pci::PciDevice::vmstate_pci_device(), pci::PciDevice::vmstate_msix(),
        vmstate::field("state", &Controller::state_, kControllerStateState),
        vmstate::with_tmp<Controller>("clock", kMigratedClockState, &fill_clock, &apply_clock));
  }
};

inline constexpr auto kControllerState = ControllerMigration::vmstate();

// ---- allowlist ----------------------------------------------------------------------------------

enum class MigrationItemKind : uint8_t {
  kControllerProperty,  // -device nvme,<name>=...
  kNamespaceProperty,   // -device nvme-ns,<name>=...
  kCapability,          // PCI capabilities and NVMe CAP/identify capabilities
  kFeature,             // optional NVMe features and commands
};
std::string_view migration_item_kind_name(MigrationItemKind kind);

// One line of the table (the engine is hw/allowlist/migration_allowlist.h; the rows are
// controller_migration.cc's): migratable (possibly up to a limit on the property's value)
// or blocking, with the reason a blocker message gives.
using MigrationItem = allowlist::Row<MigrationItemKind>;

// Every property, capability and optional feature of the controller and its namespaces.
std::span<const MigrationItem> migration_allowlist();
const MigrationItem* find_migration_item(MigrationItemKind kind, std::string_view name);

// Why a -device nvme / nvme-ns with these options cannot migrate: one reason per blocking
// or unclassified item it uses (empty: it can migrate). `where` prefixes each reason.
std::vector<std::string> migration_blockers(MigrationItemKind kind, const Opts& opts,
                                            std::string_view where);

// ---- how capability and feature rows are found on a device ------------------------------------

// One thing a controller advertises, as a host discovers it.
enum class ProbeKind : uint8_t {
  kPciCapability,          // capability ID in the list at config 0x34
  kPciExtendedCapability,  // PCI Express extended capability ID (list at config 0x100)
  kPciInterruptPin,        // the function has an INTx pin (id 0)
  kCapRegisterBit,         // a set bit of the NVMe CAP register that announces an option
  kIdentifyBit,            // Identify Controller: id = identify_bit(byte offset, bit)
  kFeature,                // Get Features (SEL 3) answers this Feature Identifier
  kLogPage,                // Get Log Page answers this Log Identifier
  kAdminCommand,           // Commands Supported and Effects: this admin opcode is supported
  kIoCommand,              // ... this NVM command set opcode is supported
};

constexpr uint32_t identify_bit(uint32_t byte_offset, uint32_t bit) {
  return byte_offset << 8 | bit;
}

struct Advertised {
  ProbeKind kind;
  uint32_t id;
  bool operator==(const Advertised&) const = default;
  auto operator<=>(const Advertised&) const = default;
};

// An Identify Controller field that announces optional features: bit by bit, or (for
// counts and sizes) by being nonzero, which is then probe bit 0.
struct IdentifyFeatureField {
  std::string_view name;
  uint16_t offset;
  uint8_t bytes;
  bool nonzero_only;
};
std::span<const IdentifyFeatureField> identify_feature_fields();
// The advertised items an Identify Controller data structure announces.
std::vector<Advertised> identify_advertised(std::span<const uint8_t> identify);

// Which allowlist row (a capability or feature) covers an advertised item; null when none
// does. "PCI capability 0x11", "Identify Controller OACS bit 8", ... for messages.
const MigrationItem* classify_advertised(ProbeKind kind, uint32_t id);
std::string describe_advertised(ProbeKind kind, uint32_t id);

// What a created controller advertises without running a command: its PCI capabilities,
// extended capabilities and interrupt pin, the optional CAP bits, and the Identify
// Controller bits of identify_feature_fields(). Features, log pages and commands are
// answered by commands; the allowlist test asks the controller for those.
std::vector<Advertised> advertised_capabilities(const Controller& ctrl);
// Why this controller cannot migrate because of something it advertises (a blocking or
// unclassified capability or feature); empty when it can. `where` prefixes each reason.
std::vector<std::string> migration_blockers(const Controller& ctrl, std::string_view where);

}  // namespace ferry::nvme
