#include "vm/backend_registry.h"

#include <fmt/format.h>

#include "base/log.h"
#include "vm/qmp_commands.h"

namespace ferry::vm {

Status BackendRegistry::open(const std::vector<block::DriveConfig>& drives,
                             const std::vector<DriveFault>& faults, IoErrorListener listener) {
  for (const block::DriveConfig& drive : drives) {
    if (drives_.contains(drive.id))
      return Error(ErrorCode::kInvalidArgument, "-drive: duplicate id '{}'", drive.id);
    // Inactive until a device claims it (QEMU's locks are its users' permissions).
    auto backend = block::BlockBackend::open(loop_, drive, {}, block::Activation::kInactive);
    // The backend's errors already start with "-drive id=ID"; only add it where missing.
    if (!backend.ok()) {
      Status st = backend.take_status();
      if (!st.message().starts_with("-drive")) st.prepend_message("-drive id=" + drive.id);
      return st;
    }
    (*backend)->set_io_error_listener(listener);
    drives_.emplace(drive.id, std::move(backend).value());
  }
  for (const DriveFault& fault : faults) {
    block::BlockBackend* drive = find_drive(fault.drive);
    if (!drive)
      return Error(ErrorCode::kInvalidArgument, "-blkdebug: drive '{}' is not a -drive id",
                   fault.drive);
    drive->faults().add(fault.rule);
  }
  return {};
}

block::BlockBackend* BackendRegistry::find_drive(std::string_view id) const {
  auto it = drives_.find(id);
  return it == drives_.end() ? nullptr : it->second.get();
}

Status BackendRegistry::open_netdevs(const std::vector<net::NetdevConfig>& netdevs,
                                     EventListener events) {
  netdev_events_ = std::move(events);
  for (const net::NetdevConfig& config : netdevs) {
    if (netdevs_.contains(config.id))
      return Error(ErrorCode::kInvalidArgument, "-netdev {}: Duplicate ID '{}' for netdev",
                   config.text, config.id);
    auto backend = net::create_netdev(loop_, config, this, hubs_);
    if (!backend.ok()) return backend.take_status();
    netdevs_.emplace(config.id, std::move(backend).value());
  }
  return {};
}

net::NetBackend* BackendRegistry::find_netdev(std::string_view id) const {
  auto it = netdevs_.find(id);
  return it == netdevs_.end() ? nullptr : it->second.get();
}

void BackendRegistry::warn_unclaimed_netdevs() const {
  for (const auto& [id, backend] : netdevs_)
    if (!netdev_users_.contains(id)) log(LogLevel::kWarn, "netdev {} has no peer", id);
}

Result<net::NetBackend*> BackendRegistry::claim_netdev(const hw::DeviceOptions& device,
                                                       std::string_view id,
                                                       std::string_view property_owner) {
  net::NetBackend* netdev = find_netdev(id);
  if (!netdev)
    return Error(ErrorCode::kInvalidArgument, "-device {}: Property '{}.netdev' can't find value '{}'",
                 device.driver, property_owner, id);
  std::string user = device.id.empty() ? device.driver : device.id;
  auto [it, fresh] = netdev_users_.try_emplace(std::string(id), user);
  if (!fresh)
    return Error(ErrorCode::kInvalidArgument,
                 "-device {}: Property '{}.netdev' can't take value '{}', it's in use",
                 device.driver, property_owner, id);
  return netdev;
}

void BackendRegistry::connected(std::string_view netdev_id, const net::SocketAddress& address) {
  if (netdev_events_)
    netdev_events_("NETDEV_STREAM_CONNECTED",
                   Json{{"netdev-id", netdev_id}, {"addr", socket_address_json(address)}});
}

void BackendRegistry::disconnected(std::string_view netdev_id) {
  if (netdev_events_) netdev_events_("NETDEV_STREAM_DISCONNECTED", Json{{"netdev-id", netdev_id}});
}

Json socket_address_json(const net::SocketAddress& address) {
  if (address.type == net::SocketAddress::Type::kUnix)
    return Json{{"type", "unix"}, {"path", address.path}};
  Json out{{"type", "inet"}, {"host", address.host}, {"port", address.port}};
  if (address.ip_version == 4) out["ipv4"] = true;
  if (address.ip_version == 6) out["ipv6"] = true;
  return out;
}

Result<block::BlockBackend*> BackendRegistry::claim_drive(const hw::DeviceOptions& device,
                                                          std::string_view id) {
  block::BlockBackend* drive = find_drive(id);
  if (!drive)
    return Error(ErrorCode::kInvalidArgument, "-device {}: drive '{}' not found", device.driver, id);
  std::string user = device.id.empty() ? device.driver : device.id;
  auto [it, fresh] = drive_users_.try_emplace(std::string(id), user);
  if (!fresh)
    return Error(ErrorCode::kInvalidArgument,
                 "-device {}: drive '{}' is already in use by '{}'", device.driver, id,
                 it->second);
  // A destination's drives stay unlocked: the source still writes the image.
  if (!incoming_) {
    Status locked = drive->activate();
    if (!locked.ok()) {
      drive_users_.erase(it);
      return locked.prepend_message("-device " + device.driver);
    }
  }
  return drive;
}

Status BackendRegistry::activate_claimed() {
  for (const auto& [id, user] : drive_users_) {
    block::BlockBackend* drive = find_drive(id);
    if (drive) FERRY_RETURN_IF_ERROR(drive->activate().prepend_message("drive " + id));
  }
  return {};
}

Status BackendRegistry::inactivate_all() {
  for (const auto& [id, drive] : drives_)
    FERRY_RETURN_IF_ERROR(drive->inactivate().prepend_message("drive " + id));
  return {};
}

void BackendRegistry::reset_io_status() {
  for (const auto& [id, drive] : drives_) drive->reset_io_status();
}

// The drive a QMP command names, with QEMU's wording when there is none.
Result<block::BlockBackend*> BackendRegistry::named_drive(std::string_view id) const {
  block::BlockBackend* drive = find_drive(id);
  if (!drive) return Error(ErrorCode::kInvalidArgument, "Device '{}' not found", id);
  return drive;
}

// The x-blkdebug-* commands that take nothing but {"drive": ID}.
Result<block::BlockBackend*> BackendRegistry::only_drive_argument(const Json& args) const {
  QmpArgs a(args);
  auto drive_id = a.string("drive");
  if (!drive_id.ok()) return drive_id.take_status();
  FERRY_RETURN_IF_ERROR(a.finish());
  return named_drive(*drive_id);
}

Status BackendRegistry::register_qmp_commands(QmpServer& qmp) {
  FERRY_RETURN_IF_ERROR(qmp.add_command("query-block", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    Json drives = Json::array();
    for (const auto& [id, drive] : drives_) {
      const block::DriveConfig& c = drive->config();
      drives.push_back({{"device", id},
                        {"locked", false},
                        {"removable", false},
                        {"inserted",
                         {{"file", c.file},
                          {"ro", drive->read_only()},
                          {"drv", c.format},
                          {"image", {{"virtual-size", drive->size_bytes()}}},
                          {"aio", std::string(drive->engine_name())}}},
                        {"io-status", std::string(block::io_status_name(drive->io_status()))}});
    }
    return drives;
  }));
  // Fault injection for tests: the -blkdebug rule syntax, as QMP arguments.
  FERRY_RETURN_IF_ERROR(qmp.add_command("x-blkdebug-inject", [this](const Json& args) -> Result<Json> {
    QmpArgs a(args);
    auto drive_id = a.string("drive");
    if (!drive_id.ok()) return drive_id.take_status();
    std::string text;
    for (const char* key : {"op", "errno"}) {
      auto v = a.optional_string(key);
      if (!v.ok()) return v.take_status();
      if (*v) text += fmt::format("{}{}={}", text.empty() ? "" : ",", key, **v);
    }
    for (const char* key : {"offset", "length", "after", "delay-ms"}) {
      auto v = a.optional_integer(key);
      if (!v.ok()) return v.take_status();
      if (*v) text += fmt::format("{}{}={}", text.empty() ? "" : ",", key, **v);
    }
    for (const char* key : {"once", "hold"}) {
      auto v = a.optional_boolean(key);
      if (!v.ok()) return v.take_status();
      if (*v) text += fmt::format("{}{}={}", text.empty() ? "" : ",", key, **v ? "on" : "off");
    }
    FERRY_RETURN_IF_ERROR(a.finish());
    auto drive = named_drive(*drive_id);
    if (!drive.ok()) return drive.take_status();
    auto rule = block::parse_fault_rule(text);
    if (!rule.ok()) return rule.take_status();
    (*drive)->faults().add(*rule);
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("x-blkdebug-clear", [this](const Json& args) -> Result<Json> {
    auto found = only_drive_argument(args);
    if (!found.ok()) return found.take_status();
    block::BlockBackend* drive = *found;
    drive->faults().clear();
    drive->release_held();  // nothing would release them once their rule is gone
    return Json::object();
  }));
  // Lets the requests a hold=on rule parked go on (the rules stay: later requests are held).
  FERRY_RETURN_IF_ERROR(qmp.add_command("x-blkdebug-release", [this](const Json& args) -> Result<Json> {
    auto found = only_drive_argument(args);
    if (!found.ok()) return found.take_status();
    block::BlockBackend* drive = *found;
    return Json{{"released", drive->release_held()}};
  }));
  // What a test waits for before it acts: the active rules and how many requests are held.
  FERRY_RETURN_IF_ERROR(qmp.add_command("x-blkdebug-query", [this](const Json& args) -> Result<Json> {
    auto found = only_drive_argument(args);
    if (!found.ok()) return found.take_status();
    block::BlockBackend* drive = *found;
    Json rules = Json::array();
    for (const block::FaultRule& rule : drive->faults().rules())
      rules.push_back(block::describe_fault_rule(rule));
    return Json{{"held", drive->held()}, {"in-flight", drive->in_flight()}, {"rules", rules}};
  }));
  return {};
}

}  // namespace ferry::vm
