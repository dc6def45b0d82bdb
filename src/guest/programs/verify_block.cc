#include "guest/programs/verify_block.h"

#include <fmt/format.h>

#include "base/byte_order.h"
#include "base/crc32c.h"
#include "guest/programs/verify_random.h"

namespace ferry::guest::verify {

void fill_block(std::span<uint8_t> block, uint64_t lba, uint32_t generation, uint64_t seed) {
  // The payload stream depends on all three, so a block from another LBA, generation or run
  // differs in content too, not only in its header.
  uint64_t stream = seed ^ splitmix64_mix(lba * 0x9e3779b97f4a7c15ull + generation);
  size_t offset = kBlockHeaderSize;
  for (; offset + 8 <= block.size(); offset += 8) store_le(block, offset, splitmix64_next(stream), 8);
  if (offset < block.size())
    store_le(block, offset, splitmix64_next(stream), static_cast<unsigned>(block.size() - offset));
  store_le(block, 0, kBlockMagic, 8);
  store_le(block, 8, lba, 8);
  store_le(block, 16, seed, 8);
  store_le(block, 24, generation, 4);
  store_le(block, 28, payload_crc(block), 4);
}

BlockHeader parse_header(std::span<const uint8_t> block) {
  BlockHeader h;
  if (block.size() < kBlockHeaderSize) return h;
  h.magic = load_le(block, 0, 8);
  h.lba = load_le(block, 8, 8);
  h.seed = load_le(block, 16, 8);
  h.generation = static_cast<uint32_t>(load_le(block, 24, 4));
  h.crc = static_cast<uint32_t>(load_le(block, 28, 4));
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
