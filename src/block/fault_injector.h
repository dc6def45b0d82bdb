// Fault injection for tests (QEMU's blkdebug, reduced): rules that make matching block
// requests fail with an errno, wait before they are performed, and/or stay held at the
// backend until released.
//
// A rule matches a request when
//   - its op is unset (any) or equals the request's op, and
//   - the request's byte range [offset, offset+length) overlaps the rule's range
//     [offset, offset+length) (a zero-length request, such as a flush, counts as the single
//     byte at its offset, which is 0 for flushes).
// A matching rule lets its first `after` matches pass untouched, then fires on every later
// match (only on the first one when `once`; the rule is then spent and removed). When it
// fires:
//   - error != 0: the request completes with -error and never reaches the file;
//   - delay_ns > 0: the request is performed (or fails) that much later, measured on the
//     real clock with an EventLoop timer;
//   - hold: the request is parked at the backend until released (BlockBackend::release_held,
//     QMP x-blkdebug-release) or until the backend drains (a VM stop must never hang on a
//     test's hold); its delay, if any, counts from the release. So a test creates "writes
//     are at the backend when the stop begins" as a fact rather than hoping a delay outlasts
//     the scheduler, and hold with delay-ms guarantees the drain takes at least the delay.
// When several rules fire for one request, the first error (in rule order), the longest
// delay and any hold apply. Every matching rule counts the request, whether or not another
// one fired.
//
// Threading: owned by one BlockBackend and used on its loop thread only.
//
// Text form (`-blkdebug drive=ID,...` and the QMP command, wired by the VM layer):
//   op=read|write|flush|discard|write-zeroes|any,errno=EIO|ENOSPC|none,offset=N,length=N,
//   after=N,once=on,delay-ms=N,hold=on
// errno defaults to EIO, or to none when delay-ms or hold is given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/qemu_opts.h"
#include "base/status.h"
#include "block/block_op.h"

namespace ferry::block {

struct FaultRule {
  std::optional<BlockOp> op;    // nullopt: any op
  uint64_t offset = 0;          // byte range the request must overlap
  uint64_t length = UINT64_MAX;
  uint64_t after = 0;           // let this many matching requests succeed first
  bool once = false;            // fire once, then the rule is removed
  int error = 0;                // EIO, ENOSPC, ...; 0 = no error
  int64_t delay_ns = 0;         // postpone the request by this much
  bool hold = false;            // park the request until released (or drained)
};

// "op=write,errno=EIO,offset=0,length=4096,after=2,once=on,delay-ms=20,hold=on" (only
// fields that differ from the defaults, op and errno first).
std::string describe_fault_rule(const FaultRule& rule);

// The verdict for one request.
struct FaultDecision {
  int error = 0;         // > 0: fail with -error
  int64_t delay_ns = 0;  // > 0: postpone (after the release, when held)
  bool hold = false;     // park until released
  bool any() const { return error != 0 || delay_ns > 0 || hold; }
};

class FaultInjector {
 public:
  void add(FaultRule rule);
  void clear();
  // The rules still active, in the order they were added.
  std::vector<FaultRule> rules() const;
  bool empty() const { return rules_.empty(); }

  // Called by the backend once per submitted request; counts the match and applies
  // after/once. Cheap when there are no rules.
  FaultDecision check(BlockOp op, uint64_t offset, uint64_t length) {
    if (rules_.empty()) return {};
    return check_rules(op, offset, length);
  }

 private:
  struct ActiveRule {
    FaultRule rule;
    uint64_t matched = 0;  // matching requests seen so far
  };
  FaultDecision check_rules(BlockOp op, uint64_t offset, uint64_t length);

  std::vector<ActiveRule> rules_;
};

// The option schema of the text form ("-blkdebug"), so a caller can add its own keys
// (such as drive=ID) and then convert with fault_rule_from_opts.
OptSchema fault_rule_schema();
Result<FaultRule> fault_rule_from_opts(const Opts& opts);
// Parses the text form above; errors name the property and the value found.
Result<FaultRule> parse_fault_rule(std::string_view text);

}  // namespace ferry::block
