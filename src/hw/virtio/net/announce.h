// virtio-net's names for the generic self-announcement (net/announce.h), which every NIC
// shares; the guest-side part is guest_announce.h.
#pragma once

#include "net/announce.h"

namespace ferry::virtio::net {

using ::ferry::net::AnnounceParameters;
using ::ferry::net::announce_delay_ms;
using ::ferry::net::kAnnounceFrameSize;
using ::ferry::net::rarp_announce_frame;

}  // namespace ferry::virtio::net
