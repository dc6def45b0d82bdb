// Get Log Page: Error Information, SMART / Health Information, Firmware Slot Information,
// Changed Namespace List, Commands Supported and Effects. Offsets, lengths and statuses as
// QEMU 7.2; reading a log without RAE unmasks the asynchronous event type it reports. The
// error log holds kErrorLogEntries entries, newest first (QEMU 7.2 keeps none).
#include <algorithm>

#include "hw/nvme/command_fields.h"
#include "hw/nvme/controller.h"
#include "hw/nvme/error_log.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {

// Commands Supported and Effects bits.
constexpr uint32_t kEffectSupported = 1u << 0, kEffectLbaChange = 1u << 1;

uint64_t div_round_up(uint64_t value, uint64_t by) { return value / by + (value % by != 0); }

}  // namespace

void Controller::smart_log(uint32_t nsid, std::span<uint8_t, 512> out) const {
  std::fill(out.begin(), out.end(), 0);
  SmartCounters sum;
  for (uint32_t id = 1; id <= kMaxNamespaces; ++id) {
    if (nsid != kBroadcastNsid && id != nsid) continue;
    const SmartCounters& c = state_.namespaces[id].smart;
    sum.sectors_read += c.sectors_read;
    sum.sectors_written += c.sectors_written;
    sum.host_read_commands += c.host_read_commands;
    sum.host_write_commands += c.host_write_commands;
    sum.media_errors += c.media_errors;
  }
  const Features& f = state_.features;
  uint8_t warning = 0;
  if (state_.temperature >= f.temperature_over || state_.temperature <= f.temperature_under)
    warning |= sn::kSmartWarnTemperature;
  out[sn::kSmartCriticalWarning] = warning;
  store_le(out, sn::kSmartTemperature, state_.temperature, 2);
  // Data units are thousands of 512-byte units, rounded up.
  store_le(out, sn::kSmartDataUnitsRead, div_round_up(sum.sectors_read, 1000), 8);
  store_le(out, sn::kSmartDataUnitsWritten, div_round_up(sum.sectors_written, 1000), 8);
  store_le(out, sn::kSmartHostReads, sum.host_read_commands, 8);
  store_le(out, sn::kSmartHostWrites, sum.host_write_commands, 8);
  int64_t on_ns = clock_.now_ns() - state_.power_on_ns;
  store_le(out, sn::kSmartPowerOnHours, static_cast<uint64_t>(std::max<int64_t>(on_ns, 0)) /
                                       3'600'000'000'000ull, 8);
  store_le(out, sn::kSmartMediaErrors, sum.media_errors, 8);
  // Entries ever made: the newest entry's error count (controller-wide, for any nsid).
  store_le(out, sn::kSmartErrorLogEntries,
           state_.error_log.empty() ? 0 : state_.error_log.front().error_count, 8);
}

uint16_t Controller::admin_get_log_page(Request& request) {
  uint32_t dw10 = cdw(request, 10), dw11 = cdw(request, 11);
  uint8_t lid = dw10 & 0xff;
  bool rae = dw10 & sn::kLogRetainAsyncEvent;
  uint32_t numdl = dw10 >> 16, numdu = dw11 & 0xffff;
  uint64_t length = ((uint64_t{numdu} << 16 | numdl) + 1) * 4;
  uint64_t offset = uint64_t{cdw(request, 13)} << 32 | cdw(request, 12);
  uint8_t csi = static_cast<uint8_t>(cdw(request, 14) >> 24);
  if (offset & 3) return sn::kInvalidField | kDnr;
  if (length > dma_limits().max_transfer) return sn::kInvalidField | kDnr;

  std::vector<uint8_t> log;
  switch (lid) {
    case sn::kLogErrorInformation:
      log.assign(kErrorLogEntries * sn::kErrorLogEntrySize, 0);
      encode_error_log(state_.error_log, log);
      if (offset < log.size() && !rae) clear_event_mask(sn::kAerTypeError);
      break;
    case sn::kLogSmartHealth: {
      uint32_t nsid = request.nsid;
      if (nsid != kBroadcastNsid && !find_namespace(nsid))
        return sn::kInvalidNamespaceOrFormat | kDnr;
      log.assign(512, 0);
      smart_log(nsid, std::span<uint8_t, 512>(log.data(), 512));
      if (offset < log.size() && !rae) clear_event_mask(sn::kAerTypeSmart);
      break;
    }
    case sn::kLogFirmwareSlot: {
      log.assign(512, 0);
      log[0] = 1;  // active firmware: slot 1
      std::string_view revision = "1.0     ";
      std::copy(revision.begin(), revision.end(), log.begin() + 8);
      break;
    }
    case sn::kLogChangedNamespaces:
      log.assign(4096, 0);  // namespaces never change at run time
      if (offset < log.size() && !rae) clear_event_mask(sn::kAerTypeNotice);
      break;
    case sn::kLogCommandsSupported: {
      log.assign(4096, 0);
      for (uint8_t op : {sn::kAdminDeleteSq, sn::kAdminCreateSq, sn::kAdminGetLogPage,
                         sn::kAdminDeleteCq, sn::kAdminCreateCq, sn::kAdminIdentify,
                         sn::kAdminAbort, sn::kAdminSetFeatures, sn::kAdminGetFeatures,
                         sn::kAdminAsyncEventRequest, sn::kAdminDoorbellBufferConfig})
        store_le(log, 4u * op, kEffectSupported, 4);
      uint32_t css = (state_.regs.cc >> sn::kCcCssShift) & 0x7;
      if (csi == sn::kCsiNvm && css != sn::kCcCssAdminOnly) {
        constexpr size_t kIoBase = 1024;
        store_le(log, kIoBase + 4 * sn::kNvmFlush, kEffectSupported | kEffectLbaChange, 4);
        store_le(log, kIoBase + 4 * sn::kNvmWrite, kEffectSupported | kEffectLbaChange, 4);
        store_le(log, kIoBase + 4 * sn::kNvmRead, kEffectSupported, 4);
        store_le(log, kIoBase + 4 * sn::kNvmCompare, kEffectSupported, 4);
        store_le(log, kIoBase + 4 * sn::kNvmWriteZeroes, kEffectSupported | kEffectLbaChange, 4);
        store_le(log, kIoBase + 4 * sn::kNvmDatasetManagement, kEffectSupported | kEffectLbaChange, 4);
      }
      break;
    }
    default: return sn::kInvalidField | kDnr;
  }
  if (offset >= log.size()) return sn::kInvalidField | kDnr;
  size_t count = static_cast<size_t>(std::min<uint64_t>(log.size() - offset, length));
  return send_to_host(request, std::span<const uint8_t>(log.data() + offset, count));
}

}  // namespace ferry::nvme
