// The "ram" section, version 4 (design.md §5).
//
//   START body: be64 (total | MEM_SIZE), per block: u8 len, idstr, be64 length; be64 EOS
//   page record: be64 (offset | flags), [u8 len, idstr unless CONTINUE],
//                1 fill byte (ZERO) or 4096 bytes (PAGE)
//   every body ends with be64 EOS.
// The saver names the block in the first record of each body and uses CONTINUE after
// that; the loader also accepts CONTINUE across bodies (as QEMU does) and skips
// MULTIFD_FLUSH records.
//
// Copies: the saver hands each page to the writer by reference (one writev sends headers
// and pages straight from guest RAM); the loader checks each record's header, then reads
// its payload into the page it names (StreamReader::read_into). Before copying, the
// loader faults in the destination pages of the records already buffered with one
// MADV_POPULATE_WRITE per run: a fresh page faulted from user space by the copy costs
// more than the copy itself, and a page fault taken inside one system call for a whole
// run costs much less. That look-ahead only maps pages; it writes no data.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "memory/dirty_bitmap.h"
#include "memory/ram_block.h"
#include "migration/section_handler.h"
#include "migration/stream_reader.h"
#include "migration/stream_writer.h"

namespace ferry::migration {

struct RamStats {
  uint64_t pages = 0;       // PAGE records sent or loaded
  uint64_t zero_pages = 0;  // ZERO records
  uint64_t bytes = 0;       // section body bytes
  uint64_t dirty_syncs = 0;
};

class RamSaver {
 public:
  explicit RamSaver(std::vector<memory::RamBlock*> blocks);

  void write_start_body(StreamWriter& w);

  // Takes every block's dirty bits (an atomic take-and-clear) as the pages of a new
  // pass. Returns the number of pages in it.
  uint64_t begin_pass();
  // Sends pages of the current pass until about `byte_budget` bytes went out, the pass is
  // done, a write failed or the stop flag is set, then EOS. Returns true when the pass is
  // complete.
  bool send_pass(StreamWriter& w, uint64_t byte_budget);
  // Marks every page dirty: the next pass sends all of RAM.
  void mark_all_dirty();
  // Marks all RAM dirty and sends it all (the first pass, or a stopped VM's only one).
  void send_everything(StreamWriter& w);
  // A flag another thread sets to end send_pass() early (a cancelled migration): a pass
  // of zero pages writes few bytes, so the byte budget alone would scan all of RAM first.
  void set_stop_flag(const std::atomic<bool>* stop) { stop_ = stop; }
  // Pages of the current pass not sent yet.
  uint64_t remaining() const { return remaining_; }

  const RamStats& stats() const { return stats_; }

 private:
  void send_page(StreamWriter& w, memory::RamBlock& block, uint64_t page, bool first_in_body);

  std::vector<memory::RamBlock*> blocks_;
  std::vector<memory::PageBitmap> pass_;  // per block
  size_t block_cursor_ = 0;
  uint64_t page_cursor_ = 0;
  uint64_t remaining_ = 0;
  const std::atomic<bool>* stop_ = nullptr;
  RamStats stats_;
};

class RamLoader {
 public:
  explicit RamLoader(std::vector<memory::RamBlock*> blocks);

  // Loads one section body (START, PART or END) up to and including its EOS.
  Status load_body(StreamReader& r, bool is_start);
  const RamStats& stats() const { return stats_; }

 private:
  Status load_block_list(StreamReader& r, uint64_t total);
  Result<memory::RamBlock*> read_block(StreamReader& r, uint64_t flags, uint64_t record_offset);
  memory::RamBlock* find_block(std::string_view idstr) const;
  // Faults in the destination pages of the PAGE records buffered in `r` (see above).
  void populate_buffered_pages(const StreamReader& r);

  std::vector<memory::RamBlock*> blocks_;
  memory::RamBlock* last_block_ = nullptr;
  bool block_list_seen_ = false;
  uint64_t scanned_to_ = 0;      // stream offset where the look-ahead stopped
  bool populate_works_ = true;   // false once the kernel refused MADV_POPULATE_WRITE
  RamStats stats_;
};

// RAM as a section handler (section_handler.h), over one migration's saver and/or loader:
// setup marks every page dirty and sends START (the block list); each sync takes the
// dirty pages as a pass, sent in PART records; complete syncs once more and sends the
// last pass in END.
class RamSection final : public SectionHandler {
 public:
  explicit RamSection(RamSaver& saver) : saver_(&saver) {}
  explicit RamSection(RamLoader& loader) : loader_(&loader) {}

  bool iterative() const override { return true; }
  Status save_setup(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) override;
  uint64_t sync_pending() override;
  uint64_t pending_bytes() const override;
  Result<bool> save_iterate(StreamWriter& w, const SectionEntry& entry,
                            uint64_t byte_budget) override;
  Status save_complete(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) override;
  int version() const override;
  // A START, PART or END body, streamed into guest RAM.
  Status load(StreamReader& r, uint8_t record_type, int version) override;

 private:
  RamSaver* saver_ = nullptr;
  RamLoader* loader_ = nullptr;
};

}  // namespace ferry::migration
