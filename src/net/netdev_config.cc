#include "net/netdev_config.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "base/qemu_opts.h"

namespace ferry::net {

namespace {

// Every key any type takes; each type then allows its own (QEMU's QAPI schema per type).
const OptSchema& netdev_schema() {
  static const OptSchema schema{
      .option = "-netdev",
      .implied_key = "type",
      .properties =
          {
              {.name = "type"},
              {.name = "id"},
              {.name = "server", .type = OptType::kBool},
              {.name = "addr.type"},
              {.name = "addr.host"},
              {.name = "addr.port"},
              {.name = "addr.path"},
              {.name = "reconnect", .type = OptType::kNumber},
              {.name = "listen"},
              {.name = "connect"},
              {.name = "mcast"},
              {.name = "udp"},
              {.name = "localaddr"},
              {.name = "hubid", .type = OptType::kNumber},
          },
      .location_shows_argument = true,
  };
  return schema;
}

const std::set<std::string, std::less<>>& keys_of(std::string_view type) {
  static const std::set<std::string, std::less<>> stream = {
      "type", "id", "server", "addr.type", "addr.host", "addr.port", "addr.path", "reconnect"};
  static const std::set<std::string, std::less<>> socket = {
      "type", "id", "listen", "connect", "mcast", "udp", "localaddr"};
  static const std::set<std::string, std::less<>> hubport = {"type", "id", "hubid"};
  if (type == "stream") return stream;
  if (type == "socket") return socket;
  return hubport;
}

// The keys as written, for QEMU's "is unexpected" (QemuOpts would say "Invalid parameter").
std::vector<std::string> written_keys(std::string_view text) {
  std::vector<std::string> keys;
  std::string element;
  auto finish = [&] {
    size_t equals = element.find('=');
    if (!keys.empty() || equals != std::string::npos || element == "help" || element == "?")
      keys.push_back(equals == std::string::npos ? element : element.substr(0, equals));
    else
      keys.push_back("type");  // the implied first element
    element.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (i + 1 < text.size() && text[i + 1] == ',') {
        element += ',';
        ++i;
        continue;
      }
      finish();
    } else {
      element += text[i];
    }
  }
  finish();
  return keys;
}

Status missing(std::string_view text, std::string_view key) {
  return Error(ErrorCode::kInvalidArgument, "-netdev {}: Parameter '{}' is missing", text, key);
}

Result<StreamOptions> stream_options(std::string_view text, const Opts& opts) {
  StreamOptions out;
  out.server = opts.boolean("server").value_or(false);
  bool any_addr = std::any_of(opts.entries().begin(), opts.entries().end(),
                              [](const Opts::Entry& e) { return e.key.starts_with("addr."); });
  if (!any_addr) return missing(text, "addr");
  auto addr_type = opts.string("addr.type");
  if (!addr_type) return missing(text, "addr.type");
  std::set<std::string_view> allowed;
  if (*addr_type == "inet") {
    auto host = opts.string("addr.host");
    if (!host) return missing(text, "addr.host");
    auto port = opts.string("addr.port");
    if (!port) return missing(text, "addr.port");
    out.address = {SocketAddress::Type::kInet, *host, *port, {}};
    allowed = {"addr.type", "addr.host", "addr.port"};
  } else if (*addr_type == "unix") {
    auto path = opts.string("addr.path");
    if (!path) return missing(text, "addr.path");
    out.address = {SocketAddress::Type::kUnix, {}, {}, *path};
    allowed = {"addr.type", "addr.path"};
  } else {
    return Error(ErrorCode::kInvalidArgument,
                 "-netdev {}: Parameter 'type' does not accept value '{}'", text, *addr_type);
  }
  for (const Opts::Entry& e : opts.entries())
    if (e.key.starts_with("addr.") && !allowed.contains(e.key))
      return Error(ErrorCode::kInvalidArgument, "-netdev {}: Parameter '{}' is unexpected", text,
                   e.key);
  auto reconnect = opts.number("reconnect");
  if (out.server && reconnect)
    return Error(ErrorCode::kInvalidArgument,
                 "-netdev {}: 'reconnect' option is incompatible with socket in server mode",
                 text);
  uint64_t seconds = reconnect.value_or(kDefaultReconnectSeconds);
  if (seconds > UINT32_MAX / 1000)
    return Error(ErrorCode::kOutOfRange,
                 "-netdev {}: Parameter 'reconnect' expects at most {} seconds, found {}", text,
                 UINT32_MAX / 1000, seconds);
  if (!out.server) out.reconnect_ms = static_cast<uint32_t>(seconds * 1000);
  return out;
}

Result<NetdevConfig> socket_options(std::string_view text, const Opts& opts, NetdevConfig config) {
  int modes = 0;
  for (const char* key : {"listen", "connect", "mcast", "udp"}) modes += opts.is_set(key) ? 1 : 0;
  if (modes != 1)
    return Error(ErrorCode::kInvalidArgument,
                 "-netdev {}: exactly one of listen=, connect=, mcast= or udp= is required", text);
  auto host_port = [&](std::string_view key) -> Result<SocketAddress> {
    auto parsed = parse_host_port(*opts.string(key));
    if (!parsed.ok()) {
      Status st = parsed.take_status();
      st.prepend_message(fmt::format("-netdev {}", text));
      return st;
    }
    return parsed;
  };
  bool has_local = opts.is_set("localaddr");
  if (opts.is_set("listen") || opts.is_set("connect")) {
    if (has_local)
      return Error(ErrorCode::kInvalidArgument,
                   "-netdev {}: localaddr= is only valid with mcast= or udp=", text);
    bool listen = opts.is_set("listen");
    auto address = host_port(listen ? "listen" : "connect");
    if (!address.ok()) return address.take_status();
    // QEMU's socket,listen= binds every address when the host is empty (":5000").
    config.options = StreamOptions{.address = *address, .server = listen, .reconnect_ms = 0};
    return config;
  }
  DatagramOptions datagram;
  bool udp = opts.is_set("udp");
  datagram.mode = udp ? DatagramOptions::Mode::kUdp : DatagramOptions::Mode::kMulticast;
  auto remote = host_port(udp ? "udp" : "mcast");
  if (!remote.ok()) return remote.take_status();
  datagram.remote = *remote;
  if (udp && !has_local)
    return Error(ErrorCode::kInvalidArgument, "-netdev {}: localaddr= is mandatory with udp=",
                 text);
  if (has_local) {
    if (udp) {
      auto local = host_port("localaddr");
      if (!local.ok()) return local.take_status();
      datagram.local = *local;
    } else {
      // mcast's localaddr is an interface address without a port.
      datagram.local = SocketAddress{SocketAddress::Type::kInet, *opts.string("localaddr"), "0", {}};
    }
  }
  config.options = std::move(datagram);
  return config;
}

}  // namespace

std::string netdev_help() {
  return "Available netdev backend types:\nsocket\nstream\nhubport\n";
}

Result<std::optional<NetdevConfig>> parse_netdev(std::string_view text) {
  std::vector<std::string> keys = written_keys(text);
  auto opts = parse_opts(netdev_schema(), text);
  if (!opts.ok()) {
    // A key no type knows: QEMU's QAPI words it as unexpected.
    for (const std::string& key : keys)
      if (key != "help" && key != "?" && netdev_schema().find(key) == nullptr)
        return Error(ErrorCode::kInvalidArgument, "-netdev {}: Parameter '{}' is unexpected",
                     text, key);
    return opts.take_status();
  }
  auto type = opts->string("type");
  if (opts->help_requested() && !type) return std::optional<NetdevConfig>();
  if (type && (*type == "help" || *type == "?")) return std::optional<NetdevConfig>();
  if (!type) return missing(text, "type");
  if (*type != "stream" && *type != "socket" && *type != "hubport")
    return Error(ErrorCode::kInvalidArgument,
                 "-netdev {}: Parameter 'type' does not accept value '{}'", text, *type);
  const auto& allowed = keys_of(*type);
  for (const std::string& key : keys)
    if (key != "help" && key != "?" && !allowed.contains(key) &&
        !(key.starts_with("no") && allowed.contains(key.substr(2))))
      return Error(ErrorCode::kInvalidArgument, "-netdev {}: Parameter '{}' is unexpected", text,
                   key);
  auto id = opts->string("id");
  if (!id) return missing(text, "id");
  NetdevConfig config{std::string(text), *id, *type, HubportOptions{}};
  if (*type == "stream") {
    auto stream = stream_options(text, *opts);
    if (!stream.ok()) return stream.take_status();
    config.options = *stream;
  } else if (*type == "socket") {
    auto socket = socket_options(text, *opts, std::move(config));
    if (!socket.ok()) return socket.take_status();
    return std::optional<NetdevConfig>(std::move(socket).value());
  } else {
    auto hubid = opts->number("hubid");
    if (!hubid) return missing(text, "hubid");
    if (*hubid > INT32_MAX)
      return Error(ErrorCode::kOutOfRange,
                   "-netdev {}: Parameter 'hubid' expects a value between 0 and {}, found {}",
                   text, INT32_MAX, *hubid);
    config.options = HubportOptions{static_cast<uint32_t>(*hubid)};
  }
  return std::optional<NetdevConfig>(std::move(config));
}

Result<std::unique_ptr<NetBackend>> create_netdev(EventLoop& loop, const NetdevConfig& config,
                                                  NetEvents* events, Hubs& hubs) {
  std::string where = fmt::format("-netdev {}", config.text);
  if (const auto* stream = std::get_if<StreamOptions>(&config.options)) {
    // QEMU reports connections of `stream` only.
    auto backend = StreamBackend::create(loop, config.id, config.type, *stream,
                                         config.type == "stream" ? events : nullptr);
    if (!backend.ok()) {
      Status st = backend.take_status();
      st.prepend_message(where);
      return st;
    }
    return std::unique_ptr<NetBackend>(std::move(backend).value());
  }
  if (const auto* datagram = std::get_if<DatagramOptions>(&config.options)) {
    auto backend = DatagramBackend::create(loop, config.id, *datagram);
    if (!backend.ok()) {
      Status st = backend.take_status();
      st.prepend_message(where);
      return st;
    }
    return std::unique_ptr<NetBackend>(std::move(backend).value());
  }
  const auto& hub = std::get<HubportOptions>(config.options);
  return std::unique_ptr<NetBackend>(std::make_unique<HubPort>(config.id, hubs.get(hub.hubid)));
}

}  // namespace ferry::net
