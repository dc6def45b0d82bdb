// The VM that stream_load_fuzzer loads into and make_stream_seeds saves from: a 64 KiB
// "pc.ram", a timer and the NVMe-like device at 0000:00:02.0, machine "pc-q35-7.2".
// Shared so that the committed seeds always match what the fuzzer registers.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "memory/ram_block.h"
#include "migration/section_registry.h"
#include "migration/test_devices.h"
#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace ferry::fuzz {

inline constexpr std::string_view kStreamMachine = "pc-q35-7.2";
inline constexpr uint64_t kStreamRamPages = 16;  // 64 KiB

struct StreamVm {
  StreamVm() = default;
  StreamVm(const StreamVm&) = delete;  // the registry binds to the members' addresses
  StreamVm& operator=(const StreamVm&) = delete;

  std::vector<std::unique_ptr<memory::RamBlock>> ram;
  migration::test::Timer timer;
  vmstate::samples::NvmeLike nvme;
  migration::SectionRegistry registry;

  // Registration order fixes the section ids: ram 0, timer 1, nvme 2.
  static Result<std::unique_ptr<StreamVm>> make(bool populated, uint32_t seed = 1) {
    auto vm = std::make_unique<StreamVm>();
    vm->ram = migration::test::make_ram({{"pc.ram", kStreamRamPages}}, populated, seed);
    if (vm->ram.size() != 1) return Error(ErrorCode::kInternal, "cannot allocate pc.ram");
    if (populated) {
      vm->timer = {0x0102030405060708ull + seed, 1000 + seed};
      vmstate::samples::fill_nvme_like(vm->nvme, seed);
    }
    FERRY_RETURN_IF_ERROR(vm->registry.add_ram().status());
    FERRY_RETURN_IF_ERROR(
        vm->registry.add("timer", vmstate::bind(migration::test::kTimerDesc, vm->timer))
            .status());
    FERRY_RETURN_IF_ERROR(vm->registry
                              .add(migration::pci_idstr(0, 0, 2, 0, "nvme"),
                                   vmstate::bind(vmstate::samples::kNvmeLikeDesc, vm->nvme))
                              .status());
    return vm;
  }

  bool same_as(const StreamVm& o) const {
    return migration::test::same_ram(ram, o.ram) && timer == o.timer && nvme == o.nvme;
  }
};

}  // namespace ferry::fuzz
