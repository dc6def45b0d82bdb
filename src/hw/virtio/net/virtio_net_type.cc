#include "hw/virtio/net/virtio_net_type.h"

#include <fmt/format.h>

#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "base/log.h"
#include "hw/virtio/net/net_features.h"
#include "hw/virtio/net/virtio_net_allowlist.h"
#include "hw/virtio/net/virtio_net.h"
#include "hw/virtio/net/virtio_net_migration.h"
#include "hw/virtio/virtio_pci.h"

namespace ferry::virtio::net {

namespace {

// The QOM type QEMU's property errors name: the properties belong to the inner device.
constexpr std::string_view kInnerType = "virtio-net-device";

// "52:54:00:12:34:56" (QEMU's qdev MAC property: six hex pairs separated by ':' or '-').
std::optional<MacAddress> parse_mac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  MacAddress mac{};
  for (size_t i = 0; i < kMacSize; ++i) {
    const size_t at = i * 3;
    if (i > 0 && text[at - 1] != ':' && text[at - 1] != '-') return std::nullopt;
    unsigned value = 0;
    for (size_t k = 0; k < 2; ++k) {
      const char c = text[at + k];
      unsigned digit;
      if (c >= '0' && c <= '9') digit = static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') digit = static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') digit = static_cast<unsigned>(c - 'A' + 10);
      else return std::nullopt;
      value = value * 16 + digit;
    }
    mac[i] = static_cast<uint8_t>(value);
  }
  return mac;
}

// NIC_RX_FILTER_CHANGED as QEMU 7.2 sends it: the NIC's name (the device id) and the QOM
// path of the virtio-net device inside the proxy.
class QmpNicEvents final : public VirtioNetEvents {
 public:
  QmpNicEvents(hw::DeviceEvents& events, std::string id) : events_(events), id_(std::move(id)) {}
  void rx_filter_changed() override {
    nlohmann::ordered_json data = nlohmann::ordered_json::object();
    if (!id_.empty()) {
      data["name"] = id_;
      data["path"] = fmt::format("/machine/peripheral/{}/virtio-backend", id_);
    } else {
      // QEMU numbers anonymous devices (peripheral-anon/device[N]); Ferry does not yet.
      data["path"] = "/machine/peripheral-anon/virtio-net-pci/virtio-backend";
    }
    events_.emit("NIC_RX_FILTER_CHANGED", data);
  }

 private:
  hw::DeviceEvents& events_;
  std::string id_;
};

Status create_virtio_net_pci(hw::DeviceContext& context, const hw::DeviceOptions& options) {
  const Opts& opts = options.opts;
  VirtioNetOptions net_options;
  for (const FeatureProperty& property : net_feature_properties()) {
    const std::optional<bool> on = opts.boolean(property.name);
    if (!on.has_value()) continue;
    if (*on)
      net_options.property_features |= uint64_t{1} << property.bit;
    else
      net_options.property_features &= ~(uint64_t{1} << property.bit);
  }
  if (auto text = opts.string("mac")) {
    auto mac = parse_mac(*text);
    if (!mac.has_value())
      return Error(ErrorCode::kInvalidArgument, "-device {}: Property '{}.mac' doesn't take value '{}'",
                   options.driver, kInnerType, *text);
    net_options.mac = *mac;
  }
  NetProperties& properties = net_options.properties;
  properties.host_mtu = static_cast<uint16_t>(opts.number("host_mtu").value_or(0));
  properties.speed = static_cast<int32_t>(opts.integer("speed").value_or(-1));
  if (auto duplex = opts.string("duplex")) properties.duplex = *duplex;
  properties.failover = opts.boolean("failover").value_or(false);
  properties.rx_queue_size = static_cast<uint16_t>(opts.number("rx_queue_size").value_or(256));
  properties.tx_queue_size = static_cast<uint16_t>(opts.number("tx_queue_size").value_or(256));

  ::ferry::net::NetBackend* backend = nullptr;
  if (auto netdev = opts.string("netdev")) {
    auto claimed = context.backends.claim_netdev(options, *netdev, kInnerType);
    if (!claimed.ok()) return claimed.take_status();
    backend = *claimed;
  }
  auto device = VirtioNet::create(net_options, backend, 1);
  if (!device.ok()) return device.take_status().prepend_message(fmt::format("-device {}", options.driver));

  (*device)->own_events(std::make_unique<QmpNicEvents>(context.events, options.id));
  (*device)->attach_timers(context.loop, context.clock);  // guest announce, on the VM clock
  VirtioNet& nic = **device;  // owned by the function from here on
  VirtioPciOptions pci_options{.type_name = "virtio-net-pci"};
  const uint64_t vectors = opts.number("vectors").value_or(std::numeric_limits<uint32_t>::max());
  if (vectors != std::numeric_limits<uint32_t>::max()) {
    // QEMU warns and goes on without MSI-X when the table cannot be built (PCI: 2048).
    if (vectors > 2048) {
      log(LogLevel::kWarn, "-device {}: warning: unable to init msix vectors to {}",
          options.driver, vectors);
      pci_options.vectors = 0;
    } else {
      pci_options.vectors = static_cast<int>(vectors);
    }
  }
  auto function = VirtioPci::create(std::move(device).value(), pci_options);
  if (!function.ok())
    return function.take_status().prepend_message(fmt::format("-device {}", options.driver));
  // The function reaches guest memory through its bus-master-gated DMA view.
  (*function)->attach_dma(context.memory);
  VirtioPci& pci = **function;
  auto plugged = context.slot.plug_pci(options, std::move(function).value());
  if (!plugged.ok()) return plugged.take_status();
  // Plugged in for good: set_link and announce-self reach the NIC through the machine.
  (void)context.nics.add_nic(options, nic, backend);
  // The whole device migrates in QEMU 7.2's section "<address>/virtio-net"
  // (virtio_net_migration.h); a property or backend type the allowlist classifies as
  // blocking (or does not classify) blocks migration instead.
  FERRY_RETURN_IF_ERROR(context.migration.add_pci_section(kVirtioNetState, pci));
  const std::string where = fmt::format("{} at {}", options.driver, pci.address()->to_bdf());
  std::vector<std::string> reasons = net_property_blockers(opts, where);
  if (backend != nullptr)
    for (std::string& reason : netdev_backend_blockers(backend->type(), where))
      reasons.push_back(std::move(reason));
  for (std::string& reason : reasons)
    FERRY_RETURN_IF_ERROR(context.migration.add_blocker(std::move(reason)));
  return {};
}

}  // namespace

const OptSchema& virtio_net_pci_schema() {
  static const OptSchema schema = [] {
    OptSchema s{.option = "-device virtio-net-pci", .implied_key = "driver"};
    s.properties = {
        {.name = "driver", .help = "device type", .choices = {"virtio-net-pci"}},
        {.name = "id", .help = "device name"},
        {.name = "bus", .help = "bus name (ignored)"},
        {.name = "addr", .type = OptType::kPciDevfn,
         .help = "Slot and optional function number, example: 06.0 or 06"},
        {.name = "mac", .help = "Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56"},
        {.name = "netdev", .help = "ID of a netdev to use as a backend"},
        {.name = "vectors", .type = OptType::kUint32, .default_value = "4294967295"},
        {.name = "host_mtu", .type = OptType::kUint16, .default_value = "0"},
        {.name = "speed", .type = OptType::kInt32, .default_value = "-1"},
        {.name = "duplex"},
        {.name = "failover", .type = OptType::kBool, .default_value = "false"},
        {.name = "rx_queue_size", .type = OptType::kUint16, .default_value = "256"},
        {.name = "tx_queue_size", .type = OptType::kUint16, .default_value = "256"},
    };
    for (const FeatureProperty& property : net_feature_properties())
      s.properties.push_back({.name = std::string(property.name), .type = OptType::kBool,
                              .default_value = property.default_on ? "true" : "false",
                              .help = "on/off"});
    return s;
  }();
  return schema;
}

const hw::DeviceType& virtio_net_pci_type() {
  static const hw::DeviceType type{
      .name = "virtio-net-pci",
      .category = hw::DeviceCategory::kNetwork,
      .description = "",
      .schema = virtio_net_pci_schema,
      .bus_name = "PCI",
      .create = create_virtio_net_pci,
  };
  return type;
}

}  // namespace ferry::virtio::net
