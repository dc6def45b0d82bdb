#include "vm/net_control.h"

#include <fmt/format.h>

#include <algorithm>

#include "vm/qmp_commands.h"

namespace ferry::vm {

namespace {
constexpr int64_t kAnnounceNsPerMs = 1'000'000;

// announce-self's four numbers: QEMU takes any int and announces forever on negative
// rounds; Ferry refuses a negative value instead.
Result<int64_t> announce_number(QmpArgs& args, std::string_view name) {
  auto value = args.integer(name);
  if (!value.ok()) return value.take_status();
  if (*value < 0)
    return Error(ErrorCode::kInvalidArgument, "Parameter '{}' expects a value of 0 or more, found {}",
                 name, *value);
  return *value;
}
}  // namespace

NetControl::~NetControl() {
  for (const auto& [key, run] : runs_) loop_.cancel_timer(run.timer);
}

std::string NetControl::add_nic(const hw::DeviceOptions& device, hw::Nic& nic,
                                net::NetBackend* peer) {
  std::string name = device.id;
  if (name.empty()) {
    // QEMU's assign_name: the model and how many net clients of that model exist already.
    const auto same = std::count_if(nics_.begin(), nics_.end(),
                                    [&](const NicEntry& e) { return e.driver == device.driver; });
    name = fmt::format("{}.{}", device.driver, same);
  }
  nics_.push_back({name, device.driver, &nic, peer});
  return name;
}

Status NetControl::set_link(std::string_view name, bool up) {
  if (net::NetBackend* netdev = backends_.find_netdev(name)) {
    netdev->set_link_down(!up);
    // Its peer, when that is a NIC, follows (QEMU changes a NIC peer, never a backend one).
    for (NicEntry& entry : nics_)
      if (entry.peer == netdev) entry.nic->set_link(up);
    return {};
  }
  for (NicEntry& entry : nics_) {
    if (entry.name != name) continue;
    entry.nic->set_link(up);
    return {};
  }
  return Error(ErrorCode::kInvalidArgument, "Device '{}' not found", name);
}

Result<Json> NetControl::query_rx_filter(const std::optional<std::string>& name) {
  // QEMU walks its net clients, netdevs first: a netdev's name is not a NIC's.
  if (name && backends_.find_netdev(*name) != nullptr)
    return Error(ErrorCode::kInvalidArgument, "net client({}) isn't a NIC", *name);
  Json list = Json::array();
  for (NicEntry& entry : nics_) {
    if (name && entry.name != *name) continue;
    std::optional<nlohmann::ordered_json> info = entry.nic->query_rx_filter(entry.name);
    if (info) {
      list.push_back(std::move(*info));
    } else if (name) {
      return Error(ErrorCode::kInvalidArgument,
                   "net client({}) doesn't support rx-filter querying", *name);
    }
    if (name) break;
  }
  if (name && list.empty())
    return Error(ErrorCode::kInvalidArgument, "invalid net client name: {}", *name);
  return list;
}

void NetControl::announce_self(const std::string& id, const net::AnnounceParameters& params,
                               std::optional<std::vector<std::string>> interfaces) {
  start(RunKey(id), params, std::move(interfaces));
}

void NetControl::announce_after_incoming(const net::AnnounceParameters& params) {
  // The NICs' own rounds first, as QEMU's device post_load comes before its announce.
  for (NicEntry& entry : nics_) entry.nic->incoming_migration_done(params);
  start(std::nullopt, params, std::nullopt);
}

int64_t NetControl::rounds_pending(const std::optional<std::string>& id) const {
  auto it = runs_.find(id);
  return it == runs_.end() ? 0 : it->second.rounds_left;
}

void NetControl::cancel(const RunKey& key) {
  auto it = runs_.find(key);
  if (it == runs_.end()) return;
  loop_.cancel_timer(it->second.timer);
  runs_.erase(it);
}

void NetControl::start(const RunKey& key, const net::AnnounceParameters& params,
                       std::optional<std::vector<std::string>> interfaces) {
  cancel(key);  // what was left of an earlier run under this key
  if (params.rounds <= 0) return;
  runs_[key] = AnnounceRun{.params = params, .interfaces = std::move(interfaces),
                           .rounds_left = params.rounds};
  round(key);
}

void NetControl::round(const RunKey& key) {
  auto it = runs_.find(key);
  if (it == runs_.end()) return;
  AnnounceRun& run = it->second;
  for (NicEntry& entry : nics_) {
    if (run.interfaces &&
        std::find(run.interfaces->begin(), run.interfaces->end(), entry.name) ==
            run.interfaces->end())
      continue;
    const auto frame = net::rarp_announce_frame(entry.nic->current_mac());
    entry.nic->send_raw(frame);
    entry.nic->announce();
  }
  if (--run.rounds_left <= 0) {
    runs_.erase(it);
    return;
  }
  const int64_t delay_ms = net::announce_delay_ms(run.params, run.rounds_left);
  // Saturated: a delay beyond the clock's range never comes (QEMU's would wrap).
  const int64_t now = clock_.now_ns();
  const int64_t delay_ns = delay_ms > (INT64_MAX - now) / kAnnounceNsPerMs ? INT64_MAX - now
                                                                   : delay_ms * kAnnounceNsPerMs;
  run.timer = loop_.add_timer(clock_, now + delay_ns, [this, key] { round(key); });
}

Status NetControl::register_qmp_commands(QmpServer& qmp) {
  FERRY_RETURN_IF_ERROR(qmp.add_command(
      "set_link", QmpClassedHandler([this](const Json& args, std::string& error_class) -> Result<Json> {
        QmpArgs a(args);
        auto name = a.string("name");
        if (!name.ok()) return name.take_status();
        auto up = a.boolean("up");
        if (!up.ok()) return up.take_status();
        FERRY_RETURN_IF_ERROR(a.finish());
        Status linked = set_link(*name, *up);
        if (!linked.ok()) {
          error_class = "DeviceNotFound";  // the only error set_link has (QEMU's class)
          return linked;
        }
        return Json::object();
      })));
  FERRY_RETURN_IF_ERROR(qmp.add_command("query-rx-filter", [this](const Json& args) -> Result<Json> {
    QmpArgs a(args);
    auto name = a.optional_string("name");
    if (!name.ok()) return name.take_status();
    FERRY_RETURN_IF_ERROR(a.finish());
    return query_rx_filter(*name);
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("announce-self", [this](const Json& args) -> Result<Json> {
    QmpArgs a(args);
    net::AnnounceParameters params;
    // QEMU's AnnounceParameters: all four numbers are required.
    for (auto [name, field] : {std::pair{"initial", &params.initial_ms},
                               std::pair{"max", &params.max_ms},
                               std::pair{"rounds", &params.rounds},
                               std::pair{"step", &params.step_ms}}) {
      auto value = announce_number(a, name);
      if (!value.ok()) return value.take_status();
      *field = *value;
    }
    auto list = a.optional_array("interfaces");
    if (!list.ok()) return list.take_status();
    std::optional<std::vector<std::string>> interfaces;
    if (*list) {
      interfaces.emplace();
      for (size_t i = 0; i < (*list)->size(); ++i) {
        const Json& item = (**list)[i];
        if (!item.is_string())
          return Error(ErrorCode::kInvalidArgument,
                       "Invalid parameter type for 'interfaces[{}]', expected: string", i);
        interfaces->push_back(item.get<std::string>());
      }
    }
    auto id = a.optional_string("id");
    if (!id.ok()) return id.take_status();
    FERRY_RETURN_IF_ERROR(a.finish());
    announce_self(id->value_or(""), params, std::move(interfaces));
    return Json::object();
  }));
  return {};
}

}  // namespace ferry::vm
