// NVMe commands as bytes: a 64-byte submission queue entry with typed setters, the
// 16-byte completion entry parsed, builders for the admin and NVM commands the driver
// sends, and a readable name for every status field. Pure data: no bus, no queues.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "spec/nvme.h"

namespace ferry::guest::nvme {

// A submission queue entry. Every byte is reachable, so tests can build malformed
// commands; the setters are shorthands for the specification's fields.
struct Sqe {
  std::array<uint8_t, spec::nvme::kSqeSize> bytes{};

  uint8_t opcode() const { return bytes[spec::nvme::kSqeOpcode]; }
  uint16_t cid() const { return static_cast<uint16_t>(u32(spec::nvme::kSqeCid) & 0xffff); }
  uint32_t nsid() const { return u32(spec::nvme::kSqeNsid); }
  uint8_t psdt() const { return bytes[spec::nvme::kSqeFlags] >> spec::nvme::kPsdtShift; }
  uint64_t prp1() const { return u64(spec::nvme::kSqePrp1); }
  uint64_t prp2() const { return u64(spec::nvme::kSqePrp2); }
  uint32_t cdw(unsigned n) const { return u32(spec::nvme::sqe_cdw(n)); }

  Sqe& set_opcode(uint8_t op) { bytes[spec::nvme::kSqeOpcode] = op; return *this; }
  Sqe& set_cid(uint16_t cid);
  Sqe& set_nsid(uint32_t nsid) { put32(spec::nvme::kSqeNsid, nsid); return *this; }
  Sqe& set_fuse(uint8_t fuse);
  Sqe& set_psdt(uint8_t psdt);
  Sqe& set_mptr(uint64_t mptr) { put64(spec::nvme::kSqeMptr, mptr); return *this; }
  Sqe& set_prp1(uint64_t prp) { put64(spec::nvme::kSqePrp1, prp); return *this; }
  Sqe& set_prp2(uint64_t prp) { put64(spec::nvme::kSqePrp2, prp); return *this; }
  // The 16-byte SGL descriptor that replaces PRP1/PRP2 when PSDT selects SGLs.
  Sqe& set_sgl1(std::span<const uint8_t, spec::nvme::kSglDescriptorSize> descriptor);
  Sqe& set_cdw(unsigned n, uint32_t value) { put32(spec::nvme::sqe_cdw(n), value); return *this; }

  uint32_t u32(unsigned offset) const;
  uint64_t u64(unsigned offset) const;
  void put32(unsigned offset, uint32_t value);
  void put64(unsigned offset, uint64_t value);
};

// A completion queue entry, decoded.
struct Completion {
  uint32_t dw0 = 0;
  uint32_t dw1 = 0;
  uint16_t sq_head = 0;
  uint16_t sq_id = 0;
  uint16_t cid = 0;
  uint16_t status = 0;  // the 15-bit status field (SC | SCT << 8 | CRD | M | DNR), no phase
  bool phase = false;

  static Completion parse(std::span<const uint8_t, spec::nvme::kCqeSize> bytes);
  // SCT and SC only (the bits tests compare; CRD/M/DNR masked off).
  uint16_t code() const { return status & 0x7ff; }
  bool ok() const { return code() == 0; }
  bool dnr() const { return (status & spec::nvme::kStatusDnr) != 0; }
};

// "SCT 1 SC 0x01 (Invalid Queue Identifier)" for a status field; "success" for 0.
std::string describe_status(uint16_t status);

// A 16-byte SGL descriptor.
std::array<uint8_t, spec::nvme::kSglDescriptorSize> sgl_descriptor(uint64_t address,
                                                                   uint32_t length, uint8_t type,
                                                                   uint8_t subtype = 0);

// ---- command builders (data pointers are filled in by the submission path) ---------------
namespace commands {
Sqe identify(uint8_t cns, uint32_t nsid = 0, uint16_t cntid = 0, uint8_t csi = 0);
// `entries` is the real number of entries (the builders store the 0's based value).
Sqe create_io_cq(uint16_t qid, uint32_t entries, uint64_t address, bool interrupts,
                 uint16_t vector, bool contiguous = true);
Sqe create_io_sq(uint16_t qid, uint32_t entries, uint64_t address, uint16_t cqid,
                 uint8_t priority = 0, bool contiguous = true);
Sqe delete_io_sq(uint16_t qid);
Sqe delete_io_cq(uint16_t qid);
Sqe set_features(uint8_t fid, uint32_t cdw11, bool save = false, uint32_t nsid = 0);
Sqe get_features(uint8_t fid, uint8_t select = 0, uint32_t nsid = 0);
// Number of Queues: counts are real numbers of queues (stored 0's based).
Sqe set_number_of_queues(uint16_t submission_queues, uint16_t completion_queues);
// `bytes` must be a multiple of 4.
Sqe get_log_page(uint8_t lid, uint32_t bytes, uint32_t nsid = 0xffffffff, uint64_t offset = 0,
                 bool retain_async_event = false);
Sqe async_event_request();
Sqe abort(uint16_t sqid, uint16_t cid);
// Read/write/compare: `blocks` is the real number of logical blocks (stored 0's based).
Sqe read(uint32_t nsid, uint64_t slba, uint32_t blocks);
Sqe write(uint32_t nsid, uint64_t slba, uint32_t blocks);
Sqe io(uint8_t opcode, uint32_t nsid, uint64_t slba, uint32_t blocks);
Sqe flush(uint32_t nsid);
Sqe write_zeroes(uint32_t nsid, uint64_t slba, uint32_t blocks);
}  // namespace commands

}  // namespace ferry::guest::nvme
