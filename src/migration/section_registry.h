// SectionRegistry: the device states a migration stream carries, like QEMU's
// SaveStateEntry list. Each entry has an idstr ("0000:00:02.0/nvme", "timer"), an
// instance id, a section id assigned at registration (ids follow registration order and
// are what the stream's PART/END/footer records refer to), the state binding, and an
// early_setup flag (sent before RAM, as QEMU >= 10 does for some devices).
// RAM is the special entry "ram" (version 4), registered with add_ram().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "vmstate/binding.h"

namespace ferry::migration {

struct SectionEntry {
  std::string idstr;
  uint32_t instance_id = 0;
  uint32_t section_id = 0;
  std::unique_ptr<vmstate::StateBinding> state;  // null for "ram"
  bool early_setup = false;
  bool is_ram() const { return state == nullptr; }
};

class SectionRegistry {
 public:
  static constexpr std::optional<uint32_t> kAutoInstance = std::nullopt;

  // Registers a device state; the binding's description must pass check(). With no
  // instance id, the next free one for this idstr is used (0, 1, ...).
  Result<uint32_t> add(std::string idstr, std::unique_ptr<vmstate::StateBinding> state,
                       std::optional<uint32_t> instance_id = kAutoInstance,
                       bool early_setup = false);
  // Registers the RAM section ("ram", instance 0, version 4).
  Result<uint32_t> add_ram();

  const SectionEntry* find(std::string_view idstr, uint32_t instance_id) const;
  const SectionEntry* ram() const;
  const std::vector<std::unique_ptr<SectionEntry>>& entries() const { return entries_; }

 private:
  Status check_new(std::string_view idstr, uint32_t instance_id) const;
  std::vector<std::unique_ptr<SectionEntry>> entries_;
  uint32_t next_section_id_ = 0;
};

// "<domain>:<bus>:<slot>.<function>/<vmsd>", e.g. "0000:00:02.0/nvme".
std::string pci_idstr(uint16_t domain, uint8_t bus, uint8_t slot, uint8_t function,
                      std::string_view vmsd_name);

}  // namespace ferry::migration
