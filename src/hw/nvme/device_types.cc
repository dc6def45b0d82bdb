#include "hw/nvme/device_types.h"

#include <fmt/format.h>

#include "hw/nvme/controller.h"
#include "hw/nvme/controller_migration.h"
#include "hw/nvme/nvme_properties.h"

namespace ferry::nvme {

namespace {

Status create_controller(hw::DeviceContext& context, const hw::DeviceOptions& options) {
  auto config = controller_config(options.opts);
  if (!config.ok()) return config.take_status();  // already names -device nvme
  block::BlockBackend* drive = nullptr;
  if (!config->drive.empty()) {
    auto claimed = context.backends.claim_drive(options, config->drive);
    if (!claimed.ok()) return claimed.take_status();
    drive = *claimed;
  }
  auto dev = Controller::create(*config, drive, {context.loop, context.memory, context.clock});
  if (!dev.ok()) return dev.take_status().prepend_message("-device nvme");
  Controller& controller = **dev;
  auto plugged = context.slot.plug_pci(options, std::move(dev).value());
  if (!plugged.ok()) return plugged.take_status();
  // The controller's whole state migrates (controller_migration.h); a property the
  // allowlist classifies as blocking (or does not classify) blocks migration instead.
  FERRY_RETURN_IF_ERROR(context.migration.add_pci_section(kControllerState, controller));
  std::string where = fmt::format("nvme at {}", controller.address()->to_bdf());
  std::vector<std::string> reasons =
      migration_blockers(MigrationItemKind::kControllerProperty, options.opts, where);
  // And what the created controller advertises (PCI capabilities, CAP, identify bits).
  for (std::string& reason : migration_blockers(controller, where))
    reasons.push_back(std::move(reason));
  for (std::string& reason : reasons)
    FERRY_RETURN_IF_ERROR(context.migration.add_blocker(std::move(reason)));
  return {};
}

Status create_namespace(hw::DeviceContext& context, const hw::DeviceOptions& options) {
  // The slot's parent is the last device of type "nvme" (namespace_type() below), if any.
  auto* controller = dynamic_cast<Controller*>(context.slot.parent());
  if (!controller)
    return Error(ErrorCode::kInvalidArgument,
                 "-device nvme-ns: no nvme controller before it to attach to");
  auto ns = namespace_config(options.opts);
  if (!ns.ok()) return ns.take_status();  // already names -device nvme-ns
  auto drive = context.backends.claim_drive(options, ns->drive);
  if (!drive.ok()) return drive.take_status();
  FERRY_RETURN_IF_ERROR(controller->attach_namespace(ns->nsid, **drive, ns->logical_block_size)
                            .prepend_message("-device nvme-ns"));
  // The namespace travels inside its controller's section; the allowlist decides whether
  // each property it was given can.
  std::string where = fmt::format("nvme-ns on nvme at {}", controller->address()->to_bdf());
  for (std::string& reason :
       migration_blockers(MigrationItemKind::kNamespaceProperty, options.opts, where))
    FERRY_RETURN_IF_ERROR(context.migration.add_blocker(std::move(reason)));
  return {};
}

}  // namespace

const hw::DeviceType& controller_type() {
  static const hw::DeviceType type{
      .name = "nvme",
      .category = hw::DeviceCategory::kStorage,
      .description = "Non-Volatile Memory Express",
      .schema = controller_schema,
      .bus_name = "PCI",
      .create = create_controller,
  };
  return type;
}

const hw::DeviceType& namespace_type() {
  static const hw::DeviceType type{
      .name = "nvme-ns",
      .category = hw::DeviceCategory::kStorage,
      .description = "Virtual NVMe namespace (attached to the last nvme before it)",
      .schema = namespace_schema,
      .parent_type = "nvme",
      .bus_name = "nvme-bus",
      .create = create_namespace,
  };
  return type;
}

}  // namespace ferry::nvme
