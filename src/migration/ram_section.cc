#include "migration/ram_section.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "memory/guest_memory.h"
#include "memory/zero_page.h"
#include "migration/stream.h"
#include "migration/stream_reader.h"
#include "migration/wire.h"

namespace ferry::migration {

using memory::kPageSize;
using memory::RamBlock;

// ---- saving ----

RamSaver::RamSaver(std::vector<RamBlock*> blocks)
    : blocks_(std::move(blocks)), pass_(blocks_.size()) {}

void RamSaver::write_start_body(StreamWriter& w) {
  uint64_t begin = w.position();
  uint64_t total = 0;
  for (const RamBlock* b : blocks_) total += b->size();
  w.put_be64(total | wire::kRamMemSize);
  for (const RamBlock* b : blocks_) {
    w.put_u8(static_cast<uint8_t>(b->idstr().size()));
    w.put_bytes(b->idstr());
    w.put_be64(b->size());
  }
  w.put_be64(wire::kRamEos);
  stats_.bytes += w.position() - begin;
}

uint64_t RamSaver::begin_pass() {
  remaining_ = 0;
  for (size_t i = 0; i < blocks_.size(); ++i) remaining_ += blocks_[i]->dirty().sync(pass_[i]);
  block_cursor_ = 0;
  page_cursor_ = 0;
  ++stats_.dirty_syncs;
  return remaining_;
}

namespace {

// Whether a page of guest RAM is all zero right now, read as guest_memory.h asks (relaxed
// word loads: the guest may be writing). Stops at the first non-zero 64-byte block, so a
// page of data costs a few loads. (A sibling of memory::guest_copy_page_test_zero.)
bool guest_page_is_zero(const uint8_t* page) {
  auto word = [page](size_t i) {
    return __atomic_load_n(reinterpret_cast<const uint64_t*>(page) + i, __ATOMIC_RELAXED);
  };
  for (size_t i = 0; i < kPageSize / 8; i += 8) {
    uint64_t any = word(i) | word(i + 1) | word(i + 2) | word(i + 3) | word(i + 4) |
                   word(i + 5) | word(i + 6) | word(i + 7);
    if (any != 0) return false;
  }
  return true;
}

}  // namespace

void RamSaver::send_page(StreamWriter& w, RamBlock& block, uint64_t page, bool first_in_body) {
  uint64_t header = (page << memory::kPageShift) | (first_in_body ? 0 : wire::kRamContinue);
  size_t name_len = first_in_body ? 1 + block.idstr().size() : 0;
  const uint8_t* data = block.page(page);
  bool zero = guest_page_is_zero(data);
  uint8_t* out = w.reserve(8 + name_len + 1);
  store_be<uint64_t>(out, header | (zero ? wire::kRamZero : wire::kRamPage));
  if (first_in_body) {
    out[8] = static_cast<uint8_t>(block.idstr().size());
    std::memcpy(out + 9, block.idstr().data(), block.idstr().size());
  }
  if (zero) {
    out[8 + name_len] = 0;  // the fill byte
    w.commit(8 + name_len + 1);
    ++stats_.zero_pages;
  } else {
    // The header is buffered; the page leaves straight from guest RAM in the same writev.
    w.commit(8 + name_len);
    w.put_by_reference(std::span(data, kPageSize));
    ++stats_.pages;
  }
}

bool RamSaver::send_pass(StreamWriter& w, uint64_t byte_budget) {
  uint64_t begin = w.position();
  RamBlock* last = nullptr;
  while (block_cursor_ < blocks_.size() && w.position() - begin < byte_budget &&
         w.status().ok() && !(stop_ && stop_->load(std::memory_order_relaxed))) {
    RamBlock& block = *blocks_[block_cursor_];
    uint64_t page = pass_[block_cursor_].next_set(page_cursor_);
    if (page >= block.pages()) {
      ++block_cursor_;
      page_cursor_ = 0;
      continue;
    }
    send_page(w, block, page, last != &block);
    last = &block;
    page_cursor_ = page + 1;
    --remaining_;
  }
  w.put_be64(wire::kRamEos);
  stats_.bytes += w.position() - begin;
  return block_cursor_ >= blocks_.size();
}

void RamSaver::mark_all_dirty() {
  for (RamBlock* b : blocks_) b->dirty().mark_all();
}

void RamSaver::send_everything(StreamWriter& w) {
  mark_all_dirty();
  begin_pass();
  send_pass(w, UINT64_MAX);
}

// ---- loading ----

RamLoader::RamLoader(std::vector<RamBlock*> blocks) : blocks_(std::move(blocks)) {}

RamBlock* RamLoader::find_block(std::string_view idstr) const {
  for (RamBlock* b : blocks_)
    if (b->idstr() == idstr) return b;
  return nullptr;
}

void RamLoader::populate_buffered_pages(const StreamReader& r) {
  std::span<const uint8_t> view = r.buffered_bytes();
  RamBlock* block = last_block_;
  RamBlock* run_block = nullptr;
  uint64_t run_begin = 0, run_end = 0;
  auto flush_run = [&] {
    if (run_block && run_end > run_begin && populate_works_ &&
        ::madvise(run_block->host() + run_begin, run_end - run_begin, MADV_POPULATE_WRITE) != 0 &&
        (errno == EINVAL || errno == EPERM))
      populate_works_ = false;  // an older kernel or a mapping that refuses: copy as before
    run_block = nullptr;
  };
  // Walk whole records only, stopping at anything that is not a well-formed ZERO or PAGE
  // record: the loader checks every header again when it gets there.
  size_t pos = 0;
  while (populate_works_ && pos + 8 <= view.size()) {
    uint64_t word = load_be<uint64_t>(view.data() + pos);
    uint64_t flags = word & wire::kRamFlagMask;
    uint64_t addr = word & ~wire::kRamFlagMask;
    uint64_t kind = flags & ~wire::kRamContinue;
    if (kind != wire::kRamPage && kind != wire::kRamZero) break;
    size_t at = pos + 8;
    if (!(flags & wire::kRamContinue)) {
      if (at >= view.size() || at + 1 + view[at] > view.size()) break;
      block = find_block(std::string_view(reinterpret_cast<const char*>(view.data() + at + 1),
                                          view[at]));
      at += 1 + view[at];
    }
    if (!block || addr >= block->size()) break;
    if (kind == wire::kRamPage) {
      if (run_block != block || addr != run_end) {
        flush_run();
        run_block = block;
        run_begin = addr;
      }
      run_end = addr + kPageSize;
    }
    pos = at + (kind == wire::kRamPage ? kPageSize : 1);
  }
  flush_run();
  // The record at `pos` (whole or not) is scanned when the loader reaches it.
  scanned_to_ = r.offset() + pos;
}

Result<RamBlock*> RamLoader::read_block(StreamReader& r, uint64_t flags, uint64_t record_offset) {
  if (flags & wire::kRamContinue) {
    if (!last_block_)
      return Error(ErrorCode::kCorrupt,
                   "RAM record at offset {} continues a block, but no block was named before",
                   record_offset);
    return last_block_;
  }
  uint8_t len = 0;
  FERRY_RETURN_IF_ERROR(r.read_u8(len, "RAM block name length"));
  std::span<const uint8_t> name;
  FERRY_RETURN_IF_ERROR(r.take(len, name, "RAM block name"));
  std::string_view idstr(reinterpret_cast<const char*>(name.data()), name.size());
  for (RamBlock* b : blocks_) {
    if (b->idstr() == idstr) {
      last_block_ = b;
      return b;
    }
  }
  return Error(ErrorCode::kCorrupt, "Unknown ramblock \"{}\" at offset {}, cannot accept migration",
               escaped_bytes(idstr), record_offset);
}

Status RamLoader::load_block_list(StreamReader& r, uint64_t total) {
  if (block_list_seen_)
    return Error(ErrorCode::kCorrupt, "RAM block list (MEM_SIZE) at offset {} sent twice",
                 r.offset() - 8);
  block_list_seen_ = true;
  uint64_t local_total = 0;
  for (const RamBlock* b : blocks_) local_total += b->size();
  if (total != local_total)
    return Error(ErrorCode::kCorrupt,
                 "RAM size mismatch: stream has 0x{:x} bytes of RAM, local is 0x{:x}", total,
                 local_total);
  std::vector<bool> seen(blocks_.size());
  uint64_t sum = 0;
  while (sum < total) {
    uint64_t at = r.offset();
    uint8_t len = 0;
    FERRY_RETURN_IF_ERROR(r.read_u8(len, "RAM block name length"));
    std::span<const uint8_t> name;
    FERRY_RETURN_IF_ERROR(r.take(len, name, "RAM block name"));
    std::string idstr(reinterpret_cast<const char*>(name.data()), name.size());
    uint64_t length = 0;
    FERRY_RETURN_IF_ERROR(r.read_be64(length, "RAM block length"));
    size_t i = 0;
    while (i < blocks_.size() && blocks_[i]->idstr() != idstr) ++i;
    if (i == blocks_.size())
      return Error(ErrorCode::kCorrupt,
                   "Unknown ramblock \"{}\" in the block list at offset {}, cannot accept "
                   "migration",
                   escaped_bytes(idstr), at);
    if (seen[i])
      return Error(ErrorCode::kCorrupt, "RAM block \"{}\" listed twice (offset {})",
                   escaped_bytes(idstr), at);
    seen[i] = true;
    if (length != blocks_[i]->size())
      return Error(ErrorCode::kCorrupt,
                   "Length mismatch: RAM block \"{}\": 0x{:x} in stream != 0x{:x} local "
                   "(offset {})",
                   escaped_bytes(idstr), length, blocks_[i]->size(), at);
    sum += length;
  }
  // sum == total == local_total and each block is matched once: every block is listed.
  return {};
}

Status RamLoader::load_body(StreamReader& r, bool is_start) {
  while (true) {
    uint64_t at = r.offset();
    if (at >= scanned_to_) populate_buffered_pages(r);
    uint64_t word = 0;
    FERRY_RETURN_IF_ERROR(r.read_be64(word, "RAM record header"));
    uint64_t flags = word & wire::kRamFlagMask;
    uint64_t addr = word & ~wire::kRamFlagMask;
    uint64_t kind = flags & ~wire::kRamContinue;
    switch (kind) {
      case wire::kRamEos:
        return {};
      case wire::kRamMultifdFlush:
        continue;  // multifd channels sync here; a single stream has nothing to do
      case wire::kRamMemSize:
        if (!is_start)
          return Error(ErrorCode::kCorrupt,
                       "RAM block list (MEM_SIZE) at offset {} outside the START section", at);
        FERRY_RETURN_IF_ERROR(load_block_list(r, addr));
        continue;
      case wire::kRamZero:
      case wire::kRamPage: {
        if (!block_list_seen_)
          return Error(ErrorCode::kCorrupt, "RAM page at offset {} before the block list", at);
        Result<RamBlock*> block = read_block(r, flags, at);
        if (!block.ok()) return block.take_status();
        RamBlock& b = **block;
        if (addr >= b.size())
          return Error(ErrorCode::kCorrupt,
                       "Illegal RAM offset 0x{:x} in block \"{}\" of 0x{:x} bytes (record at "
                       "offset {})",
                       addr, b.idstr(), b.size(), at);
        uint8_t* host = b.host() + addr;
        if (kind == wire::kRamZero) {
          uint8_t fill = 0;
          FERRY_RETURN_IF_ERROR(r.read_u8(fill, "zero page fill byte"));
          if (fill != 0)
            return Error(ErrorCode::kCorrupt,
                         "Found a zero page with value {} (block \"{}\" offset 0x{:x}, record "
                         "at offset {})",
                         fill, b.idstr(), addr, at);
          // Pages never written stay untouched (unallocated): reading one to test it for
          // zeros would fault it in, which costs more than the whole record.
          uint64_t page = addr >> memory::kPageShift;
          if (!b.page_known_zero(page) && !memory::is_zero_page(host)) {
            std::memset(host, 0, kPageSize);
            b.dirty().mark_page(page);
          }
          ++stats_.zero_pages;
        } else {
          // Header and block checked above: the payload goes from the channel straight
          // into this page (one copy), never anywhere else.
          FERRY_RETURN_IF_ERROR(r.read_into(std::span(host, kPageSize), "RAM page data"));
          b.dirty().mark_page(addr >> memory::kPageShift);
          ++stats_.pages;
        }
        continue;
      }
      default:
        return Error(ErrorCode::kCorrupt,
                     "unsupported RAM record flags 0x{:x} at offset {} (Ferry reads ZERO, PAGE, "
                     "MEM_SIZE, EOS, CONTINUE, MULTIFD_FLUSH)",
                     flags, at);
    }
  }
}

// ---- as a section handler ----

Status RamSection::save_setup(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) {
  (void)ctx;
  if (!saver_) return Error(ErrorCode::kFailedPrecondition, "RAM section has no saver");
  saver_->mark_all_dirty();  // every page goes in the first pass
  write_section_header(w, wire::kSectionStart, entry, wire::kRamVersion);
  saver_->write_start_body(w);
  write_footer(w, entry.section_id);
  return {};
}

uint64_t RamSection::sync_pending() {
  return saver_ ? saver_->begin_pass() * memory::kPageSize : 0;
}

uint64_t RamSection::pending_bytes() const {
  return saver_ ? saver_->remaining() * memory::kPageSize : 0;
}

Result<bool> RamSection::save_iterate(StreamWriter& w, const SectionEntry& entry,
                                      uint64_t byte_budget) {
  if (!saver_) return Error(ErrorCode::kFailedPrecondition, "RAM section has no saver");
  write_section_continuation(w, wire::kSectionPart, entry.section_id);
  bool done = saver_->send_pass(w, byte_budget);
  write_footer(w, entry.section_id);
  FERRY_RETURN_IF_ERROR(w.status());
  return done;
}

Status RamSection::save_complete(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) {
  (void)ctx;
  if (!saver_) return Error(ErrorCode::kFailedPrecondition, "RAM section has no saver");
  saver_->begin_pass();
  write_section_continuation(w, wire::kSectionEnd, entry.section_id);
  saver_->send_pass(w, UINT64_MAX);
  write_footer(w, entry.section_id);
  return {};
}

int RamSection::version() const { return static_cast<int>(wire::kRamVersion); }

Status RamSection::load(StreamReader& r, uint8_t record_type, int version) {
  (void)version;  // the loader checked it
  if (!loader_) return Error(ErrorCode::kFailedPrecondition, "RAM section has no loader");
  return loader_->load_body(r, record_type == wire::kSectionStart);
}

}  // namespace ferry::migration
