#include "block/block_op.h"

namespace ferry::block {

std::string_view block_op_name(BlockOp op) {
  switch (op) {
    case BlockOp::kRead: return "read";
    case BlockOp::kWrite: return "write";
    case BlockOp::kFlush: return "flush";
    case BlockOp::kDiscard: return "discard";
    case BlockOp::kWriteZeroes: return "write-zeroes";
  }
  return "?";
}

std::optional<BlockOp> block_op_from_name(std::string_view name) {
  for (BlockOp op : {BlockOp::kRead, BlockOp::kWrite, BlockOp::kFlush, BlockOp::kDiscard,
                     BlockOp::kWriteZeroes}) {
    if (block_op_name(op) == name) return op;
  }
  return std::nullopt;
}

}  // namespace ferry::block
