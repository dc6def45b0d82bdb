#include "vm/qmp_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

#include "base/log.h"

namespace ferry::vm {
namespace {

Json qmp_error(std::string_view error_class, std::string_view desc) {
  Json e = Json::object();
  e["class"] = error_class;
  e["desc"] = desc;
  Json reply = Json::object();
  reply["error"] = std::move(e);
  return reply;
}

void append_json(std::string& out, const Json& v) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [key, member] : v.items()) {
      if (!first) out += ", ";
      first = false;
      out += Json(key).dump();
      out += ": ";
      append_json(out, member);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i > 0) out += ", ";
      append_json(out, v[i]);
    }
    out += ']';
  } else {
    // Invalid UTF-8 in a string is replaced rather than thrown about.
    out += v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

// nlohmann's messages start with a tag such as "[json.exception.parse_error.101] "; drop it.
std::string parse_error_text(const std::string& what) {
  size_t end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

}  // namespace

std::string qmp_json_text(const Json& value) {
  std::string out;
  append_json(out, value);
  return out;
}

Result<std::unique_ptr<QmpServer>> QmpServer::listen(EventLoop& loop, std::string_view address,
                                                     QmpVersion version) {
  auto path = unix_socket_path(address);
  if (!path.ok()) return path.take_status();
  auto listener = unix_listen(*path);
  if (!listener.ok()) return listener.take_status();
  std::unique_ptr<QmpServer> server(
      new QmpServer(loop, std::move(listener).value(), std::string(*path), std::move(version)));
  FERRY_RETURN_IF_ERROR(server->register_builtins());
  QmpServer* raw = server.get();
  FERRY_RETURN_IF_ERROR(loop.watch_fd(raw->listener_.get(), EventLoop::kReadable,
                                      [raw](uint32_t) { raw->on_accept(); }));
  return server;
}

Result<std::unique_ptr<QmpServer>> QmpServer::connect(EventLoop& loop, std::string_view address,
                                                      QmpVersion version) {
  auto path = unix_socket_path(address);
  if (!path.ok()) return path.take_status();
  auto fd = unix_connect(*path);
  if (!fd.ok()) return fd.take_status();
  std::unique_ptr<QmpServer> server(
      new QmpServer(loop, UniqueFd(), std::string(*path), std::move(version)));
  FERRY_RETURN_IF_ERROR(server->register_builtins());
  server->add_client(std::move(fd).value());
  if (server->clients_.empty())
    return Error(ErrorCode::kIo, "cannot serve QMP on the connection to '{}'", *path);
  return server;
}

QmpServer::QmpServer(EventLoop& loop, UniqueFd listener, std::string path, QmpVersion version)
    : loop_(loop),
      listener_(std::move(listener)),
      path_(std::move(path)),
      version_(std::move(version)) {}

QmpServer::~QmpServer() {
  for (auto& [fd, client] : clients_) loop_.unwatch_fd(fd);
  clients_.clear();
  if (listener_.valid()) {
    loop_.unwatch_fd(listener_.get());
    listener_.reset();
    unlink(path_.c_str());
  }
}

Status QmpServer::add_command(std::string name, QmpHandler handler) {
  return commands_.add(std::move(name), std::move(handler));
}

Status QmpServer::add_command(std::string name, QmpClassedHandler handler) {
  return commands_.add(std::move(name), std::move(handler));
}

Status QmpServer::register_builtins() {
  FERRY_RETURN_IF_ERROR(
      add_command("qmp_capabilities", [this](const Json& arguments) -> Result<Json> {
        QmpArgs args(arguments);
        auto enable = args.optional_array("enable");
        if (!enable.ok()) return enable.take_status();
        FERRY_RETURN_IF_ERROR(args.finish());
        if (enable->has_value()) {
          for (const Json& cap : **enable) {
            if (!cap.is_string()) {
              return Error(ErrorCode::kInvalidArgument,
                           "Invalid parameter type for 'enable[0]', expected: string");
            }
            // No optional capability (such as oob) is offered in the greeting.
            return Error(ErrorCode::kInvalidArgument, "Capability '{}' not available",
                         cap.get<std::string>());
          }
        }
        if (current_ != nullptr) current_->negotiated = true;
        return Json::object();
      }));
  FERRY_RETURN_IF_ERROR(
      add_command("query-commands", [this](const Json& arguments) -> Result<Json> {
        FERRY_RETURN_IF_ERROR(QmpArgs(arguments).finish());
        Json list = Json::array();
        for (const std::string& name : commands_.names()) {
          Json entry = Json::object();
          entry["name"] = name;
          list.push_back(std::move(entry));
        }
        return list;
      }));
  return add_command("query-version", [this](const Json& arguments) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(arguments).finish());
    return greeting()["QMP"]["version"];
  });
}

Json QmpServer::greeting() const {
  Json qemu = Json::object();
  qemu["micro"] = version_.micro;
  qemu["minor"] = version_.minor;
  qemu["major"] = version_.major;
  Json version = Json::object();
  version["qemu"] = std::move(qemu);
  version["package"] = version_.package;
  Json body = Json::object();
  body["version"] = std::move(version);
  body["capabilities"] = Json::array();
  Json out = Json::object();
  out["QMP"] = std::move(body);
  return out;
}

void QmpServer::on_accept() {
  while (true) {
    int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log(LogLevel::kWarn, "qmp: accept on {} failed: {}", path_, std::strerror(errno));
      }
      return;
    }
    add_client(UniqueFd(fd));
  }
}

void QmpServer::add_client(UniqueFd fd) {
  int raw = fd.get();
  auto client = std::make_unique<Client>();
  client->fd = std::move(fd);
  Status s = loop_.watch_fd(raw, EventLoop::kReadable,
                            [this, raw](uint32_t events) { on_client_ready(raw, events); });
  if (!s.ok()) {
    log(LogLevel::kWarn, "qmp: {}", s.to_string());
    return;  // the UniqueFd closes the connection
  }
  Client& c = *client;
  clients_.emplace(raw, std::move(client));
  send(c, greeting());
  reap();
}

void QmpServer::on_client_ready(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& client = *it->second;
  if (events & EventLoop::kWritable) flush(client);

  if (!client.dead && (events & (EventLoop::kReadable | EventLoop::kHangup | EventLoop::kError))) {
    char buf[16 * 1024];
    while (!client.dead) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {
        if (client.input.in_text()) {
          log(LogLevel::kInfo, "qmp: client left in the middle of a request");
        }
        client.dead = true;
        break;
      }
      for (JsonStream::Item& item : client.input.feed(std::string_view(buf, n))) {
        if (client.dead) break;
        current_ = &client;
        Json reply = item.ok ? dispatch(client, item.text) : qmp_error("GenericError", item.text);
        current_ = nullptr;
        send(client, reply);
      }
    }
  }
  reap();
}

Json QmpServer::dispatch(Client& client, const std::string& text) {
  Json request;
  try {
    request = Json::parse(text);
  } catch (const Json::exception& e) {
    // Not only parse_error: a number beyond a double (1e999) is an out_of_range.
    return qmp_error("GenericError", "JSON parse error, " + parse_error_text(e.what()));
  }
  if (!request.is_object()) return qmp_error("GenericError", "QMP input must be a JSON object");

  const Json* id = nullptr;
  if (auto it = request.find("id"); it != request.end()) id = &*it;
  auto with_id = [&](Json reply) {
    if (id != nullptr) reply["id"] = *id;
    return reply;
  };

  const Json* execute = nullptr;
  const Json* arguments = nullptr;
  for (const auto& [key, value] : request.items()) {
    if (key == "execute") {
      if (!value.is_string()) {
        return with_id(qmp_error("GenericError", "QMP input member 'execute' must be a string"));
      }
      execute = &value;
    } else if (key == "arguments") {
      if (!value.is_object()) {
        return with_id(qmp_error("GenericError", "QMP input member 'arguments' must be an object"));
      }
      arguments = &value;
    } else if (key != "id") {
      return with_id(
          qmp_error("GenericError", fmt::format("QMP input member '{}' is unexpected", key)));
    }
  }
  if (execute == nullptr) {
    return with_id(qmp_error("GenericError", "QMP input lacks member 'execute'"));
  }
  const std::string& name = execute->get_ref<const std::string&>();
  if (!client.negotiated && name != "qmp_capabilities") {
    return with_id(
        qmp_error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"));
  }
  if (client.negotiated && name == "qmp_capabilities") {
    return with_id(qmp_error("CommandNotFound",
                             "Capabilities negotiation is already complete, command ignored"));
  }
  const QmpClassedHandler* handler = commands_.find(name);
  if (handler == nullptr) {
    return with_id(
        qmp_error("CommandNotFound", fmt::format("The command {} has not been found", name)));
  }
  static const Json kNoArguments = Json::object();
  // Copied: a handler may register commands, which could move the one running.
  QmpClassedHandler run = *handler;
  Result<Json> result = Json();
  std::string error_class = "GenericError";
  try {
    result = run(arguments != nullptr ? *arguments : kNoArguments, error_class);
  } catch (const Json::exception& e) {
    // A handler reading a member it did not check first (a bug of ours): the client gets
    // an error and the VM stays up.
    log(LogLevel::kError, "qmp: {}: {}", name, e.what());
    return with_id(qmp_error("GenericError", fmt::format("Internal error in {}: {}", name,
                                                         parse_error_text(e.what()))));
  }
  if (!result.ok()) return with_id(qmp_error(error_class, result.status().to_string()));
  Json reply = Json::object();
  reply["return"] = result->is_null() ? Json::object() : std::move(result).value();
  return with_id(std::move(reply));
}

void QmpServer::emit_event(std::string_view name, const Json& data) {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  Json timestamp = Json::object();
  timestamp["seconds"] = static_cast<int64_t>(now.tv_sec);
  timestamp["microseconds"] = static_cast<int64_t>(now.tv_nsec / 1000);
  Json event = Json::object();
  event["timestamp"] = std::move(timestamp);
  event["event"] = name;
  if (!data.is_null()) event["data"] = data;
  for (auto& [fd, client] : clients_) {
    // Clients still negotiating get no events, as in QEMU.
    if (client->negotiated && !client->dead) send(*client, event);
  }
  if (current_ == nullptr) reap();  // inside a handler, on_client_ready reaps
}

void QmpServer::send(Client& client, const Json& message) {
  if (client.dead) return;
  client.output += qmp_json_text(message);
  client.output += "\r\n";
  flush(client);
}

void QmpServer::flush(Client& client) {
  while (!client.output.empty()) {
    ssize_t n = ::send(client.fd.get(), client.output.data(), client.output.size(), MSG_NOSIGNAL);
    if (n > 0) {
      client.output.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    client.dead = true;
    return;
  }
  if (client.output.size() > kMaxPendingOutput) {
    log(LogLevel::kWarn, "qmp: client does not read its replies; disconnecting it");
    client.dead = true;
    return;
  }
  uint32_t events = EventLoop::kReadable | (client.output.empty() ? 0 : EventLoop::kWritable);
  Status s = loop_.modify_fd(client.fd.get(), events);
  if (!s.ok()) client.dead = true;
}

void QmpServer::reap() {
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (it->second->dead) {
      loop_.unwatch_fd(it->first);
      it = clients_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace ferry::vm
