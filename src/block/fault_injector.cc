#include "block/fault_injector.h"

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

namespace ferry::block {
namespace {

struct ErrnoName {
  std::string_view name;
  int value;
};
// The errnos a rule may inject: the ones the error policies (werror/rerror) tell apart,
// plus a few a device must cope with.
constexpr ErrnoName kErrnos[] = {
    {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EINVAL", EINVAL}, {"EROFS", EROFS},
    {"EPERM", EPERM}, {"EACCES", EACCES}, {"ENOMEM", ENOMEM}, {"none", 0},
};

std::string_view errno_name(int value) {
  for (const ErrnoName& e : kErrnos) {
    if (e.value == value) return e.name;
  }
  return {};
}

// [a, a+alen) overlaps [b, b+blen), with lengths saturating at the end of the u64 range
// and a zero length standing for one byte.
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  uint64_t a_last = a + std::max<uint64_t>(alen, 1) - 1;
  if (a_last < a) a_last = UINT64_MAX;
  uint64_t b_last = b + std::max<uint64_t>(blen, 1) - 1;
  if (b_last < b) b_last = UINT64_MAX;
  return a <= b_last && b <= a_last;
}

}  // namespace

std::string describe_fault_rule(const FaultRule& rule) {
  std::string out = fmt::format("op={}", rule.op ? block_op_name(*rule.op) : "any");
  std::string_view name = errno_name(rule.error);
  if (name.empty()) {
    out += fmt::format(",errno={}", rule.error);
  } else {
    out += fmt::format(",errno={}", name);
  }
  if (rule.offset != 0) out += fmt::format(",offset={}", rule.offset);
  if (rule.length != UINT64_MAX) out += fmt::format(",length={}", rule.length);
  if (rule.after != 0) out += fmt::format(",after={}", rule.after);
  if (rule.once) out += ",once=on";
  if (rule.delay_ns != 0) {
    if (rule.delay_ns % 1'000'000 == 0) {
      out += fmt::format(",delay-ms={}", rule.delay_ns / 1'000'000);
    } else {
      out += fmt::format(",delay-ns={}", rule.delay_ns);
    }
  }
  if (rule.hold) out += ",hold=on";
  return out;
}

void FaultInjector::add(FaultRule rule) { rules_.push_back(ActiveRule{rule, 0}); }

void FaultInjector::clear() { rules_.clear(); }

std::vector<FaultRule> FaultInjector::rules() const {
  std::vector<FaultRule> out;
  out.reserve(rules_.size());
  for (const ActiveRule& active : rules_) out.push_back(active.rule);
  return out;
}

FaultDecision FaultInjector::check_rules(BlockOp op, uint64_t offset, uint64_t length) {
  FaultDecision decision;
  for (auto it = rules_.begin(); it != rules_.end();) {
    const FaultRule& rule = it->rule;
    bool matches = (!rule.op || *rule.op == op) &&
                   overlaps(offset, length, rule.offset, rule.length);
    if (!matches) {
      ++it;
      continue;
    }
    ++it->matched;
    if (it->matched <= rule.after) {
      ++it;
      continue;
    }
    if (decision.error == 0) decision.error = rule.error;
    decision.delay_ns = std::max(decision.delay_ns, rule.delay_ns);
    decision.hold = decision.hold || rule.hold;
    it = rule.once ? rules_.erase(it) : it + 1;
  }
  return decision;
}

OptSchema fault_rule_schema() {
  std::vector<std::string> errnos;
  for (const ErrnoName& e : kErrnos) errnos.emplace_back(e.name);
  return OptSchema{
      .option = "-blkdebug",
      .properties = {
          {.name = "op",
           .default_value = "any",
           .help = "request kind to match",
           .choices = {"read", "write", "flush", "discard", "write-zeroes", "any"}},
          {.name = "errno",
           .help = "error to complete with (default EIO, none with delay-ms or hold)",
           .choices = errnos},
          {.name = "offset", .type = OptType::kNumber, .default_value = "0",
           .help = "first byte of the range to match"},
          {.name = "length", .type = OptType::kNumber,
           .help = "bytes in the range to match (default: to the end)"},
          {.name = "after", .type = OptType::kNumber, .default_value = "0",
           .help = "matching requests to let through first"},
          {.name = "once", .type = OptType::kBool, .default_value = "off",
           .help = "fire only once"},
          {.name = "delay-ms", .type = OptType::kNumber, .default_value = "0",
           .help = "postpone matching requests by this many milliseconds"},
          {.name = "hold", .type = OptType::kBool, .default_value = "off",
           .help = "park matching requests until x-blkdebug-release or a drain"},
      }};
}

Result<FaultRule> fault_rule_from_opts(const Opts& opts) {
  FaultRule rule;
  std::string op = opts.string("op").value_or("any");
  if (op != "any") rule.op = block_op_from_name(op);
  rule.offset = opts.number("offset").value_or(0);
  rule.length = opts.number("length").value_or(UINT64_MAX);
  if (opts.is_set("length") && rule.length == 0) {
    return Error(ErrorCode::kInvalidArgument, "-blkdebug: Parameter 'length' must not be 0");
  }
  rule.after = opts.number("after").value_or(0);
  rule.once = opts.boolean("once").value_or(false);
  uint64_t delay_ms = opts.number("delay-ms").value_or(0);
  // Up to about 24 days: far beyond any test, and the product fits in int64 nanoseconds.
  constexpr uint64_t kMaxDelayMs = uint64_t{1} << 31;
  if (delay_ms > kMaxDelayMs) {
    return Error(ErrorCode::kOutOfRange, "-blkdebug: delay-ms {} is too large (at most {})",
                 delay_ms, kMaxDelayMs);
  }
  rule.delay_ns = static_cast<int64_t>(delay_ms) * 1'000'000;
  rule.hold = opts.boolean("hold").value_or(false);
  std::optional<std::string> error = opts.string("errno");
  if (!error) {
    rule.error = rule.delay_ns > 0 || rule.hold ? 0 : EIO;
  } else {
    for (const ErrnoName& e : kErrnos) {
      if (e.name == *error) rule.error = e.value;
    }
  }
  return rule;
}

Result<FaultRule> parse_fault_rule(std::string_view text) {
  auto opts = parse_opts(fault_rule_schema(), text);
  if (!opts.ok()) return opts.take_status();
  return fault_rule_from_opts(*opts);
}

}  // namespace ferry::block
