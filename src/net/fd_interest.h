// The epoll interest of a backend's socket or tap fd, changed only when it differs: the
// datagram and tap backends share it (the stream backend adds its hang-up rule on top).
#pragma once

#include <cstdint>

#include "base/event_loop.h"
#include "base/status.h"

namespace ferry::net {

// Moves `fd`'s interest in `loop` to `wanted` (0: not watched), starting the watch with
// `on_ready` when there was none. `watched` is the caller's record of the current interest
// and is updated even on error, so the next call does not retry a failing change forever.
inline Status set_fd_interest(EventLoop& loop, int fd, uint32_t wanted, uint32_t& watched,
                              const EventLoop::FdCallback& on_ready) {
  if (wanted == watched) return {};
  Status st;
  if (watched == 0)
    st = loop.watch_fd(fd, wanted, on_ready);
  else if (wanted == 0)
    loop.unwatch_fd(fd);
  else
    st = loop.modify_fd(fd, wanted);
  watched = wanted;
  return st;
}

}  // namespace ferry::net
