#include "hw/virtio/net/virtio_net_allowlist.h"

namespace ferry::virtio::net {

namespace {

using K = NetMigrationItemKind;

// "section" below is the device's section (virtio_net_migration.h); "alike" means the
// destination is started with the same option, as QEMU requires.
constexpr NetMigrationItem kNetAllowlist[] = {
    // -device virtio-net-pci: identity and placement
    {K::kProperty, "driver", true, "device model name"},
    {K::kProperty, "id", true, "device name (local)"},
    {K::kProperty, "bus", true, "ignored"},
    {K::kProperty, "addr", true, "PCI address: part of the section idstr"},
    {K::kProperty, "mac", true, "section: the MAC the guest last set"},
    {K::kProperty, "netdev", true, "the destination opens its own backend (netdev backend rows)"},
    {K::kProperty, "vectors", true, "MSI-X table in the section; vectors checked against it"},
    // configuration space
    {K::kProperty, "host_mtu", true, "configuration (MTU feature): destination alike"},
    {K::kProperty, "speed", true, "configuration (SPEED_DUPLEX): destination alike"},
    {K::kProperty, "duplex", true, "configuration (SPEED_DUPLEX): destination alike"},
    {K::kProperty, "failover", false,
     "failover pairing (unplugging the primary device before migration) is not implemented"},
    {K::kProperty, "rx_queue_size", true, "queue sizes in the section, checked on load"},
    {K::kProperty, "tx_queue_size", true, "queue sizes in the section, checked on load"},
    // feature properties: what the device offers; the negotiated set is in the section and
    // checked against what the destination offers
    {K::kProperty, "csum", true, "features in the section"},
    {K::kProperty, "guest_csum", true, "features in the section; offloads in the section"},
    {K::kProperty, "gso", true, "features in the section"},
    {K::kProperty, "guest_tso4", true, "features in the section; offloads in the section"},
    {K::kProperty, "guest_tso6", true, "features in the section; offloads in the section"},
    {K::kProperty, "guest_ecn", true, "features in the section; offloads in the section"},
    {K::kProperty, "guest_ufo", true, "features in the section; has_ufo checked on load"},
    {K::kProperty, "guest_announce", true,
     "features in the section; the destination asks the guest to announce"},
    {K::kProperty, "host_tso4", true, "features in the section"},
    {K::kProperty, "host_tso6", true, "features in the section"},
    {K::kProperty, "host_ecn", true, "features in the section"},
    {K::kProperty, "host_ufo", true, "features in the section; has_ufo checked on load"},
    {K::kProperty, "mrg_rxbuf", true, "section: mergeable_rx_bufs, checked against features"},
    {K::kProperty, "status", true, "section: link status and ANNOUNCE"},
    {K::kProperty, "ctrl_vq", true, "control queue in the section"},
    {K::kProperty, "ctrl_rx", true, "section: promisc, allmulti and the extra modes"},
    {K::kProperty, "ctrl_vlan", true, "section: the VLAN table"},
    {K::kProperty, "ctrl_rx_extra", true, "section: alluni, nomulti, nouni, nobcast"},
    {K::kProperty, "ctrl_mac_addr", true, "section: the MAC"},
    {K::kProperty, "ctrl_guest_offloads", true, "section: curr_guest_offloads"},
    {K::kProperty, "mq", true, "section: max and current queue pairs, checked on load"},
    {K::kProperty, "rss", true, "section: subsection virtio-net-device/rss, checked on load"},
    {K::kProperty, "hash", true, "section: rss/populate_hash and hash types, checked on load"},
    {K::kProperty, "guest_rsc_ext", true,
     "RSC state follows the negotiated features; no segment is held across a stop"},
    {K::kProperty, "indirect_desc", true, "features in the section; rings live in RAM"},
    {K::kProperty, "event_idx", true, "features in the section; event indexes live in RAM"},
    {K::kProperty, "notify_on_empty", true, "features in the section"},
    {K::kProperty, "any_layout", true, "features in the section"},
    {K::kProperty, "iommu_platform", false,
     "ACCESS_PLATFORM: Ferry has no vIOMMU whose translations would migrate with it"},
    {K::kProperty, "packed", true, "section: subsection packed_virtqueues"},
    {K::kProperty, "queue_reset", true,
     "a reset queue is a disabled one in the proxy's queue state (extra_state)"},
    // netdev backends: no backend state is in the stream; the destination's own -netdev
    // with the same id takes over (frames in flight are lost, as in QEMU)
    {K::kNetdevBackend, "hubport", true, "local hub: the destination builds its own"},
    {K::kNetdevBackend, "stream", true,
     "the destination listens or connects on its own; a client reconnects (reconnect=)"},
    {K::kNetdevBackend, "socket", true,
     "the destination opens its own socket (listen/connect peers connect again; mcast/udp "
     "need nothing)"},
    {K::kNetdevBackend, "tap", true,
     "the destination opens its own tap; vnet_hdr=off only, so no offload state on the host"},
};

// No probes: every row is a configuration choice, none is discovered on a device.
enum class NetNoProbe : uint8_t {};
constexpr bool net_row_discoverable(NetMigrationItemKind) { return false; }

constexpr allowlist::Table<NetMigrationItemKind, NetNoProbe> kNetTable{
    kNetAllowlist, {}, &net_migration_item_kind_name, &net_row_discoverable};

}  // namespace

std::string_view net_migration_item_kind_name(NetMigrationItemKind kind) {
  switch (kind) {
    case K::kProperty: return "virtio-net-pci property";
    case K::kNetdevBackend: return "netdev backend";
  }
  return "item";
}

std::span<const NetMigrationItem> net_migration_allowlist() { return kNetAllowlist; }

const NetMigrationItem* find_net_migration_item(NetMigrationItemKind kind,
                                                std::string_view name) {
  return kNetTable.find(kind, name);
}

std::vector<std::string> net_property_blockers(const Opts& opts, std::string_view where) {
  return kNetTable.property_blockers(K::kProperty, opts, where);
}

std::vector<std::string> netdev_backend_blockers(std::string_view type, std::string_view where) {
  const NetMigrationItem* row = find_net_migration_item(K::kNetdevBackend, type);
  const std::string_view kind = net_migration_item_kind_name(K::kNetdevBackend);
  if (row == nullptr) return {allowlist::detail::unclassified_property(where, kind, type)};
  if (!row->migratable) return {allowlist::detail::blocking_property(where, kind, type, row->note)};
  return {};
}

}  // namespace ferry::virtio::net
