// QEMU's "globalstate" section: the run state the source VM was in when migration stopped
// it, so that the destination ends in the same state. A VM that ran continues running on
// the destination; one that was paused — by `stop`, or by a block error policy
// (io-error) — stays paused there until `cont`, which is what lets a VM paused on a full
// host disk move to another host and retry its held requests there.
//
// Wire shape as QEMU's (migration/global_state.c): be32 size (string length + 1), then
// the run state name in a 100-byte NUL-padded buffer.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "base/status.h"
#include "vm/run_state.h"
#include "vmstate/vmstate.h"

namespace ferry::vm {

struct GlobalState {
  uint32_t size = 0;
  std::array<uint8_t, 100> runstate{};
  // Set on a destination by a successful load.
  std::optional<RunState> received;

  void store(RunState state);
  static Status pre_save(GlobalState& s);
  static Status post_load(GlobalState& s, int version);
};

inline constexpr auto kGlobalStateDesc = vmstate::describe<GlobalState>(
    "globalstate", {.version = 1, .pre_save = &GlobalState::pre_save,
                    .post_load = &GlobalState::post_load},
    vmstate::field("size", &GlobalState::size), vmstate::buffer("runstate", &GlobalState::runstate));

}  // namespace ferry::vm
