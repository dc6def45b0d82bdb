// A QMP client for tests: reads the greeting, negotiates capabilities, runs commands
// (matching replies by id) and keeps asynchronous events for later inspection. Works
// against ferry-vm and QEMU alike.
#pragma once

#include <deque>
#include <string>

#include <nlohmann/json.hpp>

#include "client/line_socket.h"

namespace ferry::client {

using Json = nlohmann::json;

class QmpClient {
 public:
  // Connects (retrying while the VM starts), checks the greeting, sends qmp_capabilities.
  static Result<QmpClient> connect(const std::string& path, Millis timeout = Millis(10000));

  const Json& greeting() const { return greeting_; }

  // The whole reply object: {"return": ...} or {"error": {...}} (with "id").
  Result<Json> execute(const std::string& command, const Json& arguments = Json::object(),
                       Millis timeout = Millis(10000));
  // Sends raw text (for malformed-input tests) and returns the next non-event reply.
  Result<Json> send_raw(const std::string& text, Millis timeout = Millis(10000));

  // Waits for an event named `name` (already received ones count first).
  Result<Json> wait_event(const std::string& name, Millis timeout = Millis(10000));
  const std::deque<Json>& events() const { return events_; }

 private:
  explicit QmpClient(LineSocket socket) : socket_(std::move(socket)) {}
  Result<Json> next_reply(Millis timeout);

  LineSocket socket_;
  Json greeting_;
  std::deque<Json> events_;
  int next_id_ = 1;
};

}  // namespace ferry::client
