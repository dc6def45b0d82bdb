// QMP, QEMU's JSON control protocol, over a listening unix socket or (-qmp without
// server=on) one connection to a socket someone else listens on, driven by the event loop
// (non-blocking; never waits for a client). No input ends the process: malformed JSON,
// numbers beyond a double and wrong argument types each get an error reply.
//
// Per connection, as QEMU: the greeting
//   {"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 0}, "package": "..."},
//            "capabilities": []}}
// then capabilities negotiation, where only `qmp_capabilities` is accepted (others get
// CommandNotFound "Expecting capabilities negotiation with 'qmp_capabilities'"), then
// command mode. Requests are JSON objects {"execute", "arguments"?, "id"?}, possibly
// spanning lines or sharing one; replies are {"return": ...} or {"error": {"class",
// "desc"}} with the request's `id` echoed. Events go to clients in command mode as
// {"timestamp": {"seconds", "microseconds"}, "event", "data"?}. Lines end in "\r\n" and
// JSON is spaced as QEMU prints it. Several clients may be connected at once.
//
// Threading: loop thread only (commands, events, registration). To emit an event from
// another thread, post it with EventLoop::schedule. Handlers run on the loop thread and
// must not destroy the server.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/event_loop.h"
#include "base/status.h"
#include "vm/json_stream.h"
#include "vm/qmp_commands.h"
#include "vm/unix_socket.h"

namespace ferry::vm {

struct QmpVersion {
  int major = 0;
  int minor = 1;
  int micro = 0;
  std::string package = "ferry";
};

// QEMU's compact-with-spaces JSON: {"a": 1, "b": [1, 2]}.
std::string qmp_json_text(const Json& value);

class QmpServer {
 public:
  // Output queued for a client that does not read beyond this makes it disconnect.
  static constexpr size_t kMaxPendingOutput = size_t{16} << 20;

  // Listens on `address`: "unix:PATH" (the -qmp argument's path part) or a plain path.
  // Registers qmp_capabilities, query-commands and query-version.
  static Result<std::unique_ptr<QmpServer>> listen(EventLoop& loop, std::string_view address,
                                                   QmpVersion version = {});
  // Connects to `address` and serves QMP on that one connection (greeting first), as QEMU
  // does for a client-mode chardev; once the peer leaves, no one else can connect.
  static Result<std::unique_ptr<QmpServer>> connect(EventLoop& loop, std::string_view address,
                                                    QmpVersion version = {});
  // Closes every connection and removes the socket file it listened on.
  ~QmpServer();
  QmpServer(const QmpServer&) = delete;
  QmpServer& operator=(const QmpServer&) = delete;

  Status add_command(std::string name, QmpHandler handler);
  Status add_command(std::string name, QmpClassedHandler handler);
  // Sends an event to every client in command mode.
  void emit_event(std::string_view name, const Json& data = Json());

  const std::string& path() const { return path_; }
  size_t client_count() const { return clients_.size(); }

 private:
  struct Client {
    UniqueFd fd;
    JsonStream input;
    std::string output;
    bool negotiated = false;
    bool dead = false;  // write failed or peer gone; removed by reap()
  };

  QmpServer(EventLoop& loop, UniqueFd listener, std::string path, QmpVersion version);
  Status register_builtins();
  void on_accept();
  void add_client(UniqueFd fd);
  void on_client_ready(int fd, uint32_t events);
  // Sends what it can; marks the client dead on failure or overflow.
  void flush(Client& client);
  // Closes dead clients. Called only at the end of loop callbacks and public entry
  // points, so no client disappears while a request of its is being handled.
  void reap();
  void send(Client& client, const Json& message);
  Json dispatch(Client& client, const std::string& text);
  Json greeting() const;

  EventLoop& loop_;
  UniqueFd listener_;
  std::string path_;
  QmpVersion version_;
  QmpCommands commands_;
  std::map<int, std::unique_ptr<Client>> clients_;
  Client* current_ = nullptr;  // the client whose request is being dispatched
};

}  // namespace ferry::vm
