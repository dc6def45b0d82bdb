// Asynchronous events: a bounded queue of events, completed into outstanding Asynchronous
// Event Request commands; a type stays masked after it is reported until the host reads
// its log page (without RAE). Temperature threshold events come from SMART.
#include "hw/nvme/controller.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

void Controller::enqueue_event(uint8_t type, uint8_t info, uint8_t log_page) {
  if (state_.aer.queued.size() >= config_.aer_max_queued) return;  // dropped, as QEMU
  state_.aer.queued.push_back(AsyncEvent{.type = type, .info = info, .log_page = log_page});
  process_events();
}

void Controller::process_events() {
  AsyncEventState& aer = state_.aer;
  if (!state_.cqs[0]) return;
  for (auto it = aer.queued.begin(); it != aer.queued.end() && !aer.outstanding.empty();) {
    if (aer.masked_types & (1u << (it->type & 7))) {
      ++it;
      continue;
    }
    AsyncEvent event = *it;
    it = aer.queued.erase(it);
    aer.masked_types |= static_cast<uint8_t>(1u << (event.type & 7));
    uint16_t cid = aer.outstanding.back();  // newest first, as QEMU
    aer.outstanding.pop_back();
    enqueue_completion(0, PendingCompletion{
                              .dw0 = sn::aer_result(event.type, event.info, event.log_page),
                              .sq_id = 0, .cid = cid, .status = sn::kSuccess});
  }
}

void Controller::clear_event_mask(uint8_t type) {
  state_.aer.masked_types &= static_cast<uint8_t>(~(1u << (type & 7)));
  process_events();
}

void Controller::check_temperature() {
  const Features& f = state_.features;
  if (state_.temperature < f.temperature_over && state_.temperature > f.temperature_under)
    return;
  // Reported only when the host enabled temperature warnings in the AEC feature.
  if (f.async_event_config & sn::kSmartWarnTemperature)
    enqueue_event(sn::kAerTypeSmart, sn::kAerInfoSmartTemperature, sn::kLogSmartHealth);
}

}  // namespace ferry::nvme
