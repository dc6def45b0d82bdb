#include "guest/programs/verify_block.h"

#include <fmt/format.h>

#include "base/crc32c.h"
#include "guest/programs/verify_random.h"

namespace ferry::guest::verify {

namespace {

void put_le(std::span<uint8_t> out, size_t offset, uint64_t value, unsigned bytes) {
  for (unsigned i = 0; i < bytes; ++i) out[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t get_le(std::span<const uint8_t> in, size_t offset, unsigned bytes) {
  uint64_t value = 0;
  for (unsigned i = 0; i < bytes; ++i) value |= uint64_t{in[offset + i]} << (8 * i);
  return value;
}

}  // namespace

void fill_block(std::span<uint8_t> block, uint64_t lba, uint32_t generation, uint64_t seed) {
  // The payload stream depends on all three, so a block from another LBA, generation or run
  // differs in content too, not only in its header.
  uint64_t stream = seed ^ splitmix64_mix(lba * 0x9e3779b97f4a7c15ull + generation);
  size_t offset = kBlockHeaderSize;
  for (; offset + 8 <= block.size(); offset += 8) put_le(block, offset, splitmix64_next(stream), 8);
  if (offset < block.size())
    put_le(block, offset, splitmix64_next(stream), static_cast<unsigned>(block.size() - offset));
  put_le(block, 0, kBlockMagic, 8);
  put_le(block, 8, lba, 8);
  put_le(block, 16, seed, 8);
  put_le(block, 24, generation, 4);
  put_le(block, 28, payload_crc(block), 4);
}

BlockHeader parse_header(std::span<const uint8_t> block) {
  BlockHeader h;
  if (block.size() < kBlockHeaderSize) return h;
  h.magic = get_le(block, 0, 8);
  h.lba = get_le(block, 8, 8);
  h.seed = get_le(block, 16, 8);
  h.generation = static_cast<uint32_t>(get_le(block, 24, 4));
  h.crc = static_cast<uint32_t>(get_le(block, 28, 4));
  return h;
}

uint32_t payload_crc(std::span<const uint8_t> block) {
  if (block.size() <= kBlockHeaderSize) return crc32c({});
  return crc32c(block.subspan(kBlockHeaderSize));
}

std::optional<std::string> check_block(std::span<const uint8_t> block, uint64_t lba,
                                       uint32_t generation, uint64_t seed) {
  if (block.size() < kBlockHeaderSize)
    return fmt::format("expected a block of at least {} bytes, found {}", kBlockHeaderSize,
                       block.size());
  BlockHeader h = parse_header(block);
  if (h.magic != kBlockMagic)
    return fmt::format("expected magic 0x{:016x}, found 0x{:016x} (not a block this workload "
                       "wrote)", kBlockMagic, h.magic);
  if (h.lba != lba) return fmt::format("expected header LBA {}, found LBA {}", lba, h.lba);
  if (h.seed != seed) return fmt::format("expected seed {}, found seed {}", seed, h.seed);
  if (h.generation != generation)
    return fmt::format("expected generation {}, found generation {}", generation, h.generation);
  uint32_t crc = payload_crc(block);
  if (crc != h.crc)
    return fmt::format("expected payload crc32c 0x{:08x} (from the header), found 0x{:08x}",
                       h.crc, crc);
  return std::nullopt;
}

}  // namespace ferry::guest::verify
