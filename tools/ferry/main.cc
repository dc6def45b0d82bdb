// `ferry`: the user-facing driver. Subcommands grow with the project (DESIGN.md §1):
// demo today; analyze and the benchmark drivers with the migration engine.
#include <CLI/CLI.hpp>

#include "ferry/vmstate_demo.h"

int main(int argc, char** argv) {
  CLI::App app{"Ferry: live migration of emulated devices"};
  app.require_subcommand(1);

  ferry::tools::VmstateDemoOptions demo_options;
  CLI::App* demo = app.add_subcommand("demo", "run the main end-to-end demonstration");
  demo->add_flag("--vmdesc", demo_options.print_vmdesc, "print the vmdesc JSON of the state");
  demo->add_option("--keep", demo_options.keep_dir, "keep the stream file in this directory");

  CLI11_PARSE(app, argc, argv);
  if (*demo) return ferry::tools::run_vmstate_demo(demo_options);
  return 0;
}
