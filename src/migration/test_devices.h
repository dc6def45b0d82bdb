// Test fixtures shared by the migration tests: small vmstate-described devices and RAM.
#pragma once

#include <memory>
#include <random>
#include <cstring>
#include <vector>

#include "memory/ram_block.h"
#include "migration/ram_section.h"
#include "migration/section_handler.h"
#include "migration/section_registry.h"
#include "migration/stream.h"
#include "migration/wire.h"
#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace ferry::migration::test {

struct Timer {
  uint64_t ticks = 0;
  uint32_t period = 0;
  bool operator==(const Timer&) const = default;
};
inline constexpr auto kTimerDesc =
    vmstate::describe<Timer>("timer", {.version = 2}, vmstate::field("ticks", &Timer::ticks),
                             vmstate::field("period", &Timer::period));

// Blocks filled with a mix of random pages, zero pages and pages with one non-zero byte.
inline std::vector<std::unique_ptr<memory::RamBlock>> make_ram(
    std::vector<std::pair<std::string, uint64_t>> spec, bool fill, uint32_t seed = 5) {
  std::vector<std::unique_ptr<memory::RamBlock>> out;
  std::mt19937 rng(seed);
  for (auto& [name, pages] : spec) {
    auto b = memory::RamBlock::anonymous(name, pages * memory::kPageSize);
    if (!b.ok()) return {};
    if (fill) {
      (*b)->dirty().mark_all();  // written like any guest write: marked dirty
      for (uint64_t p = 0; p < pages; ++p) {
        uint8_t* page = (*b)->page(p);
        switch (rng() % 3) {
          case 0: break;  // zero
          case 1:
            for (size_t i = 0; i < memory::kPageSize; ++i) page[i] = static_cast<uint8_t>(rng());
            break;
          case 2: page[rng() % memory::kPageSize] = static_cast<uint8_t>(1 + rng() % 255); break;
        }
      }
    }
    out.push_back(std::move(*b));
  }
  return out;
}

inline std::vector<memory::RamBlock*> raw(const std::vector<std::unique_ptr<memory::RamBlock>>& v) {
  std::vector<memory::RamBlock*> out;
  for (auto& b : v) out.push_back(b.get());
  return out;
}

inline bool same_ram(const std::vector<std::unique_ptr<memory::RamBlock>>& a,
                     const std::vector<std::unique_ptr<memory::RamBlock>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i]->size() != b[i]->size()) return false;
    if (std::memcmp(a[i]->host(), b[i]->host(), a[i]->size()) != 0) return false;
  }
  return true;
}

// A device section whose handler saves a 4-byte value as a FULL record at setup and again
// at complete (as early device state will). On load it records each record's value and how
// many RAM pages had loaded by then (watch()).
class TwiceSentSection final : public SectionHandler {
 public:
  explicit TwiceSentSection(uint32_t& value) : value_(value) {}
  Status save_setup(StreamWriter& w, const SectionEntry& entry, SaveContext&) override {
    return save(w, entry);
  }
  Status save_complete(StreamWriter& w, const SectionEntry& entry, SaveContext&) override {
    return save(w, entry);
  }
  int version() const override { return 1; }
  Status load(StreamReader& r, uint8_t record_type, int version) override {
    (void)version;
    uint32_t v = 0;
    FERRY_RETURN_IF_ERROR(r.read_be32(v, "twice-sent value"));
    value_ = v;
    uint64_t ram_pages = ram_ ? ram_->stats().pages + ram_->stats().zero_pages : 0;
    loads.push_back({record_type, v, ram_pages});
    return {};
  }
  void watch(const RamLoader& ram) { ram_ = &ram; }

  struct Load {
    uint8_t type;
    uint32_t value;
    uint64_t ram_pages_loaded;  // by the time this record arrived
    bool operator==(const Load&) const = default;
  };
  std::vector<Load> loads;

 private:
  Status save(StreamWriter& w, const SectionEntry& entry) {
    write_section_header(w, wire::kSectionFull, entry, 1);
    w.put_be32(value_);
    write_footer(w, entry.section_id);
    return {};
  }
  uint32_t& value_;
  const RamLoader* ram_ = nullptr;
};

}  // namespace ferry::migration::test
