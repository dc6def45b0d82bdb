// `ferry`: the user-facing driver. Subcommands grow with the project (DESIGN.md §1):
// demo and analyze today; the benchmark drivers with the migration engine.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "ferry/analyze_command.h"
#include "ferry/vmstate_demo.h"

int main(int argc, char** argv) {
  CLI::App app{"Ferry: live migration of emulated devices"};
  app.require_subcommand(1);

  ferry::tools::VmstateDemoOptions demo_options;
  CLI::App* demo = app.add_subcommand("demo", "run the main end-to-end demonstration");
  demo->add_flag("--vmdesc", demo_options.print_vmdesc, "print the vmdesc JSON of the state");
  demo->add_option("--keep", demo_options.keep_dir, "keep the stream file in this directory");

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
  if (*demo) return ferry::tools::run_vmstate_demo(demo_options);
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
