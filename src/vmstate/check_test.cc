// Registration-time validation (QEMU's vmstate_check): one test per rule. A rule that C++
// types already enforce (pointer array allocating into non-owning slots, counts that are
// not integers, equal() on a non-scalar, a field of another type) is a compile error
// instead, by static_assert in fields.h / builders.h / description.h, and each has a
// compile-fail test (compile_fail/, registered in CMakeLists.txt).
#include <gtest/gtest.h>

#include <list>
#include <string>
#include <vector>

#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace ferry::vmstate {
namespace {

struct S {
  uint32_t n = 0;
  uint32_t arr[4] = {};
  std::vector<uint32_t> vec;
  std::list<samples::Event> events;
  uint16_t v = 0;
};

void expect_refused(const Status& st, std::string_view words) {
  ASSERT_FALSE(st.ok()) << "description accepted";
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(st.to_string().find(words), std::string::npos) << st.to_string();
}

TEST(Check, RepresentativeDescriptionsPass) {
  EXPECT_TRUE(samples::kNvmeLikeDesc.check().ok()) << samples::kNvmeLikeDesc.check().to_string();
  EXPECT_TRUE(samples::kQueueDesc.check().ok());
}

TEST(Check, EmptyName) {
  static constexpr auto d = describe<S>("", {}, field("n", &S::n));
  expect_refused(d.check(), "empty name");
}

TEST(Check, NameTooLong) {
  static const std::string long_name(128, 'x');
  const auto d = describe<S>(long_name, {}, field("n", &S::n));
  expect_refused(d.check(), "longer than 127");
  const std::string ok_name(127, 'x');
  EXPECT_TRUE(describe<S>(ok_name, {}, field("n", &S::n)).check().ok());
}

TEST(Check, MinimumVersionAboveVersion) {
  static constexpr auto d = describe<S>("s", {.version = 2, .minimum_version = 3}, field("n", &S::n));
  expect_refused(d.check(), "minimum version 3 is above version 2");
}

TEST(Check, FieldNewerThanDescription) {
  static constexpr auto d = describe<S>("s", {.version = 2}, field("n", &S::n).since(3));
  expect_refused(d.check(), "field 'n' is present since version 3");
}

TEST(Check, FieldWithoutName) {
  static constexpr auto d = describe<S>("s", {}, field("", &S::n));
  expect_refused(d.check(), "field 0 has an empty name");
}

TEST(Check, SubsectionNotPrefixedByParent) {
  static constexpr auto sub = describe<S>("other/v", {}, field("v", &S::v));
  static constexpr auto d = describe<S>("s", {}, field("n", &S::n), subsection(sub));
  expect_refused(d.check(), "subsection 'other/v' must be named 's/<child>'");
  static constexpr auto bare = describe<S>("s/", {}, field("v", &S::v));
  static constexpr auto d2 = describe<S>("s", {}, field("n", &S::n), subsection(bare));
  expect_refused(d2.check(), "must be named");
}

TEST(Check, SubsectionListedTwice) {
  static constexpr auto sub = describe<S>("s/v", {}, field("v", &S::v));
  static constexpr auto d =
      describe<S>("s", {}, field("n", &S::n), subsection(sub), subsection(sub));
  expect_refused(d.check(), "listed twice");
}

TEST(Check, InvalidSubsectionDescription) {
  static constexpr auto sub = describe<S>("s/v", {.version = 1, .minimum_version = 2},
                                          field("v", &S::v));
  static constexpr auto d = describe<S>("s", {}, field("n", &S::n), subsection(sub));
  expect_refused(d.check(), "minimum version 2 is above version 1");
}

TEST(Check, CountFieldAfterTheArray) {
  static constexpr auto d =
      describe<S>("s", {}, varray("arr", &S::arr, &S::n, 4), field("n", &S::n));
  expect_refused(d.check(), "the count of array 'arr' is not an earlier field of 's'");
}

TEST(Check, CountNotDescribedAtAll) {
  static constexpr auto d = describe<S>("s", {}, varray("vec", &S::vec, &S::n, 4));
  expect_refused(d.check(), "not an earlier field");
}

TEST(Check, CountNewerThanArray) {
  static constexpr auto d = describe<S>("s", {.version = 2}, field("n", &S::n).since(2),
                                        varray("arr", &S::arr, &S::n, 4));
  expect_refused(d.check(), "is newer than the array");
}

TEST(Check, ArrayMaximumZero) {
  static constexpr auto d =
      describe<S>("s", {}, field("n", &S::n), varray("vec", &S::vec, &S::n, 0));
  expect_refused(d.check(), "declares maximum 0");
}

TEST(Check, ArrayMaximumAboveCapacity) {
  static constexpr auto d =
      describe<S>("s", {}, field("n", &S::n), varray("arr", &S::arr, &S::n, 5));
  expect_refused(d.check(), "declares maximum 5 but holds only 4 elements");
}

TEST(Check, ListMaximumZero) {
  static constexpr auto d =
      describe<S>("s", {}, list("events", &S::events, samples::kEventDesc, 0));
  expect_refused(d.check(), "list 'events' declares maximum 0");
}

TEST(Check, UnusedOfSizeZero) {
  static constexpr auto d = describe<S>("s", {}, field("n", &S::n), unused(0));
  expect_refused(d.check(), "has size 0");
}

TEST(Check, ValidatorWithoutMessage) {
  static constexpr auto d =
      describe<S>("s", {}, field("n", &S::n).validate([](uint32_t v) { return v < 4; }, ""));
  expect_refused(d.check(), "validator of field 'n' has no message");
}

TEST(Check, NestedDescriptionsAreCheckedToo) {
  struct Outer {
    S inner;
  };
  static constexpr auto bad_inner = describe<S>("", {}, field("n", &S::n));
  static constexpr auto d = describe<Outer>("outer", {}, field("inner", &Outer::inner, bad_inner));
  Status st = d.check();
  expect_refused(st, "empty name");
  EXPECT_EQ(st.path(), "outer");
}

}  // namespace
}  // namespace ferry::vmstate
