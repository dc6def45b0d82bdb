#include "guest/virtio/net_driver.h"

#include <algorithm>

#include "base/byte_order.h"
#include "spec/virtio_pci.h"
#include "spec/virtio_ring.h"

namespace ferry::guest::virtio {

namespace vn = ::ferry::spec::virtio_net;
namespace vp = ::ferry::spec::virtio_pci;
namespace vr = ::ferry::spec::virtio;

namespace {

// Where a control request's pieces sit in its page.
constexpr uint64_t kCtrlHeaderAt = 0;
constexpr uint64_t kCtrlDataAt = 64;
constexpr uint64_t kCtrlAckAt = DmaMemory::kPageSize - 1;
constexpr uint64_t kCtrlMaxData = kCtrlAckAt - kCtrlDataAt;

void put_le32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

// ---- byte layouts ------------------------------------------------------------------------------

std::array<uint8_t, vn::kHdrV1Size> net_tx_header() { return {}; }

uint16_t net_rx_num_buffers(std::span<const uint8_t> header) {
  if (header.size() < vn::kHdrV1Size) return 0;
  return load_le<uint16_t>(header.data() + vn::kHdrNumBuffers);
}

NetCtrlCommand net_ctrl_rx(uint8_t command, bool on) {
  return {.cls = vn::kCtrlRx, .cmd = command, .data = {static_cast<uint8_t>(on ? 1 : 0)}};
}

NetCtrlCommand net_ctrl_mac_table(std::span<const MacAddress> unicast,
                                  std::span<const MacAddress> multicast) {
  NetCtrlCommand c{.cls = vn::kCtrlMac, .cmd = vn::kCtrlMacTableSet, .data = {}};
  for (auto list : {unicast, multicast}) {
    put_le32(c.data, static_cast<uint32_t>(list.size()));
    for (const MacAddress& mac : list) c.data.insert(c.data.end(), mac.begin(), mac.end());
  }
  return c;
}

NetCtrlCommand net_ctrl_mac_addr_set(const MacAddress& mac) {
  return {.cls = vn::kCtrlMac, .cmd = vn::kCtrlMacAddrSet, .data = {mac.begin(), mac.end()}};
}

NetCtrlCommand net_ctrl_vlan(bool add, uint16_t vid) {
  return {.cls = vn::kCtrlVlan,
          .cmd = add ? vn::kCtrlVlanAdd : vn::kCtrlVlanDel,
          .data = {static_cast<uint8_t>(vid), static_cast<uint8_t>(vid >> 8)}};
}

NetCtrlCommand net_ctrl_announce_ack() {
  return {.cls = vn::kCtrlAnnounce, .cmd = vn::kCtrlAnnounceAck, .data = {}};
}

NetCtrlCommand net_ctrl_mq_pairs(uint16_t pairs) {
  return {.cls = vn::kCtrlMq, .cmd = vn::kCtrlMqVqPairsSet,
          .data = {static_cast<uint8_t>(pairs), static_cast<uint8_t>(pairs >> 8)}};
}

// ---- the driver --------------------------------------------------------------------------------

Result<std::unique_ptr<NetDriver>> NetDriver::start(std::unique_ptr<VirtioPciDriver> pci,
                                                    DmaMemory& dma, const Options& options) {
  if (!pci) return Error(ErrorCode::kInvalidArgument, "virtio-net: no virtio-pci function");
  std::unique_ptr<NetDriver> driver(new NetDriver(std::move(pci), dma));
  FERRY_RETURN_IF_ERROR(driver->init(options));
  return driver;
}

NetDriver::~NetDriver() {
  // The device lets go of every buffer before the memory goes back.
  if (pci_) (void)pci_->reset();
  for (uint64_t block : allocations_) (void)dma_->free(block);
}

uint16_t NetDriver::vector_for(uint16_t queue_index) const {
  if (!pci_->msix_enabled() || queue_index + 1u >= pci_->msix_vectors()) return vp::kNoVector;
  return static_cast<uint16_t>(queue_index + 1);
}

Status NetDriver::init(const Options& options) {
  ctrl_timeout_ = options.ctrl_timeout;
  FERRY_RETURN_IF_ERROR(pci_->reset());
  if (options.msi_data_base) FERRY_RETURN_IF_ERROR(pci_->use_msix(*options.msi_data_base));

  uint64_t wanted = vr::feature(vr::kFVersion1) | vn::bit(vn::kFMac) | vn::bit(vn::kFStatus) |
                    vn::bit(vn::kFCtrlVq) | vn::bit(vn::kFCtrlRx) | vn::bit(vn::kFCtrlVlan) |
                    vn::bit(vn::kFCtrlMacAddr) | vn::bit(vn::kFGuestAnnounce) |
                    vr::feature(vr::kFEventIdx);
  if (options.mergeable) wanted |= vn::bit(vn::kFMrgRxbuf);
  if (options.multiqueue) wanted |= vn::bit(vn::kFMq);
  if (options.packed) wanted |= vr::feature(vr::kFRingPacked);
  auto negotiated = pci_->negotiate(wanted, vr::feature(vr::kFVersion1));
  if (!negotiated.ok()) return negotiated.take_status();
  mergeable_ = pci_->has_feature(vn::kFMrgRxbuf);

  if (pci_->has_feature(vn::kFMac)) {
    FERRY_RETURN_IF_ERROR(pci_->read_config(vn::kCfgMac, mac_));
  }
  if (pci_->has_feature(vn::kFMq)) {
    auto max = pci_->read_config_le(vn::kCfgMaxVirtqueuePairs, 2);
    if (!max.ok()) return max.take_status();
    if (*max < vn::kCtrlMqVqPairsMin || *max > vn::kCtrlMqVqPairsMax) {
      return Error(ErrorCode::kCorrupt, "virtio-net: max_virtqueue_pairs {} is out of 1..{}",
                   *max, vn::kCtrlMqVqPairsMax);
    }
    max_pairs_ = static_cast<uint16_t>(*max);
  }
  pairs_ = pci_->has_feature(vn::kFMq)
               ? std::clamp<uint16_t>(options.queue_pairs, 1, max_pairs_)
               : uint16_t{1};
  if (pci_->msix_enabled()) FERRY_RETURN_IF_ERROR(pci_->set_config_vector(0));

  for (uint16_t p = 0; p < pairs_; ++p) {
    const uint16_t rx = static_cast<uint16_t>(2 * p), tx = static_cast<uint16_t>(2 * p + 1);
    auto rx_pool = make_pool(rx, options.queue_size, vector_for(rx));
    if (!rx_pool.ok()) return rx_pool.take_status();
    rx_.push_back(std::move(*rx_pool));
    auto tx_pool = make_pool(tx, options.queue_size, vector_for(tx));
    if (!tx_pool.ok()) return tx_pool.take_status();
    for (uint16_t s = 0; s < tx_pool->slots; ++s)
      tx_pool->free.push_back(static_cast<uint16_t>(tx_pool->slots - 1 - s));
    tx_.push_back(std::move(*tx_pool));
  }
  if (pci_->has_feature(vn::kFCtrlVq)) {
    const uint16_t index = pci_->has_feature(vn::kFMq) ? static_cast<uint16_t>(2 * max_pairs_)
                                                        : uint16_t{2};
    auto ctrl = pci_->setup_queue(index, 0, vector_for(index));
    if (!ctrl.ok()) return ctrl.take_status().prepend_message("virtio-net: control queue: ");
    ctrl_ = *ctrl;
    auto page = dma_->allocate(DmaMemory::kPageSize);
    if (!page.ok()) return page.take_status();
    allocations_.push_back(*page);
    ctrl_memory_ = *page;
  }
  FERRY_RETURN_IF_ERROR(pci_->driver_ok());

  for (Pool& pool : rx_) {
    for (uint16_t s = 0; s < pool.slots; ++s) FERRY_RETURN_IF_ERROR(post_rx(pool, s));
    auto kicked = pool.queue->kick();
    if (!kicked.ok()) return kicked.take_status();
  }
  if (pairs_ > 1) {
    auto ack = control(net_ctrl_mq_pairs(pairs_));
    if (!ack.ok()) return ack.take_status();
    if (*ack != vn::kCtrlOk) {
      return Error(ErrorCode::kFailedPrecondition,
                   "virtio-net: the device refused {} queue pairs (ack {})", pairs_, *ack);
    }
  }
  return {};
}

Result<NetDriver::Pool> NetDriver::make_pool(uint16_t queue_index, uint16_t size,
                                             uint16_t vector) {
  auto queue = pci_->setup_queue(queue_index, size, vector);
  if (!queue.ok()) return queue.take_status().prepend_message("virtio-net: ");
  Pool pool;
  pool.queue = *queue;
  pool.slots = (*queue)->layout().size;
  auto block = dma_->allocate(uint64_t{pool.slots} * kBufferSize);
  if (!block.ok()) {
    return block.take_status().prepend_message(
        fmt::format("virtio-net: buffers of queue {}: ", queue_index));
  }
  allocations_.push_back(*block);
  pool.memory = *block;
  return pool;
}

Status NetDriver::post_rx(Pool& pool, uint16_t slot) {
  const std::array<Buffer, 1> buffer{{{pool.memory + uint64_t{slot} * kBufferSize, kBufferSize}}};
  FERRY_RETURN_IF_ERROR(pool.queue->add({}, buffer, slot));
  ++pool.posted;
  return {};
}

Status NetDriver::check_pair(uint16_t pair) const {
  if (pair >= rx_.size()) {
    return Error(ErrorCode::kInvalidArgument, "virtio-net: queue pair {} is not set up ({} pairs)",
                 pair, rx_.size());
  }
  return {};
}

uint16_t NetDriver::rx_posted(uint16_t pair) const {
  return pair < rx_.size() ? rx_[pair].posted : 0;
}

Result<bool> NetDriver::link_up() {
  if (!pci_->has_feature(vn::kFStatus)) return true;
  auto status = pci_->read_config_le(vn::kCfgStatus, 2);
  if (!status.ok()) return status.take_status();
  return (*status & vn::kStatusLinkUp) != 0;
}

Result<bool> NetDriver::announce_requested() {
  if (!pci_->has_feature(vn::kFStatus) || !pci_->has_feature(vn::kFGuestAnnounce)) return false;
  auto status = pci_->read_config_le(vn::kCfgStatus, 2);
  if (!status.ok()) return status.take_status();
  return (*status & vn::kStatusAnnounce) != 0;
}

Result<unsigned> NetDriver::reclaim_tx(uint16_t pair) {
  FERRY_RETURN_IF_ERROR(check_pair(pair));
  Pool& pool = tx_[pair];
  unsigned taken = 0;
  for (;;) {
    auto used = pool.queue->get_used();
    if (!used.ok()) return used.take_status();
    if (!*used) return taken;
    pool.free.push_back(static_cast<uint16_t>((*used)->token));
    ++taken;
  }
}

Status NetDriver::send(std::span<const uint8_t> frame, uint16_t pair, bool kick) {
  FERRY_RETURN_IF_ERROR(check_pair(pair));
  if (frame.empty() || frame.size() > kMaxFrame) {
    return Error(ErrorCode::kInvalidArgument, "virtio-net: a frame of {} bytes (1..{})",
                 frame.size(), kMaxFrame);
  }
  Pool& pool = tx_[pair];
  if (pool.free.empty()) {
    auto taken = reclaim_tx(pair);
    if (!taken.ok()) return taken.take_status();
  }
  if (pool.free.empty()) {
    return Error(ErrorCode::kFailedPrecondition,
                 "virtio-net: TX queue {} is full ({} frames in flight)", 2 * pair + 1,
                 pool.slots);
  }
  const uint16_t slot = pool.free.back();
  const uint64_t at = pool.memory + uint64_t{slot} * kBufferSize;
  FERRY_RETURN_IF_ERROR(pci_->bus().memory_write(at, net_tx_header()));
  FERRY_RETURN_IF_ERROR(pci_->bus().memory_write(at + vn::kHdrV1Size, frame));
  // Header and frame in one descriptor, as QEMU's own guests send them.
  const std::array<Buffer, 1> buffer{
      {{at, static_cast<uint32_t>(vn::kHdrV1Size + frame.size())}}};
  FERRY_RETURN_IF_ERROR(pool.queue->add(buffer, {}, slot));
  pool.free.pop_back();
  return kick ? kick_tx(pair) : Status{};
}

Status NetDriver::kick_tx(uint16_t pair) {
  FERRY_RETURN_IF_ERROR(check_pair(pair));
  auto kicked = tx_[pair].queue->kick();
  return kicked.ok() ? Status{} : kicked.take_status();
}

Result<std::optional<std::vector<uint8_t>>> NetDriver::receive(uint16_t pair) {
  FERRY_RETURN_IF_ERROR(check_pair(pair));
  Pool& pool = rx_[pair];
  auto first = pool.queue->get_used();
  if (!first.ok()) return first.take_status();
  if (!*first) return std::optional<std::vector<uint8_t>>{};
  std::vector<uint16_t> slots{static_cast<uint16_t>((*first)->token)};
  std::vector<uint32_t> lengths{(*first)->len};
  --pool.posted;

  auto corrupt = [&](std::string what) -> Status {
    return Error(ErrorCode::kCorrupt, "virtio-net: RX queue {}: {}", 2 * pair, what);
  };
  Status failure;
  std::array<uint8_t, vn::kHdrV1Size> header{};
  uint16_t buffers = 1;
  if ((*first)->len < vn::kHdrV1Size || (*first)->len > kBufferSize) {
    failure = corrupt(fmt::format("used length {} (a header is {}, a buffer {})", (*first)->len,
                                  vn::kHdrV1Size, kBufferSize));
  } else {
    failure = pci_->bus().memory_read(pool.memory + uint64_t{slots[0]} * kBufferSize, header);
    if (failure.ok() && mergeable_) {
      buffers = net_rx_num_buffers(header);
      if (buffers == 0) failure = corrupt("num_buffers is 0");
    }
  }
  // The rest of a mergeable frame: the device publishes every buffer of a frame at once.
  for (uint16_t b = 1; failure.ok() && b < buffers; ++b) {
    auto more = pool.queue->get_used();
    if (!more.ok()) return more.take_status();
    if (!*more) {
      failure = corrupt(fmt::format("the header announced {} buffers, {} arrived", buffers, b));
      break;
    }
    --pool.posted;
    slots.push_back(static_cast<uint16_t>((*more)->token));
    lengths.push_back((*more)->len);
    if ((*more)->len > kBufferSize) failure = corrupt(fmt::format("used length {}", (*more)->len));
  }
  std::vector<uint8_t> frame;
  for (size_t k = 0; failure.ok() && k < slots.size(); ++k) {
    const uint64_t skip = k == 0 ? vn::kHdrV1Size : 0;
    const size_t at = frame.size();
    frame.resize(at + lengths[k] - skip);
    failure = pci_->bus().memory_read(pool.memory + uint64_t{slots[k]} * kBufferSize + skip,
                                      std::span(frame.data() + at, lengths[k] - skip));
  }
  // Every buffer goes back to the device, whatever the frame was.
  for (uint16_t slot : slots) FERRY_RETURN_IF_ERROR(post_rx(pool, slot));
  auto kicked = pool.queue->kick();
  if (!kicked.ok()) return kicked.take_status();
  if (!failure.ok()) return failure;
  return std::optional<std::vector<uint8_t>>(std::move(frame));
}

Result<uint8_t> NetDriver::control(const NetCtrlCommand& command) {
  if (!ctrl_) {
    return Error(ErrorCode::kFailedPrecondition,
                 "virtio-net: no control queue (CTRL_VQ not negotiated) for class {} command {}",
                 command.cls, command.cmd);
  }
  if (command.data.size() > kCtrlMaxData) {
    return Error(ErrorCode::kInvalidArgument, "virtio-net: control data of {} bytes (at most {})",
                 command.data.size(), kCtrlMaxData);
  }
  GuestBus& bus = pci_->bus();
  const std::array<uint8_t, 2> header{command.cls, command.cmd};
  FERRY_RETURN_IF_ERROR(bus.memory_write(ctrl_memory_ + kCtrlHeaderAt, header));
  if (!command.data.empty())
    FERRY_RETURN_IF_ERROR(bus.memory_write(ctrl_memory_ + kCtrlDataAt, command.data));
  // Not an ack value: shows whether the device wrote one.
  const std::array<uint8_t, 1> unset{0xff};
  FERRY_RETURN_IF_ERROR(bus.memory_write(ctrl_memory_ + kCtrlAckAt, unset));

  std::vector<Buffer> readable{{ctrl_memory_ + kCtrlHeaderAt, 2}};
  if (!command.data.empty())
    readable.push_back({ctrl_memory_ + kCtrlDataAt, static_cast<uint32_t>(command.data.size())});
  const std::array<Buffer, 1> ack{{{ctrl_memory_ + kCtrlAckAt, 1}}};
  FERRY_RETURN_IF_ERROR(ctrl_->add(readable, ack, 0));
  auto kicked = ctrl_->kick();
  if (!kicked.ok()) return kicked.take_status();

  const auto deadline = std::chrono::steady_clock::now() + ctrl_timeout_;
  for (;;) {
    auto used = ctrl_->get_used();
    if (!used.ok()) return used.take_status();
    if (*used) {
      if ((*used)->len < 1) {
        return Error(ErrorCode::kCorrupt,
                     "virtio-net: the device wrote no ack for class {} command {}", command.cls,
                     command.cmd);
      }
      auto value = bus.memory_load(ctrl_memory_ + kCtrlAckAt, 1);
      if (!value.ok()) return value.take_status();
      return static_cast<uint8_t>(*value);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Error(ErrorCode::kFailedPrecondition,
                   "virtio-net: no ack for class {} command {} within {} ms", command.cls,
                   command.cmd, ctrl_timeout_.count());
    }
    FERRY_RETURN_IF_ERROR(bus.idle(std::chrono::milliseconds(1)));
  }
}

Result<uint8_t> NetDriver::set_mac_address(const MacAddress& mac) {
  auto ack = control(net_ctrl_mac_addr_set(mac));
  if (ack.ok() && *ack == vn::kCtrlOk) mac_ = mac;
  return ack;
}

Result<uint8_t> NetDriver::set_queue_pairs(uint16_t pairs) {
  if (pairs < 1 || pairs > rx_.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 "virtio-net: {} queue pairs asked, {} are set up", pairs, rx_.size());
  }
  auto ack = control(net_ctrl_mq_pairs(pairs));
  if (ack.ok() && *ack == vn::kCtrlOk) pairs_ = pairs;
  return ack;
}

}  // namespace ferry::guest::virtio
