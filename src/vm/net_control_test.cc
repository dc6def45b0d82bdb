// The network cards' registry: QEMU's names for NICs, set_link by NIC or netdev name, and
// announce rounds on QEMU's schedule (a virtual clock stands in for real time).
#include "vm/net_control.h"

#include <gtest/gtest.h>

#include <vector>

namespace ferry::vm {
namespace {

net::NetdevConfig parsed_netdev(std::string_view text) {
  auto parsed = net::parse_netdev(text);
  EXPECT_TRUE(parsed.ok() && *parsed) << (parsed.ok() ? "help" : parsed.status().to_string());
  return std::move(**parsed);
}

hw::DeviceOptions nic_options(std::string id) {
  hw::DeviceOptions options;
  options.driver = "virtio-net-pci";
  options.id = std::move(id);
  return options;
}

// Records what the machine asks of it; `sent` holds (clock ns, frame).
class FakeNic final : public hw::Nic {
 public:
  FakeNic(const Clock& clock, uint8_t last) : clock_(clock) { mac_[5] = last; }
  void set_link(bool up) override { links.push_back(up); }
  std::array<uint8_t, 6> current_mac() const override { return mac_; }
  void send_raw(std::span<const uint8_t> frame) override {
    sent.push_back({clock_.now_ns(), std::vector<uint8_t>(frame.begin(), frame.end())});
  }
  void announce() override { ++announces; }
  std::optional<nlohmann::ordered_json> query_rx_filter(std::string_view name) override {
    if (!has_filter) return std::nullopt;
    return nlohmann::ordered_json{{"name", name}};
  }
  void incoming_migration_done(const net::AnnounceParameters& params) override {
    incoming_rounds.push_back(params.rounds);
    incoming_before_frames.push_back(sent.size());
  }

  std::vector<bool> links;
  std::vector<std::pair<int64_t, std::vector<uint8_t>>> sent;
  int announces = 0;
  bool has_filter = true;
  std::vector<int64_t> incoming_rounds;
  std::vector<size_t> incoming_before_frames;

 private:
  const Clock& clock_;
  std::array<uint8_t, 6> mac_{0x52, 0x54, 0x00, 0x12, 0x34, 0x00};
};

class NetControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    registry_ = std::make_unique<BackendRegistry>(*loop_, false);
    ASSERT_TRUE(registry_
                    ->open_netdevs({parsed_netdev("hubport,id=h0,hubid=0"),
                                    parsed_netdev("hubport,id=h1,hubid=0")},
                                   nullptr)
                    .ok());
    control_ = std::make_unique<NetControl>(*loop_, clock_, *registry_);
  }
  std::vector<int64_t> times(const FakeNic& nic) const {
    std::vector<int64_t> out;
    for (const auto& [ns, frame] : nic.sent) out.push_back(ns / 1'000'000);
    return out;
  }

  VirtualClock clock_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<BackendRegistry> registry_;
  std::unique_ptr<NetControl> control_;
};

TEST_F(NetControlTest, NamesNicsByIdOrQemusModelAndIndex) {
  FakeNic a(clock_, 1), b(clock_, 2), c(clock_, 3);
  EXPECT_EQ(control_->add_nic(nic_options(""), a, nullptr), "virtio-net-pci.0");
  EXPECT_EQ(control_->add_nic(nic_options("nic1"), b, nullptr), "nic1");
  EXPECT_EQ(control_->add_nic(nic_options(""), c, nullptr), "virtio-net-pci.2");
}

TEST_F(NetControlTest, SetLinkByNicOrNetdevNameAsQemuResolvesIt) {
  FakeNic a(clock_, 1), b(clock_, 2);
  net::NetBackend* h0 = registry_->find_netdev("h0");
  (void)control_->add_nic(nic_options("nic0"), a, h0);
  (void)control_->add_nic(nic_options("nic1"), b, registry_->find_netdev("h1"));
  // The NIC's name: only the NIC; the netdev keeps its link.
  ASSERT_TRUE(control_->set_link("nic0", false).ok());
  EXPECT_EQ(a.links, std::vector<bool>{false});
  EXPECT_FALSE(h0->link_down());
  // The netdev's name: the netdev and its NIC peer.
  ASSERT_TRUE(control_->set_link("h0", false).ok());
  EXPECT_TRUE(h0->link_down());
  EXPECT_EQ(a.links, (std::vector<bool>{false, false}));
  EXPECT_TRUE(b.links.empty());
  ASSERT_TRUE(control_->set_link("h0", true).ok());
  EXPECT_FALSE(h0->link_down());
  Status missing = control_->set_link("nope", true);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.message(), "Device 'nope' not found");
}

TEST_F(NetControlTest, QueryRxFilterListsNicsAndNamesWhatItCannotAnswerInQemusWords) {
  FakeNic a(clock_, 1), b(clock_, 2);
  b.has_filter = false;
  (void)control_->add_nic(nic_options("nic0"), a, registry_->find_netdev("h0"));
  (void)control_->add_nic(nic_options("nic1"), b, nullptr);
  auto all = control_->query_rx_filter(std::nullopt);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  EXPECT_EQ(all->dump(), R"([{"name":"nic0"}])");  // a NIC without a filter is left out
  auto one = control_->query_rx_filter("nic0");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->dump(), R"([{"name":"nic0"}])");
  auto messages = [&](const std::string& name) {
    auto r = control_->query_rx_filter(name);
    return r.ok() ? std::string("answered") : std::string(r.status().message());
  };
  EXPECT_EQ(messages("nic1"), "net client(nic1) doesn't support rx-filter querying");
  EXPECT_EQ(messages("h0"), "net client(h0) isn't a NIC");
  EXPECT_EQ(messages("nope"), "invalid net client name: nope");
}

TEST_F(NetControlTest, AnnounceRoundsFollowQemusScheduleOnEveryNic) {
  FakeNic a(clock_, 1), b(clock_, 2);
  (void)control_->add_nic(nic_options("nic0"), a, nullptr);
  (void)control_->add_nic(nic_options("nic1"), b, nullptr);
  control_->announce_self("", net::AnnounceParameters{}, std::nullopt);  // 50/550/5/100
  loop_->advance_clock(clock_, 2'000'000'000);
  EXPECT_EQ(times(a), (std::vector<int64_t>{0, 50, 200, 450, 800}));
  EXPECT_EQ(times(b), times(a));
  EXPECT_EQ(a.announces, 5);
  const std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x01};
  const auto rarp = net::rarp_announce_frame(mac);
  EXPECT_EQ(a.sent[0].second, std::vector<uint8_t>(rarp.begin(), rarp.end()));
  EXPECT_EQ(control_->rounds_pending(std::string("")), 0);
}

TEST_F(NetControlTest, InterfacesLimitTheNicsAndUnknownNamesAreIgnored) {
  FakeNic a(clock_, 1), b(clock_, 2);
  (void)control_->add_nic(nic_options("nic0"), a, nullptr);
  (void)control_->add_nic(nic_options("nic1"), b, nullptr);
  control_->announce_self("x", {.initial_ms = 1, .max_ms = 1, .rounds = 2, .step_ms = 1},
                          std::vector<std::string>{"nic1", "ghost"});
  loop_->advance_clock(clock_, 10'000'000);
  EXPECT_TRUE(a.sent.empty());
  EXPECT_EQ(b.sent.size(), 2u);
  EXPECT_EQ(b.announces, 2);
}

TEST_F(NetControlTest, SameIdReplacesOtherIdsRunSideBySide) {
  FakeNic a(clock_, 1);
  (void)control_->add_nic(nic_options("nic0"), a, nullptr);
  const net::AnnounceParameters slow{.initial_ms = 100, .max_ms = 100, .rounds = 3, .step_ms = 1};
  control_->announce_self("one", slow, std::nullopt);                  // t=0
  control_->announce_self("two", slow, std::nullopt);                  // t=0
  EXPECT_EQ(a.sent.size(), 2u);
  loop_->advance_clock(clock_, 50'000'000);
  control_->announce_self("one", {.initial_ms = 0, .max_ms = 0, .rounds = 1, .step_ms = 1},
                          std::nullopt);  // replaces "one": one round now, nothing after
  EXPECT_EQ(control_->rounds_pending(std::string("one")), 0);
  EXPECT_EQ(control_->rounds_pending(std::string("two")), 2);
  loop_->advance_clock(clock_, 1'000'000'000);
  EXPECT_EQ(times(a), (std::vector<int64_t>{0, 0, 50, 100, 200}));
}

TEST_F(NetControlTest, IncomingMigrationRunsApartFromAnnounceSelf) {
  FakeNic a(clock_, 1);
  (void)control_->add_nic(nic_options("nic0"), a, nullptr);
  control_->announce_after_incoming({.initial_ms = 10, .max_ms = 10, .rounds = 2, .step_ms = 1});
  control_->announce_self("", {.initial_ms = 10, .max_ms = 10, .rounds = 2, .step_ms = 1},
                          std::nullopt);
  // The NIC heard first, before the first round went out.
  EXPECT_EQ(a.incoming_rounds, std::vector<int64_t>{2});
  EXPECT_EQ(a.incoming_before_frames, std::vector<size_t>{0});
  EXPECT_EQ(control_->rounds_pending(std::nullopt), 1);
  EXPECT_EQ(control_->rounds_pending(std::string("")), 1);
  loop_->advance_clock(clock_, 100'000'000);
  EXPECT_EQ(a.sent.size(), 4u);
  // Zero rounds: nothing at all.
  control_->announce_after_incoming({.initial_ms = 10, .max_ms = 10, .rounds = 0, .step_ms = 1});
  EXPECT_EQ(a.sent.size(), 4u);
}

TEST_F(NetControlTest, DestroyedWithRoundsPendingFiresNothing) {
  FakeNic a(clock_, 1);
  (void)control_->add_nic(nic_options("nic0"), a, nullptr);
  control_->announce_self("", net::AnnounceParameters{}, std::nullopt);
  control_.reset();
  loop_->advance_clock(clock_, 2'000'000'000);
  EXPECT_EQ(a.sent.size(), 1u);
}

}  // namespace
}  // namespace ferry::vm
