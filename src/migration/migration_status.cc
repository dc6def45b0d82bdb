#include "migration/migration_status.h"

#include <ostream>

namespace ferry::migration {

std::string_view qmp_name(MigrationStatus status) {
  switch (status) {
    case MigrationStatus::kNone: return "none";
    case MigrationStatus::kSetup: return "setup";
    case MigrationStatus::kActive: return "active";
    case MigrationStatus::kDevice: return "device";
    case MigrationStatus::kCompleted: return "completed";
    case MigrationStatus::kFailed: return "failed";
    case MigrationStatus::kCancelling: return "cancelling";
    case MigrationStatus::kCancelled: return "cancelled";
  }
  return "unknown";
}

bool is_final(MigrationStatus status) {
  return status == MigrationStatus::kCompleted || status == MigrationStatus::kFailed ||
         status == MigrationStatus::kCancelled;
}

std::ostream& operator<<(std::ostream& out, MigrationStatus status) {
  return out << qmp_name(status);
}

}  // namespace ferry::migration
