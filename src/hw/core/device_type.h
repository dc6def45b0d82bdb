// A device type: what `-device NAME` builds. A device model declares its type next to its
// code (hw/<device>/) — QEMU-style name, category and description for `-device help`, the
// property schema `-device NAME,help` prints and the command line checks, what it plugs
// into, and a factory building it from a DeviceContext plus its parsed options. The
// machine only looks types up by name (vm/device_types.cc lists them, one line each).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/event_loop.h"
#include "base/qemu_opts.h"
#include "base/status.h"
#include "block/block_backend.h"
#include "hw/core/nic.h"
#include "hw/pci/pci_device.h"
#include "memory/address_space.h"
#include "net/net_backend.h"
#include "vmstate/binding.h"

namespace ferry::hw {

// The groups `-device help` prints, in QEMU's order (its DeviceCategory).
enum class DeviceCategory { kBridge, kUsb, kStorage, kNetwork, kInput, kDisplay, kSound, kMisc };

// QEMU's heading for a category: "Storage" prints as "Storage devices:".
std::string_view device_category_name(DeviceCategory category);

// One -device on the command line, its properties checked against the type's schema.
struct DeviceOptions {
  std::string driver;
  std::string id;
  std::string addr;  // QEMU's SLOT[.FN]; empty: first free slot
  Opts opts;
};

// The backends a device may use: drives and network backends. A device claims a drive once
// it decides to use it: no other device may then, and the image is locked unless an incoming
// migration still owns it. A NIC claims its netdev the same way (one NIC per netdev).
class Backends {
 public:
  virtual ~Backends() = default;
  // Errors start "-device DRIVER:" (the device's driver name) and name the drive.
  virtual Result<block::BlockBackend*> claim_drive(const DeviceOptions& device,
                                                   std::string_view drive_id) = 0;
  // Errors start "-device DRIVER:" and are QEMU's: "Property 'TYPE.netdev' can't find value
  // 'x'", "... can't take value 'x', it's in use". `property_owner` is the QOM type QEMU
  // names there (virtio-net-pci's netdev property belongs to its "virtio-net-device").
  virtual Result<net::NetBackend*> claim_netdev(const DeviceOptions& device,
                                                std::string_view netdev_id,
                                                std::string_view property_owner) = 0;
};

// Where a device's migration story goes: its state section, and the reasons it cannot
// migrate. -only-migratable is handled here, once for every device type.
class MigrationRegistrar {
 public:
  virtual ~MigrationRegistrar() = default;
  // The device's section, named after its PCI address ("0000:00:03.0/nvme"); the device
  // must be plugged in.
  virtual Status add_pci_section(pci::PciDevice& device,
                                 std::unique_ptr<vmstate::StateBinding> state) = 0;
  // Migration is blocked for `reason`; with -only-migratable this is an error instead.
  virtual Status add_blocker(std::string reason) = 0;

  template <typename Desc>
  Status add_pci_section(const Desc& desc, typename Desc::Object& device) {
    return add_pci_section(device, vmstate::bind(desc, device));
  }
};

// Where a device plugs in.
class DeviceSlot {
 public:
  virtual ~DeviceSlot() = default;
  // Plugs a PCI function in at the -device addr= (the first free slot without one) and
  // records its id; errors name "-device DRIVER".
  virtual Result<pci::PciDevice*> plug_pci(const DeviceOptions& device,
                                           std::unique_ptr<pci::PciDevice> function) = 0;
  // For a type that plugs into a parent device: the last device of the parent type created
  // before this one (as nvme-ns attaches to the last nvme); null when there is none.
  virtual pci::PciDevice* parent() = 0;
};

// QMP events a device sends (QEMU's qapi_event_send_*); the machine forwards them to its
// monitors.
class DeviceEvents {
 public:
  virtual ~DeviceEvents() = default;
  virtual void emit(std::string_view name, const nlohmann::ordered_json& data) = 0;
};

// What a device may use, and nothing more.
struct DeviceContext {
  EventLoop& loop;
  const Clock& clock;            // the VM clock: virtual under -accel qtest
  memory::AddressSpace& memory;  // guest memory, for the device's DMA
  Backends& backends;
  MigrationRegistrar& migration;
  DeviceSlot& slot;
  DeviceEvents& events;
  NicRegistrar& nics;            // network cards register here (set_link, announce-self)
};

struct DeviceType {
  std::string_view name;  // QEMU's type name: "nvme"
  DeviceCategory category = DeviceCategory::kMisc;
  std::string_view description;
  const OptSchema& (*schema)() = nullptr;
  // Empty: a PCI function on the PCI bus. Else the type name of the parent device.
  std::string_view parent_type;
  // The bus name `-device help` prints ("PCI", "nvme-bus").
  std::string_view bus_name;
  Status (*create)(DeviceContext& context, const DeviceOptions& options) = nullptr;

  bool on_pci_bus() const { return parent_type.empty(); }
};

}  // namespace ferry::hw
