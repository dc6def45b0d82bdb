#include "vm/json_stream.h"

#include <gtest/gtest.h>

namespace ferry::vm {
namespace {

std::vector<std::string> texts(const std::vector<JsonStream::Item>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) out.push_back((item.ok ? "ok:" : "err:") + item.text);
  return out;
}

TEST(JsonStream, SplitsTopLevelValues) {
  JsonStream s;
  EXPECT_EQ(
      texts(s.feed(R"({"a": {"b": [1, "}"]}} [2] "s" 12 )")),
      (std::vector<std::string>{R"(ok:{"a": {"b": [1, "}"]}})", "ok:[2]", R"(ok:"s")", "ok:12"}));
}

// The splitter hands numbers on as written, however large: judging them is the parser's
// job (QmpServer turns the library's overflow into an error reply), and nothing here may
// convert them.
TEST(JsonStream, HugeNumbersPassThroughAsTexts) {
  JsonStream s;
  std::string digits(5000, '9');
  EXPECT_EQ(texts(s.feed("1e999\n-1E+400 " + digits + "e9\n[1e999]{\"id\": -1e999}")),
            (std::vector<std::string>{"ok:1e999", "ok:-1E+400", "ok:" + digits + "e9",
                                      "ok:[1e999]", R"(ok:{"id": -1e999})"}));
  EXPECT_FALSE(s.in_text());
}

TEST(JsonStream, ValuesSpanFeedsAndLines) {
  JsonStream s;
  EXPECT_TRUE(s.feed(R"({"a":)").empty());
  EXPECT_TRUE(s.in_text());
  EXPECT_TRUE(s.feed("\n \"x\\\"}\"").empty());
  EXPECT_EQ(texts(s.feed("}{")), (std::vector<std::string>{"ok:{\"a\":\n \"x\\\"}\"}"}));
  EXPECT_TRUE(s.in_text());
}

TEST(JsonStream, ErrorsSkipTheRestOfTheLine) {
  JsonStream s;
  auto items = texts(s.feed("] {\"ignored\": 1}\n{\"b\": \"unterminated\n{\"c\": 2}\n"));
  EXPECT_EQ(items, (std::vector<std::string>{"err:JSON parse error, unexpected ']'",
                                             "err:JSON parse error, control character in string",
                                             R"(ok:{"c": 2})"}));
}

TEST(JsonStream, MismatchedBracketsFailInsteadOfWaiting) {
  JsonStream s;
  auto items = s.feed("{\"execute\": [}\n{\"a\": 1}\n");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_FALSE(items[0].ok);
  EXPECT_EQ(items[0].text, "JSON parse error, '}' closes '['");
  EXPECT_TRUE(items[1].ok);
  EXPECT_EQ(items[1].text, "{\"a\": 1}");
}

TEST(JsonStream, DepthIsBounded) {
  JsonStream s;
  auto items = s.feed(std::string(JsonStream::kMaxDepth + 5, '{') + "\n[]");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_FALSE(items[0].ok);
  EXPECT_EQ(items[1].text, "[]");
}

}  // namespace
}  // namespace ferry::vm
