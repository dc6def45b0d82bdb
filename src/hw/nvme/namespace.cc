// One NVMe namespace over a block backend: see namespace.h.
#include "hw/nvme/namespace.h"

#include <algorithm>
#include <bit>

#include "base/byte_order.h"
#include "spec/nvme.h"

namespace ferry::nvme {
namespace {

namespace sn = spec::nvme;

// The LBA formats QEMU 7.2 lists for every namespace (NLBAF = 7, eight entries): data
// sizes 512 and 4096, each with 0, 8, 16 and 64 bytes of metadata. Ferry formats only
// the two without metadata; the others are listed so a guest sees QEMU's table.
struct LbaFormat {
  uint16_t metadata_size;
  uint8_t lbads;  // log2 of the data size
};
constexpr LbaFormat kLbaFormats[] = {{0, 9},  {8, 9},  {16, 9},  {64, 9},
                                     {0, 12}, {8, 12}, {16, 12}, {64, 12}};

// The index in kLbaFormats of the format with this data size and no metadata.
uint8_t format_index(unsigned lba_shift) {
  for (uint8_t i = 0; i < std::size(kLbaFormats); ++i) {
    if (kLbaFormats[i].lbads == lba_shift && kLbaFormats[i].metadata_size == 0) return i;
  }
  return 0;  // unreachable: create() admits only 512 and 4096
}

// QEMU's default deallocation granularity: the larger of the block size and 4 KiB.
constexpr uint32_t kDiscardGranularity = 4096;

constexpr unsigned kNidHeaderSize = 4;  // NIDT, NIDL, 2 reserved bytes

}  // namespace

Result<std::unique_ptr<Namespace>> Namespace::create(const NamespaceConfig& config) {
  if (config.nsid == 0 || config.nsid > kMaxNamespaces)
    return Error(ErrorCode::kInvalidArgument, "nsid {} is not in 1..{}", config.nsid,
                 kMaxNamespaces);
  if (config.backend == nullptr)
    return Error(ErrorCode::kInvalidArgument, "nsid {} has no drive", config.nsid);
  uint32_t lbs = config.logical_block_size;
  if (lbs != 512 && lbs != 4096)
    return Error(ErrorCode::kInvalidArgument,
                 "logical_block_size {} is not 512 or 4096", lbs);
  const block::BlockBackend& backend = *config.backend;
  uint64_t size = backend.size_bytes();
  if (size == 0 || size % lbs != 0)
    return Error(ErrorCode::kInvalidArgument,
                 "drive '{}' size {} bytes is not a non-zero multiple of "
                 "logical_block_size {}",
                 backend.config().id, size, lbs);
  // With O_DIRECT the backend needs whole aligned blocks; smaller blocks would turn
  // writes into read-modify-write cycles that are not serialised against each other.
  if (backend.required_alignment() > lbs)
    return Error(ErrorCode::kInvalidArgument,
                 "logical_block_size {} is smaller than the {}-byte alignment "
                 "drive '{}' needs (cache mode without the page cache)",
                 lbs, backend.required_alignment(), backend.config().id);
  return std::unique_ptr<Namespace>(new Namespace(config));
}

Namespace::Namespace(const NamespaceConfig& config)
    : config_(config),
      lba_shift_(static_cast<unsigned>(std::countr_zero(config.logical_block_size))),
      lba_count_(config.backend->size_bytes() >> lba_shift_) {}

void Namespace::identify(std::span<uint8_t, 4096> out) const {
  std::fill(out.begin(), out.end(), uint8_t{0});
  // NSZE, NCAP, NUSE: the whole backend, fully provisioned (no thin provisioning).
  store_le(out, sn::kIdNsNsze, lba_count_, 8);
  store_le(out, sn::kIdNsNcap, lba_count_, 8);
  store_le(out, sn::kIdNsNuse, lba_count_, 8);
  // NSFEAT: bit 4 — the I/O optimisation fields (NPWG, NPWA, NPDG, NPDA, NOWS) are
  // valid. Bit 2 (Deallocated or Unwritten Logical Block errors, which QEMU 7.2 sets) stays
  // clear: Error Recovery refuses DULBE, and the two must agree.
  out[sn::kIdNsNsfeat] = sn::kNsfeatOptperf;
  // NLBAF: eight formats, 0's based.
  out[sn::kIdNsNlbaf] = static_cast<uint8_t>(std::size(kLbaFormats) - 1);
  // FLBAS: the format in use (bits 3:0); bit 4 (extended metadata) clear.
  out[sn::kIdNsFlbas] = format_index(lba_shift_);
  // MC: metadata may be sent as extended LBA (bit 0) or in a separate buffer (bit 1).
  out[sn::kIdNsMc] = 0x03;
  // DPC: protection types 1-3 and PI in the first or last 8 bytes — as QEMU advertises
  // them; DPS = 0 says none is enabled on this namespace.
  out[sn::kIdNsDpc] = 0x1f;
  out[sn::kIdNsDps] = 0;
  // NMIC = 0: private namespace (Ferry has no NVM subsystems to share it).
  out[sn::kIdNsNmic] = 0;
  // DLFEAT: bits 2:0 = 001b, deallocated blocks read as zeroes (a hole in a raw file).
  out[sn::kIdNsDlfeat] = 0x01;
  // NPWG, NPWA, NOWS stay 0 (one block). NPDG/NPDA (0's based): the deallocation
  // granularity, max(block size, 4 KiB), in blocks.
  uint32_t granularity_blocks = std::max(kDiscardGranularity, lba_size()) / lba_size();
  store_le(out, sn::kIdNsNpdg, granularity_blocks - 1, 2);
  store_le(out, sn::kIdNsNpda, granularity_blocks - 1, 2);
  // MSSRL, MCL, MSRC stay 0: Ferry does not offer the Copy command. NVMCAP stays 0, as
  // in QEMU 7.2. NGUID stays 0.
  // EUI64: stored big-endian (byte 0 is the most significant), as QEMU stores it.
  for (unsigned i = 0; i < 8; ++i)
    out[sn::kIdNsEui64 + i] = static_cast<uint8_t>(config_.eui64 >> (56 - 8 * i));
  // LBAF0..7: MS 15:0, LBADS 23:16, RP 25:24 (0: best performance).
  for (size_t i = 0; i < std::size(kLbaFormats); ++i) {
    uint32_t lbaf = kLbaFormats[i].metadata_size |
                    uint32_t{kLbaFormats[i].lbads} << sn::kLbafLbadsShift;
    store_le(out, sn::kIdNsLbaf0 + 4 * i, lbaf, 4);
  }
}

void Namespace::identify_descriptors(std::span<uint8_t, 4096> out) const {
  std::fill(out.begin(), out.end(), uint8_t{0});
  size_t at = 0;
  auto add = [&](uint8_t nidt, uint8_t nidl) {
    out[at] = nidt;
    out[at + 1] = nidl;
    size_t value = at + kNidHeaderSize;
    at = value + nidl;
    return value;
  };
  // UUID, always: with NGUID and EUI64 possibly zero, the spec needs one identifier.
  size_t uuid = add(sn::kNidtUuid, sn::kNidlUuid);
  std::copy(config_.uuid.begin(), config_.uuid.end(), out.begin() + uuid);
  if (config_.eui64 != 0) {
    size_t eui = add(sn::kNidtEui64, sn::kNidlEui64);
    for (unsigned i = 0; i < 8; ++i)
      out[eui + i] = static_cast<uint8_t>(config_.eui64 >> (56 - 8 * i));
  }
  size_t csi = add(sn::kNidtCsi, sn::kNidlCsi);
  out[csi] = sn::kCsiNvm;
  // The list ends at the first descriptor with NIDL 0 (the zero fill).
}

void Namespace::identify_nvm_specific(std::span<uint8_t, 4096> out) const {
  // I/O Command Set specific Identify Namespace for NVM: LBSTM, PIC and the extended
  // LBA formats are all 0 without protection information (as QEMU 7.2 with pif=0).
  std::fill(out.begin(), out.end(), uint8_t{0});
}

uint16_t Namespace::check_range(uint64_t slba, uint64_t nlb) const {
  if (nlb > lba_count_ || slba > lba_count_ - nlb)
    return sn::kLbaOutOfRange | sn::kStatusDnr;
  return sn::kSuccess;
}

}  // namespace ferry::nvme
