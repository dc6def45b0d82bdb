// A migration's status, with QEMU's MigrationStatus names (the ones Ferry reaches). Code
// compares the enum; the QMP string appears only where QMP sees it (query-migrate, the
// MIGRATION event).
#pragma once

#include <iosfwd>
#include <string_view>

namespace ferry::migration {

enum class MigrationStatus {
  kNone,
  kSetup,
  kActive,
  kDevice,      // stop-and-copy: the VM is stopped and its devices are saved
  kCompleted,
  kFailed,
  kCancelling,
  kCancelled,
};

// QEMU's name: "none", "setup", "active", "device", "completed", "failed", "cancelling",
// "cancelled".
std::string_view qmp_name(MigrationStatus status);
// Nothing follows: completed, failed or cancelled.
bool is_final(MigrationStatus status);
// The QMP name, so test failures read as QEMU's.
std::ostream& operator<<(std::ostream& out, MigrationStatus status);

}  // namespace ferry::migration
