// The guest programs `-guest` accepts (guest/programs/), and how the machine builds one:
// the program's options are checked against its schema on the command line; the machine
// then resolves what only it knows — which PCI function `device=ID` is, which guest RAM
// the program may use — and creates the program.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/qemu_opts.h"
#include "base/status.h"
#include "guest/program.h"
#include "hw/pci/pci_address.h"

namespace ferry::vm {

struct GuestConfig;

struct GuestProgramModel {
  std::string name;
  std::string description;
  const OptSchema* schema = nullptr;
};

const std::vector<GuestProgramModel>& guest_programs();
const GuestProgramModel* find_guest_program(std::string_view name);

struct GuestProgramContext {
  // The PCI address of the device with this -device id, if any.
  std::function<std::optional<pci::PciAddress>(std::string_view id)> find_device;
  uint64_t ram_size = 0;
  // RAM at guest address 0 (all of it, or its first 2 GiB when the rest lies above 4 GiB).
  uint64_t ram_below_4g = 0;
};

Result<std::unique_ptr<guest::GuestProgram>> create_guest_program(const GuestConfig& config,
                                                                  const GuestProgramContext& context);

}  // namespace ferry::vm
