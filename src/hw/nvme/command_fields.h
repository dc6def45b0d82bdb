// Little helpers the controller's command handlers share: reading command dwords out of a
// request's SQE and storing little-endian fields into data structures for the host.
#pragma once

#include <cstdint>
#include <span>

#include "hw/nvme/controller_state.h"
#include "spec/nvme.h"

namespace ferry::nvme {

inline constexpr uint32_t kBroadcastNsid = 0xffffffff;
// Do Not Retry, or'ed into the statuses of commands that would fail again.
inline constexpr uint16_t kDnr = spec::nvme::kStatusDnr;

inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
inline uint64_t load_le64(const uint8_t* p) {
  return uint64_t{load_le32(p)} | uint64_t{load_le32(p + 4)} << 32;
}

// Command dword n (10..15) of the request's SQE.
inline uint32_t cdw(const Request& r, unsigned n) {
  return load_le32(r.sqe.data() + spec::nvme::sqe_cdw(n));
}
// A 64-bit SQE field (PRP1 at 24, PRP2 at 32).
inline uint64_t sqe_u64(const Request& r, unsigned at) { return load_le64(r.sqe.data() + at); }

// Stores the low `bytes` bytes of `value` little-endian at `out[at]`.
inline void store_le(std::span<uint8_t> out, size_t at, uint64_t value, unsigned bytes) {
  for (unsigned i = 0; i < bytes; ++i) out[at + i] = static_cast<uint8_t>(value >> (8 * i));
}

// QEMU's nvme_nsid_valid: 1..256 or the broadcast id.
inline bool nsid_valid(uint32_t nsid, uint32_t max_namespaces) {
  return nsid != 0 && (nsid <= max_namespaces || nsid == kBroadcastNsid);
}

}  // namespace ferry::nvme
