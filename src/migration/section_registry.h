// SectionRegistry: the sections a migration stream carries, like QEMU's SaveStateEntry
// list. Each entry has an idstr ("0000:00:02.0/nvme", "timer"), an instance id, a section
// id assigned at registration (ids follow registration order and are what the stream's
// PART/END/footer records refer to), and its handler (section_handler.h): a vmstate
// binding becomes a VmstateSection (early_setup: its FULL goes at setup, before RAM, as
// QEMU >= 10 does for some devices); add_section() takes any other handler.
// RAM is the special entry "ram" (version 4), registered with add_ram(); its handler is the
// save's or load's own RamSection, as RAM's saver and loader live for one migration.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "migration/section_handler.h"
#include "vmstate/binding.h"

namespace ferry::migration {

struct SectionEntry {
  std::string idstr;
  uint32_t instance_id = 0;
  uint32_t section_id = 0;
  std::unique_ptr<SectionHandler> handler;  // null for "ram"
  bool is_ram() const { return handler == nullptr; }
};

class SectionRegistry {
 public:
  static constexpr std::optional<uint32_t> kAutoInstance = std::nullopt;

  // Registers a device state; the binding's description must pass check(). With no
  // instance id, the next free one for this idstr is used (0, 1, ...).
  Result<uint32_t> add(std::string idstr, std::unique_ptr<vmstate::StateBinding> state,
                       std::optional<uint32_t> instance_id = kAutoInstance,
                       bool early_setup = false);
  // Registers a section with its own handler (checked like add(); "ram" is refused).
  Result<uint32_t> add_section(std::string idstr, std::unique_ptr<SectionHandler> handler,
                               std::optional<uint32_t> instance_id = kAutoInstance);
  // Registers the RAM section ("ram", instance 0, version 4).
  Result<uint32_t> add_ram();

  const SectionEntry* find(std::string_view idstr, uint32_t instance_id) const;
  const SectionEntry* ram() const;
  const std::vector<std::unique_ptr<SectionEntry>>& entries() const { return entries_; }

 private:
  Status check_new(std::string_view idstr, uint32_t instance_id) const;
  uint32_t next_free_instance(std::string_view idstr) const;
  std::vector<std::unique_ptr<SectionEntry>> entries_;
  uint32_t next_section_id_ = 0;
};

// "<domain>:<bus>:<slot>.<function>/<vmsd>", e.g. "0000:00:02.0/nvme".
std::string pci_idstr(uint16_t domain, uint8_t bus, uint8_t slot, uint8_t function,
                      std::string_view vmsd_name);

}  // namespace ferry::migration
