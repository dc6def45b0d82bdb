// The guest's virtio-pci and virtqueue drivers against the real device side: the
// transport hw::virtio::VirtioPci and the device-side Virtqueue, behind a small echo device
// written here (what each chain's readable buffers hold is written back into its writable
// buffers). The function sits on a fake PCI machine; the bus below decodes its BARs, config
// mechanism #1 and guest RAM as a machine does, and hands MSI messages to the driver.
// A test may include device headers; the guest library never does.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "guest/dma_memory.h"
#include "guest/guest_bus.h"
#include "guest/pci.h"
#include "guest/test_fakes.h"
#include "guest/virtio/net_driver.h"
#include "guest/virtio/virtio_pci_driver.h"
#include "guest/virtio/virtqueue_driver.h"
#include "hw/pci/test_fakes.h"
#include "hw/pci/test_machine_bus.h"
#include "hw/virtio/ring_memory.h"
#include "hw/virtio/virtio_device.h"
#include "hw/virtio/virtio_pci.h"
#include "hw/virtio/virtqueue.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"
#include "spec/virtio_pci.h"
#include "spec/virtio_ring.h"

namespace ferry::guest::virtio {
namespace {

namespace vp = ::ferry::spec::virtio_pci;
namespace vr = ::ferry::spec::virtio;
using namespace std::chrono_literals;

constexpr uint64_t kRamSize = 16 << 20;
constexpr uint64_t kDriverMemoryBegin = 8 << 20;  // rings; test buffers live below
constexpr uint64_t kBuffers = 1 << 20;
constexpr uint16_t kEchoPciId = vp::kModernDeviceIdBase + 42;
constexpr unsigned kRefusedFeature = 3;  // the echo device refuses FEATURES_OK with it
// Bits 5, 15, 16, 17 are virtio-net's MAC, MRG_RXBUF, STATUS and CTRL_VQ: the echo device
// also carries the net driver's tests until the virtio-net device joins.
constexpr uint64_t kEchoFeatures =
    vr::feature(0) | vr::feature(kRefusedFeature) | vr::feature(5) | vr::feature(15) |
    vr::feature(16) | vr::feature(17) | vr::feature(vr::kFEventIdx) | vr::feature(vr::kFRingPacked);
constexpr uint32_t kMsiBase = 0x40;

// Echoes each chain's readable bytes into its writable buffers. Queue 0 holds 8 entries (so
// tests wrap it quickly), queue 1 16, queue 2 8. `hold` leaves kicks unanswered until
// process(). For the net driver: with `net`, queue 0 keeps its buffers for deliver() (a
// frame in, as virtio-net's receive writes one) and queue 2 answers each chain with
// `ctrl_ack` in its last writable byte; every chain's readable bytes are kept in `seen`.
class EchoDevice final : public ::ferry::virtio::VirtioDevice {
 public:
  uint16_t device_id() const override { return 42; }
  ::ferry::virtio::VirtioPciIdentity pci_identity() const override {
    return {.pci_device_id = kEchoPciId, .class_code = 0xff0000, .subsystem_id = 42};
  }
  uint64_t host_features() const override { return kEchoFeatures; }
  uint16_t num_queues() const override { return 3; }
  uint16_t queue_max_size(uint16_t index) const override { return index == 1 ? 16 : 8; }
  uint32_t config_size() const override { return 8; }
  void get_config(std::span<uint8_t> out) override {
    if (churn > 0) {
      // A configuration that changes under the reader: a new value, a new generation.
      --churn;
      ++config_value;
      transport->bump_config_generation();
    }
    std::fill(out.begin(), out.end(), config_value);
  }
  void attach(::ferry::virtio::VirtioTransport& t) override {
    transport = &t;
    ring_memory = std::make_unique<::ferry::virtio::DmaRingMemory>(t.dma());
    for (uint16_t i = 0; i < 3; ++i) queues.emplace_back(i, *ring_memory);
  }
  Status features_negotiated(uint64_t features) override {
    if (features & vr::feature(kRefusedFeature))
      return Error(ErrorCode::kInvalidArgument, "echo: feature {} refused", kRefusedFeature);
    return {};
  }
  void queue_enabled(uint16_t index, const ::ferry::virtio::QueueLayout& layout,
                     uint64_t features) override {
    Status st = queues[index].configure(layout, features);
    if (!st.ok()) errors.push_back(st.to_string());
  }
  void queue_notify(uint16_t index) override {
    ++notifies[index];
    if (hold || (net && index == 0)) return;
    process(index);
  }
  void reset() override {
    for (auto& q : queues) q.reset();
  }

  // Pops every chain, echoes it, publishes the batch and interrupts if the driver wants.
  void process(uint16_t index) {
    ::ferry::virtio::Virtqueue& q = queues[index];
    ::ferry::virtio::VirtqueueElement elem;
    bool any = false;
    for (;;) {
      auto popped = q.pop(elem);
      if (!popped.ok()) {
        errors.push_back(popped.status().to_string());
        return;
      }
      if (!*popped) break;
      std::vector<uint8_t> data;
      for (const auto& r : elem.out) {
        size_t at = data.size();
        data.resize(at + r.len);
        Status st = transport->dma().read(r.addr, std::span(data.data() + at, r.len));
        if (!st.ok()) errors.push_back(st.to_string());
      }
      seen[index].push_back(data);
      segments[index].push_back(elem.out.size());
      if (net && index == 2 && !elem.in.empty()) {
        const auto& last = elem.in.back();
        Status st = transport->dma().write(last.addr + last.len - 1, std::span(&ctrl_ack, 1));
        if (!st.ok()) errors.push_back(st.to_string());
        st = q.push(elem, 1);
        if (!st.ok()) errors.push_back(st.to_string());
        any = true;
        continue;
      }
      uint32_t written = 0;
      for (const auto& r : elem.in) {
        const uint64_t n = std::min<uint64_t>(r.len, data.size() - written);
        if (n == 0) break;
        Status st = transport->dma().write(r.addr, std::span(data.data() + written, n));
        if (!st.ok()) errors.push_back(st.to_string());
        written += static_cast<uint32_t>(n);
      }
      Status st = q.push(elem, written);
      if (!st.ok()) errors.push_back(st.to_string());
      any = true;
    }
    if (!any) return;
    Status st = q.flush();
    if (!st.ok()) errors.push_back(st.to_string());
    auto notify = q.should_notify();
    if (!notify.ok()) {
      errors.push_back(notify.status().to_string());
    } else if (*notify) {
      ++interrupts[index];
      transport->notify_queue(index);
    }
  }

  // Writes `frame` behind a 12-byte header into queue 0's posted buffers: one buffer, or
  // with `mergeable` as many as it takes with num_buffers set. False when they ran out.
  bool deliver(std::span<const uint8_t> frame, bool mergeable) {
    ::ferry::virtio::Virtqueue& q = queues[0];
    std::vector<uint8_t> bytes(12, 0);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    size_t done = 0;
    uint16_t count = 0;
    uint64_t header_at = 0;
    ::ferry::virtio::VirtqueueElement elem;
    while (done < bytes.size()) {
      auto popped = q.pop(elem);
      if (!popped.ok() || !*popped) {
        q.discard_pushed();
        return false;
      }
      if (count == 0) header_at = elem.in.front().addr;
      uint32_t written = 0;
      for (const auto& r : elem.in) {
        const uint64_t n = std::min<uint64_t>(r.len, bytes.size() - done);
        if (n == 0) break;
        Status st = transport->dma().write(r.addr, std::span(bytes.data() + done, n));
        if (!st.ok()) errors.push_back(st.to_string());
        done += n;
        written += static_cast<uint32_t>(n);
      }
      Status st = q.push(elem, written);
      if (!st.ok()) errors.push_back(st.to_string());
      ++count;
      if (!mergeable) break;
    }
    const std::array<uint8_t, 2> num{static_cast<uint8_t>(mergeable ? count : 0),
                                     static_cast<uint8_t>(mergeable ? count >> 8 : 0)};
    Status st = transport->dma().write(header_at + 10, num);
    if (!st.ok()) errors.push_back(st.to_string());
    st = q.flush();
    if (!st.ok()) errors.push_back(st.to_string());
    auto notify = q.should_notify();
    if (notify.ok() && *notify) transport->notify_queue(0);
    return true;
  }

  ::ferry::virtio::VirtioTransport* transport = nullptr;
  std::unique_ptr<::ferry::virtio::DmaRingMemory> ring_memory;
  std::deque<::ferry::virtio::Virtqueue> queues;  // Virtqueue is not movable
  std::array<int, 3> notifies{};
  std::array<int, 3> interrupts{};
  std::array<std::vector<std::vector<uint8_t>>, 3> seen;  // readable bytes of each chain
  std::array<std::vector<size_t>, 3> segments;             // readable descriptors per chain
  std::vector<std::string> errors;
  bool hold = false;
  bool net = false;
  uint8_t ctrl_ack = 0;
  int churn = 0;
  uint8_t config_value = 0x11;
};

// The fake machine's bus (synchronous, no loop) with guest RAM's 16-bit ring fields as one
// access, counted, and MSI only: the messages the device sent are already in the sink.
class EchoMachineBus final : public pci::test::MachineBus {
 public:
  EchoMachineBus(pci::test::Machine& machine, memory::AddressSpace& ram)
      : MachineBus(machine, ram) {}

  Result<uint16_t> memory_load16(uint64_t addr) override {
    auto p = field16(addr);
    if (!p.ok()) return p.take_status();
    ++loads16;
    return __atomic_load_n(*p, __ATOMIC_RELAXED);
  }
  Status memory_store16(uint64_t addr, uint16_t value) override {
    auto p = field16(addr);
    if (!p.ok()) return p.take_status();
    ++stores16;
    __atomic_store_n(*p, value, __ATOMIC_RELAXED);
    return {};
  }
  Status enable_interrupts(InterruptSource source) override {
    return source == InterruptSource::kMsi
               ? Status{}
               : Error(ErrorCode::kFailedPrecondition, "echo bus: MSI only");
  }
  Result<uint32_t> wait_msi(uint32_t data, std::chrono::microseconds) override {
    auto& writes = machine().msi.writes;
    const auto matches = [&](const pci::MsiMessage& m) {
      return m.data == data && m.address >= kMsiWindowBase &&
             m.address < kMsiWindowBase + kMsiWindowSize;
    };
    const auto n = std::count_if(writes.begin(), writes.end(), matches);
    writes.erase(std::remove_if(writes.begin(), writes.end(), matches), writes.end());
    return static_cast<uint32_t>(n);
  }

  int loads16 = 0;
  int stores16 = 0;

 private:
  Result<uint16_t*> field16(uint64_t addr) {
    if (addr & 1) return Error(ErrorCode::kInvalidArgument, "echo bus: 0x{:x} is odd", addr);
    std::array<memory::GuestRange, 1> range{{{addr, 2}}};
    auto iov = memory().translate(range, 1);
    if (!iov.ok()) return iov.take_status();
    if (iov->size() != 1 || (*iov)[0].iov_len != 2)
      return Error(ErrorCode::kOutOfRange, "echo bus: 0x{:x} is not RAM", addr);
    return static_cast<uint16_t*>((*iov)[0].iov_base);
  }
};

class VirtioDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto block = memory::RamBlock::anonymous("pc.ram", kRamSize);
    ASSERT_TRUE(block.ok()) << block.status().to_string();
    ASSERT_TRUE(ram_.add_ram(0, std::move(*block)).ok());
    auto echo = std::make_unique<EchoDevice>();
    dev_ = echo.get();
    auto pci = ::ferry::virtio::VirtioPci::create(std::move(echo), {.type_name = "virtio-echo-pci"});
    ASSERT_TRUE(pci.ok()) << pci.status().to_string();
    auto added = machine_.bus.add(std::move(*pci), "3.0");
    ASSERT_TRUE(added.ok()) << added.status().to_string();
    vpci_ = static_cast<::ferry::virtio::VirtioPci*>(*added);
    vpci_->attach_dma(ram_);
    bus_ = std::make_unique<EchoMachineBus>(machine_, ram_);
    auto dma = DmaMemory::create(kDriverMemoryBegin, kRamSize);
    ASSERT_TRUE(dma.ok());
    dma_.emplace(std::move(*dma));
    auto driver = VirtioPciDriver::probe(*bus_, *dma_, window_, {.device_id = kEchoPciId});
    ASSERT_TRUE(driver.ok()) << driver.status().to_string();
    driver_ = std::move(*driver);
  }
  void TearDown() override {
    EXPECT_TRUE(dev_->errors.empty()) << dev_->errors.front();
  }

  // Reset, negotiate `features`, set up both queues with `vector0` / `vector1`, DRIVER_OK.
  void start(uint64_t features, uint16_t vector0 = vp::kNoVector,
             uint16_t vector1 = vp::kNoVector) {
    ASSERT_TRUE(driver_->reset().ok());
    auto negotiated = driver_->negotiate(features | vr::feature(vr::kFVersion1),
                                         vr::feature(vr::kFVersion1));
    ASSERT_TRUE(negotiated.ok()) << negotiated.status().to_string();
    for (uint16_t q = 0; q < 2; ++q) {
      auto queue = driver_->setup_queue(q, 0, q == 0 ? vector0 : vector1);
      ASSERT_TRUE(queue.ok()) << queue.status().to_string();
    }
    ASSERT_TRUE(driver_->driver_ok().ok());
  }

  // One chain through queue `q`: `payload` in two readable buffers, `in_len` bytes of
  // writable space in one or two buffers. Returns the used length; checks the echo.
  void fill(uint64_t addr, std::span<const uint8_t> bytes) {
    ASSERT_TRUE(bus_->memory_write(addr, bytes).ok());
  }
  std::vector<uint8_t> read(uint64_t addr, size_t n) {
    std::vector<uint8_t> out(n);
    EXPECT_TRUE(bus_->memory_read(addr, out).ok());
    return out;
  }
  std::optional<UsedBuffer> poll(VirtqueueDriver& q) {
    auto used = q.get_used();
    EXPECT_TRUE(used.ok()) << used.status().to_string();
    return used.ok() ? *used : std::nullopt;
  }

  pci::test::Machine machine_;
  memory::AddressSpace ram_;
  EchoDevice* dev_ = nullptr;
  ::ferry::virtio::VirtioPci* vpci_ = nullptr;
  std::unique_ptr<EchoMachineBus> bus_;
  std::optional<DmaMemory> dma_;
  MmioWindow window_ = MmioWindow::standard();
  std::unique_ptr<VirtioPciDriver> driver_;
};

// ---- discovery and negotiation ------------------------------------------------------------------

TEST_F(VirtioDriverTest, FindsTheCapabilitiesThroughConfigurationReads) {
  const auto& bars = driver_->bars();
  auto bar4 = std::find_if(bars.begin(), bars.end(), [](const PciBar& b) { return b.index == 4; });
  ASSERT_NE(bar4, bars.end());
  EXPECT_TRUE(bar4->is_64bit);
  EXPECT_EQ(bar4->size, 0x4000u);
  EXPECT_EQ(driver_->common().address, bar4->address + 0x0000);
  EXPECT_EQ(driver_->isr_region().address, bar4->address + 0x1000);
  EXPECT_EQ(driver_->device_region().address, bar4->address + 0x2000);
  EXPECT_EQ(driver_->notify_region().address, bar4->address + 0x3000);
  EXPECT_EQ(driver_->common().cap_offset, 0x40);
  EXPECT_EQ(driver_->notify_region().cap_offset, 0x70);
  EXPECT_EQ(driver_->notify_multiplier(), 4u);
  auto queues = driver_->num_queues();
  ASSERT_TRUE(queues.ok());
  EXPECT_EQ(*queues, 3);
}

// Capabilities a hostile or broken function presents are refused with what was found.
TEST(VirtioCapabilityTest, MalformedCapabilitiesAreRefused) {
  auto dma = DmaMemory::create(0x10000, 0x20000);
  ASSERT_TRUE(dma.ok());
  for (bool looping : {true, false}) {
    testing::FakeBus bus(1 << 20);
    auto& f = bus.add_function(3, 0, 0x1af4, 0x1041, 0x020000);
    testing::FakeBus::put(f.config, 6, 0x10, 2);  // status: capability list
    testing::FakeBus::put(f.config, 0x34, 0x40, 1);
    // Looping: a PCI_CFG capability pointing at itself. Else a common-configuration
    // capability naming BAR4, which the function does not have.
    const uint32_t type = looping ? vp::kCapPciCfg : vp::kCapCommonCfg;
    testing::FakeBus::put(f.config, 0x40,
                          vp::kCapVendor | (looping ? 0x40u : 0u) << 8 | 16u << 16 | type << 24, 4);
    testing::FakeBus::put(f.config, 0x44, 4, 1);
    testing::FakeBus::put(f.config, 0x4c, 0x1000, 4);
    MmioWindow window = MmioWindow::standard();
    auto driver = VirtioPciDriver::probe(bus, *dma, window, {.device_id = 0x1041});
    ASSERT_FALSE(driver.ok());
    const std::string message = driver.status().to_string();
    EXPECT_NE(message.find(looping ? "capability list is malformed"
                                   : "names BAR4 offset 0x0 length 0x1000, which is not inside a "
                                     "memory BAR"),
              std::string::npos)
        << message;
  }
}

TEST_F(VirtioDriverTest, NoMatchingFunctionIsNamed) {
  auto other = VirtioPciDriver::probe(*bus_, *dma_, window_, {.device_id = 0x1041});
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().to_string().find("1af4:1041"), std::string::npos)
      << other.status().to_string();
}

TEST_F(VirtioDriverTest, NegotiatesWhatBothSidesWant) {
  ASSERT_TRUE(driver_->reset().ok());
  const uint64_t unknown = vr::feature(40);
  auto negotiated = driver_->negotiate(
      vr::feature(vr::kFVersion1) | vr::feature(vr::kFEventIdx) | unknown);
  ASSERT_TRUE(negotiated.ok()) << negotiated.status().to_string();
  EXPECT_EQ(negotiated->offered, kEchoFeatures | vr::feature(vr::kFVersion1));
  EXPECT_EQ(negotiated->accepted, vr::feature(vr::kFVersion1) | vr::feature(vr::kFEventIdx));
  EXPECT_EQ(vpci_->driver_features(), negotiated->accepted);
  EXPECT_EQ(vpci_->status(),
            vp::kStatusAcknowledge | vp::kStatusDriver | vp::kStatusFeaturesOk);
  EXPECT_TRUE(driver_->has_feature(vr::kFEventIdx));
  EXPECT_FALSE(driver_->has_feature(vr::kFRingPacked));
}

TEST_F(VirtioDriverTest, ARequiredFeatureTheDeviceLacksFailsBeforeWriting) {
  ASSERT_TRUE(driver_->reset().ok());
  auto negotiated = driver_->negotiate(vr::feature(vr::kFVersion1),
                                       vr::feature(vr::kFVersion1) | vr::feature(40));
  ASSERT_FALSE(negotiated.ok());
  EXPECT_NE(negotiated.status().to_string().find("required features 40 (0x10000000000)"),
            std::string::npos)
      << negotiated.status().to_string();
  EXPECT_EQ(vpci_->driver_features(), 0u);
  EXPECT_TRUE(vpci_->status() & vp::kStatusFailed);
}

TEST_F(VirtioDriverTest, FeaturesOkThatDoesNotStickFailsNamingTheFeatures) {
  ASSERT_TRUE(driver_->reset().ok());
  auto negotiated =
      driver_->negotiate(vr::feature(vr::kFVersion1) | vr::feature(kRefusedFeature));
  ASSERT_FALSE(negotiated.ok());
  const std::string message = negotiated.status().to_string();
  EXPECT_NE(message.find("refused features 3, 32 (0x100000008)"), std::string::npos) << message;
  EXPECT_NE(message.find("FEATURES_OK did not stick"), std::string::npos) << message;
  EXPECT_FALSE(vpci_->status() & vp::kStatusFeaturesOk);
  EXPECT_TRUE(vpci_->status() & vp::kStatusFailed);
  EXPECT_EQ(driver_->features(), 0u);
  // A reset and a set the device accepts work again.
  start(0);
  EXPECT_TRUE(vpci_->status() & vp::kStatusDriverOk);
}

TEST_F(VirtioDriverTest, QueueSetupReachesTheTransport) {
  start(vr::feature(vr::kFEventIdx));
  for (uint16_t q = 0; q < 2; ++q) {
    const RingLayout& ring = driver_->queue(q)->layout();
    const auto& layout = vpci_->queue_layout(q);
    EXPECT_TRUE(layout.enabled);
    EXPECT_EQ(layout.size, q == 0 ? 8 : 16);
    EXPECT_EQ(layout.desc, ring.desc);
    EXPECT_EQ(layout.driver, ring.driver);
    EXPECT_EQ(layout.device, ring.device);
    EXPECT_GE(ring.desc, kDriverMemoryBegin);
    EXPECT_EQ(vpci_->queue_vector(q), vp::kNoVector);
    EXPECT_TRUE(dev_->queues[q].ready());
  }
  auto again = driver_->setup_queue(0, 0, vp::kNoVector);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().to_string().find("queue 0 is already enabled"), std::string::npos);
  auto big = driver_->setup_queue(5, 0, vp::kNoVector);
  EXPECT_FALSE(big.ok());
}

// ---- round trips ---------------------------------------------------------------------------------

class RingFormatTest : public VirtioDriverTest, public ::testing::WithParamInterface<bool> {};

// Many chains of varying shape through a queue of 8: both ring formats wrap many times
// (a packed chain straddles the end of the ring), several chains in flight per kick.
TEST_P(RingFormatTest, EchoRoundTripsWrapTheRing) {
  const bool packed = GetParam();
  start(packed ? vr::feature(vr::kFRingPacked) : 0);
  VirtqueueDriver& q = *driver_->queue(0);
  EXPECT_EQ(q.layout().packed, packed);
  std::mt19937 rng(7);
  uint64_t token = 0;
  for (int round = 0; round < 60; ++round) {
    const int batch = 1 + static_cast<int>(rng() % 2);  // chains of up to 4 descriptors
    struct Sent {
      uint64_t token;
      std::vector<uint8_t> payload;
      uint64_t in_addr;
      uint32_t in_len;
    };
    std::vector<Sent> sent;
    for (int b = 0; b < batch; ++b) {
      const uint64_t base = kBuffers + uint64_t(b) * 0x10000;
      Sent s{.token = ++token, .payload = {}, .in_addr = base + 0x8000, .in_len = 0};
      const uint32_t part1 = 1 + rng() % 200, part2 = rng() % 100;
      s.payload.resize(part1 + part2);
      for (auto& byte : s.payload) byte = static_cast<uint8_t>(rng());
      fill(base, std::span(s.payload.data(), part1));
      fill(base + 0x1000, std::span(s.payload.data() + part1, part2));
      std::vector<Buffer> readable{{base, part1}};
      if (part2) readable.push_back({base + 0x1000, part2});
      s.in_len = static_cast<uint32_t>(s.payload.size()) + 16;
      std::vector<uint8_t> zeros(s.in_len, 0);
      fill(s.in_addr, zeros);
      // The writable space in one buffer or split in two.
      std::vector<Buffer> writable;
      if (rng() % 2) {
        writable = {{s.in_addr, s.in_len}};
      } else {
        writable = {{s.in_addr, 5}, {s.in_addr + 5, s.in_len - 5}};
      }
      Status added = q.add(readable, writable, s.token);
      ASSERT_TRUE(added.ok()) << added.to_string();
      sent.push_back(std::move(s));
    }
    auto kicked = q.kick();
    ASSERT_TRUE(kicked.ok()) << kicked.status().to_string();
    EXPECT_TRUE(*kicked);
    for (const Sent& s : sent) {
      auto used = poll(q);
      ASSERT_TRUE(used.has_value()) << "round " << round;
      EXPECT_EQ(used->token, s.token);
      EXPECT_EQ(used->len, s.payload.size());
      EXPECT_EQ(read(s.in_addr, s.payload.size()), s.payload) << "round " << round;
    }
    EXPECT_FALSE(poll(q).has_value());
    EXPECT_EQ(q.num_free(), 8);
    EXPECT_EQ(q.in_flight(), 0);
  }
  if (packed) {
    EXPECT_NE(dev_->queues[0].last_avail_idx(), 0);  // somewhere in a later lap
  } else {
    EXPECT_GT(dev_->queues[0].last_avail_idx(), 8 * 10);
  }
  EXPECT_GT(bus_->stores16, 0);  // indices and flags went out as single 16-bit stores
  EXPECT_GT(bus_->loads16, 0);
}

// Past 65,536 chains the 16-bit indices (split avail/used idx, event indices; packed
// positions and wrap counters) roll over: every kick is still notified and every used
// chain still signalled, with EVENT_IDX deciding both.
TEST_P(RingFormatTest, IndicesRollOverWithEventIdx) {
  start(vr::feature(vr::kFEventIdx) | (GetParam() ? vr::feature(vr::kFRingPacked) : 0));
  if (GetParam()) {
    ASSERT_TRUE(dev_->queues[0].set_notification(true).ok());  // DESC mode
  }
  VirtqueueDriver& q = *driver_->queue(0);
  ASSERT_TRUE(q.enable_interrupts().ok());
  std::array<Buffer, 1> out{{{kBuffers, 8}}};
  std::array<Buffer, 1> in{{{kBuffers + 0x100, 8}}};
  // The split ring's 16-bit indices need 65,536 chains; packed positions wrap every 8.
  const uint64_t kChains = GetParam() ? 1000 : 66000;
  for (uint64_t t = 1; t <= kChains; ++t) {
    ASSERT_TRUE(q.add(out, in, t).ok());
    auto kicked = q.kick();
    ASSERT_TRUE(kicked.ok());
    ASSERT_TRUE(*kicked) << "chain " << t;
    auto used = poll(q);
    ASSERT_TRUE(used.has_value()) << "chain " << t;
    ASSERT_EQ(used->token, t);
    ASSERT_EQ(used->len, 8u);
  }
  EXPECT_EQ(dev_->notifies[0], int(kChains));
  EXPECT_EQ(dev_->interrupts[0], int(kChains));
  EXPECT_EQ(q.suppressed_kicks(), 0u);
}

TEST_P(RingFormatTest, AChainLargerThanTheFreeDescriptorsIsRefused) {
  start(GetParam() ? vr::feature(vr::kFRingPacked) : 0);
  VirtqueueDriver& q = *driver_->queue(0);
  std::vector<Buffer> nine(9, Buffer{kBuffers, 4});
  Status st = q.add(nine, {}, 1);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("a chain of 9 buffers does not fit in 8 free descriptors"),
            std::string::npos)
      << st.to_string();
  EXPECT_FALSE(q.add({}, {}, 1).ok());
}

// EVENT_IDX: a device that has not caught up (its avail_event / event offset still where
// it was) gets one notification for many chains; once it consumed them it asks again.
TEST_P(RingFormatTest, EventIdxSuppressesKicksTheDeviceDidNotAskFor) {
  const bool packed = GetParam();
  start(vr::feature(vr::kFEventIdx) | (packed ? vr::feature(vr::kFRingPacked) : 0));
  if (packed) {
    ASSERT_TRUE(dev_->queues[0].set_notification(true).ok());  // DESC mode
  }
  VirtqueueDriver& q = *driver_->queue(0);
  dev_->hold = true;
  std::array<Buffer, 1> in{{{kBuffers, 4}}};
  std::array<Buffer, 1> out{{{kBuffers + 0x100, 4}}};
  ASSERT_TRUE(q.add(out, in, 1).ok());
  EXPECT_TRUE(*q.kick());
  ASSERT_TRUE(q.add(out, in, 2).ok());
  EXPECT_FALSE(*q.kick());
  ASSERT_TRUE(q.add(out, in, 3).ok());
  EXPECT_FALSE(*q.kick());
  EXPECT_EQ(dev_->notifies[0], 1);
  EXPECT_EQ(q.notifications(), 1u);
  EXPECT_EQ(q.suppressed_kicks(), 2u);
  dev_->process(0);  // consumes all three and moves its event point past them
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(poll(q).has_value());
  ASSERT_TRUE(q.add(out, in, 4).ok());
  EXPECT_TRUE(*q.kick());
  EXPECT_EQ(dev_->notifies[0], 2);
}

// Without EVENT_IDX the device's flag (split USED_F_NO_NOTIFY, packed DISABLE) decides.
TEST_P(RingFormatTest, TheDevicesNoNotifyFlagSuppressesKicks) {
  start(GetParam() ? vr::feature(vr::kFRingPacked) : 0);
  VirtqueueDriver& q = *driver_->queue(0);
  std::array<Buffer, 1> out{{{kBuffers, 4}}};
  ASSERT_TRUE(dev_->queues[0].set_notification(false).ok());
  ASSERT_TRUE(q.add(out, {}, 1).ok());
  EXPECT_FALSE(*q.kick());
  EXPECT_EQ(dev_->notifies[0], 0);
  ASSERT_TRUE(dev_->queues[0].set_notification(true).ok());
  ASSERT_TRUE(q.add(out, {}, 2).ok());
  EXPECT_TRUE(*q.kick());
  EXPECT_EQ(dev_->notifies[0], 1);
  ASSERT_TRUE(poll(q).has_value());
  ASSERT_TRUE(poll(q).has_value());
}

// Queue 0 signals through MSI-X vector 1, queue 1 has no vector and is polled. Disabling
// interrupts on the driver side (AVAIL_F_NO_INTERRUPT / used_event / driver event DISABLE)
// silences the device; enabling reports chains already waiting.
TEST_P(RingFormatTest, MsixVectorsAndPolling) {
  for (bool event_idx : {false, true}) {
    SCOPED_TRACE(event_idx ? "EVENT_IDX" : "flags");
    dev_->interrupts = {};
    ASSERT_TRUE(driver_->reset().ok());
    ASSERT_TRUE(driver_->use_msix(kMsiBase).ok());
    EXPECT_EQ(driver_->msix_vectors(), 4u);
    start((GetParam() ? vr::feature(vr::kFRingPacked) : 0) |
              (event_idx ? vr::feature(vr::kFEventIdx) : 0),
          1, vp::kNoVector);
    EXPECT_EQ(vpci_->queue_vector(0), 1);
    EXPECT_EQ(vpci_->queue_vector(1), vp::kNoVector);
    machine_.msi.writes.clear();
    std::array<Buffer, 1> out{{{kBuffers, 4}}};

    VirtqueueDriver& q0 = *driver_->queue(0);
    ASSERT_TRUE(q0.add(out, {}, 1).ok());
    ASSERT_TRUE(q0.kick().ok());
    EXPECT_EQ(*driver_->wait_vector(1, 1s), 1u);
    EXPECT_EQ(poll(q0)->token, 1u);

    VirtqueueDriver& q1 = *driver_->queue(1);
    ASSERT_TRUE(q1.add(out, {}, 2).ok());
    ASSERT_TRUE(q1.kick().ok());
    EXPECT_TRUE(machine_.msi.writes.empty()) << "a queue without a vector sends nothing";
    EXPECT_EQ(poll(q1)->token, 2u);

    ASSERT_TRUE(q0.disable_interrupts().ok());
    for (uint64_t t = 3; t < 6; ++t) {
      ASSERT_TRUE(q0.add(out, {}, t).ok());
      ASSERT_TRUE(q0.kick().ok());
    }
    EXPECT_EQ(*driver_->wait_vector(1, 0us), 0u);
    EXPECT_EQ(dev_->interrupts[0], 1);
    // Three chains wait: enabling says so rather than promising an interrupt.
    auto enabled = q0.enable_interrupts();
    ASSERT_TRUE(enabled.ok());
    EXPECT_FALSE(*enabled);
    for (uint64_t t = 3; t < 6; ++t) EXPECT_EQ(poll(q0)->token, t);
    enabled = q0.enable_interrupts();
    ASSERT_TRUE(enabled.ok());
    EXPECT_TRUE(*enabled);
    ASSERT_TRUE(q0.add(out, {}, 6).ok());
    ASSERT_TRUE(q0.kick().ok());
    EXPECT_EQ(*driver_->wait_vector(1, 1s), 1u);
    EXPECT_EQ(poll(q0)->token, 6u);
  }
}

// The device on its own thread polls the rings while the driver adds and takes chains
// (no kicks, no interrupts): what the driver publishes is whole when the device sees the
// index or head flags, and what it takes back is whole when it sees the used entry. The
// ordering is the fences and the single 16-bit accesses; TSan checks the races.
TEST_P(RingFormatTest, ADevicePollingOnAnotherThreadSeesWholeChains) {
  start(GetParam() ? vr::feature(vr::kFRingPacked) : 0);
  VirtqueueDriver& q = *driver_->queue(1);  // 16 entries
  ASSERT_TRUE(q.disable_interrupts().ok());
  std::atomic<bool> stop{false};
  std::thread device([&] {
    while (!stop.load(std::memory_order_relaxed)) dev_->process(1);
  });
  // A failed assertion returns early: the device thread still ends and is joined.
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      thread.join();
    }
  } joiner{stop, device};
  constexpr uint64_t kChains = 5000;  // many laps of 16; a few seconds under TSan
  constexpr uint32_t kLen = 24;
  uint64_t sent = 0, received = 0;
  // Slot k of 16: payload at kBuffers + 0x100 k, echo at kBuffers + 0x10000 + 0x100 k.
  auto payload = [](uint64_t token) {
    std::vector<uint8_t> p(kLen);
    for (uint32_t i = 0; i < kLen; ++i) p[i] = static_cast<uint8_t>(token * 31 + i);
    return p;
  };
  std::vector<uint64_t> slot_of(kChains + 1);
  std::vector<uint64_t> free_slots;
  for (uint64_t k = 0; k < 16; ++k) free_slots.push_back(k);
  while (received < kChains) {
    while (sent < kChains && !free_slots.empty() && q.num_free() >= 2) {
      const uint64_t token = ++sent, slot = free_slots.back();
      free_slots.pop_back();
      slot_of[token] = slot;
      fill(kBuffers + 0x100 * slot, payload(token));
      std::array<Buffer, 1> out{{{kBuffers + 0x100 * slot, kLen}}};
      std::array<Buffer, 1> in{{{kBuffers + 0x10000 + 0x100 * slot, kLen}}};
      ASSERT_TRUE(q.add(out, in, token).ok());
    }
    auto used = q.get_used();
    ASSERT_TRUE(used.ok()) << used.status().to_string();
    if (!*used) continue;
    ++received;
    const uint64_t slot = slot_of[(*used)->token];
    ASSERT_EQ((*used)->len, kLen);
    ASSERT_EQ(read(kBuffers + 0x10000 + 0x100 * slot, kLen), payload((*used)->token));
    free_slots.push_back(slot);
  }
  EXPECT_EQ(q.in_flight(), 0);
}

INSTANTIATE_TEST_SUITE_P(Formats, RingFormatTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Packed" : "Split"; });

// ---- device configuration, ISR, NEEDS_RESET --------------------------------------------------

TEST_F(VirtioDriverTest, ConfigReadsRetryWhileTheGenerationMoves) {
  start(0);
  std::array<uint8_t, 8> config{};
  ASSERT_TRUE(driver_->read_config(0, config).ok());
  EXPECT_EQ(driver_->last_config_rounds(), 1u);
  EXPECT_EQ(config[0], 0x11);

  // Each round reads two dwords; the first three reads change the configuration.
  dev_->churn = 3;
  ASSERT_TRUE(driver_->read_config(0, config).ok());
  EXPECT_EQ(driver_->last_config_rounds(), 3u);
  for (uint8_t b : config) EXPECT_EQ(b, 0x14) << "a torn read";

  dev_->churn = 1000;
  Status st = driver_->read_config(0, config);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("config_generation changed during each of 64 reads"),
            std::string::npos)
      << st.to_string();
  dev_->churn = 0;
  // The bound is the capability's region (QEMU's is 4 KiB, whatever the device's size).
  EXPECT_TRUE(driver_->read_config(0x1000 - 8, config).ok());
  EXPECT_FALSE(driver_->read_config(0x1000 - 4, config).ok()) << "past the region";
}

TEST_F(VirtioDriverTest, NeedsResetIsSeenAndClearedByAReset) {
  ASSERT_TRUE(driver_->use_msix(kMsiBase).ok());
  start(0, 1, 1);
  ASSERT_TRUE(driver_->set_config_vector(0).ok());
  auto flag = driver_->needs_reset();
  ASSERT_TRUE(flag.ok());
  EXPECT_FALSE(*flag);
  dev_->transport->set_needs_reset();
  flag = driver_->needs_reset();
  ASSERT_TRUE(flag.ok());
  EXPECT_TRUE(*flag);
  EXPECT_EQ(*driver_->wait_vector(0, 1s), 1u) << "the configuration interrupt";
  auto isr = driver_->read_isr();
  ASSERT_TRUE(isr.ok());
  EXPECT_TRUE(*isr & vp::kIsrConfig);
  EXPECT_EQ(*driver_->read_isr(), 0) << "reading the ISR clears it";
  start(0);
  EXPECT_FALSE(*driver_->needs_reset());
}

TEST_F(VirtioDriverTest, IsrReportsAQueueInterruptWithoutMsix) {
  start(0);
  std::array<Buffer, 1> out{{{kBuffers, 4}}};
  VirtqueueDriver& q = *driver_->queue(0);
  ASSERT_TRUE(q.add(out, {}, 1).ok());
  ASSERT_TRUE(q.kick().ok());
  EXPECT_EQ(*driver_->read_isr(), vp::kIsrQueue);
  EXPECT_TRUE(poll(q).has_value());
}

// A used entry naming a descriptor that is not in flight is the device's error, reported.
TEST_F(VirtioDriverTest, AUsedIdNotInFlightIsAnError) {
  start(0);
  VirtqueueDriver& q = *driver_->queue(0);
  const RingLayout& ring = q.layout();
  ASSERT_TRUE(bus_->memory_store(ring.device + vr::kUsedRing, 5, 4).ok());
  ASSERT_TRUE(bus_->memory_store16(ring.device + vr::kUsedIdx, 1).ok());
  auto used = q.get_used();
  ASSERT_FALSE(used.ok());
  EXPECT_NE(used.status().to_string().find("virtqueue 0: the device returned head 5"),
            std::string::npos)
      << used.status().to_string();
}

// ---- the virtio-net driver: byte layouts, then against the echo device ------------------------
// The end-to-end test against hw/virtio/net's device comes when that device lands.

namespace vn = ::ferry::spec::virtio_net;

TEST(NetBytesTest, HeaderAndControlCommandsAreLaidOutAsTheSpecSays) {
  EXPECT_EQ(net_tx_header(), (std::array<uint8_t, 12>{}));
  const std::array<uint8_t, 12> header{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x01};
  EXPECT_EQ(net_rx_num_buffers(header), 0x0103);
  EXPECT_EQ(net_rx_num_buffers(std::span(header.data(), 10)), 0) << "a short header";

  auto promisc = net_ctrl_rx(vn::kCtrlRxPromisc, true);
  EXPECT_EQ(promisc.cls, 0);
  EXPECT_EQ(promisc.cmd, 0);
  EXPECT_EQ(promisc.data, (std::vector<uint8_t>{1}));
  EXPECT_EQ(net_ctrl_rx(vn::kCtrlRxNobcast, false).data, (std::vector<uint8_t>{0}));

  const std::array<MacAddress, 1> uni{{{0x02, 0, 0, 0, 0, 0x02}}};
  const std::array<MacAddress, 2> multi{{{0x01, 0, 0x5e, 0, 0, 1}, {0x33, 0x33, 0, 0, 0, 1}}};
  auto table = net_ctrl_mac_table(uni, multi);
  EXPECT_EQ(table.cls, 1);
  EXPECT_EQ(table.cmd, 0);
  EXPECT_EQ(table.data, (std::vector<uint8_t>{1, 0, 0, 0, 0x02, 0, 0, 0, 0, 0x02,  //
                                               2, 0, 0, 0, 0x01, 0, 0x5e, 0, 0, 1,  //
                                               0x33, 0x33, 0, 0, 0, 1}));
  auto empty_table = net_ctrl_mac_table({}, {});
  EXPECT_EQ(empty_table.data, (std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 0, 0}));

  auto addr = net_ctrl_mac_addr_set({0x52, 0x54, 0, 0x12, 0x34, 0x57});
  EXPECT_EQ(addr.cls, 1);
  EXPECT_EQ(addr.cmd, 1);
  EXPECT_EQ(addr.data, (std::vector<uint8_t>{0x52, 0x54, 0, 0x12, 0x34, 0x57}));

  auto vlan = net_ctrl_vlan(true, 0x0abc);
  EXPECT_EQ(vlan.cls, 2);
  EXPECT_EQ(vlan.cmd, 0);
  EXPECT_EQ(vlan.data, (std::vector<uint8_t>{0xbc, 0x0a}));
  EXPECT_EQ(net_ctrl_vlan(false, 100).cmd, 1);

  auto announce = net_ctrl_announce_ack();
  EXPECT_EQ(announce.cls, 3);
  EXPECT_EQ(announce.cmd, 0);
  EXPECT_TRUE(announce.data.empty()) << "no zero-length descriptor for a command without data";

  auto mq = net_ctrl_mq_pairs(4);
  EXPECT_EQ(mq.cls, 4);
  EXPECT_EQ(mq.cmd, 0);
  EXPECT_EQ(mq.data, (std::vector<uint8_t>{4, 0}));
}

struct NetCase {
  bool packed;
  bool mergeable;
};

class NetDriverTest : public VirtioDriverTest, public ::testing::WithParamInterface<NetCase> {
 protected:
  void start_net() {
    dev_->net = true;
    auto net = NetDriver::start(std::move(driver_), *dma_,
                                {.packed = GetParam().packed, .mergeable = GetParam().mergeable,
                                 .msi_data_base = kMsiBase});
    ASSERT_TRUE(net.ok()) << net.status().to_string();
    net_ = std::move(*net);
  }
  std::vector<uint8_t> frame(size_t n, uint8_t seed) {
    std::vector<uint8_t> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = static_cast<uint8_t>(seed + i * 7);
    return f;
  }
  void TearDown() override {
    net_.reset();  // resets the device before its memory goes back
    VirtioDriverTest::TearDown();
  }
  std::unique_ptr<NetDriver> net_;
};

TEST_P(NetDriverTest, StartsWithConfigurationAndPostedBuffers) {
  start_net();
  EXPECT_EQ(net_->mac(), (MacAddress{0x11, 0x11, 0x11, 0x11, 0x11, 0x11}));
  EXPECT_TRUE(*net_->link_up());
  EXPECT_FALSE(*net_->announce_requested());
  EXPECT_EQ(net_->mergeable(), GetParam().mergeable);
  EXPECT_EQ(net_->queue_pairs(), 1);
  EXPECT_TRUE(vpci_->status() & vp::kStatusDriverOk);
  EXPECT_EQ(vpci_->driver_features() & vr::feature(vr::kFRingPacked),
            GetParam().packed ? vr::feature(vr::kFRingPacked) : 0);
  // Every RX descriptor holds one 2 KiB writable buffer the device can see.
  EXPECT_EQ(net_->rx_posted(), 8);
  ::ferry::virtio::VirtqueueElement elem;
  auto popped = dev_->queues[0].pop(elem);
  ASSERT_TRUE(popped.ok() && *popped);
  EXPECT_EQ(elem.out_bytes, 0u);
  EXPECT_EQ(elem.in_bytes, NetDriver::kBufferSize);
  dev_->queues[0].unpop(elem);
  // Queues and vectors: rx 0 → 1, tx 1 → 2, ctrl 2 → 3, config 0.
  EXPECT_EQ(vpci_->queue_vector(0), 1);
  EXPECT_EQ(vpci_->queue_vector(2), 3);
  EXPECT_EQ(vpci_->config_vector(), 0);
}

TEST_P(NetDriverTest, ReceivesFramesAndPostsTheBuffersAgain) {
  start_net();
  // Through a ring of 8 many times over.
  for (int i = 0; i < 30; ++i) {
    const auto f = frame(60 + i * 40, static_cast<uint8_t>(i));
    ASSERT_TRUE(dev_->deliver(f, net_->mergeable()));
    auto got = net_->receive();
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ(**got, f) << "frame " << i;
    EXPECT_EQ(net_->rx_posted(), 8);
  }
  auto none = net_->receive();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto signalled = net_->pci().wait_vector(1, 1s);
  ASSERT_TRUE(signalled.ok());
  EXPECT_GE(*signalled, 1u) << "RX signals through vector 1";
}

TEST_P(NetDriverTest, AMergeableFrameSpansBuffers) {
  if (!GetParam().mergeable) GTEST_SKIP() << "without MRG_RXBUF a frame is one buffer";
  start_net();
  // Larger than one buffer: num_buffers 3 (what a device with GUEST_TSO would do).
  const auto big = frame(5000, 3);
  ASSERT_TRUE(dev_->deliver(big, true));
  auto got = net_->receive();
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, big);
  EXPECT_EQ(net_->rx_posted(), 8);
}

TEST_P(NetDriverTest, SendsFramesBehindAZeroedHeader) {
  start_net();
  for (int i = 0; i < 40; ++i) {  // more than the 16 TX slots: reclaimed as they finish
    const auto f = frame(60 + i, static_cast<uint8_t>(i));
    Status st = net_->send(f);
    ASSERT_TRUE(st.ok()) << st.to_string();
    std::vector<uint8_t> want(12, 0);
    want.insert(want.end(), f.begin(), f.end());
    ASSERT_EQ(dev_->seen[1].size(), size_t(i + 1));
    EXPECT_EQ(dev_->seen[1].back(), want);
    EXPECT_EQ(dev_->segments[1].back(), 1u) << "header and frame in one descriptor";
  }
  EXPECT_FALSE(net_->send({}).ok());
  EXPECT_FALSE(net_->send(frame(1519, 0)).ok());
  auto taken = net_->reclaim_tx();
  ASSERT_TRUE(taken.ok());
  EXPECT_GT(*taken, 0u);
}

TEST_P(NetDriverTest, ControlCommandsReturnTheDevicesAck) {
  start_net();
  auto ack = net_->set_rx_mode(vn::kCtrlRxPromisc, true);
  ASSERT_TRUE(ack.ok()) << ack.status().to_string();
  EXPECT_EQ(*ack, vn::kCtrlOk);
  EXPECT_EQ(dev_->seen[2].back(), (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(dev_->segments[2].back(), 2u);

  dev_->ctrl_ack = vn::kCtrlErr;
  ack = net_->vlan_add(100);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(*ack, vn::kCtrlErr);
  EXPECT_EQ(dev_->seen[2].back(), (std::vector<uint8_t>{2, 0, 100, 0}));

  dev_->ctrl_ack = vn::kCtrlOk;
  ack = net_->announce_ack();
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(dev_->seen[2].back(), (std::vector<uint8_t>{3, 0}));
  EXPECT_EQ(dev_->segments[2].back(), 1u) << "no data descriptor";

  const MacAddress mac{0x52, 0x54, 0, 0x12, 0x34, 0x57};
  ack = net_->set_mac_address(mac);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(net_->mac(), mac);
  const std::array<MacAddress, 1> multi{{{0x01, 0, 0x5e, 0, 0, 1}}};
  ack = net_->set_mac_table({}, multi);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(dev_->seen[2].back().size(), 2u + 4 + 4 + 6);
  // More commands than the control ring has entries: each is taken back.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(net_->vlan_del(static_cast<uint16_t>(i)).ok());
  EXPECT_FALSE(net_->set_queue_pairs(2).ok()) << "one pair is set up";
}

INSTANTIATE_TEST_SUITE_P(
    Rings, NetDriverTest,
    ::testing::Values(NetCase{false, true}, NetCase{false, false}, NetCase{true, true},
                      NetCase{true, false}),
    [](const auto& info) {
      return std::string(info.param.packed ? "Packed" : "Split") +
             (info.param.mergeable ? "Mergeable" : "Plain");
    });

}  // namespace
}  // namespace ferry::guest::virtio
