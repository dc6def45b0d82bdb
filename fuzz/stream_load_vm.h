// The VM that stream_load_fuzzer loads into and make_stream_seeds saves from: a 64 KiB
// "pc.ram", a timer, the NVMe-like device at 0000:00:02.0 and a real virtio-net-pci
// (hw/virtio/net, packed=on offered, 8-entry queues' maximum left at 256) at 0000:00:03.0
// on a fake PCI bus with a backend that drops what it is sent, machine "pc-q35-7.2".
// Shared so that the committed seeds always match what the fuzzer registers.
#pragma once

#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/byte_writer.h"
#include "base/status.h"
#include "hw/pci/test_fakes.h"
#include "hw/virtio/net/virtio_net.h"
#include "hw/virtio/net/virtio_net_migration.h"
#include "hw/virtio/virtio_pci.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"
#include "net/net_backend.h"
#include "spec/virtio_ring.h"
#include "migration/section_registry.h"
#include "migration/test_devices.h"
#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace ferry::fuzz {

inline constexpr std::string_view kStreamMachine = "pc-q35-7.2";
inline constexpr uint64_t kStreamRamPages = 16;  // 64 KiB

// The NIC's netdev: accepts every frame the NIC sends; frames reach the NIC through offer().
class SinkBackend final : public net::NetBackend {
 public:
  SinkBackend() : NetBackend("n0", "hubport") {}
  net::SendResult transmit(std::span<const iovec>) override { return net::SendResult::kSent; }
  void receive_ready() override {}
  bool offer(std::span<const uint8_t> frame) {
    if (!nic_can_receive()) return false;
    deliver(frame);
    return true;
  }
};

struct StreamVm {
  StreamVm() = default;
  StreamVm(const StreamVm&) = delete;  // the registry binds to the members' addresses
  StreamVm& operator=(const StreamVm&) = delete;

  // Guest RAM: the address space owns the block, `ram` names it for the RAM section.
  memory::AddressSpace memory;
  std::vector<memory::RamBlock*> ram;
  migration::test::Timer timer;
  vmstate::samples::NvmeLike nvme;
  pci::test::Machine machine;
  SinkBackend backend;
  virtio::VirtioPci* nic = nullptr;  // owned by machine.bus
  migration::SectionRegistry registry;

  // Registration order fixes the section ids: ram 0, timer 1, nvme 2, virtio-net 3.
  // Without `with_nic_section` the NIC exists but its section is not registered: the
  // streams of the seeds made before the NIC joined the VM (they load into one with it).
  static Result<std::unique_ptr<StreamVm>> make(bool populated, uint32_t seed = 1,
                                                bool with_nic_section = true) {
    auto vm = std::make_unique<StreamVm>();
    auto blocks = migration::test::make_ram({{"pc.ram", kStreamRamPages}}, populated, seed);
    if (blocks.size() != 1) return Error(ErrorCode::kInternal, "cannot allocate pc.ram");
    auto mapped = vm->memory.add_ram(0, std::move(blocks.front()));
    if (!mapped.ok()) return mapped.take_status();
    vm->ram.push_back(*mapped);
    if (populated) {
      vm->timer = {0x0102030405060708ull + seed, 1000 + seed};
      vmstate::samples::fill_nvme_like(vm->nvme, seed);
    }
    virtio::net::VirtioNetOptions nic_options;
    nic_options.property_features |= uint64_t{1} << spec::virtio::kFRingPacked;
    auto net = virtio::net::VirtioNet::create(nic_options, &vm->backend, 1);
    if (!net.ok()) return net.take_status();
    auto pci = virtio::VirtioPci::create(std::move(*net), {.type_name = "virtio-net-pci"});
    if (!pci.ok()) return pci.take_status();
    auto added = vm->machine.bus.add(std::move(*pci), "3.0");
    if (!added.ok()) return added.take_status();
    vm->nic = static_cast<virtio::VirtioPci*>(*added);
    vm->nic->attach_dma(vm->memory);
    vm->nic->quiesce();  // a destination is stopped; a source stops before it saves
    FERRY_RETURN_IF_ERROR(vm->registry.add_ram().status());
    FERRY_RETURN_IF_ERROR(
        vm->registry.add("timer", vmstate::bind(migration::test::kTimerDesc, vm->timer))
            .status());
    FERRY_RETURN_IF_ERROR(vm->registry
                              .add(migration::pci_idstr(0, 0, 2, 0, "nvme"),
                                   vmstate::bind(vmstate::samples::kNvmeLikeDesc, vm->nvme))
                              .status());
    if (!with_nic_section) return vm;
    FERRY_RETURN_IF_ERROR(vm->registry
                              .add(migration::pci_idstr(0, 0, 3, 0, "virtio-net"),
                                   vmstate::bind(virtio::net::kVirtioNetState, *vm->nic))
                              .status());
    return vm;
  }

  // The NIC's section as it would be saved now (its state, compared byte for byte).
  Result<std::vector<uint8_t>> nic_section() {
    nic->quiesce();  // a loaded section may have left the device running
    ByteWriter w;
    FERRY_RETURN_IF_ERROR(virtio::net::kVirtioNetState.save(*nic, w));
    return w.to_vector();
  }

  bool same_as(StreamVm& o) {
    const auto& a = ram.front();
    const auto& b = o.ram.front();
    if (a->size() != b->size() || std::memcmp(a->host(), b->host(), a->size()) != 0)
      return false;
    auto mine = nic_section();
    auto theirs = o.nic_section();
    return timer == o.timer && nvme == o.nvme && mine.ok() && theirs.ok() && *mine == *theirs;
  }
};

}  // namespace ferry::fuzz
