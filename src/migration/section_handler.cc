#include "migration/section_handler.h"

#include "migration/section_registry.h"
#include "migration/stream.h"

namespace ferry::migration {

Status VmstateSection::save_setup(StreamWriter& w, const SectionEntry& entry, SaveContext& ctx) {
  if (!early_setup_) return {};
  return write_device_section(w, entry, *state_, ctx.vmdesc_devices);
}

Status VmstateSection::save_complete(StreamWriter& w, const SectionEntry& entry,
                                     SaveContext& ctx) {
  if (early_setup_) return {};  // its state went at setup
  return write_device_section(w, entry, *state_, ctx.vmdesc_devices);
}

Status VmstateSection::load(StreamReader& r, uint8_t record_type, int version) {
  (void)record_type;  // the loader accepts only FULL records for a device
  ByteReader body = r.section_reader();
  FERRY_RETURN_IF_ERROR(state_->load(body, version));
  r.consume(body.offset());
  return {};
}

}  // namespace ferry::migration
