#include "guest/virtio/virtio_pci_driver.h"

#include <algorithm>

#include "base/byte_order.h"
#include "spec/pci.h"
#include "spec/virtio_pci.h"
#include "spec/virtio_ring.h"

namespace ferry::guest::virtio {

namespace vp = ::ferry::spec::virtio_pci;
namespace vr = ::ferry::spec::virtio;

namespace {

// A device that keeps changing its configuration under every read is broken, not busy.
constexpr unsigned kMaxConfigRounds = 64;
// How long reset() waits for the status to read back 0 (QEMU resets synchronously; a
// device may take a while, and the spec lets the driver wait).
constexpr auto kResetTimeout = std::chrono::seconds(5);

// "5, 12 (0x1020)": feature bits as numbers and the mask.
std::string feature_list(uint64_t features) {
  std::string out;
  for (unsigned bit = 0; bit < 64; ++bit) {
    if (!((features >> bit) & 1)) continue;
    if (!out.empty()) out += ", ";
    out += std::to_string(bit);
  }
  return fmt::format("{} (0x{:x})", out, features);
}

}  // namespace

std::string VirtioPciDriver::name() const {
  return fmt::format("virtio-pci {:02x}.{}", fn_.slot, fn_.function);
}

Result<std::unique_ptr<VirtioPciDriver>> VirtioPciDriver::probe(GuestBus& bus, DmaMemory& dma,
                                                                MmioWindow& window,
                                                                const Match& match) {
  auto functions = enumerate_bus0(bus);
  if (!functions.ok()) return functions.take_status();
  unsigned seen = 0;
  const PciFunction* found = nullptr;
  for (const PciFunction& fn : *functions) {
    if (fn.vendor_id != match.vendor_id || fn.device_id != match.device_id) continue;
    if (seen++ == match.index) {
      found = &fn;
      break;
    }
  }
  if (!found) {
    return Error(ErrorCode::kFailedPrecondition,
                 "virtio-pci: no function {:04x}:{:04x} number {} on bus 0 ({} found)",
                 match.vendor_id, match.device_id, match.index, seen);
  }
  std::unique_ptr<VirtioPciDriver> driver(new VirtioPciDriver(bus, dma, *found));
  auto bars = assign_bars(bus, *found, window);
  if (!bars.ok()) return bars.take_status().prepend_message(driver->name() + ": ");
  driver->bars_ = std::move(*bars);
  FERRY_RETURN_IF_ERROR(enable_memory_and_bus_master(bus, *found));
  FERRY_RETURN_IF_ERROR(driver->read_capabilities());
  return driver;
}

Status VirtioPciDriver::read_capabilities() {
  auto cfg = [&](uint32_t at, unsigned size) {
    return bus_->config_read(fn_.slot, fn_.function, static_cast<uint16_t>(at), size);
  };
  auto status = cfg(spec::pci::kStatus, 2);
  if (!status.ok()) return status.take_status();
  if ((*status & spec::pci::kStatusCapabilityList) == 0) {
    return Error(ErrorCode::kFailedPrecondition, "{}: no capability list (not a modern device)",
                 name());
  }
  auto next = cfg(spec::pci::kCapabilityPointer, 1);
  if (!next.ok()) return next.take_status();
  bool have_common = false, have_notify = false, have_isr = false, have_device = false;
  uint32_t at = *next & 0xfc;
  for (int hops = 0; at != 0; ++hops) {
    if (hops >= 48 || at < 0x40 || at > 0x100 - 4) {
      return Error(ErrorCode::kCorrupt,
                   "{}: capability list is malformed (pointer 0x{:x} after {} hops)", name(), at,
                   hops);
    }
    auto header = cfg(at, 4);
    if (!header.ok()) return header.take_status();
    const uint8_t id = *header & 0xff;
    const uint32_t following = (*header >> 8) & 0xfc;
    const uint8_t type = static_cast<uint8_t>(*header >> 24);
    if (id == vp::kCapVendor) {
      // The first capability of each type is the one to use (4.1.4: later ones are
      // alternatives the driver may ignore).
      VirtioRegion* slot = nullptr;
      bool* have = nullptr;
      switch (type) {
        case vp::kCapCommonCfg: slot = &common_; have = &have_common; break;
        case vp::kCapNotifyCfg: slot = &notify_; have = &have_notify; break;
        case vp::kCapIsrCfg: slot = &isr_; have = &have_isr; break;
        case vp::kCapDeviceCfg: slot = &device_; have = &have_device; break;
        default: break;  // PCI_CFG access window, shared memory: not used
      }
      const uint32_t needed = type == vp::kCapNotifyCfg ? vp::kNotifyCapSize : vp::kCapSize;
      if (slot && at + needed > 0x100) {
        return Error(ErrorCode::kCorrupt, "{}: virtio capability type {} at 0x{:x} runs past "
                     "configuration space", name(), type, at);
      }
      if (slot && !*have) {
        auto bar = cfg(at + vp::kCapBar, 1);
        auto offset = cfg(at + vp::kCapOffset, 4);
        auto length = cfg(at + vp::kCapLength, 4);
        if (!bar.ok()) return bar.take_status();
        if (!offset.ok()) return offset.take_status();
        if (!length.ok()) return length.take_status();
        auto it = std::find_if(bars_.begin(), bars_.end(),
                               [&](const PciBar& b) { return b.index == *bar; });
        if (it == bars_.end() || it->io || it->address == 0 ||
            uint64_t{*offset} + *length > it->size) {
          return Error(ErrorCode::kCorrupt,
                       "{}: capability type {} at 0x{:x} names BAR{} offset 0x{:x} length 0x{:x}, "
                       "which is not inside a memory BAR",
                       name(), type, at, *bar, *offset, *length);
        }
        *slot = {.cap_offset = static_cast<uint8_t>(at), .bar = static_cast<uint8_t>(*bar),
                 .offset = *offset, .length = *length, .address = it->address + *offset};
        *have = true;
        if (type == vp::kCapNotifyCfg) {
          auto mult = cfg(at + vp::kNotifyCapMultiplier, 4);
          if (!mult.ok()) return mult.take_status();
          notify_multiplier_ = *mult;
        }
      }
    }
    at = following;
  }
  if (!have_common || !have_notify || !have_isr) {
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: missing virtio capabilities (common {}, notify {}, ISR {})", name(),
                 have_common, have_notify, have_isr);
  }
  return {};
}

// ---- registers ---------------------------------------------------------------------------------

Result<uint64_t> VirtioPciDriver::read_common(uint32_t reg, unsigned size) {
  return bus_->mmio_read(common_.address + reg, size);
}

Status VirtioPciDriver::write_common(uint32_t reg, uint64_t value, unsigned size) {
  return bus_->mmio_write(common_.address + reg, value, size);
}

Result<uint8_t> VirtioPciDriver::status() {
  auto v = read_common(vp::kCommonStatus, 1);
  if (!v.ok()) return v.take_status();
  return static_cast<uint8_t>(*v);
}

Status VirtioPciDriver::set_status_bits(uint8_t bits) {
  auto now = status();
  if (!now.ok()) return now.take_status();
  return write_common(vp::kCommonStatus, *now | bits, 1);
}

Status VirtioPciDriver::reset() {
  FERRY_RETURN_IF_ERROR(write_common(vp::kCommonStatus, 0, 1));
  // The reset is done when the status reads back 0 (4.1.4.3.2).
  const auto deadline = std::chrono::steady_clock::now() + kResetTimeout;
  for (;;) {
    auto now = status();
    if (!now.ok()) return now.take_status();
    if (*now == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      return Error(ErrorCode::kFailedPrecondition,
                   "{}: device status still 0x{:x} {} s after the reset", name(), *now,
                   std::chrono::duration_cast<std::chrono::seconds>(kResetTimeout).count());
    }
    FERRY_RETURN_IF_ERROR(bus_->idle(std::chrono::milliseconds(1)));
  }
  queues_.clear();
  notify_offsets_.clear();
  features_ = 0;
  return {};
}

Result<NegotiatedFeatures> VirtioPciDriver::negotiate(uint64_t wanted, uint64_t required) {
  FERRY_RETURN_IF_ERROR(write_common(vp::kCommonStatus, vp::kStatusAcknowledge, 1));
  FERRY_RETURN_IF_ERROR(
      write_common(vp::kCommonStatus, vp::kStatusAcknowledge | vp::kStatusDriver, 1));
  NegotiatedFeatures result;
  for (uint32_t word = 0; word < 2; ++word) {
    FERRY_RETURN_IF_ERROR(write_common(vp::kCommonDfSelect, word, 4));
    auto half = read_common(vp::kCommonDf, 4);
    if (!half.ok()) return half.take_status();
    result.offered |= (*half & 0xffffffffu) << (32 * word);
  }
  if (const uint64_t missing = required & ~result.offered) {
    (void)set_status_bits(vp::kStatusFailed);
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: the device does not offer required features {} (offered 0x{:x})", name(),
                 feature_list(missing), result.offered);
  }
  result.accepted = wanted & result.offered;
  for (uint32_t word = 0; word < 2; ++word) {
    FERRY_RETURN_IF_ERROR(write_common(vp::kCommonGfSelect, word, 4));
    FERRY_RETURN_IF_ERROR(write_common(
        vp::kCommonGf, static_cast<uint32_t>(result.accepted >> (32 * word)), 4));
  }
  FERRY_RETURN_IF_ERROR(write_common(
      vp::kCommonStatus, vp::kStatusAcknowledge | vp::kStatusDriver | vp::kStatusFeaturesOk, 1));
  auto now = status();
  if (!now.ok()) return now.take_status();
  if ((*now & vp::kStatusFeaturesOk) == 0) {
    (void)set_status_bits(vp::kStatusFailed);
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: the device refused features {}: FEATURES_OK did not stick (status 0x{:x})",
                 name(), feature_list(result.accepted), *now);
  }
  features_ = result.accepted;
  return result;
}

Status VirtioPciDriver::driver_ok() { return set_status_bits(vp::kStatusDriverOk); }

Result<bool> VirtioPciDriver::needs_reset() {
  auto now = status();
  if (!now.ok()) return now.take_status();
  return (*now & vp::kStatusNeedsReset) != 0;
}

// ---- interrupts --------------------------------------------------------------------------------

Status VirtioPciDriver::use_msix(uint32_t data_base) {
  auto msix = Msix::probe(*bus_, fn_, bars_);
  if (!msix.ok()) return msix.take_status().prepend_message(name() + ": ");
  // The transport must listen before the first message can be sent.
  FERRY_RETURN_IF_ERROR(bus_->enable_interrupts(InterruptSource::kMsi));
  msi_data_base_ = data_base;
  for (unsigned v = 0; v < msix->info().table_size; ++v) {
    FERRY_RETURN_IF_ERROR(msix->set_vector(*bus_, v, kMsiWindowBase, data_base + v));
  }
  FERRY_RETURN_IF_ERROR(set_intx_disable(*bus_, fn_, true));
  FERRY_RETURN_IF_ERROR(msix->enable(*bus_));
  msix_.emplace(*msix);
  return {};
}

Status VirtioPciDriver::set_config_vector(uint16_t vector) {
  FERRY_RETURN_IF_ERROR(write_common(vp::kCommonMsix, vector, 2));
  auto back = read_common(vp::kCommonMsix, 2);
  if (!back.ok()) return back.take_status();
  if (*back != vector) {
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: the device refused config vector {} (reads back 0x{:x})", name(), vector,
                 *back);
  }
  return {};
}

Result<uint32_t> VirtioPciDriver::wait_vector(uint16_t vector, std::chrono::microseconds timeout) {
  if (!msix_) {
    return Error(ErrorCode::kFailedPrecondition, "{}: MSI-X is not in use (vector {})", name(),
                 vector);
  }
  return bus_->wait_msi(msi_data(vector), timeout);
}

Result<uint8_t> VirtioPciDriver::read_isr() {
  auto v = bus_->mmio_read(isr_.address, 1);
  if (!v.ok()) return v.take_status();
  return static_cast<uint8_t>(*v);
}

// ---- queues ------------------------------------------------------------------------------------

Result<uint16_t> VirtioPciDriver::num_queues() {
  auto v = read_common(vp::kCommonNumQueues, 2);
  if (!v.ok()) return v.take_status();
  return static_cast<uint16_t>(*v);
}

Result<uint16_t> VirtioPciDriver::queue_max_size(uint16_t index) {
  FERRY_RETURN_IF_ERROR(write_common(vp::kCommonQueueSelect, index, 2));
  auto v = read_common(vp::kCommonQueueSize, 2);
  if (!v.ok()) return v.take_status();
  return static_cast<uint16_t>(*v);
}

Result<VirtqueueDriver*> VirtioPciDriver::setup_queue(uint16_t index, uint16_t size,
                                                      uint16_t vector) {
  auto queues = num_queues();
  if (!queues.ok()) return queues.take_status();
  if (index >= *queues) {
    return Error(ErrorCode::kInvalidArgument, "{}: queue {} does not exist ({} queues)", name(),
                 index, *queues);
  }
  auto max = queue_max_size(index);  // also selects the queue
  if (!max.ok()) return max.take_status();
  if (*max == 0) {
    return Error(ErrorCode::kFailedPrecondition, "{}: queue {} is not available", name(), index);
  }
  auto enabled = read_common(vp::kCommonQueueEnable, 2);
  if (!enabled.ok()) return enabled.take_status();
  if (*enabled != 0) {
    return Error(ErrorCode::kFailedPrecondition, "{}: queue {} is already enabled", name(),
                 index);
  }
  if (size == 0) size = *max;
  if (size > *max) {
    return Error(ErrorCode::kInvalidArgument, "{}: queue {} size {} exceeds the device's {}",
                 name(), index, size, *max);
  }
  auto ring = VirtqueueDriver::create(
      *bus_, *dma_,
      {.index = index, .size = size, .packed = has_feature(vr::kFRingPacked),
       .event_idx = has_feature(vr::kFEventIdx)},
      [this, index] { return notify(index); });
  if (!ring.ok()) return ring.take_status().prepend_message(name() + ": ");
  const RingLayout& layout = (*ring)->layout();

  FERRY_RETURN_IF_ERROR(write_common(vp::kCommonQueueSize, size, 2));
  auto size_back = read_common(vp::kCommonQueueSize, 2);
  if (!size_back.ok()) return size_back.take_status();
  if (*size_back != size) {
    return Error(ErrorCode::kFailedPrecondition, "{}: queue {} refused size {} (reads back {})",
                 name(), index, size, *size_back);
  }
  auto write64 = [&](uint32_t lo, uint64_t value) -> Status {
    FERRY_RETURN_IF_ERROR(write_common(lo, static_cast<uint32_t>(value), 4));
    return write_common(lo + 4, static_cast<uint32_t>(value >> 32), 4);
  };
  FERRY_RETURN_IF_ERROR(write64(vp::kCommonQueueDescLo, layout.desc));
  FERRY_RETURN_IF_ERROR(write64(vp::kCommonQueueDriverLo, layout.driver));
  FERRY_RETURN_IF_ERROR(write64(vp::kCommonQueueDeviceLo, layout.device));
  FERRY_RETURN_IF_ERROR(write_common(vp::kCommonQueueMsix, vector, 2));
  auto vector_back = read_common(vp::kCommonQueueMsix, 2);
  if (!vector_back.ok()) return vector_back.take_status();
  if (*vector_back != vector) {
    return Error(ErrorCode::kFailedPrecondition,
                 "{}: queue {} refused MSI-X vector {} (reads back 0x{:x})", name(), index, vector,
                 *vector_back);
  }
  auto notify_off = read_common(vp::kCommonQueueNotifyOff, 2);
  if (!notify_off.ok()) return notify_off.take_status();
  const uint64_t notify_at = uint64_t{*notify_off} * notify_multiplier_;
  if (notify_at + 2 > notify_.length) {
    return Error(ErrorCode::kCorrupt,
                 "{}: queue {} notify offset {} x {} is outside the notify region of {} bytes",
                 name(), index, *notify_off, notify_multiplier_, notify_.length);
  }
  FERRY_RETURN_IF_ERROR(write_common(vp::kCommonQueueEnable, 1, 2));

  if (queues_.size() <= index) {
    queues_.resize(index + 1);
    notify_offsets_.resize(index + 1);
  }
  notify_offsets_[index] = static_cast<uint16_t>(*notify_off);
  queues_[index] = std::move(*ring);
  return queues_[index].get();
}

VirtqueueDriver* VirtioPciDriver::queue(uint16_t index) {
  return index < queues_.size() ? queues_[index].get() : nullptr;
}

Status VirtioPciDriver::notify(uint16_t index) {
  if (index >= queues_.size() || !queues_[index]) {
    return Error(ErrorCode::kInvalidArgument, "{}: notify of queue {}, which is not set up",
                 name(), index);
  }
  // Without NOTIFICATION_DATA the value written is the queue index (4.1.5.2).
  return bus_->mmio_write(notify_.address + uint64_t{notify_offsets_[index]} * notify_multiplier_,
                          index, 2);
}

// ---- device configuration ----------------------------------------------------------------------

Status VirtioPciDriver::read_config(uint32_t offset, std::span<uint8_t> out) {
  if (device_.length == 0 || uint64_t{offset} + out.size() > device_.length) {
    return Error(ErrorCode::kInvalidArgument,
                 "{}: configuration read of {} bytes at {} is outside the {} bytes of the "
                 "device configuration region",
                 name(), out.size(), offset, device_.length);
  }
  for (unsigned round = 1; round <= kMaxConfigRounds; ++round) {
    auto before = read_common(vp::kCommonCfgGeneration, 1);
    if (!before.ok()) return before.take_status();
    size_t done = 0;
    while (done < out.size()) {
      const uint64_t at = offset + done;
      const size_t left = out.size() - done;
      unsigned width = 4;
      while (width > 1 && (width > left || at % width != 0)) width /= 2;
      auto v = bus_->mmio_read(device_.address + at, width);
      if (!v.ok()) return v.take_status();
      store_le(out, done, *v, width);
      done += width;
    }
    auto after = read_common(vp::kCommonCfgGeneration, 1);
    if (!after.ok()) return after.take_status();
    if (*after == *before) {
      last_config_rounds_ = round;
      return {};
    }
  }
  return Error(ErrorCode::kFailedPrecondition,
               "{}: config_generation changed during each of {} reads of the configuration",
               name(), kMaxConfigRounds);
}

Result<uint64_t> VirtioPciDriver::read_config_le(uint32_t offset, unsigned size) {
  std::array<uint8_t, 8> bytes{};
  if (size == 0 || size > bytes.size()) {
    return Error(ErrorCode::kInvalidArgument, "{}: configuration field of {} bytes", name(), size);
  }
  FERRY_RETURN_IF_ERROR(read_config(offset, std::span(bytes.data(), size)));
  return load_le(std::span<const uint8_t>(bytes), 0, size);
}

Status VirtioPciDriver::write_config(uint32_t offset, uint64_t value, unsigned size) {
  if (device_.length == 0 || uint64_t{offset} + size > device_.length) {
    return Error(ErrorCode::kInvalidArgument,
                 "{}: configuration write of {} bytes at {} is outside the device configuration",
                 name(), size, offset);
  }
  return bus_->mmio_write(device_.address + offset, value, size);
}

}  // namespace ferry::guest::virtio
