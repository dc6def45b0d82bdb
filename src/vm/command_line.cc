#include "vm/command_line.h"

#include <set>

#include <fmt/format.h>

#include "base/qemu_opts.h"
#include "block/drive_config.h"
#include "block/fault_injector.h"
#include "net/netdev_config.h"
#include "vm/device_types.h"
#include "vm/guest_programs.h"

namespace ferry::vm {

namespace {

const OptSchema kMemory{"-m", "size", {{"size", OptType::kSize, "128M", "guest RAM size"}},
                        1ull << 20, /*location_shows_argument=*/true};
const OptSchema kMachine{"-machine", "type",
                         {{"type", OptType::kString, std::string(kMachineType), "machine type",
                           {"ferry", std::string(kMachineType)}},
                          {"memory-backend", OptType::kString, "", "id of the -object holding RAM"}}};
const OptSchema kMemoryBackend{"-object", "qom-type",
                               {{"qom-type", OptType::kString, "", "object type",
                                 {"memory-backend-file", "memory-backend-memfd"}},
                                {"id", OptType::kString, "", "object id"},
                                {"size", OptType::kSize, "", "size of the memory"},
                                {"mem-path", OptType::kString, "", "file or directory (file backend)"},
                                {"share", OptType::kBool, "off", "map shared (MAP_SHARED)"}}};
// The accelerator is checked after parsing, to refuse others in QEMU's words.
const OptSchema kAccel{"-accel", "accel", {{"accel", OptType::kString, "none",
                                            "qtest: the clock moves only through qtest"}}};
const OptSchema kQmp{"-qmp", "path",
                     {{"path", OptType::kString, "", "unix:PATH"},
                      {"server", OptType::kBool, "off",
                       "on: listen for clients; off: connect to PATH"},
                      {"wait", OptType::kBool, "off", "wait for a client before starting (must be off)"}}};
const OptSchema kQtest{"-qtest", "path", {{"path", OptType::kString, "", "unix:PATH to connect to"}}};
const std::string kUsage =
    "usage: ferry-vm [options]\n"
    "  -name NAME                 VM name (query-name)\n"
    "  -m SIZE                    guest RAM (default 128M; suffixes K M G)\n"
    "  -machine ferry[,memory-backend=ID]  machine type (" + std::string(kMachineType) + ")\n"
    "  -object memory-backend-file,id=ID,size=S,mem-path=P[,share=on|off]\n"
    "  -object memory-backend-memfd,id=ID,size=S[,share=on|off]\n"
    "  -accel qtest|none          qtest: the virtual clock moves only through qtest\n"
    "  -device DRIVER[,prop=...]  add a device; -device help lists models,\n"
    "                             -device DRIVER,help its properties\n"
    "  -drive if=none,id=ID,file=PATH,format=raw[,cache=writeback|none|directsync]\n"
    "         [,aio=io_uring|threads][,read-only=on]   a block backend for devices\n"
    "  -guest PROGRAM[,key=value...]  run a guest program on the vCPU; -guest help lists them\n"
    "  -blkdebug drive=ID,op=read|write|flush|discard|write-zeroes|any\n"
    "         [,errno=EIO|ENOSPC|none][,offset=N][,length=N][,after=N][,once=on][,delay-ms=N]\n"
    "         [,hold=on]\n"
    "                             inject faults into a drive (tests)\n"
    "  -qmp unix:PATH,server=on,wait=off   QMP control socket (listening)\n"
    "  -qmp unix:PATH             QMP over a connection to a listening socket\n"
    "  -qtest unix:PATH           connect to a qtest socket\n"
    "  -S                         do not start running (prelaunch)\n"
    "  -incoming URI|defer        wait for a migration stream (tcp: unix: file: fd: exec:)\n"
    "  -nodefaults, -display none accepted for QEMU compatibility\n";

Result<std::string> next_value(const std::vector<std::string>& args, size_t& i) {
  if (i + 1 >= args.size())
    return Error(ErrorCode::kInvalidArgument, "{}: requires an argument", args[i]);
  return args[++i];
}

Status parse_device(const std::string& text, CommandLine& out) {
  if (text == "help" || text == "?") {
    out.print_and_exit = format_device_types_help();
    return {};
  }
  std::string driver = text.substr(0, text.find(','));
  const hw::DeviceType* type = find_device_type(driver);
  if (!type)
    return Error(ErrorCode::kInvalidArgument, "-device {}: '{}' is not a valid device model name",
                 text, driver);
  auto opts = parse_opts(type->schema(), text);
  if (!opts.ok()) return opts.take_status();
  if (opts->help_requested()) {
    out.print_and_exit = format_device_help(*type);
    return {};
  }
  DeviceConfig device{driver, opts->string("id").value_or(""), opts->string("addr").value_or(""),
                      std::move(opts).value()};
  out.machine.devices.push_back(std::move(device));
  return {};
}

// "-blkdebug drive=ID,RULE": the drive, then a fault rule (block/fault_injector.h).
Status parse_blkdebug(const std::string& text, CommandLine& out) {
  std::string_view rest = text;
  std::string_view first = rest.substr(0, rest.find(','));
  if (!first.starts_with("drive=") || first.size() == 6)
    return Error(ErrorCode::kInvalidArgument,
                 "-blkdebug {}: must start with drive=ID naming a -drive", text);
  std::string drive(first.substr(6));
  rest.remove_prefix(std::min(rest.size(), first.size() + 1));
  auto rule = block::parse_fault_rule(rest);
  // The rule's errors already name -blkdebug (the fault schema's option).
  if (!rule.ok()) return rule.take_status();
  out.machine.faults.push_back({std::move(drive), *rule});
  return {};
}

Status parse_guest(const std::string& text, CommandLine& out) {
  if (text == "help" || text == "?") {
    std::string listing = "Guest programs:\n";
    for (const GuestProgramModel& model : guest_programs())
      listing += fmt::format("name \"{}\", desc \"{}\"\n", model.name, model.description);
    out.print_and_exit = listing;
    return {};
  }
  std::string name = text.substr(0, text.find(','));
  const GuestProgramModel* model = find_guest_program(name);
  if (!model)
    return Error(ErrorCode::kInvalidArgument, "-guest {}: '{}' is not a guest program (-guest help "
                 "lists them)", text, name);
  if (out.machine.guest)
    return Error(ErrorCode::kInvalidArgument, "-guest {}: only one guest program per VM (one vCPU)",
                 text);
  auto opts = parse_opts(*model->schema, text);
  if (!opts.ok()) return opts.take_status();
  if (opts->help_requested()) {
    out.print_and_exit = format_help(*model->schema, name);
    return {};
  }
  out.machine.guest = GuestConfig{name, std::move(opts).value()};
  return {};
}

}  // namespace

Result<CommandLine> parse_command_line(const std::vector<std::string>& args) {
  CommandLine out;
  std::vector<memory::RamBlockSpec> backends;
  std::string memory_backend_id;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string opt = args[i];
    if (opt.size() > 2 && opt[0] == '-' && opt[1] == '-') opt.erase(0, 1);  // --m == -m
    if (opt == "-h" || opt == "-help") {
      out.print_and_exit = kUsage;
      return out;
    }
    if (opt == "-version") {
      out.print_and_exit = fmt::format("ferry-vm, machine type {}\n", kMachineType);
      return out;
    }
    if (opt == "-S") {
      out.machine.start_paused = true;
      continue;
    }
    if (opt == "-nodefaults") continue;
    if (opt == "-display") {
      auto v = next_value(args, i);
      if (!v.ok()) return v.take_status();
      if (*v != "none")
        return Error(ErrorCode::kInvalidArgument, "-display: only 'none' is supported, found '{}'", *v);
      continue;
    }
    if (opt == "-only-migratable") {
      out.machine.only_migratable = true;
      continue;
    }
    static const std::set<std::string> kWithValue = {
        "-name", "-m", "-machine", "-M", "-accel", "-qmp", "-qtest", "-device",
        "-incoming", "-drive", "-blkdebug", "-object", "-netdev", "-guest"};
    if (!kWithValue.contains(opt))
      return Error(ErrorCode::kInvalidArgument, "{}: invalid option", args[i]);
    auto value = next_value(args, i);
    if (!value.ok()) return value.take_status();
    const std::string& v = *value;
    if (opt == "-name") {
      out.machine.name = v;
    } else if (opt == "-m") {
      auto opts = parse_opts(kMemory, v);
      if (!opts.ok()) return opts.take_status();
      out.machine.ram_size = opts->number("size").value_or(128ull << 20);
      out.machine.ram_size_given = true;
    } else if (opt == "-machine" || opt == "-M") {
      auto opts = parse_opts(kMachine, v);
      if (!opts.ok()) return opts.take_status();
      memory_backend_id = opts->string("memory-backend").value_or("");
    } else if (opt == "-object") {
      auto opts = parse_opts(kMemoryBackend, v);
      if (!opts.ok()) return opts.take_status();
      std::string type = opts->string("qom-type").value_or("");
      memory::RamBlockSpec spec;
      spec.idstr = opts->string("id").value_or("");
      spec.size = opts->number("size").value_or(0);
      spec.mem_path = opts->string("mem-path").value_or("");
      spec.share = opts->boolean("share").value_or(false);
      spec.backing = type == "memory-backend-file" ? memory::RamBacking::kFile
                                                    : memory::RamBacking::kMemfd;
      if (spec.idstr.empty())
        return Error(ErrorCode::kInvalidArgument, "-object {}: Parameter 'id' is missing", v);
      if (spec.size == 0)
        return Error(ErrorCode::kInvalidArgument, "-object {}: Parameter 'size' is missing", v);
      if (spec.backing == memory::RamBacking::kFile && spec.mem_path.empty())
        return Error(ErrorCode::kInvalidArgument, "-object {}: Parameter 'mem-path' is missing", v);
      for (const memory::RamBlockSpec& earlier : backends)
        if (earlier.idstr == spec.idstr)
          return Error(ErrorCode::kInvalidArgument, "-object {}: Duplicate ID '{}' for object", v,
                       spec.idstr);
      backends.push_back(std::move(spec));
    } else if (opt == "-accel") {
      auto opts = parse_opts(kAccel, v);
      if (!opts.ok()) return opts.take_status();
      if (opts->help_requested()) {
        out.print_and_exit = "Accelerators supported in ferry-vm:\nqtest\nnone\n";
        return out;
      }
      // ferry-vm runs no guest code on a CPU model: kvm and tcg are QEMU's, not ours.
      std::string accel = opts->string("accel").value_or("none");
      if (accel != "qtest" && accel != "none")
        return Error(ErrorCode::kInvalidArgument,
                     "-accel {}: invalid accelerator {} (ferry-vm supports qtest and none)", v,
                     accel);
      out.machine.qtest_clock = accel == "qtest";
    } else if (opt == "-qmp") {
      auto opts = parse_opts(kQmp, v);
      if (!opts.ok()) return opts.take_status();
      if (opts->boolean("wait") != false)
        return Error(ErrorCode::kInvalidArgument, "-qmp {}: only wait=off is supported", v);
      out.machine.qmp = opts->string("path").value_or("");
      out.machine.qmp_server = opts->boolean("server").value_or(false);
    } else if (opt == "-qtest") {
      auto opts = parse_opts(kQtest, v);
      if (!opts.ok()) return opts.take_status();
      out.machine.qtest = opts->string("path").value_or("");
    } else if (opt == "-device") {
      FERRY_RETURN_IF_ERROR(parse_device(v, out));
      if (!out.print_and_exit.empty()) return out;
    } else if (opt == "-incoming") {
      out.machine.incoming = v;
    } else if (opt == "-drive") {
      if (v == "help" || v == "?") {
        out.print_and_exit = block::drive_help();
        return out;
      }
      auto drive = block::parse_drive_config(v);
      if (!drive.ok()) return drive.take_status();
      out.machine.drives.push_back(std::move(drive).value());
    } else if (opt == "-blkdebug") {
      FERRY_RETURN_IF_ERROR(parse_blkdebug(v, out));
    } else if (opt == "-guest") {
      FERRY_RETURN_IF_ERROR(parse_guest(v, out));
      if (!out.print_and_exit.empty()) return out;
    } else if (opt == "-netdev") {
      auto netdev = net::parse_netdev(v);
      if (!netdev.ok()) return netdev.take_status();
      if (!*netdev) {
        out.print_and_exit = net::netdev_help();
        return out;
      }
      for (const net::NetdevConfig& earlier : out.machine.netdevs)
        if (earlier.id == (*netdev)->id)
          return Error(ErrorCode::kInvalidArgument, "-netdev {}: Duplicate ID '{}' for netdev", v,
                       earlier.id);
      out.machine.netdevs.push_back(std::move(**netdev));
    }
  }
  if (!memory_backend_id.empty()) {
    for (const auto& b : backends)
      if (b.idstr == memory_backend_id) out.machine.ram_backend = b;
    if (!out.machine.ram_backend)
      return Error(ErrorCode::kInvalidArgument,
                   "-machine: memory-backend '{}' is not a memory backend object",
                   memory_backend_id);
  } else if (!backends.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "-object {}: a memory backend is only used through -machine memory-backend={}",
                 backends.front().idstr, backends.front().idstr);
  }
  return out;
}

}  // namespace ferry::vm
