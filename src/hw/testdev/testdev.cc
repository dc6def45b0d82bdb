#include "hw/testdev/testdev.h"

namespace ferry::testdev {

TestDevice::TestDevice() : pci::PciDevice("ferry-testdev", pci::PciKind::kExpress) {}

Result<std::unique_ptr<TestDevice>> TestDevice::create() {
  std::unique_ptr<TestDevice> dev(new TestDevice());
  Status st = dev->realize();
  if (!st.ok()) return st.prepend_message("ferry-testdev");
  return dev;
}

Status TestDevice::realize() {
  set_ids({.vendor = 0x1b36, .device = 0x0105, .class_code = 0xff0000, .revision = 1,
           .subsystem_vendor = 0x1b36, .subsystem = 0x0105});
  FERRY_RETURN_IF_ERROR(register_bar(0, 0x4000, pci::BarType::kMem64, false, &registers_));
  FERRY_RETURN_IF_ERROR(register_bar(2, 16, pci::BarType::kIo, false, &ports_));
  FERRY_RETURN_IF_ERROR(set_interrupt_pin(1));
  FERRY_RETURN_IF_ERROR(add_power_management_capability().take_status());
  FERRY_RETURN_IF_ERROR(add_express_capability().take_status());
  return init_msix({.vectors = kVectors, .table_bar = 0, .table_offset = kMsixTable,
                    .pba_bar = 0, .pba_offset = kMsixPba})
      .take_status();
}

void TestDevice::resume() {
  quiesced_ = false;
  for (unsigned vector = 0; vector < kVectors; ++vector)
    if (held_vectors_ & (1u << vector)) msix_notify(vector);
  held_vectors_ = 0;
}

void TestDevice::on_reset() {
  scratch_ = io_scratch_ = notify_count_ = 0;
  held_vectors_ = 0;
}

uint64_t TestDevice::Registers::read(uint64_t offset, unsigned /*size*/) {
  switch (offset) {
    case kScratch: return dev_.scratch_;
    case kIntx: return dev_.irq_level() ? 1 : 0;
    case kNotifyCount: return dev_.notify_count_;
    default: return 0;
  }
}

void TestDevice::Registers::write(uint64_t offset, uint64_t value, unsigned /*size*/) {
  switch (offset) {
    case kScratch: dev_.scratch_ = static_cast<uint32_t>(value); break;
    case kIntx: dev_.set_irq(value != 0); break;
    case kMsixNotify:
      ++dev_.notify_count_;
      if (value >= kVectors) break;
      if (dev_.quiesced_) dev_.held_vectors_ |= static_cast<uint8_t>(1u << value);
      else dev_.msix_notify(static_cast<unsigned>(value));
      break;
    default: break;  // writes to reserved registers are ignored, as hardware does
  }
}

uint64_t TestDevice::Ports::read(uint64_t offset, unsigned size) {
  if (offset >= 4) return 0;
  uint64_t v = dev_.io_scratch_ >> (8 * offset);
  return size >= 4 ? v : v & ((uint64_t{1} << (8 * size)) - 1);
}

void TestDevice::Ports::write(uint64_t offset, uint64_t value, unsigned size) {
  for (unsigned i = 0; i < size && offset + i < 4; ++i) {
    unsigned shift = 8 * static_cast<unsigned>(offset + i);
    dev_.io_scratch_ = (dev_.io_scratch_ & ~(0xffu << shift)) |
                       (static_cast<uint32_t>((value >> (8 * i)) & 0xff) << shift);
  }
}

}  // namespace ferry::testdev
