// `ferry demo --json` (ctest ferry_demo_json): stdout is one JSON document and nothing else,
// and it says what the demo claims: every migration completed with its downtime, stop-and-copy
// breakdown, guest stall and IOPS; the workload verified clean after each hop and in its final
// pass; the exit status agrees.
#include <gtest/gtest.h>


#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "support/run_command.h"

namespace {

using Json = nlohmann::json;

using ferry::testing::CommandResult;
using ferry::testing::run_command;

TEST(FerryDemoJson, StdoutIsTheReportAndTheReportIsClean) {
  CommandResult r = run_command(std::string(FERRY_PATH) + " demo --ram 64 --json");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  // The whole of stdout parses: no "result:" line or progress text around the document.
  Json report = Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(report.is_discarded()) << "stdout is not one JSON document:\n" << r.out;
  ASSERT_TRUE(report.is_object()) << r.out;
  EXPECT_EQ(report.value("result", ""), "OK") << report.dump(2);
  EXPECT_FALSE(report.contains("error")) << report.dump(2);
  EXPECT_EQ(report.value("ram-mib", 0), 64);

  const Json& migrations = report["migrations"];
  ASSERT_TRUE(migrations.is_array());
  ASSERT_EQ(migrations.size(), 2u) << "one round trip: there and back";
  for (const Json& m : migrations) {
    SCOPED_TRACE(m.dump());
    EXPECT_EQ(m.value("status", ""), "completed");
    ASSERT_TRUE(m.contains("downtime-ms") && m["downtime-ms"].is_number_integer());
    EXPECT_GE(m["downtime-ms"].get<int64_t>(), 0);
    EXPECT_LE(m["downtime-ms"].get<int64_t>(), m["total-ms"].get<int64_t>());
    // The stop-and-copy breakdown names the controller and the guest program's state.
    bool nvme = false, guest = false;
    for (const Json& d : m["devices"]) {
      std::string name = d.value("name", "");
      nvme |= name.ends_with("/nvme");
      guest |= name == "guest";
      EXPECT_TRUE(d.contains("save-us") && d.contains("quiesce-us") && d.contains("load-us"));
      EXPECT_GT(d.value("bytes", 0), 0);
    }
    EXPECT_TRUE(nvme && guest);
    EXPECT_TRUE(m["io-stall-ms"].is_number()) << "the guest measured its own stall";
    EXPECT_GT(m["io-stall-ms"].get<double>(), 0.0);
    // Rates over a second each, from statuses taken after the workload resumed.
    EXPECT_GT(m["iops-before"].get<double>(), 0.0);
    EXPECT_GT(m["iops-after"].get<double>(), 0.0);
    EXPECT_EQ(m.value("phase-at-stop", ""), "run");
    EXPECT_TRUE(m.value("verified", false));
  }
  // The rate after a hop counts only I/Os done after it: its window starts from the count the
  // destination resumed with (the source's, loaded), not from a status taken before the load.
  for (const Json& m : migrations) {
    SCOPED_TRACE(m.dump());
    uint64_t at_resume = m["ops-at-resume"].get<uint64_t>();
    uint64_t after = m["ops-after"].get<uint64_t>();
    EXPECT_GT(at_resume, 2000u) << "the workload ran on the source before";
    ASSERT_GE(after, at_resume);
    // The window is at least 0.9 s.
    EXPECT_LE(m["iops-after"].get<double>() * 0.9, static_cast<double>(after - at_resume));
  }

  const Json& g = report["guest"];
  EXPECT_EQ(g.value("state", ""), "finished") << g.dump(2);
  EXPECT_EQ(g["status"]["errors"], 0) << g.dump(2);
  EXPECT_GT(g["status"]["phases"]["final"].value("ops", 0), 0);
  EXPECT_TRUE(g["status"]["phases"]["final"].value("done", false));
  EXPECT_EQ(g["status"]["stalls"].size(), 2u) << "each migration is a stall the guest saw";
}

}  // namespace
