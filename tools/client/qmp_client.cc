#include "client/qmp_client.h"

namespace ferry::client {

Result<QmpClient> QmpClient::connect(const std::string& path, Millis timeout) {
  auto socket = connect_unix(path, timeout);
  if (!socket.ok()) return socket.take_status();
  QmpClient client(std::move(socket).value());
  auto line = client.socket_.read_line(timeout);
  if (!line.ok()) return line.take_status();
  client.greeting_ = Json::parse(*line, nullptr, false);
  if (!client.greeting_.is_object() || !client.greeting_.contains("QMP"))
    return Error(ErrorCode::kCorrupt, "not a QMP greeting: {}", *line);
  auto negotiated = client.execute("qmp_capabilities");
  if (!negotiated.ok()) return negotiated.take_status();
  if (!negotiated->contains("return"))
    return Error(ErrorCode::kCorrupt, "qmp_capabilities refused: {}", negotiated->dump());
  return client;
}

Result<Json> QmpClient::next_reply(Millis timeout) {
  for (;;) {
    auto line = socket_.read_line(timeout);
    if (!line.ok()) return line.take_status();
    Json msg = Json::parse(*line, nullptr, false);
    if (msg.is_discarded()) return Error(ErrorCode::kCorrupt, "reply is not JSON: {}", *line);
    if (msg.contains("event")) {
      events_.push_back(std::move(msg));
      continue;
    }
    return msg;
  }
}

Result<Json> QmpClient::execute(const std::string& command, const Json& arguments,
                                Millis timeout) {
  int id = next_id_++;
  Json request = {{"execute", command}, {"id", id}};
  if (!arguments.empty()) request["arguments"] = arguments;
  FERRY_RETURN_IF_ERROR(socket_.send(request.dump() + "\n"));
  for (;;) {
    auto reply = next_reply(timeout);
    if (!reply.ok()) return reply;
    if (reply->value("id", Json()) == Json(id)) return reply;
    // A reply without our id (e.g. to earlier raw input) is skipped.
  }
}

Result<Json> QmpClient::send_raw(const std::string& text, Millis timeout) {
  FERRY_RETURN_IF_ERROR(socket_.send(text));
  return next_reply(timeout);
}

Result<Json> QmpClient::wait_event(const std::string& name, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if ((*it)["event"] == name) {
        Json event = std::move(*it);
        events_.erase(it);
        return event;
      }
    }
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error(ErrorCode::kIo, "no {} event within {} ms", name, timeout.count());
    auto line = socket_.read_line(left);
    if (!line.ok()) return line.take_status();
    Json msg = Json::parse(*line, nullptr, false);
    if (msg.contains("event")) events_.push_back(std::move(msg));
  }
}

}  // namespace ferry::client
