// When a NIC emits QMP NIC_RX_FILTER_CHANGED. QEMU sends it once per change of the driver's
// receive filter and then stays quiet until a client looks (query-rx-filter for this NIC),
// so a driver rewriting its filter in a loop cannot flood the monitor.
#pragma once

namespace ferry::virtio::net {

class RxFilterEventGate {
 public:
  // The filter changed: true when the event is to be sent now.
  bool take() {
    if (!armed_) return false;
    armed_ = false;
    return true;
  }
  // query-rx-filter answered for this NIC: the next change is reported again.
  void queried() { armed_ = true; }
  bool armed() const { return armed_; }

 private:
  bool armed_ = true;  // a new NIC reports its first change
};

}  // namespace ferry::virtio::net
