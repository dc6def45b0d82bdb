#include "migration/section_registry.h"

#include "migration/wire.h"

namespace ferry::migration {

Status SectionRegistry::check_new(std::string_view idstr, uint32_t instance_id) const {
  if (idstr.empty() || idstr.size() > wire::kMaxIdstr)
    return Error(ErrorCode::kInvalidArgument, "section name '{}' is {} bytes; must be 1..{}",
                 idstr, idstr.size(), wire::kMaxIdstr);
  if (find(idstr, instance_id))
    return Error(ErrorCode::kInvalidArgument, "section '{}' instance {} is already registered",
                 idstr, instance_id);
  return {};
}

Result<uint32_t> SectionRegistry::add(std::string idstr,
                                      std::unique_ptr<vmstate::StateBinding> state,
                                      std::optional<uint32_t> instance_id, bool early_setup) {
  if (!state)
    return Error(ErrorCode::kInvalidArgument, "section '{}' has no state binding", idstr);
  if (idstr == wire::kRamIdstr)
    return Error(ErrorCode::kInvalidArgument, "section name 'ram' is reserved for RAM");
  uint32_t instance = instance_id ? *instance_id : next_free_instance(idstr);
  FERRY_RETURN_IF_ERROR(check_new(idstr, instance));
  Status st = state->check();
  if (!st.ok())
    return st.prepend_message(fmt::format("registering section '{}' instance {}", idstr, instance));
  return add_section(std::move(idstr),
                     std::make_unique<VmstateSection>(std::move(state), early_setup), instance);
}

Result<uint32_t> SectionRegistry::add_section(std::string idstr,
                                              std::unique_ptr<SectionHandler> handler,
                                              std::optional<uint32_t> instance_id) {
  if (!handler)
    return Error(ErrorCode::kInvalidArgument, "section '{}' has no handler", idstr);
  if (idstr == wire::kRamIdstr)
    return Error(ErrorCode::kInvalidArgument, "section name 'ram' is reserved for RAM");
  uint32_t instance = instance_id ? *instance_id : next_free_instance(idstr);
  FERRY_RETURN_IF_ERROR(check_new(idstr, instance));
  auto e = std::make_unique<SectionEntry>();
  e->idstr = std::move(idstr);
  e->instance_id = instance;
  e->section_id = next_section_id_++;
  e->handler = std::move(handler);
  entries_.push_back(std::move(e));
  return entries_.back()->section_id;
}

uint32_t SectionRegistry::next_free_instance(std::string_view idstr) const {
  uint32_t instance = 0;
  while (find(idstr, instance)) ++instance;
  return instance;
}

Result<uint32_t> SectionRegistry::add_ram() {
  FERRY_RETURN_IF_ERROR(check_new(wire::kRamIdstr, 0));
  auto e = std::make_unique<SectionEntry>();
  e->idstr = std::string(wire::kRamIdstr);
  e->section_id = next_section_id_++;
  entries_.push_back(std::move(e));
  return entries_.back()->section_id;
}

const SectionEntry* SectionRegistry::find(std::string_view idstr, uint32_t instance_id) const {
  for (const auto& e : entries_)
    if (e->idstr == idstr && e->instance_id == instance_id) return e.get();
  return nullptr;
}

const SectionEntry* SectionRegistry::ram() const {
  for (const auto& e : entries_)
    if (e->is_ram()) return e.get();
  return nullptr;
}

std::string pci_idstr(uint16_t domain, uint8_t bus, uint8_t slot, uint8_t function,
                      std::string_view vmsd_name) {
  return fmt::format("{:04x}:{:02x}:{:02x}.{:x}/{}", domain, bus, slot, function, vmsd_name);
}

}  // namespace ferry::migration
