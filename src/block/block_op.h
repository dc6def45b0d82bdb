// The kinds of block request, shared by the backend and the fault injector.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ferry::block {

enum class BlockOp : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };

// "read", "write", "flush", "discard", "write-zeroes".
std::string_view block_op_name(BlockOp op);
// The reverse of block_op_name; nullopt for an unknown name.
std::optional<BlockOp> block_op_from_name(std::string_view name);

}  // namespace ferry::block
