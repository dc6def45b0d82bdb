#include "vm/guest_programs.h"

#include "guest/programs/net_verify.h"
#include "guest/programs/verify.h"
#include "vm/machine.h"

namespace ferry::vm {

const std::vector<GuestProgramModel>& guest_programs() {
  static const OptSchema verify_schema = guest::verify_schema();
  static const OptSchema net_verify_schema = guest::net_verify_schema();
  static const std::vector<GuestProgramModel> programs = {
      {"verify", "crc32c-verifying NVMe I/O workload (like fio verify=crc32c)", &verify_schema},
      {"net-verify",
       "sequence-numbered, crc32c-checked frames over virtio-net; answers ARP, ping and UDP",
       &net_verify_schema},
  };
  return programs;
}

const GuestProgramModel* find_guest_program(std::string_view name) {
  for (const GuestProgramModel& model : guest_programs())
    if (model.name == name) return &model;
  return nullptr;
}

namespace {

Result<std::unique_ptr<guest::GuestProgram>> create_verify(const GuestConfig& guest,
                                                           const GuestProgramContext& context) {
  auto config = guest::verify_config(guest.opts);
  if (!config.ok()) return config.take_status();
  if (!config->device.empty()) {
    auto at = context.find_device ? context.find_device(config->device) : std::nullopt;
    if (!at)
      return Error(ErrorCode::kInvalidArgument,
                   "-guest verify: device '{}' is not a -device id", config->device);
    config->pci_slot = at->slot;
    config->pci_function = at->function;
  }
  // The program's rings and buffers sit at the top of the RAM below 4 GiB, away from where
  // tests and other software usually place things (the bottom), at the same place for
  // every RAM size above 2,816 MiB (the rest of RAM then lies above 4 GiB).
  constexpr uint64_t kAlign = 1ull << 20;
  uint64_t low = context.ram_below_4g != 0 ? context.ram_below_4g : context.ram_size;
  uint64_t need = (guest::verify_dma_bytes(*config) + kAlign - 1) / kAlign * kAlign;
  if (need > low / 2)
    return Error(ErrorCode::kInvalidArgument,
                 "-guest verify: iodepth={} bs={} needs {} MiB of guest RAM for queues and "
                 "buffers; more than half of the VM's {} MiB below 4 GiB",
                 config->iodepth, config->block_size, need >> 20, low >> 20);
  config->dma_base = low - need;
  config->dma_size = need;
  auto program = guest::VerifyProgram::create(*config);
  if (!program.ok()) return program.take_status();
  return std::unique_ptr<guest::GuestProgram>(std::move(program).value());
}

Result<std::unique_ptr<guest::GuestProgram>> create_net_verify(const GuestConfig& guest,
                                                               const GuestProgramContext& context) {
  auto config = guest::net_verify_config(guest.opts);
  if (!config.ok()) return config.take_status();
  if (!config->device.empty()) {
    auto at = context.find_device ? context.find_device(config->device) : std::nullopt;
    if (!at)
      return Error(ErrorCode::kInvalidArgument,
                   "-guest net-verify: device '{}' is not a -device id", config->device);
    config->pci_slot = at->slot;
    config->pci_function = at->function;
  }
  // At the top of the RAM below 4 GiB, as verify's (see create_verify).
  constexpr uint64_t kAlign = 1ull << 20;
  uint64_t low = context.ram_below_4g != 0 ? context.ram_below_4g : context.ram_size;
  uint64_t need = (guest::kNetVerifyDmaBytes + kAlign - 1) / kAlign * kAlign;
  if (need > low / 2)
    return Error(ErrorCode::kInvalidArgument,
                 "-guest net-verify: needs {} MiB of guest RAM for rings and buffers; more than "
                 "half of the VM's {} MiB below 4 GiB",
                 need >> 20, low >> 20);
  config->dma_base = low - need;
  config->dma_size = need;
  auto program = guest::NetVerifyProgram::create(*config);
  if (!program.ok()) return program.take_status();
  return std::unique_ptr<guest::GuestProgram>(std::move(program).value());
}

}  // namespace

Result<std::unique_ptr<guest::GuestProgram>> create_guest_program(
    const GuestConfig& config, const GuestProgramContext& context) {
  if (config.program == "verify") return create_verify(config, context);
  if (config.program == "net-verify") return create_net_verify(config, context);
  return Error(ErrorCode::kInvalidArgument, "-guest: '{}' is not a guest program",
               config.program);
}

}  // namespace ferry::vm
