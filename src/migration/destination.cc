#include "migration/destination.h"

#include <fmt/format.h>

#include "migration/ram_section.h"
#include "migration/stream.h"
#include "migration/stream_reader.h"

namespace ferry::migration {

DestinationMigration::DestinationMigration(std::unique_ptr<Listener> listener,
                                           std::string machine_type, SectionRegistry& registry,
                                           std::vector<memory::RamBlock*> ram,
                                           DestinationHooks& hooks)
    : listener_(std::move(listener)),
      machine_type_(std::move(machine_type)),
      registry_(registry),
      ram_(std::move(ram)),
      hooks_(hooks) {}

DestinationMigration::~DestinationMigration() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void DestinationMigration::stop() {
  std::lock_guard lock(mutex_);
  if (finished()) return;
  stopping_ = true;
  if (channel_) channel_->interrupt();
  else listener_->interrupt();
}

void DestinationMigration::start() {
  thread_ = std::thread([this] { run(); });
}

MigrationStatus DestinationMigration::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void DestinationMigration::run() {
  auto channel = listener_->accept();
  Status st;
  if (!channel.ok()) {
    st = channel.take_status();
  } else {
    {
      std::lock_guard lock(mutex_);
      status_ = MigrationStatus::kActive;
      channel_ = channel->get();
      if (stopping_) channel_->interrupt();  // stop() came between accept and here
    }
    hooks_.status_changed(MigrationStatus::kActive);
    st = receive(**channel);
    std::lock_guard lock(mutex_);
    channel_ = nullptr;
    (void)(*channel)->close();
  }
  {
    std::lock_guard lock(mutex_);
    status_ = st.ok() ? MigrationStatus::kCompleted : MigrationStatus::kFailed;
  }
  hooks_.status_changed(st.ok() ? MigrationStatus::kCompleted : MigrationStatus::kFailed);
  if (!st.ok()) hooks_.failed(st);
  finished_.store(true, std::memory_order_release);
}

Status DestinationMigration::receive(Channel& channel) {
  const bool socket = has_return_path(channel);
  StreamReader reader(channel);
  RamLoader ram(ram_);
  LoadReport report;
  Status st = load_stream(reader, machine_type_, registry_, ram, &report,
                          socket ? StreamEnd::kConnectionStaysOpen : StreamEnd::kEndOfInput);
  if (!st.ok()) {
    if (socket) {
      std::string msg = "error " + st.to_string() + "\n";
      (void)channel.write_all({reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
    }
    return st;
  }
  auto say = [&](std::string_view line) {
    std::string msg = std::string(line) + "\n";
    if (socket)
      (void)channel.write_all({reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
  };
  for (const SectionLoadTime& t : report.device_load_times)
    say(fmt::format("load-time {} {}", t.idstr, t.ns));
  say("loaded");
  // The switchover handshake (source.cc, switch_over): nothing starts before the source's
  // "go", which it sends only when it can no longer resume the VM itself.
  if (socket) FERRY_RETURN_IF_ERROR(await_go(reader));
  say(hooks_.loaded());
  return {};
}

Status DestinationMigration::await_go(StreamReader& reader) {
  std::string line;
  for (;;) {
    uint8_t c = 0;
    Status st = reader.read_u8(c, "the source's go-ahead");
    if (!st.ok())
      return st.prepend_message("the source did not confirm the switchover (cancelled, or the "
                                "connection broke); this VM does not start");
    if (c == '\n') break;
    if (line.size() == 8)
      return Error(ErrorCode::kCorrupt, "the source sent '{}...' instead of its go-ahead",
                   escaped_bytes(line));
    line.push_back(static_cast<char>(c));
  }
  if (line != "go")
    return Error(ErrorCode::kCorrupt, "the source sent '{}' instead of its go-ahead",
                 escaped_bytes(line));
  return {};
}

}  // namespace ferry::migration
