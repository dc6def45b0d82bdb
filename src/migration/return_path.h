// The migration return path (design.md §6): messages from the destination back to the
// source on the same socket, in QEMU's framing (be16 type, be16 length, data), and the
// COMMAND records the source sends for it in the stream (0x08, be16 command, be16 length,
// data). QEMU's own messages keep QEMU's numbers: OPEN_RETURN_PATH and PING (commands),
// SHUT, PONG and SWITCHOVER_ACK (messages). Ferry's switchover handshake, which keeps two
// copies of a VM from ever both running, uses numbers above QEMU's range in the same
// framing (wire.h): the destination reports FERRY_LOAD_TIME per device section and
// FERRY_LOADED (or FERRY_LOAD_FAILED), the source answers with the FERRY_GO command, and
// the destination says FERRY_RUNNING or FERRY_PAUSED, then SHUT.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "migration/channel.h"

namespace ferry::migration {

// One destination-to-source message. Which fields carry data depends on the type.
struct ReturnPathMessage {
  uint16_t type = 0;
  uint32_t value = 0;  // SHUT: status (0 = loaded); PONG: the PING's value
  int64_t ns = 0;      // FERRY_LOAD_TIME: how long the section took to load
  std::string text;    // FERRY_LOAD_TIME: the section's idstr; FERRY_LOAD_FAILED: the reason

  static ReturnPathMessage of(uint16_t type) { return ReturnPathMessage{.type = type}; }
  static ReturnPathMessage shut(uint32_t status);
  static ReturnPathMessage pong(uint32_t value);
  static ReturnPathMessage load_time(std::string idstr, int64_t ns);
  static ReturnPathMessage load_failed(std::string reason);
  bool operator==(const ReturnPathMessage&) const = default;
};

// "SHUT", "PONG", "FERRY_LOADED", ... and QEMU's names for the types Ferry does not use;
// "unknown" otherwise.
std::string_view return_path_message_name(uint16_t type);
// COMMAND names, Ferry's FERRY_GO included (QEMU's via wire::command_name).
std::string command_display_name(uint16_t cmd);

// The message's bytes on the wire. A FERRY_LOAD_FAILED reason is cut to fit the be16
// length; an idstr longer than 255 bytes to fit its length byte.
std::vector<uint8_t> encode_return_path_message(const ReturnPathMessage& message);

// Decodes the message at the front of `bytes`: nullopt while the bytes end inside it (read
// more), an error for an unknown type, a length the type does not have, or data that does
// not hold together. `used` is set to the message's size when one is returned.
Result<std::optional<ReturnPathMessage>> decode_return_path_message(
    std::span<const uint8_t> bytes, size_t& used);
// Exactly one message: an error too when the bytes end early or go on after it.
Result<ReturnPathMessage> decode_one_return_path_message(std::span<const uint8_t> bytes);

// A COMMAND record's bytes (type 0x08 included), for the commands written outside a
// StreamWriter (FERRY_GO after the stream).
std::vector<uint8_t> encode_command(uint16_t cmd, std::span<const uint8_t> data = {});
std::vector<uint8_t> encode_ping(uint32_t value);
// Checks a command's data length as QEMU does (a fixed length per command) and returns the
// PING value (0 for the others). `at` is the record's stream offset, for the message.
Result<uint32_t> check_return_path_command(uint16_t cmd, std::span<const uint8_t> data,
                                           uint64_t at);

// Reads messages from the source's end of the return path, buffering what arrives.
class ReturnPathReader {
 public:
  explicit ReturnPathReader(Channel& channel) : channel_(channel) {}
  // Blocks until a whole message arrived. The end of the connection inside a message or
  // before one is an error naming the return path; so is anything decode refuses.
  Result<ReturnPathMessage> next();

 private:
  Channel& channel_;
  std::vector<uint8_t> pending_;
};

// Writes one message on the destination's end.
Status send_return_path_message(Channel& channel, const ReturnPathMessage& message);

}  // namespace ferry::migration
