// One NVMe namespace (NVM command set) over a block backend: its geometry (LBA size and
// count), the LBA range check I/O commands need, and the Identify data structures that
// describe it to the guest, laid out as QEMU 7.2's `nvme-ns` lays out a plain raw
// namespace (no metadata, no protection information, no zones).
//
// A Namespace is immutable after create(); the controller owns it and calls it from the
// main loop (or under the machine lock).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "base/status.h"
#include "block/block_backend.h"

namespace ferry::nvme {

struct NamespaceConfig {
  uint32_t nsid = 1;
  block::BlockBackend* backend = nullptr;  // not owned; outlives the namespace
  uint32_t logical_block_size = 512;       // 512 or 4096
  std::array<uint8_t, 16> uuid{};          // given by the controller (deterministic)
  uint64_t eui64 = 0;                      // 0: none
};

// Highest namespace id a controller may use (QEMU's NVME_MAX_NAMESPACES).
inline constexpr uint32_t kMaxNamespaces = 256;

class Namespace {
 public:
  // Checks the configuration: a backend, a block size of 512 or 4096, a backend size
  // that is a non-zero multiple of the block size, nsid in 1..256. Errors name the
  // property and the value found.
  static Result<std::unique_ptr<Namespace>> create(const NamespaceConfig& config);

  uint32_t nsid() const { return config_.nsid; }
  uint32_t lba_size() const { return config_.logical_block_size; }
  unsigned lba_shift() const { return lba_shift_; }
  uint64_t lba_count() const { return lba_count_; }  // backend size / block size
  bool read_only() const { return config_.backend->read_only(); }
  block::BlockBackend& backend() const { return *config_.backend; }
  const NamespaceConfig& config() const { return config_; }

  // Identify data structures, written in full (4096 bytes, zero-filled first).
  void identify(std::span<uint8_t, 4096> out) const;               // CNS 00h
  void identify_descriptors(std::span<uint8_t, 4096> out) const;   // CNS 03h
  void identify_nvm_specific(std::span<uint8_t, 4096> out) const;  // CNS 05h, CSI NVM

  // 0 when [slba, slba + nlb) lies inside the namespace (nlb is a count, not 0's based),
  // else LBA Out of Range (with DNR). A range that wraps 64 bits is out of range.
  uint16_t check_range(uint64_t slba, uint64_t nlb) const;

 private:
  explicit Namespace(const NamespaceConfig& config);

  NamespaceConfig config_;
  unsigned lba_shift_ = 9;
  uint64_t lba_count_ = 0;
};

}  // namespace ferry::nvme
