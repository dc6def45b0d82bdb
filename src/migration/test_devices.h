// Test fixtures shared by the migration tests: small vmstate-described devices and RAM.
#pragma once

#include <memory>
#include <random>
#include <vector>

#include "memory/ram_block.h"
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

}  // namespace ferry::migration::test
