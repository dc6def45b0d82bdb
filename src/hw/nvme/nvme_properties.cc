#include "hw/nvme/nvme_properties.h"

namespace ferry::nvme {

namespace {

// QEMU refuses mdts values whose 2^mdts + 1 pages exceed IOV_MAX (1024).
constexpr uint64_t kMaxMdts = 9;

Result<uint64_t> ranged(const Opts& opts, std::string_view option, std::string_view name,
                        uint64_t min, uint64_t max) {
  uint64_t value = opts.number(name).value_or(0);
  if (value < min || value > max)
    return Error(ErrorCode::kInvalidArgument, "{}: {} must be between {} and {} (found {})",
                 option, name, min, max, value);
  return value;
}

Result<uint32_t> block_size(const Opts& opts, std::string_view option) {
  uint64_t value = opts.number("logical_block_size").value_or(0);
  if (value == 0) return 512;  // QEMU's 0: the backend's size, 512 for a raw file
  if (value != 512 && value != 4096)
    return Error(ErrorCode::kInvalidArgument,
                 "{}: logical_block_size must be 512 or 4096 (found {})", option, value);
  return static_cast<uint32_t>(value);
}

constexpr std::string_view kNvmeDriveHelp =
    "Node name or ID of a block device to use as a backend";
constexpr std::string_view kNvmeBlockSizeHelp = "A power of two between 512 B and 2 MiB";

}  // namespace

// Types, defaults and help texts as QEMU 7.2's `-device nvme,help` / `-device nvme-ns,help`
// print them (most have no help text there). `bus` is a -device option, not a property:
// the listing leaves it out, as QEMU's does.
const OptSchema& controller_schema() {
  static const OptSchema schema{
      .option = "-device nvme",
      .implied_key = "driver",
      .properties = {
          {.name = "driver", .help = "device type", .choices = {"nvme"}},
          {.name = "id", .help = "device name"},
          {.name = "bus", .help = "bus name (ignored)"},
          {.name = "addr", .type = OptType::kPciDevfn,
           .help = "Slot and optional function number, example: 06.0 or 06"},
          {.name = "serial"},
          {.name = "drive", .help = std::string(kNvmeDriveHelp)},
          {.name = "max_ioqpairs", .type = OptType::kUint32, .default_value = "64"},
          {.name = "msix_qsize", .type = OptType::kUint16, .default_value = "65"},
          {.name = "mdts", .type = OptType::kUint8, .default_value = "7"},
          {.name = "aerl", .type = OptType::kUint8, .default_value = "3"},
          {.name = "aer_max_queued", .type = OptType::kUint32, .default_value = "64"},
          // Not in QEMU 7.2 (8.1 adds it as uint16 with this default).
          {.name = "mqes", .type = OptType::kUint16, .default_value = "2047"},
          {.name = "vsl", .type = OptType::kUint8, .default_value = "7"},
          // 0: the drive's own (512 for the raw files Ferry opens).
          {.name = "logical_block_size", .type = OptType::kSize, .default_value = "0",
           .help = std::string(kNvmeBlockSizeHelp)},
      }};
  return schema;
}

const OptSchema& namespace_schema() {
  static const OptSchema schema{
      .option = "-device nvme-ns",
      .implied_key = "driver",
      .properties = {
          {.name = "driver", .help = "device type", .choices = {"nvme-ns"}},
          {.name = "id", .help = "device name"},
          {.name = "bus", .help = "controller (ignored: the last nvme device)"},
          {.name = "drive", .help = std::string(kNvmeDriveHelp)},
          // 0: the next free one.
          {.name = "nsid", .type = OptType::kUint32, .default_value = "0"},
          {.name = "logical_block_size", .type = OptType::kSize, .default_value = "0",
           .help = std::string(kNvmeBlockSizeHelp)},
      }};
  return schema;
}

Result<ControllerConfig> controller_config(const Opts& opts) {
  constexpr std::string_view kOption = "-device nvme";
  ControllerConfig config;
  config.serial = opts.string("serial").value_or("");
  if (config.serial.empty())
    return Error(ErrorCode::kInvalidArgument, "{}: serial property not set", kOption);
  if (config.serial.size() > 20)
    return Error(ErrorCode::kInvalidArgument,
                 "{}: serial must be at most 20 characters (found '{}')", kOption,
                 config.serial);
  config.drive = opts.string("drive").value_or("");

  auto max_ioqpairs = ranged(opts, kOption, "max_ioqpairs", 1, 0xffff);
  if (!max_ioqpairs.ok()) return max_ioqpairs.take_status();
  config.max_ioqpairs = static_cast<uint32_t>(*max_ioqpairs);
  auto msix_qsize = ranged(opts, kOption, "msix_qsize", 1, 2048);
  if (!msix_qsize.ok()) return msix_qsize.take_status();
  config.msix_qsize = static_cast<uint32_t>(*msix_qsize);
  auto mdts = ranged(opts, kOption, "mdts", 1, kMaxMdts);
  if (!mdts.ok()) return mdts.take_status();
  config.mdts = static_cast<uint8_t>(*mdts);
  // The parser has refused values wider than the properties' types.
  config.aerl = static_cast<uint8_t>(opts.number("aerl").value_or(3));
  config.aer_max_queued = static_cast<uint32_t>(opts.number("aer_max_queued").value_or(64));
  auto mqes = ranged(opts, kOption, "mqes", 1, 0xffff);
  if (!mqes.ok()) return mqes.take_status();
  config.mqes = static_cast<uint16_t>(*mqes);
  auto vsl = ranged(opts, kOption, "vsl", 1, 255);
  if (!vsl.ok()) return vsl.take_status();
  config.vsl = static_cast<uint8_t>(*vsl);
  auto lbs = block_size(opts, kOption);
  if (!lbs.ok()) return lbs.take_status();
  config.logical_block_size = *lbs;
  return config;
}

Result<NamespaceDeviceConfig> namespace_config(const Opts& opts) {
  constexpr std::string_view kOption = "-device nvme-ns";
  NamespaceDeviceConfig config;
  config.drive = opts.string("drive").value_or("");
  if (config.drive.empty())
    return Error(ErrorCode::kInvalidArgument, "{}: drive property not set", kOption);
  auto nsid = ranged(opts, kOption, "nsid", 0, 256);
  if (!nsid.ok()) return nsid.take_status();
  config.nsid = static_cast<uint32_t>(*nsid);
  auto lbs = block_size(opts, kOption);
  if (!lbs.ok()) return lbs.take_status();
  config.logical_block_size = *lbs;
  return config;
}

}  // namespace ferry::nvme
