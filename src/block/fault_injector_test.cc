#include "block/fault_injector.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace ferry::block {
namespace {

TEST(BlockOp, Names) {
  EXPECT_EQ(block_op_name(BlockOp::kRead), "read");
  EXPECT_EQ(block_op_name(BlockOp::kWrite), "write");
  EXPECT_EQ(block_op_name(BlockOp::kFlush), "flush");
  EXPECT_EQ(block_op_name(BlockOp::kDiscard), "discard");
  EXPECT_EQ(block_op_name(BlockOp::kWriteZeroes), "write-zeroes");
  EXPECT_EQ(block_op_from_name("write-zeroes"), BlockOp::kWriteZeroes);
  EXPECT_EQ(block_op_from_name("trim"), std::nullopt);
}

TEST(FaultInjector, NoRulesNoFaults) {
  FaultInjector faults;
  EXPECT_TRUE(faults.empty());
  EXPECT_FALSE(faults.check(BlockOp::kWrite, 0, 4096).any());
}

TEST(FaultInjector, OpFilter) {
  FaultInjector faults;
  faults.add({.op = BlockOp::kWrite, .error = EIO});
  EXPECT_EQ(faults.check(BlockOp::kRead, 0, 512).error, 0);
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, EIO);
  EXPECT_EQ(faults.check(BlockOp::kFlush, 0, 0).error, 0);
  faults.clear();
  faults.add({.error = ENOSPC});  // any op
  EXPECT_EQ(faults.check(BlockOp::kFlush, 0, 0).error, ENOSPC);
  EXPECT_EQ(faults.check(BlockOp::kDiscard, 1 << 20, 4096).error, ENOSPC);
}

TEST(FaultInjector, RangeMustOverlap) {
  FaultInjector faults;
  faults.add({.offset = 4096, .length = 4096, .error = EIO});
  EXPECT_EQ(faults.check(BlockOp::kRead, 0, 4096).error, 0);        // ends right before
  EXPECT_EQ(faults.check(BlockOp::kRead, 8192, 4096).error, 0);     // starts right after
  EXPECT_EQ(faults.check(BlockOp::kRead, 4095, 2).error, EIO);      // touches the first byte
  EXPECT_EQ(faults.check(BlockOp::kRead, 8191, 1).error, EIO);      // the last byte
  EXPECT_EQ(faults.check(BlockOp::kRead, 0, 1 << 20).error, EIO);   // covers it all
  EXPECT_EQ(faults.check(BlockOp::kFlush, 0, 0).error, 0);          // a flush is at offset 0
  // A rule reaching the end of the u64 range does not wrap.
  faults.clear();
  faults.add({.offset = UINT64_MAX - 10, .error = EIO});
  EXPECT_EQ(faults.check(BlockOp::kRead, 0, 4096).error, 0);
  EXPECT_EQ(faults.check(BlockOp::kRead, UINT64_MAX - 20, 15).error, EIO);
}

TEST(FaultInjector, AfterLetsRequestsThrough) {
  FaultInjector faults;
  faults.add({.op = BlockOp::kWrite, .after = 2, .error = EIO});
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, 0);
  EXPECT_EQ(faults.check(BlockOp::kRead, 0, 512).error, 0);  // does not count
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, 0);
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, EIO);
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, EIO);
}

TEST(FaultInjector, OnceRemovesTheRule) {
  FaultInjector faults;
  faults.add({.after = 1, .once = true, .error = ENOSPC});
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, 0);
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, ENOSPC);
  EXPECT_TRUE(faults.empty());
  EXPECT_EQ(faults.check(BlockOp::kWrite, 0, 512).error, 0);
}

TEST(FaultInjector, DelayAndCombination) {
  FaultInjector faults;
  faults.add({.op = BlockOp::kRead, .delay_ns = 5'000'000});
  faults.add({.op = BlockOp::kRead, .offset = 0, .length = 512, .error = EIO,
              .delay_ns = 1'000'000});
  FaultDecision far = faults.check(BlockOp::kRead, 4096, 512);
  EXPECT_EQ(far.error, 0);
  EXPECT_EQ(far.delay_ns, 5'000'000);
  FaultDecision near = faults.check(BlockOp::kRead, 0, 512);
  EXPECT_EQ(near.error, EIO);
  EXPECT_EQ(near.delay_ns, 5'000'000);  // the longest delay
  ASSERT_EQ(faults.rules().size(), 2u);
  EXPECT_EQ(faults.rules()[1].error, EIO);
}

TEST(FaultInjector, HoldCombinesWithTheOtherRules) {
  FaultInjector faults;
  faults.add({.op = BlockOp::kWrite, .hold = true});
  faults.add({.op = BlockOp::kWrite, .offset = 0, .length = 512, .delay_ns = 7'000'000});
  FaultDecision far = faults.check(BlockOp::kWrite, 4096, 512);
  EXPECT_TRUE(far.hold);
  EXPECT_TRUE(far.any());
  EXPECT_EQ(far.error, 0);
  EXPECT_EQ(far.delay_ns, 0);
  FaultDecision near = faults.check(BlockOp::kWrite, 0, 512);
  EXPECT_TRUE(near.hold);
  EXPECT_EQ(near.delay_ns, 7'000'000);  // waited out after the release
  EXPECT_FALSE(faults.check(BlockOp::kRead, 0, 512).hold);
}

TEST(FaultRuleText, HoldParsesAndDefaultsToNoError) {
  auto rule = parse_fault_rule("op=write,hold=on,delay-ms=20");
  ASSERT_TRUE(rule.ok()) << rule.status().to_string();
  EXPECT_TRUE(rule->hold);
  EXPECT_EQ(rule->error, 0);  // a hold alone does not fail
  EXPECT_EQ(describe_fault_rule(*rule), "op=write,errno=none,delay-ms=20,hold=on");
  auto failing = parse_fault_rule("hold=on,errno=EIO");
  ASSERT_TRUE(failing.ok());
  EXPECT_EQ(failing->error, EIO);
  auto off = parse_fault_rule("op=read,hold=off");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->hold);
  EXPECT_EQ(off->error, EIO);
  auto bad = parse_fault_rule("hold=held");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "-blkdebug: Parameter 'hold' expects 'on' or 'off', found 'held'");
}

TEST(FaultRuleText, EveryField) {
  auto rule = parse_fault_rule(
      "op=write-zeroes,errno=ENOSPC,offset=4096,length=0x1000,after=3,once=on,delay-ms=20");
  ASSERT_TRUE(rule.ok()) << rule.status().to_string();
  EXPECT_EQ(rule->op, BlockOp::kWriteZeroes);
  EXPECT_EQ(rule->error, ENOSPC);
  EXPECT_EQ(rule->offset, 4096u);
  EXPECT_EQ(rule->length, 4096u);
  EXPECT_EQ(rule->after, 3u);
  EXPECT_TRUE(rule->once);
  EXPECT_EQ(rule->delay_ns, 20'000'000);
  EXPECT_EQ(describe_fault_rule(*rule),
            "op=write-zeroes,errno=ENOSPC,offset=4096,length=4096,after=3,once=on,delay-ms=20");
}

TEST(FaultRuleText, Defaults) {
  auto rule = parse_fault_rule("op=read");
  ASSERT_TRUE(rule.ok());
  EXPECT_EQ(rule->op, BlockOp::kRead);
  EXPECT_EQ(rule->error, EIO);  // failing is the default
  EXPECT_EQ(rule->offset, 0u);
  EXPECT_EQ(rule->length, UINT64_MAX);
  EXPECT_EQ(rule->after, 0u);
  EXPECT_FALSE(rule->once);
  EXPECT_EQ(rule->delay_ns, 0);

  auto any = parse_fault_rule("op=any,errno=EIO");
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->op, std::nullopt);
  auto empty = parse_fault_rule("");
  ASSERT_TRUE(empty.ok()) << empty.status().to_string();
  EXPECT_EQ(empty->op, std::nullopt);
  EXPECT_EQ(empty->error, EIO);

  auto delay_only = parse_fault_rule("op=flush,delay-ms=5");  // a delay alone does not fail
  ASSERT_TRUE(delay_only.ok());
  EXPECT_EQ(delay_only->error, 0);
  EXPECT_EQ(delay_only->delay_ns, 5'000'000);
  auto both = parse_fault_rule("delay-ms=5,errno=EIO");
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both->error, EIO);
  auto none = parse_fault_rule("errno=none");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->error, 0);
  for (const char* op : {"read", "write", "flush", "discard", "write-zeroes"}) {
    auto r = parse_fault_rule(std::string("op=") + op);
    ASSERT_TRUE(r.ok()) << op;
    EXPECT_EQ(block_op_name(*r->op), op);
  }
}

TEST(FaultRuleText, ErrorsNameTheValue) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"op=trim", "-blkdebug: Parameter 'op' expects read, write, flush, discard, "
                  "write-zeroes or any, found 'trim'"},
      {"errno=EAGAIN", "-blkdebug: Parameter 'errno' expects EIO, ENOSPC, EINVAL, EROFS, EPERM, "
                       "EACCES, ENOMEM or none, found 'EAGAIN'"},
      {"offset=-1", "-blkdebug: Parameter 'offset' expects a number, found '-1'"},
      {"length=0", "-blkdebug: Parameter 'length' must not be 0"},
      {"after=x", "-blkdebug: Parameter 'after' expects a number, found 'x'"},
      {"once=twice", "-blkdebug: Parameter 'once' expects 'on' or 'off', found 'twice'"},
      {"delay-ms=1s", "-blkdebug: Parameter 'delay-ms' expects a number, found '1s'"},
      {"delay-ms=99999999999", "-blkdebug: delay-ms 99999999999 is too large (at most "
                               "2147483648)"},
      {"drive=d0", "-blkdebug: Invalid parameter 'drive'"},
  };
  for (const Case& c : cases) {
    auto rule = parse_fault_rule(c.text);
    ASSERT_FALSE(rule.ok()) << c.text;
    EXPECT_EQ(rule.status().message(), c.message) << c.text;
  }
}

TEST(FaultRuleText, SchemaCanBeExtended) {
  OptSchema schema = fault_rule_schema();
  schema.properties.push_back({.name = "drive"});
  auto opts = parse_opts(schema, "drive=d0,op=write,once=on");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  EXPECT_EQ(opts->string("drive"), "d0");
  auto rule = fault_rule_from_opts(*opts);
  ASSERT_TRUE(rule.ok());
  EXPECT_EQ(rule->op, BlockOp::kWrite);
  EXPECT_TRUE(rule->once);
}

}  // namespace
}  // namespace ferry::block
