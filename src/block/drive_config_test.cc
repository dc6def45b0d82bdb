#include "block/drive_config.h"

#include <gtest/gtest.h>

namespace ferry::block {
namespace {

TEST(DriveConfig, MinimalDriveGetsDefaults) {
  auto config = parse_drive_config("if=none,id=d0,file=disk.img,format=raw");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->id, "d0");
  EXPECT_EQ(config->file, "disk.img");
  EXPECT_EQ(config->format, "raw");
  EXPECT_EQ(config->cache, CacheMode::kWriteback);
  EXPECT_EQ(config->aio, AioMode::kIoUring);
  EXPECT_FALSE(config->aio_given);
  EXPECT_FALSE(config->read_only);
  EXPECT_EQ(config->werror, ErrorPolicy::kEnospc);
  EXPECT_EQ(config->rerror, ErrorPolicy::kReport);
  // if and format may be left out.
  auto bare = parse_drive_config("id=d1,file=x.img");
  ASSERT_TRUE(bare.ok()) << bare.status().to_string();
  EXPECT_EQ(bare->format, "raw");
}

TEST(DriveConfig, EveryProperty) {
  auto config = parse_drive_config(
      "if=none,id=disk-1,file=/tmp/a,,b.img,format=raw,cache=none,aio=threads,read-only=on,"
      "werror=stop,rerror=ignore");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->file, "/tmp/a,b.img");
  EXPECT_EQ(config->cache, CacheMode::kNone);
  EXPECT_EQ(config->aio, AioMode::kThreads);
  EXPECT_TRUE(config->aio_given);
  EXPECT_TRUE(config->read_only);
  EXPECT_EQ(config->werror, ErrorPolicy::kStop);
  EXPECT_EQ(config->rerror, ErrorPolicy::kIgnore);

  auto sync = parse_drive_config("if=none,id=d,file=f,cache=directsync,aio=io_uring");
  ASSERT_TRUE(sync.ok());
  EXPECT_EQ(sync->cache, CacheMode::kDirectsync);
  EXPECT_EQ(sync->aio, AioMode::kIoUring);
  EXPECT_TRUE(sync->aio_given);
  auto wb = parse_drive_config("if=none,id=d,file=f,cache=writeback,read-only=off");
  ASSERT_TRUE(wb.ok());
  EXPECT_EQ(wb->cache, CacheMode::kWriteback);
  EXPECT_FALSE(wb->read_only);
  for (const char* policy : {"report", "ignore", "stop", "enospc"}) {
    auto w = parse_drive_config(std::string("id=d,file=f,werror=") + policy + ",rerror=" + policy);
    ASSERT_TRUE(w.ok()) << policy;
    EXPECT_EQ(error_policy_name(w->werror), policy);
    EXPECT_EQ(error_policy_name(w->rerror), policy);
  }
}

TEST(DriveConfig, ErrorsNameOptionPropertyAndValue) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"if=none,id=d0,file=a,format=qcow2", "-drive: format 'qcow2' is not supported (only raw)"},
      {"if=ide,id=d0,file=a", "-drive: Parameter 'if' expects none, found 'ide'"},
      {"if=none,file=a", "-drive: Parameter 'id' is required"},
      {"if=none,id=d0", "-drive id=d0: Parameter 'file' is required (a raw image path)"},
      {"if=none,id=d0,file=", "-drive id=d0: Parameter 'file' is required (a raw image path)"},
      {"id=d0,file=a,cache=unsafe",
       "-drive: Parameter 'cache' expects writeback, none or directsync, found 'unsafe'"},
      {"id=d0,file=a,aio=native", "-drive: Parameter 'aio' expects io_uring or threads, found "
                                  "'native'"},
      {"id=d0,file=a,read-only=maybe",
       "-drive: Parameter 'read-only' expects 'on' or 'off', found 'maybe'"},
      {"id=d0,file=a,werror=retry",
       "-drive: Parameter 'werror' expects report, ignore, stop or enospc, found 'retry'"},
      {"id=d0,file=a,rerror=retry",
       "-drive: Parameter 'rerror' expects report, ignore, stop or enospc, found 'retry'"},
      {"id=d0,file=a,media=cdrom", "-drive: Invalid parameter 'media'"},
  };
  for (const Case& c : cases) {
    auto config = parse_drive_config(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().message(), c.message) << c.text;
    EXPECT_EQ(config.status().code(), ErrorCode::kInvalidArgument) << c.text;
  }
  auto bad_id = parse_drive_config("id=0d,file=a");
  ASSERT_FALSE(bad_id.ok());
  EXPECT_NE(bad_id.status().message().find("'0d'"), std::string_view::npos);
}

TEST(DriveConfig, Help) {
  std::string help = drive_help();
  EXPECT_NE(help.find("-drive options:"), std::string::npos);
  for (const char* name : {"cache=", "aio=", "read-only=", "werror=", "rerror=", "file="}) {
    EXPECT_NE(help.find(name), std::string::npos) << name;
  }
  auto asked = parse_drive_config("help");
  ASSERT_FALSE(asked.ok());
  EXPECT_EQ(asked.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(asked.status().message(), help);
}

TEST(DriveConfig, ModeNames) {
  EXPECT_EQ(cache_mode_name(CacheMode::kWriteback), "writeback");
  EXPECT_EQ(cache_mode_name(CacheMode::kNone), "none");
  EXPECT_EQ(cache_mode_name(CacheMode::kDirectsync), "directsync");
  EXPECT_EQ(aio_mode_name(AioMode::kIoUring), "io_uring");
  EXPECT_EQ(aio_mode_name(AioMode::kThreads), "threads");
}

}  // namespace
}  // namespace ferry::block
