// virtio-net-pci's migration allowlist (the engine is hw/allowlist/migration_allowlist.h):
// every -device virtio-net-pci property and every netdev backend type Ferry builds,
// classified as migratable (with what carries or re-creates it) or blocking (with the
// reason the blocker message gives). A property or backend type without a row blocks
// migration when used; the unit test walks the schema and the netdev types so a new one
// without a row fails it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/qemu_opts.h"
#include "hw/allowlist/migration_allowlist.h"

namespace ferry::virtio::net {

enum class NetMigrationItemKind : uint8_t {
  kProperty,       // -device virtio-net-pci,<name>=...
  kNetdevBackend,  // the type of the -netdev the device's netdev= names
};
std::string_view net_migration_item_kind_name(NetMigrationItemKind kind);

using NetMigrationItem = allowlist::Row<NetMigrationItemKind>;

std::span<const NetMigrationItem> net_migration_allowlist();
const NetMigrationItem* find_net_migration_item(NetMigrationItemKind kind, std::string_view name);

// Why a -device virtio-net-pci with these options cannot migrate: one reason per blocking
// or unclassified property it was given (empty: it can). `where` prefixes each reason.
std::vector<std::string> net_property_blockers(const Opts& opts, std::string_view where);
// Why its backend, of QEMU netdev type `type` ("stream", "tap", ...), cannot migrate
// (empty: it can).
std::vector<std::string> netdev_backend_blockers(std::string_view type, std::string_view where);

}  // namespace ferry::virtio::net
