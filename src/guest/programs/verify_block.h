// The on-disk format of the verify workload (modeled on fio's verify=crc32c): every block it
// writes starts with a 32-byte header naming what the block should be, followed by a
// payload derived from (seed, LBA, generation), so a read can tell a stale, misplaced,
// foreign or damaged block from the one last written.
//
// Header (little-endian):
//   0  u64 magic "FRYVRFY1"      8  u64 LBA (first logical block of the I/O unit)
//   16 u64 seed                  24 u32 generation (1, 2, ...; 0 is never written)
//   28 u32 crc32c of bytes [32, block size)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace ferry::guest::verify {

inline constexpr uint64_t kBlockMagic = 0x3159465256595246ull;  // "FRYVRFY1" as LE bytes
inline constexpr size_t kBlockHeaderSize = 32;

struct BlockHeader {
  uint64_t magic = 0;
  uint64_t lba = 0;
  uint64_t seed = 0;
  uint32_t generation = 0;
  uint32_t crc = 0;
};

// Writes header and payload into `block` (at least kBlockHeaderSize bytes).
void fill_block(std::span<uint8_t> block, uint64_t lba, uint32_t generation, uint64_t seed);

BlockHeader parse_header(std::span<const uint8_t> block);
uint32_t payload_crc(std::span<const uint8_t> block);

// Nothing when `block` is exactly the block written for (lba, generation, seed); otherwise
// the first difference as "expected X, found Y".
std::optional<std::string> check_block(std::span<const uint8_t> block, uint64_t lba,
                                       uint32_t generation, uint64_t seed);

// The generation that follows `current` (wraps past 0, which means "never written").
inline uint32_t next_generation(uint32_t current) {
  return current == UINT32_MAX ? 1 : current + 1;
}

}  // namespace ferry::guest::verify
