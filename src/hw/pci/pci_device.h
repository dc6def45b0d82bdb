// PciDevice: one PCI function as the guest sees it. It owns the configuration space
// (256 bytes, or 4 KiB for PCI Express) with QEMU's per-byte masks (bits the guest may
// write, bits it clears by writing 1), the BARs and their effective mappings, the command
// and status registers, INTx, the capability list (PCI Express, power management, MSI-X)
// and the MSI-X table and PBA. Device models derive from it; the bus (pci_bus.h) plugs it
// in and carries its mappings and interrupts to the machine (interfaces.h).
//
// Migration: PciState and MsixState are the migrated parts. A device description embeds
// them with PciDevice::vmstate_pci_device() and PciDevice::vmstate_msix(); loading checks
// that read-only configuration bits are unchanged, then re-derives BAR mappings and
// interrupt levels (pci_migration.cc).
//
// Threading: none inside; every call runs under the machine lock (design.md §3).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "hw/dma/dma_view.h"
#include "hw/pci/interfaces.h"
#include "hw/pci/pci_address.h"
#include "hw/pci/pci_regs.h"
#include "vmstate/vmstate.h"

namespace ferry::pci {

class PciBus;

enum class PciKind : uint8_t { kConventional, kExpress };
enum class BarType : uint8_t { kMem32, kMem64, kIo };
std::string_view bar_type_name(BarType type);

struct PciIds {
  uint16_t vendor = 0;
  uint16_t device = 0;
  uint32_t class_code = 0;  // 24 bits: base class << 16 | subclass << 8 | programming interface
  uint8_t revision = 0;
  uint16_t subsystem_vendor = 0;
  uint16_t subsystem = 0;
};

// Where MSI-X lives: the table (16 bytes per vector) and the PBA (one bit per vector), each
// at a qword-aligned offset inside a memory BAR registered beforehand.
struct MsixLayout {
  unsigned vectors = 0;  // 1..2048
  int table_bar = 0;
  uint32_t table_offset = 0;
  int pba_bar = 0;
  uint32_t pba_offset = 0;
};

struct MsiMessage {
  uint64_t address = 0;
  uint32_t data = 0;
  bool operator==(const MsiMessage&) const = default;
};

// ---- migrated state ---------------------------------------------------------------------------

// QEMU's "PCIDevice" section: a version word, the configuration space, the INTx levels.
struct PciState {
  int32_t version_id = 2;
  std::array<uint8_t, kExpressConfigSize> config{};
  std::array<int32_t, 4> irq_state{};  // per pin, 0 or 1
  // Local, never sent: how much of `config` exists (256 or 4096), whose state this is, and
  // where an incoming config space waits until post_load has checked it, so a refused or
  // cut stream leaves the live configuration untouched.
  uint32_t config_size = kConfigSize;
  PciDevice* owner = nullptr;
  std::unique_ptr<std::array<uint8_t, kExpressConfigSize>> incoming_config;
};

// QEMU's "msix" section: the table and the pending bits, both as the guest sees them.
struct MsixState {
  std::vector<uint8_t> table;  // vectors * 16 bytes, little-endian
  std::vector<uint8_t> pba;    // whole qwords; the first (vectors + 7) / 8 bytes migrate
  uint32_t vectors = 0;        // local, never sent
  PciDevice* owner = nullptr;
};

namespace detail {

// QEMU migrates only the PBA bytes that hold a vector's bit, not the whole qwords.
inline size_t migrated_pba_bytes(const MsixState& s) { return (size_t{s.vectors} + 7) / 8; }

Status pci_state_pre_load(PciState& state);
Status pci_state_post_load(PciState& state, int version);
Status msix_state_post_load(MsixState& state, int version);

}  // namespace detail

inline constexpr auto kPciStateDesc = vmstate::describe<PciState>(
    "PCIDevice",
    {.version = 2, .minimum_version = 1, .pre_load = detail::pci_state_pre_load,
     .post_load = detail::pci_state_post_load},
    vmstate::field("version_id", &PciState::version_id)
        .validate([](int32_t v) { return v > 0 && v <= 2; }, "version_id must be 1 or 2"),
    // Loaded beside the live bytes; post_load checks and commits (QEMU's
    // get_pci_config_device also reads into a temporary first).
    vmstate::staged_buffer("config", &PciState::config, &PciState::incoming_config,
                           &PciState::config_size),
    vmstate::field("irq_state", &PciState::irq_state).since(2));

inline constexpr auto kMsixStateDesc = vmstate::describe<MsixState>(
    "msix", {.version = 1, .post_load = detail::msix_state_post_load},
    // Both sized by the vectors property: the stream carries no count.
    vmstate::config_buffer("table", &MsixState::table, vmstate::own_size),
    vmstate::config_buffer("pba", &MsixState::pba, &detail::migrated_pba_bytes));

// ---- the device ---------------------------------------------------------------------------------

class PciDevice {
 public:
  static constexpr uint64_t kUnmapped = ~uint64_t{0};

  PciDevice(std::string type_name, PciKind kind);
  virtual ~PciDevice();
  PciDevice(const PciDevice&) = delete;
  PciDevice& operator=(const PciDevice&) = delete;

  const std::string& type_name() const { return type_name_; }
  bool is_express() const { return kind_ == PciKind::kExpress; }
  uint32_t config_size() const { return pci_.config_size; }
  PciBus* bus() const { return bus_; }
  // Set once the device is plugged into a bus.
  std::optional<PciAddress> address() const;

  // ---- identity (device setup) ----
  void set_ids(const PciIds& ids);
  uint16_t vendor_id() const { return config_u16(kVendorId); }
  uint16_t device_id() const { return config_u16(kDeviceId); }
  uint32_t class_code() const { return config_u32(kRevisionId) >> 8; }
  uint8_t revision() const { return config_u8(kRevisionId); }

  // ---- configuration space as the guest sees it ----
  // `size` is 1, 2 or 4; accesses outside the config space read all-ones and write nothing.
  uint32_t config_read(uint32_t offset, unsigned size) const;
  // Applies the writable and write-1-to-clear masks, then the PCI side effects (mappings,
  // INTx, MSI-X), then on_config_write.
  void config_write(uint32_t offset, uint32_t value, unsigned size);

  // ---- raw access for the device model: no masks, no side effects ----
  // Offsets past the 4 KiB array read 0 and write nothing.
  uint8_t config_u8(uint32_t offset) const {
    return offset < kExpressConfigSize ? pci_.config[offset] : 0;
  }
  uint16_t config_u16(uint32_t offset) const;
  uint32_t config_u32(uint32_t offset) const;
  void set_config_u8(uint32_t offset, uint8_t value) {
    if (offset < kExpressConfigSize) pci_.config[offset] = value;
  }
  void set_config_u16(uint32_t offset, uint16_t value);
  void set_config_u32(uint32_t offset, uint32_t value);
  // Bits the guest may write (default: none but the header's writable fields).
  void set_writable_mask(uint32_t offset, unsigned size, uint32_t mask);
  // Bits the guest clears by writing 1 (status-like registers the device sets).
  void set_w1c_mask(uint32_t offset, unsigned size, uint32_t mask);
  // Read-only bits the device itself changes at run time: loading does not compare them.
  void set_volatile_mask(uint32_t offset, unsigned size, uint32_t mask);

  // ---- capabilities ----
  // Reserves `size` bytes (dword-aligned, from 0x40) and links them at the end of the list
  // that starts at 0x34; returns the capability's offset.
  Result<uint8_t> add_capability(uint8_t id, uint8_t size);
  std::optional<uint8_t> find_capability(uint8_t id) const;
  // PCI Express capability, version 2, endpoint, 2.5 GT/s x1 link (express devices only).
  Result<uint8_t> add_express_capability();
  // Power management, D0 and D3hot (PMCSR state bits writable, other states refused).
  Result<uint8_t> add_power_management_capability();
  uint16_t power_state() const;

  // ---- BARs ----
  // `size` is a power of two (memory at least 16 bytes, I/O at least 4 and at most 256);
  // a 64-bit BAR also occupies index + 1. `handler` may be null for a BAR that holds only
  // MSI-X; it must outlive the device.
  Status register_bar(int index, uint64_t size, BarType type, bool prefetchable,
                      MmioHandler* handler);
  bool bar_registered(int index) const;
  uint64_t bar_size(int index) const;
  BarType bar_type(int index) const;
  bool bar_prefetchable(int index) const;
  // The address where the BAR is decoded now, or kUnmapped (not programmed, decoding off).
  uint64_t bar_address(int index) const;
  // The handler the machine receives for BAR `index` (0..5; MSI-X table and PBA routed
  // inside).
  MmioHandler& bar_handler(int index);

  // ---- command register ----
  uint16_t command() const { return config_u16(kCommand); }
  bool io_enabled() const { return command() & kCommandIo; }
  bool memory_enabled() const { return command() & kCommandMemory; }
  // Devices must not DMA (nor send MSI-X) while this is off.
  bool bus_master_enabled() const { return command() & kCommandBusMaster; }

  // ---- DMA ----
  // Guest memory as this function reaches it by DMA (QEMU's bus-master address space):
  // every access is refused while Bus Master Enable is clear, so no device model checks
  // it by hand. Before attach_dma() every access is refused too. `memory` must outlive
  // the device.
  void attach_dma(memory::AddressSpace& memory);
  dma::DmaView& dma() { return dma_; }
  const dma::DmaView& dma() const { return dma_; }

  // ---- INTx (level-triggered) ----
  // 1..4 for INTA..INTD, 0 for none; set before plugging into a bus.
  Status set_interrupt_pin(uint8_t pin);
  uint8_t interrupt_pin() const { return config_u8(kInterruptPin); }
  // The device's own level; delivered unless INTx is disabled or MSI-X is enabled.
  void set_irq(bool level);
  bool irq_level() const;
  // Whether this device currently drives its bus line.
  bool intx_asserted() const { return intx_asserted_; }

  // ---- MSI-X ----
  Result<uint8_t> init_msix(const MsixLayout& layout);
  // Registers memory BAR `bar` just for MSI-X: table at 0, PBA after it.
  Result<uint8_t> init_msix_exclusive_bar(int bar, unsigned vectors);
  unsigned msix_vectors() const { return msix_.vectors; }
  bool msix_enabled() const;
  bool msix_function_masked() const;
  bool msix_vector_masked(unsigned vector) const;  // the vector's own mask bit
  bool msix_masked(unsigned vector) const;         // disabled, function- or vector-masked
  bool msix_pending(unsigned vector) const;
  MsiMessage msix_message(unsigned vector) const;
  // Sends the vector's message when it is deliverable, else sets its pending bit; pending
  // messages go out as soon as the vector is unmasked (and bus mastering is on).
  void msix_notify(unsigned vector);

  // ---- migration: fields for the device's description ----
  // QEMU's VMSTATE_PCI_DEVICE(parent_obj, ...) and VMSTATE_MSIX(...), in that order.
  // Back to the state the device had when it was plugged in, as on a system reset:
  // config space, MSI-X table and pending bits, interrupt lines; BAR mappings follow.
  // Then the model's own on_reset().
  void reset();
  // Run-state hooks: the VM stops (no device may change guest-visible state until resumed)
  // or runs again.
  virtual void quiesce() {}
  virtual void resume() {}
  // How much of the last quiesce() went to waiting for in-flight backend I/O (reported
  // apart from the device's own downtime share).
  virtual int64_t last_drain_ns() const { return 0; }

  static constexpr auto vmstate_pci_device() {
    return vmstate::field("parent_obj", &PciDevice::pci_, kPciStateDesc);
  }
  static constexpr auto vmstate_msix() {
    return vmstate::field("msix", &PciDevice::msix_, kMsixStateDesc);
  }

 protected:
  // Called after a guest config write has taken effect; `value` and `size` as written.
  virtual void on_config_write(uint32_t offset, uint32_t value, unsigned size);
  // Device-specific part of reset().
  virtual void on_reset() {}

 private:
  friend class PciBus;
  friend Status detail::pci_state_pre_load(PciState&);
  friend Status detail::pci_state_post_load(PciState&, int);
  friend Status detail::msix_state_post_load(MsixState&, int);

  // Routes a BAR's accesses: MSI-X table and PBA first, then the device's handler.
  class BarWindow final : public MmioHandler {
   public:
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;
    PciDevice* device = nullptr;
    int index = 0;
  };

  // The DMA view's gate: the command register's Bus Master Enable bit, read on every
  // access (so loads, resets and raw config writes need no hook).
  class BusMasterGate final : public dma::DmaGate {
   public:
    explicit BusMasterGate(const PciDevice& device) : device_(device) {}
    bool dma_allowed() const override { return device_.bus_master_enabled(); }

   private:
    const PciDevice& device_;
  };

  struct Bar {
    bool registered = false;
    bool upper_half = false;  // the high dword of the 64-bit BAR below
    uint64_t size = 0;
    BarType type = BarType::kMem32;
    bool prefetchable = false;
    MmioHandler* handler = nullptr;
    uint64_t mapped = kUnmapped;  // what the host was last told
  };

  // What the BAR registers and the command register say now.
  uint64_t decoded_bar_address(int index) const;
  BarRegion region(int index, uint64_t address);
  void update_mappings();
  void update_intx();
  void attach(PciBus& bus, PciAddress address);
  // What reset() returns to: the config space and MSI-X table at plug-in time.
  std::array<uint8_t, kExpressConfigSize> reset_config_{};
  std::vector<uint8_t> reset_msix_table_;
  void apply_power_state_rules(uint16_t old_pmcsr);

  bool in_msix_table(int bar, uint64_t offset, unsigned size) const;
  bool in_msix_pba(int bar, uint64_t offset, unsigned size) const;
  uint64_t msix_table_read(uint64_t offset, unsigned size) const;
  void msix_table_write(uint64_t offset, uint64_t value, unsigned size);
  uint64_t msix_pba_read(uint64_t offset, unsigned size) const;
  void set_msix_pending(unsigned vector, bool pending);
  void msix_deliver_pending();
  void msix_send(unsigned vector);
  uint16_t msix_control() const;

  Status validate_incoming_config() const;

  std::string type_name_;
  PciKind kind_;
  PciState pci_;
  MsixState msix_;
  std::array<uint8_t, kExpressConfigSize> wmask_{};
  std::array<uint8_t, kExpressConfigSize> w1cmask_{};
  std::array<uint8_t, kExpressConfigSize> volatile_mask_{};
  // INTx levels as they were before a load, restored when the load is refused.
  std::array<int32_t, 4> irq_state_before_load_{};
  std::array<Bar, kBarCount> bars_{};
  std::array<BarWindow, kBarCount> windows_{};
  MsixLayout msix_layout_{};
  uint8_t msix_cap_ = 0;
  uint8_t pm_cap_ = 0;
  uint32_t next_capability_ = kFirstCapability;
  PciBus* bus_ = nullptr;  // not owned: the bus owns this device
  PciAddress address_{};
  bool intx_asserted_ = false;
  BusMasterGate bus_master_gate_{*this};
  dma::DmaView dma_;
};

}  // namespace ferry::pci
