// `ferry`: the user-facing driver. Subcommands grow with the project (design.md §1):
// demo and analyze today; the benchmark drivers with the migration engine.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>

#include "ferry/analyze_command.h"
#include "ferry/live_demo.h"
#include "ferry/vmstate_demo.h"

namespace {
// ferry-vm is built next to ferry.
std::string sibling_ferry_vm() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "ferry-vm";
  std::string path(self, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/') + 1) + "ferry-vm";
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Ferry: live migration of emulated devices"};
  app.require_subcommand(1);

  ferry::tools::LiveDemoOptions live_options;
  bool vmstate_only = false;
  ferry::tools::VmstateDemoOptions demo_options;
  CLI::App* demo = app.add_subcommand("demo", "run the main end-to-end demonstration");
  demo->add_option("--ram", live_options.ram_mib, "guest RAM in MiB")->check(CLI::Range(1, 2048));
  demo->add_option("--transport", live_options.transport, "tcp (default) or unix")
      ->check(CLI::IsMember({"unix", "tcp"}));
  demo->add_option("--round-trips", live_options.round_trips, "migrations there and back")
      ->check(CLI::Range(1, 100));
  demo->add_flag("--json", live_options.json, "print the final report as JSON");
  demo->add_flag("--quiet", live_options.quiet, "no progress bars");
  demo->add_flag("--vmstate", vmstate_only,
                 "instead: an NVMe-like state through VMState into a file and back");
  demo->add_flag("--vmdesc", demo_options.print_vmdesc, "with --vmstate: print the vmdesc JSON");
  demo->add_option("--keep", demo_options.keep_dir, "with --vmstate: keep the stream file here");

  ferry::tools::AnalyzeOptions analyze_options;
  std::string analyze_dump = "state";
  CLI::App* analyze =
      app.add_subcommand("analyze", "dump a migration stream (Ferry's or QEMU's) as JSON");
  analyze->add_option("FILE", analyze_options.file, "the stream file")->required();
  analyze->add_option("--dump,-d", analyze_dump,
                      "state: sections with decoded fields; desc: the vmdesc JSON; records: "
                      "every record with its offset")
      ->check(CLI::IsMember({"state", "desc", "records"}));
  analyze->add_flag("--memory,-m", analyze_options.memory,
                    "with --dump state: list every RAM page (zero, or its crc32c)");

  CLI11_PARSE(app, argc, argv);
  if (*demo) {
    if (vmstate_only) return ferry::tools::run_vmstate_demo(demo_options);
    return ferry::tools::run_live_demo(live_options, sibling_ferry_vm());
  }
  if (*analyze) {
    auto dump = ferry::tools::parse_analyze_dump(analyze_dump);
    if (!dump.ok()) {
      std::fprintf(stderr, "ferry analyze: %s\n", std::string(dump.status().message()).c_str());
      return 2;
    }
    analyze_options.dump = *dump;
    return ferry::tools::run_analyze(analyze_options);
  }
  return 0;
}
