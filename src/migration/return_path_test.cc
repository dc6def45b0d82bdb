// The return path's messages (return_path.h): each type encodes to QEMU's framing, decodes
// back, and malformed bytes (unknown type, wrong length, truncated) are refused by name.
#include "migration/return_path.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "migration/buffer_channel.h"
#include "migration/wire.h"

namespace ferry::migration {
namespace {

using Bytes = std::vector<uint8_t>;

std::string error_of(const Bytes& bytes) {
  auto decoded = decode_one_return_path_message(bytes);
  return decoded.ok() ? std::string("(decoded)") : decoded.status().to_string();
}

struct Case {
  const char* name;
  ReturnPathMessage message;
  Bytes wire;
};

std::vector<Case> cases() {
  return {
      {"SHUT", ReturnPathMessage::shut(1), {0, 1, 0, 4, 0, 0, 0, 1}},
      {"PONG", ReturnPathMessage::pong(0x01020304), {0, 2, 0, 4, 1, 2, 3, 4}},
      {"SWITCHOVER_ACK", ReturnPathMessage::of(wire::kRpSwitchoverAck), {0, 7, 0, 0}},
      {"FERRY_LOAD_TIME",
       ReturnPathMessage::load_time("ab", 0x0102),
       {1, 0, 0, 11, 0, 0, 0, 0, 0, 0, 1, 2, 2, 'a', 'b'}},
      {"FERRY_LOADED", ReturnPathMessage::of(wire::kRpFerryLoaded), {1, 1, 0, 0}},
      {"FERRY_LOAD_FAILED", ReturnPathMessage::load_failed("no"), {1, 2, 0, 2, 'n', 'o'}},
      {"FERRY_RUNNING", ReturnPathMessage::of(wire::kRpFerryRunning), {1, 3, 0, 0}},
      {"FERRY_PAUSED", ReturnPathMessage::of(wire::kRpFerryPaused), {1, 4, 0, 0}},
  };
}

TEST(ReturnPath, EveryMessageTypeEncodesAndDecodes) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(return_path_message_name(c.message.type), c.name);
    EXPECT_EQ(encode_return_path_message(c.message), c.wire);
    auto back = decode_one_return_path_message(c.wire);
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, c.message);
  }
}

TEST(ReturnPath, EveryMessageTypeRefusesTruncation) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    for (size_t n = 0; n < c.wire.size(); ++n) {
      Bytes cut(c.wire.begin(), c.wire.begin() + static_cast<long>(n));
      size_t used = 0;
      auto partial = decode_return_path_message(cut, used);
      ASSERT_TRUE(partial.ok()) << partial.status().to_string();
      EXPECT_FALSE(partial->has_value()) << "decoded from " << n << " bytes";
      std::string error = error_of(cut);
      EXPECT_NE(error.find("truncated"), std::string::npos) << error;
      if (n >= 4) {
        EXPECT_NE(error.find(c.name), std::string::npos) << error;
      }
    }
    Bytes longer = c.wire;
    longer.push_back(0);
    EXPECT_NE(error_of(longer).find("1 bytes follow message"), std::string::npos);
  }
}

TEST(ReturnPath, FixedLengthTypesRefuseAnyOtherLength) {
  for (const Case& c : cases()) {
    if (c.message.type == wire::kRpFerryLoadTime || c.message.type == wire::kRpFerryLoadFailed)
      continue;
    SCOPED_TRACE(c.name);
    Bytes wrong = c.wire;
    wrong[3] += 1;
    wrong.push_back(0);
    std::string error = error_of(wrong);
    EXPECT_NE(error.find(std::string(c.name) + " (0x"), std::string::npos) << error;
    EXPECT_NE(error.find(fmt::format("has length {}, expected {}", wrong[3], c.wire[3])),
              std::string::npos)
        << error;
  }
  // FERRY_LOAD_TIME: at least the time and the idstr length, and exactly the idstr after.
  EXPECT_NE(error_of({1, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}).find("expected at least 9"),
            std::string::npos);
  EXPECT_NE(error_of({1, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 1, 2, 'a'})
                .find("length 10, but its idstr length 2 makes 11"),
            std::string::npos);
  EXPECT_NE(error_of({1, 0, 0, 9, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}).find("INT64_MAX"),
            std::string::npos);
}

TEST(ReturnPath, UnknownTypesAreRefusedFromTheHeader) {
  // QEMU's postcopy messages (REQ_PAGES), a gap above QEMU's range, and beyond Ferry's.
  for (auto [type, name] : {std::pair<uint16_t, const char*>{4, "REQ_PAGES (0x0004)"},
                            {0, "INVALID (0x0000)"},
                            {8, "unknown (0x0008)"},
                            {0x105, "unknown (0x0105)"},
                            {0xffff, "unknown (0xffff)"}}) {
    Bytes header = {static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type), 0xff, 0xff};
    size_t used = 0;
    auto decoded = decode_return_path_message(header, used);  // no waiting for 64 KiB
    ASSERT_FALSE(decoded.ok());
    std::string error = decoded.status().to_string();
    EXPECT_NE(error.find("unknown message type " + std::string(name) + " of length 65535"),
              std::string::npos)
        << error;
  }
}

TEST(ReturnPath, LongTextIsCutToFitItsLength) {
  auto idstr = encode_return_path_message(ReturnPathMessage::load_time(std::string(300, 'x'), 1));
  EXPECT_EQ(idstr.size(), 4u + 9 + 255);
  auto reason = encode_return_path_message(ReturnPathMessage::load_failed(std::string(70000, 'r')));
  EXPECT_EQ(reason.size(), 4u + 65535);
  auto back = decode_one_return_path_message(reason);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->text.size(), 65535u);
}

TEST(ReturnPath, ReaderTakesMessagesAcrossReadsAndNamesACutOne) {
  Bytes all;
  for (const Case& c : cases()) all.insert(all.end(), c.wire.begin(), c.wire.end());
  BufferChannel channel(all, 3);  // three bytes a read: every message arrives in pieces
  ReturnPathReader reader(channel);
  for (const Case& c : cases()) {
    auto m = reader.next();
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    EXPECT_EQ(*m, c.message);
  }
  auto end = reader.next();
  ASSERT_FALSE(end.ok());
  EXPECT_NE(end.status().to_string().find("closed the return path before confirming"),
            std::string::npos);

  Bytes cut = {0, 2, 0, 4, 1};
  BufferChannel cut_channel(cut);
  ReturnPathReader cut_reader(cut_channel);
  auto m = cut_reader.next();
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().to_string().find("inside a message"), std::string::npos);
  EXPECT_NE(m.status().to_string().find("PONG (0x0002): 5 of its 8 bytes"), std::string::npos)
      << m.status().to_string();
}

TEST(ReturnPath, CommandsHaveQemusFramingAndLengths) {
  EXPECT_EQ(encode_command(wire::kCmdOpenReturnPath), (Bytes{8, 0, 1, 0, 0}));
  EXPECT_EQ(encode_ping(1), (Bytes{8, 0, 2, 0, 4, 0, 0, 0, 1}));
  EXPECT_EQ(encode_command(wire::kCmdFerryGo), (Bytes{8, 1, 0, 0, 0}));
  auto ping = check_return_path_command(wire::kCmdPing, Bytes{0, 0, 1, 0}, 20);
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(*ping, 256u);
  auto bad = check_return_path_command(wire::kCmdPing, Bytes{0, 0, 1}, 20);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().to_string().find(
                "PING received with bad length - expecting 4, got 3 (command at offset 20)"),
            std::string::npos)
      << bad.status().to_string();
  auto go = check_return_path_command(wire::kCmdFerryGo, Bytes{0}, 9);
  ASSERT_FALSE(go.ok());
  EXPECT_NE(go.status().to_string().find("FERRY_GO received with bad length - expecting 0, got 1"),
            std::string::npos);
  auto unknown = check_return_path_command(0x1234, {}, 9);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().to_string().find("unsupported command 4660 (unknown)"),
            std::string::npos)
      << unknown.status().to_string();
}

}  // namespace
}  // namespace ferry::migration
