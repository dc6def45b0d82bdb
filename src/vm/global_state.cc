#include "vm/global_state.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <string>

namespace ferry::vm {

void GlobalState::store(RunState state) {
  std::string_view name = run_state_name(state);
  runstate.fill(0);
  std::copy_n(name.begin(), std::min(name.size(), runstate.size() - 1), runstate.begin());
}

Status GlobalState::pre_save(GlobalState& s) {
  s.size = static_cast<uint32_t>(::strnlen(reinterpret_cast<const char*>(s.runstate.data()),
                                           s.runstate.size()) +
                                 1);
  return {};
}

Status GlobalState::post_load(GlobalState& s, int) {
  if (s.size > s.runstate.size())
    return Status(ErrorCode::kCorrupt,
                  fmt::format("size {} is above the {}-byte run state buffer", s.size,
                              s.runstate.size()))
        .prepend_path("size");
  size_t length = ::strnlen(reinterpret_cast<const char*>(s.runstate.data()), s.runstate.size());
  std::string name(reinterpret_cast<const char*>(s.runstate.data()), length);
  std::optional<RunState> state = run_state_from_name(name);
  if (!state)
    return Status(ErrorCode::kCorrupt, fmt::format("invalid run state '{}'", name))
        .prepend_path("runstate");
  s.received = state;
  return {};
}

}  // namespace ferry::vm
