// Little helpers the controller's command handlers share: reading command dwords out of a
// request's SQE (little-endian loads and stores themselves are base/byte_order.h).
#pragma once

#include <cstdint>
#include <span>

#include "base/byte_order.h"
#include "hw/nvme/controller_state.h"
#include "spec/nvme.h"

namespace ferry::nvme {

inline constexpr uint32_t kBroadcastNsid = 0xffffffff;
// Do Not Retry, or'ed into the statuses of commands that would fail again.
inline constexpr uint16_t kDnr = spec::nvme::kStatusDnr;

// Command dword n (10..15) of the request's SQE.
inline uint32_t cdw(const Request& r, unsigned n) {
  return load_le<uint32_t>(r.sqe.data() + spec::nvme::sqe_cdw(n));
}
// A 64-bit SQE field (PRP1 at 24, PRP2 at 32).
inline uint64_t sqe_u64(const Request& r, unsigned at) {
  return load_le<uint64_t>(r.sqe.data() + at);
}

// QEMU's nvme_nsid_valid: 1..256 or the broadcast id.
inline bool nsid_valid(uint32_t nsid, uint32_t max_namespaces) {
  return nsid != 0 && (nsid <= max_namespaces || nsid == kBroadcastNsid);
}

}  // namespace ferry::nvme
