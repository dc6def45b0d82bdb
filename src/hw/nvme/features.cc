// Get Features / Set Features. Capabilities (SEL = 3), defaults (SEL = 1), namespace
// checks and statuses follow QEMU 7.2, except that every feature the specification makes
// changeable is changeable here (QEMU 7.2 answers Feature Not Changeable for Arbitration,
// Power Management, Interrupt Coalescing and Interrupt Vector Configuration): coalescing
// and vector configuration drive interrupt coalescing (queues.cc); Arbitration and Power
// Management are kept and reported (one power state, round-robin arbitration: nothing to
// act on). See docs/nvme-qemu-differences.md.
#include "hw/nvme/command_fields.h"
#include "hw/nvme/controller.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {

// Get Features SEL = 3 bits (bit 0, saveable, is never set: nothing is saveable).
constexpr uint32_t kCapNamespace = 1u << 1, kCapChangeable = 1u << 2;
constexpr uint32_t kErrorRecoveryDulbe = 1u << 16;
// Arbitration: AB 2:0, LPW 15:8, MPW 23:16, HPW 31:24 (bits 7:3 reserved).
constexpr uint32_t kArbitrationMask = 0xffffff07;
// Power Management: PS 4:0, WH 7:5 (workload hints 0..2 defined, 3..7 reserved).
constexpr uint32_t kPowerStateMask = 0x1f;
constexpr unsigned kWorkloadHintShift = 5;
constexpr uint32_t kMaxWorkloadHint = 2;
constexpr uint32_t kPowerStatesSupported = 1;  // Identify Controller NPSS 0 (0's based)

// Supported features and their capabilities; nullopt-like -1 for unsupported ones.
int64_t feature_capabilities(uint8_t fid) {
  switch (fid) {
    case sn::kFeatWriteAtomicity: return 0;
    case sn::kFeatArbitration:
    case sn::kFeatPowerManagement:
    case sn::kFeatTemperatureThreshold:
    case sn::kFeatVolatileWriteCache:
    case sn::kFeatNumberOfQueues:
    case sn::kFeatInterruptCoalescing:
    case sn::kFeatInterruptVectorConfig:
    case sn::kFeatAsyncEventConfig:
    case sn::kFeatTimestamp: return kCapChangeable;
    case sn::kFeatErrorRecovery: return kCapNamespace | kCapChangeable;
    default: return -1;
  }
}

}  // namespace

uint64_t Controller::current_timestamp_ms() const {
  int64_t elapsed_ms = (clock_.now_ns() - state_.timestamp.set_at_ns) / 1'000'000;
  return (state_.timestamp.host_value_ms + static_cast<uint64_t>(elapsed_ms)) &
         0xffffffffffffull;
}

uint16_t Controller::admin_get_features(Request& request) {
  uint32_t dw10 = cdw(request, 10), dw11 = cdw(request, 11);
  uint8_t fid = dw10 & 0xff;
  uint32_t sel = (dw10 >> sn::kFeatSelShift) & 0x7;
  uint32_t nsid = request.nsid;
  int64_t caps = feature_capabilities(fid);
  if (caps < 0) return sn::kInvalidField | kDnr;
  if (caps & kCapNamespace) {
    if (!nsid_valid(nsid, kMaxNamespaces) || nsid == kBroadcastNsid)
      return sn::kInvalidNamespaceOrFormat | kDnr;
    if (!find_namespace(nsid)) return sn::kInvalidField | kDnr;
  }
  if (sel == 3) {
    request.dw0 = static_cast<uint32_t>(caps);
    return sn::kSuccess;
  }
  if (sel > 3) return sn::kInvalidField | kDnr;
  const bool defaults = sel == 1;
  const Features& f = state_.features;
  uint32_t max_queues = (config_.max_ioqpairs - 1) | (config_.max_ioqpairs - 1) << 16;
  switch (fid) {
    case sn::kFeatArbitration: request.dw0 = defaults ? 0x7 : f.arbitration; break;
    case sn::kFeatPowerManagement: request.dw0 = defaults ? 0 : f.power_management; break;
    case sn::kFeatTemperatureThreshold: {
      uint32_t tmpsel = (dw11 >> 16) & 0xf, thsel = (dw11 >> 20) & 0x3;
      if (tmpsel != 0) break;  // only the composite temperature: other sensors read 0
      if (thsel == 0) request.dw0 = defaults ? 0x157 : f.temperature_over;
      else if (thsel == 1) request.dw0 = defaults ? 0 : f.temperature_under;
      else return sn::kInvalidField | kDnr;
      break;
    }
    case sn::kFeatErrorRecovery:
      request.dw0 = defaults ? 0 : state_.namespaces[nsid].error_recovery;
      break;
    case sn::kFeatVolatileWriteCache:
      request.dw0 = defaults ? 0 : (f.volatile_write_cache ? 1 : 0);
      break;
    case sn::kFeatNumberOfQueues: request.dw0 = max_queues; break;
    case sn::kFeatInterruptCoalescing: request.dw0 = defaults ? 0 : f.interrupt_coalescing; break;
    case sn::kFeatInterruptVectorConfig: {
      uint32_t iv = dw11 & 0xffff;
      if (iv >= config_.max_ioqpairs + 1) return sn::kInvalidField | kDnr;
      bool disabled = iv == 0;  // the admin CQ's vector is never coalesced
      if (!defaults && iv < state_.vectors.size()) disabled |= state_.vectors[iv].coalescing_disabled;
      request.dw0 = iv | (disabled ? 1u << 16 : 0);
      break;
    }
    case sn::kFeatWriteAtomicity: request.dw0 = 0; break;
    case sn::kFeatAsyncEventConfig: request.dw0 = defaults ? 0 : f.async_event_config; break;
    case sn::kFeatTimestamp: {
      // Timestamp (48 bits, ms) | Synch 0 | Timestamp Origin 1 once the host set it.
      uint64_t value = current_timestamp_ms();
      if (state_.timestamp.host_value_ms) value |= uint64_t{1} << 49;
      std::array<uint8_t, 8> bytes;
      store_le(bytes.data(), value);
      return send_to_host(request, bytes);
    }
    default: return sn::kInvalidField | kDnr;
  }
  return sn::kSuccess;
}

uint16_t Controller::admin_set_features(Request& request) {
  uint32_t dw10 = cdw(request, 10), dw11 = cdw(request, 11);
  uint8_t fid = dw10 & 0xff;
  uint32_t nsid = request.nsid;
  Features& f = state_.features;
  if (dw10 & sn::kFeatSave) return sn::kFeatureNotSaveable | kDnr;
  int64_t caps = feature_capabilities(fid);
  if (caps < 0) return sn::kInvalidField | kDnr;
  if (caps & kCapNamespace) {
    if (nsid != kBroadcastNsid) {
      if (!nsid_valid(nsid, kMaxNamespaces)) return sn::kInvalidNamespaceOrFormat | kDnr;
      if (!find_namespace(nsid)) return sn::kInvalidField | kDnr;
    }
  } else if (nsid != 0 && nsid != kBroadcastNsid) {
    if (!nsid_valid(nsid, kMaxNamespaces)) return sn::kInvalidNamespaceOrFormat | kDnr;
    return sn::kFeatureNotNamespaceSpecific | kDnr;
  }
  if (!(caps & kCapChangeable)) return sn::kFeatureNotChangeable | kDnr;
  switch (fid) {
    case sn::kFeatArbitration: f.arbitration = dw11 & kArbitrationMask; break;
    case sn::kFeatPowerManagement: {
      uint32_t ps = dw11 & kPowerStateMask, wh = (dw11 >> kWorkloadHintShift) & 0x7;
      if (ps >= kPowerStatesSupported || wh > kMaxWorkloadHint) return sn::kInvalidField | kDnr;
      f.power_management = dw11 & 0xff;
      break;
    }
    case sn::kFeatTemperatureThreshold: {
      uint32_t tmpsel = (dw11 >> 16) & 0xf, thsel = (dw11 >> 20) & 0x3;
      if (tmpsel != 0) break;  // other sensors: accepted, nothing to set (QEMU)
      if (thsel == 0) f.temperature_over = dw11 & 0xffff;
      else if (thsel == 1) f.temperature_under = dw11 & 0xffff;
      else return sn::kInvalidField | kDnr;
      check_temperature();
      break;
    }
    case sn::kFeatErrorRecovery:
      if (dw11 & kErrorRecoveryDulbe) return sn::kInvalidField | kDnr;
      for (uint32_t id = 1; id <= kMaxNamespaces; ++id)
        if ((nsid == kBroadcastNsid && namespaces_[id]) || id == nsid)
          state_.namespaces[id].error_recovery = dw11 & 0xffff;
      break;
    case sn::kFeatVolatileWriteCache: f.volatile_write_cache = dw11 & 1; break;
    case sn::kFeatNumberOfQueues:
      if (f.number_of_queues_locked) return sn::kCommandSequenceError | kDnr;
      if ((dw11 & 0xffff) == 0xffff || (dw11 >> 16) == 0xffff) return sn::kInvalidField | kDnr;
      request.dw0 = (config_.max_ioqpairs - 1) | (config_.max_ioqpairs - 1) << 16;
      break;
    case sn::kFeatInterruptCoalescing: f.interrupt_coalescing = dw11 & 0xffff; break;
    case sn::kFeatInterruptVectorConfig: {
      uint32_t iv = dw11 & 0xffff;
      if (iv >= state_.vectors.size()) return sn::kInvalidField | kDnr;
      state_.vectors[iv].coalescing_disabled = (dw11 >> 16) & 1;
      break;
    }
    case sn::kFeatAsyncEventConfig: f.async_event_config = dw11; break;
    case sn::kFeatTimestamp: {
      std::array<uint8_t, 8> bytes{};
      if (uint16_t status = receive_from_host(request, bytes)) return status;
      uint64_t value = load_le<uint64_t>(bytes.data());
      state_.timestamp.host_value_ms = value & 0xffffffffffffull;
      state_.timestamp.set_at_ns = clock_.now_ns();
      break;
    }
    default: return sn::kInvalidField | kDnr;
  }
  return sn::kSuccess;
}

}  // namespace ferry::nvme
