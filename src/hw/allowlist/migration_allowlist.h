// The migration allowlist engine: a device model classifies every property, capability and
// optional feature it has as migratable or blocking (a table of rows, kept in the model's
// own folder), and says how each capability or feature shows on a device (probes: a
// capability ID, a register bit, ...). This engine answers, for any device: which row a
// command-line property or an advertised item falls under, and why a configured or
// created device cannot migrate. Anything unclassified blocks migration — and the model's
// unit test, which walks a real device, fails on it.
//
// `Kind` is the model's enum of row kinds, `ProbeKind` its enum of ways a host discovers
// things; the engine only compares them.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/qemu_opts.h"

namespace ferry::allowlist {

// One line of the table: migratable (possibly up to a limit on the property's value) or
// blocking, with the reason a blocker message gives.
template <typename Kind>
struct Row {
  Kind kind;
  std::string_view name;
  bool migratable;
  std::string_view note;                  // why (for blocking rows: the blocker reason)
  uint64_t migratable_up_to = UINT64_MAX;  // numeric properties: larger values block
};

// How a capability or feature row shows on a device: the device advertises (kind, id).
template <typename ProbeKind>
struct Probe {
  ProbeKind kind;
  uint32_t id;
  std::string_view row;  // the name of a discoverable row
};

namespace detail {
std::string unclassified_property(std::string_view where, std::string_view kind,
                                  std::string_view key);
std::string blocking_property(std::string_view where, std::string_view kind,
                              std::string_view key, std::string_view note);
std::string property_over_limit(std::string_view where, std::string_view kind,
                                std::string_view key, uint64_t value, std::string_view note);
std::string unclassified_advertised(std::string_view where, std::string_view what);
std::string blocking_advertised(std::string_view where, std::string_view kind,
                                std::string_view row, std::string_view what,
                                std::string_view note);
}  // namespace detail

template <typename Kind, typename ProbeKind>
struct Table {
  std::span<const Row<Kind>> rows;
  std::span<const Probe<ProbeKind>> probes;
  // The kind in messages ("nvme property", "capability").
  std::string_view (*kind_name)(Kind);
  // Whether rows of this kind show on a device (capabilities and features, not properties):
  // the rows probes may name.
  bool (*discoverable)(Kind);

  constexpr const Row<Kind>* find(Kind kind, std::string_view name) const {
    for (const Row<Kind>& row : rows)
      if (row.kind == kind && row.name == name) return &row;
    return nullptr;
  }

  // The first discoverable row named `name`, or null.
  constexpr const Row<Kind>* find_discoverable(std::string_view name) const {
    for (const Row<Kind>& row : rows)
      if (discoverable(row.kind) && row.name == name) return &row;
    return nullptr;
  }

  // The row covering an advertised item; null when none does (unclassified).
  constexpr const Row<Kind>* classify(ProbeKind kind, uint32_t id) const {
    for (const Probe<ProbeKind>& p : probes)
      if (p.kind == kind && p.id == id) return find_discoverable(p.row);
    return nullptr;
  }

  // For a static_assert beside the table: no probe names a row that is not there.
  constexpr bool every_probe_names_a_row() const {
    for (const Probe<ProbeKind>& p : probes)
      if (!find_discoverable(p.row)) return false;
    return true;
  }

  // Why a device configured with `opts` (properties of kind `kind`) cannot migrate: one
  // reason per blocking, over-limit or unclassified property (empty: it can). `where`
  // prefixes each reason.
  std::vector<std::string> property_blockers(Kind kind, const Opts& opts,
                                             std::string_view where) const {
    std::vector<std::string> reasons;
    std::set<std::string, std::less<>> seen;
    for (const Opts::Entry& entry : opts.entries()) {
      if (!seen.insert(entry.key).second) continue;
      const Row<Kind>* row = find(kind, entry.key);
      if (!row) {
        reasons.push_back(detail::unclassified_property(where, kind_name(kind), entry.key));
      } else if (!row->migratable) {
        reasons.push_back(
            detail::blocking_property(where, kind_name(kind), entry.key, row->note));
      } else if (row->migratable_up_to != UINT64_MAX) {
        std::optional<uint64_t> value = opts.number(entry.key);
        if (value && *value > row->migratable_up_to)
          reasons.push_back(detail::property_over_limit(where, kind_name(kind), entry.key,
                                                        *value, row->note));
      }
    }
    return reasons;
  }

  // Why a device advertising `items` (each with .kind and .id) cannot migrate: one reason
  // per unclassified item and per blocking row; `describe(kind, id)` names an item as a
  // host sees it ("PCI capability 0x11").
  template <typename Item, typename Describe>
  std::vector<std::string> advertised_blockers(std::span<const Item> items, Describe&& describe,
                                               std::string_view where) const {
    std::vector<std::string> reasons;
    std::set<std::string_view> blocked;  // one reason per row
    for (const Item& item : items) {
      const Row<Kind>* row = classify(item.kind, item.id);
      if (!row) {
        reasons.push_back(detail::unclassified_advertised(where, describe(item.kind, item.id)));
      } else if (!row->migratable && blocked.insert(row->name).second) {
        reasons.push_back(detail::blocking_advertised(where, kind_name(row->kind), row->name,
                                                      describe(item.kind, item.id), row->note));
      }
    }
    return reasons;
  }
};

}  // namespace ferry::allowlist
