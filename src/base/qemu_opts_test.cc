#include "base/qemu_opts.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

OptSchema drive_schema() {
  return OptSchema{
      .option = "-drive",
      .properties = {
          {.name = "if", .choices = {"none", "virtio"}},
          {.name = "id"},
          {.name = "file", .help = "disk image"},
          {.name = "format", .default_value = "raw"},
          {.name = "aio", .default_value = "threads", .choices = {"io_uring", "threads"}},
          {.name = "readonly", .type = OptType::kBool, .default_value = "off"},
          {.name = "queues", .type = OptType::kNumber},
          {.name = "max-size", .type = OptType::kSize},
      }};
}

OptSchema device_schema() {
  return OptSchema{.option = "-device",
                   .implied_key = "driver",
                   .properties = {
                       {.name = "driver"},
                       {.name = "serial", .help = "serial number"},
                       {.name = "drive"},
                       {.name = "num_queues", .type = OptType::kNumber, .default_value = "64"},
                       {.name = "msix", .type = OptType::kBool, .default_value = "on"},
                   }};
}

TEST(QemuOpts, ParsesKeyValuesInOrder) {
  auto opts = parse_opts(drive_schema(), "if=none,id=d0,file=disk.img,format=raw");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  ASSERT_EQ(opts->entries().size(), 4u);
  EXPECT_EQ(opts->entries()[0].key, "if");
  EXPECT_EQ(opts->entries()[2].key, "file");
  EXPECT_EQ(opts->string("file"), "disk.img");
  EXPECT_EQ(opts->string("id"), "d0");
  EXPECT_TRUE(opts->is_set("format"));
  EXPECT_FALSE(opts->is_set("aio"));
}

TEST(QemuOpts, DefaultsApplyWhenNotGiven) {
  auto opts = parse_opts(drive_schema(), "file=a");
  ASSERT_TRUE(opts.ok());
  EXPECT_EQ(opts->string("aio"), "threads");
  EXPECT_EQ(opts->boolean("readonly"), false);
  EXPECT_EQ(opts->number("queues"), std::nullopt);    // no default
  EXPECT_EQ(opts->string("readonly"), std::nullopt);  // wrong type asked
}

TEST(QemuOpts, ImpliedFirstKey) {
  auto opts = parse_opts(device_schema(), "nvme,serial=F0,drive=d0");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  EXPECT_EQ(opts->string("driver"), "nvme");
  EXPECT_EQ(opts->string("serial"), "F0");
  EXPECT_EQ(opts->number("num_queues"), 64u);

  OptSchema qmp{.option = "-qmp",
                .implied_key = "path",
                .properties = {{.name = "path"},
                               {.name = "server", .type = OptType::kBool},
                               {.name = "wait", .type = OptType::kBool}}};
  auto q = parse_opts(qmp, "unix:/tmp/src.qmp,server=on,wait=off");
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  EXPECT_EQ(q->string("path"), "unix:/tmp/src.qmp");
  EXPECT_EQ(q->boolean("server"), true);
  EXPECT_EQ(q->boolean("wait"), false);
}

TEST(QemuOpts, ImpliedValueMayContainEqualsOnlyAsKey) {
  // An '=' in the first element makes it a key=value pair, as in QEMU.
  auto opts = parse_opts(device_schema(), "driver=nvme,serial=x");
  ASSERT_TRUE(opts.ok());
  EXPECT_EQ(opts->string("driver"), "nvme");
}

TEST(QemuOpts, DoubleCommaIsALiteralComma) {
  auto opts = parse_opts(drive_schema(), "file=a,,b,,,,c.img,format=raw");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  EXPECT_EQ(opts->string("file"), "a,b,,c.img");
  EXPECT_EQ(opts->string("format"), "raw");
}

TEST(QemuOpts, LastRepeatedValueWins) {
  auto opts = parse_opts(drive_schema(), "file=a,file=b");
  ASSERT_TRUE(opts.ok());
  EXPECT_EQ(opts->string("file"), "b");
  EXPECT_EQ(opts->entries().size(), 2u);
}

TEST(QemuOpts, Booleans) {
  for (const char* on : {"on", "true", "yes"}) {
    auto opts = parse_opts(drive_schema(), std::string("readonly=") + on);
    ASSERT_TRUE(opts.ok()) << on;
    EXPECT_EQ(opts->boolean("readonly"), true) << on;
  }
  for (const char* off : {"off", "false", "no"}) {
    auto opts = parse_opts(drive_schema(), std::string("readonly=") + off);
    ASSERT_TRUE(opts.ok()) << off;
    EXPECT_EQ(opts->boolean("readonly"), false) << off;
  }
  auto bare = parse_opts(drive_schema(), "file=x,readonly");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->boolean("readonly"), true);
  auto no = parse_opts(device_schema(), "nvme,nomsix");
  ASSERT_TRUE(no.ok());
  EXPECT_EQ(no->boolean("msix"), false);

  auto bad = parse_opts(drive_schema(), "readonly=maybe");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "-drive: Parameter 'readonly' expects 'on' or 'off', found 'maybe'");
}

TEST(QemuOpts, ChoicesNameTheBadValue) {
  auto bad = parse_opts(drive_schema(), "file=x,aio=fast");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "-drive: Parameter 'aio' expects io_uring or threads, found 'fast'");
}

TEST(QemuOpts, UnknownPropertiesAreErrors) {
  auto bad = parse_opts(drive_schema(), "file=x,cache=none");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "-drive: Invalid parameter 'cache'");
  auto bare = parse_opts(drive_schema(), "file=x,bogus");
  ASSERT_FALSE(bare.ok());
  EXPECT_EQ(bare.status().message(), "-drive: Invalid parameter 'bogus'");
  auto empty = parse_opts(drive_schema(), "file=x,");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "-drive: Invalid parameter ''");
  auto no_value = parse_opts(drive_schema(), "file=x,format");
  ASSERT_FALSE(no_value.ok());
  EXPECT_EQ(no_value.status().message(), "-drive: Parameter 'format' expects a value");
}

TEST(QemuOpts, IdMustBeAnIdentifier) {
  EXPECT_TRUE(parse_opts(drive_schema(), "id=disk-0.a_b").ok());
  auto bad = parse_opts(drive_schema(), "id=0disk");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("Parameter 'id' expects an identifier, found '0disk'"),
            std::string_view::npos);
}

TEST(QemuOpts, Numbers) {
  auto opts = parse_opts(drive_schema(), "queues=0x10");
  ASSERT_TRUE(opts.ok());
  EXPECT_EQ(opts->number("queues"), 16u);
  EXPECT_EQ(*parse_number("4096"), 4096u);
  EXPECT_EQ(*parse_number("010"), 8u);  // strtoull base 0, as QEMU
  EXPECT_EQ(*parse_number("0"), 0u);
  EXPECT_EQ(*parse_number("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parse_number("18446744073709551616").status().code(), ErrorCode::kOutOfRange);
  for (const char* bad : {"", "-1", "12a", "0x", " 1", "09"}) {
    EXPECT_FALSE(parse_number(bad).ok()) << bad;
  }
  auto bad = parse_opts(drive_schema(), "queues=many");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "-drive: Parameter 'queues' expects a number, found 'many'");
  auto big = parse_opts(drive_schema(), "queues=99999999999999999999");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().message(),
            "-drive: Value '99999999999999999999' is out of range for parameter 'queues'");
}

// qdev integer properties: any value written as a number is, refused outside the width
// with QEMU's words ("Parameter 'mdts' expects uint8_t"), and "expects integer" when the
// text is no integer at all or passes 64 bits (as qemu-system-x86_64 7.2 prints them).
OptSchema qdev_schema() {
  return OptSchema{.option = "-device nvme",
                   .implied_key = "driver",
                   .properties = {
                       {.name = "driver"},
                       {.name = "mdts", .type = OptType::kUint8, .default_value = "7"},
                       {.name = "msix_qsize", .type = OptType::kUint16},
                       {.name = "max_ioqpairs", .type = OptType::kUint32},
                       {.name = "eui64", .type = OptType::kUint64},
                       {.name = "bootindex", .type = OptType::kInt32, .default_value = "-1"},
                       {.name = "offset", .type = OptType::kInt64},
                       {.name = "addr", .type = OptType::kPciDevfn},
                   }};
}

TEST(QemuOpts, IntegerWidthsTakeEveryValueTheyHold) {
  auto opts = parse_opts(qdev_schema(),
                         "nvme,mdts=255,msix_qsize=0xffff,max_ioqpairs=4294967295,"
                         "eui64=18446744073709551615,bootindex=-2147483648,"
                         "offset=-9223372036854775808,addr=06.0");
  ASSERT_TRUE(opts.ok()) << opts.status().to_string();
  EXPECT_EQ(opts->number("mdts"), 255u);
  EXPECT_EQ(opts->number("msix_qsize"), 0xffffu);
  EXPECT_EQ(opts->number("max_ioqpairs"), 0xffffffffu);
  EXPECT_EQ(opts->number("eui64"), UINT64_MAX);
  EXPECT_EQ(opts->integer("bootindex"), INT32_MIN);
  EXPECT_EQ(opts->integer("offset"), INT64_MIN);
  EXPECT_EQ(opts->number("bootindex"), std::nullopt);  // signed: integer(), not number()
  EXPECT_EQ(opts->string("addr"), "06.0");             // the machine parses SLOT[.FN]

  auto defaults = parse_opts(qdev_schema(), "nvme,mdts=010,msix_qsize=-0,bootindex=0x7fffffff");
  ASSERT_TRUE(defaults.ok()) << defaults.status().to_string();
  EXPECT_EQ(defaults->number("mdts"), 8u);  // strtoull base 0, as QEMU
  EXPECT_EQ(defaults->number("msix_qsize"), 0u);
  EXPECT_EQ(defaults->integer("bootindex"), INT32_MAX);
  auto unset = parse_opts(qdev_schema(), "nvme");
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->number("mdts"), 7u);
  EXPECT_EQ(unset->integer("bootindex"), -1);
}

TEST(QemuOpts, IntegerOutsideItsWidthIsRefusedInQemusWords) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"mdts=256", "Parameter 'mdts' expects uint8_t, found '256'"},
      {"mdts=300", "Parameter 'mdts' expects uint8_t, found '300'"},
      {"mdts=-1", "Parameter 'mdts' expects uint8_t, found '-1'"},
      {"msix_qsize=70000", "Parameter 'msix_qsize' expects uint16_t, found '70000'"},
      {"max_ioqpairs=4294967296", "Parameter 'max_ioqpairs' expects uint32_t, found '4294967296'"},
      {"max_ioqpairs=-1", "Parameter 'max_ioqpairs' expects uint32_t, found '-1'"},
      {"eui64=-1", "Parameter 'eui64' expects uint64_t, found '-1'"},
      {"bootindex=2147483648", "Parameter 'bootindex' expects int32_t, found '2147483648'"},
      {"bootindex=-2147483649", "Parameter 'bootindex' expects int32_t, found '-2147483649'"},
      // No integer at all, or past 64 bits: QEMU's strtoull/strtoll fails first.
      {"mdts=abc", "Parameter 'mdts' expects integer, found 'abc'"},
      {"mdts=1k", "Parameter 'mdts' expects integer, found '1k'"},
      {"mdts=1.5", "Parameter 'mdts' expects integer, found '1.5'"},
      {"mdts=", "Parameter 'mdts' expects integer, found ''"},
      {"mdts=08", "Parameter 'mdts' expects integer, found '08'"},
      {"mdts=--1", "Parameter 'mdts' expects integer, found '--1'"},
      {"mdts=18446744073709551616",
       "Parameter 'mdts' expects integer, found '18446744073709551616'"},
      {"eui64=18446744073709551616",
       "Parameter 'eui64' expects integer, found '18446744073709551616'"},
      {"offset=9223372036854775808",
       "Parameter 'offset' expects integer, found '9223372036854775808'"},
      {"offset=-9223372036854775809",
       "Parameter 'offset' expects integer, found '-9223372036854775809'"},
  };
  for (const Case& c : cases) {
    auto opts = parse_opts(qdev_schema(), std::string("nvme,") + c.text);
    ASSERT_FALSE(opts.ok()) << c.text;
    EXPECT_EQ(opts.status().code(), ErrorCode::kInvalidArgument) << c.text;
    EXPECT_EQ(opts.status().message(), std::string("-device nvme: ") + c.message);
  }
}

TEST(QemuOpts, SignedNumbers) {
  EXPECT_EQ(*parse_signed_number("-0x10"), -16);
  EXPECT_EQ(*parse_signed_number("-010"), -8);
  EXPECT_EQ(*parse_signed_number("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(*parse_signed_number("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(parse_signed_number("9223372036854775808").status().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(parse_signed_number("-18446744073709551616").status().code(),
            ErrorCode::kOutOfRange);
  for (const char* bad : {"", "-", "+1", "--1", " -1", "-1x"})
    EXPECT_EQ(parse_signed_number(bad).status().code(), ErrorCode::kInvalidArgument) << bad;
}

TEST(QemuOpts, TypeNamesAreQemus) {
  EXPECT_EQ(opt_type_name(OptType::kString), "str");
  EXPECT_EQ(opt_type_name(OptType::kBool), "bool");
  EXPECT_EQ(opt_type_name(OptType::kNumber), "num");  // QemuOpts' options (-drive, ...)
  EXPECT_EQ(opt_type_name(OptType::kSize), "size");
  EXPECT_EQ(opt_type_name(OptType::kUint8), "uint8");
  EXPECT_EQ(opt_type_name(OptType::kUint16), "uint16");
  EXPECT_EQ(opt_type_name(OptType::kUint32), "uint32");
  EXPECT_EQ(opt_type_name(OptType::kUint64), "uint64");
  EXPECT_EQ(opt_type_name(OptType::kInt32), "int32");
  EXPECT_EQ(opt_type_name(OptType::kInt64), "int64");
  EXPECT_EQ(opt_type_name(OptType::kPciDevfn), "int32");
  EXPECT_EQ(integer_range(OptType::kUint16)->max, 0xffffu);
  EXPECT_EQ(integer_range(OptType::kInt32)->min, INT32_MIN);
  EXPECT_EQ(integer_range(OptType::kString), std::nullopt);
  EXPECT_EQ(integer_range(OptType::kSize), std::nullopt);
}

TEST(QemuOpts, Sizes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("1k"), 1024u);
  EXPECT_EQ(*parse_size("1K"), 1024u);
  EXPECT_EQ(*parse_size("512M"), 512u << 20);
  EXPECT_EQ(*parse_size("1G"), 1u << 30);
  EXPECT_EQ(*parse_size("2T"), uint64_t{2} << 40);
  EXPECT_EQ(*parse_size("1P"), uint64_t{1} << 50);
  EXPECT_EQ(*parse_size("1E"), uint64_t{1} << 60);
  EXPECT_EQ(*parse_size("10B"), 10u);
  EXPECT_EQ(*parse_size("1.5G"), uint64_t{3} << 29);
  EXPECT_EQ(*parse_size("0x1000"), 4096u);
  EXPECT_EQ(*parse_size("08"), 8u);  // sizes are decimal
  // -m: a bare number is MiB.
  EXPECT_EQ(*parse_size("4096", uint64_t{1} << 20), uint64_t{4096} << 20);
  EXPECT_EQ(*parse_size("1G", uint64_t{1} << 20), uint64_t{1} << 30);
  for (const char* bad : {"", "G", "1X", "1GB", "-1", "1.5", "0x10M", ".5G", "1.G", "1..5G"}) {
    EXPECT_FALSE(parse_size(bad).ok()) << bad;
  }
  EXPECT_EQ(parse_size("16E").status().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(parse_size("18446744073709551616").status().code(), ErrorCode::kOutOfRange);

  auto bad = parse_opts(drive_schema(), "max-size=1Q");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "-drive: Parameter 'max-size' expects a non-negative number below 2^64, found '1Q'\n"
            "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            "and exabytes, respectively.");
}

// QEMU's -m counts in MiB, yet a fraction needs a written suffix: "-m 1.5" is refused and
// "-m 1.5M" is not. The error's location names the whole argument, as QEMU's does.
TEST(QemuOpts, FractionalSizeNeedsASuffixEvenWithADefaultUnit) {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  for (const char* bad : {"1.5", "0.5", "1e3", "2.01"}) {
    EXPECT_EQ(parse_size(bad, kMiB).status().code(), ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(*parse_size("1.5M", kMiB), 3 * kMiB / 2);
  EXPECT_EQ(*parse_size("1.5k", kMiB), 1536u);
  EXPECT_EQ(*parse_size("2", kMiB), 2 * kMiB);
  EXPECT_EQ(*parse_size("2.0", kMiB), 2 * kMiB);  // QEMU too: no fraction to place

  const OptSchema memory{"-m", "size", {{"size", OptType::kSize, "128M", "guest RAM size"}}, kMiB,
                         /*location_shows_argument=*/true};
  auto refused = parse_opts(memory, "1.5");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(),
            "-m 1.5: Parameter 'size' expects a non-negative number below 2^64\n"
            "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            "and exabytes, respectively.");
  auto huge = parse_opts(memory, "size=99999999999999999999");
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().message(),
            "-m size=99999999999999999999: Value '99999999999999999999' is out of range for "
            "parameter 'size'");
  auto fine = parse_opts(memory, "1.5M");
  ASSERT_TRUE(fine.ok()) << fine.status().to_string();
  EXPECT_EQ(fine->number("size"), 3 * kMiB / 2);
}

TEST(QemuOpts, HelpIsRequestedAndListed) {
  auto opts = parse_opts(device_schema(), "nvme,help");
  ASSERT_TRUE(opts.ok());
  EXPECT_TRUE(opts->help_requested());
  EXPECT_EQ(opts->string("driver"), "nvme");
  auto bare = parse_opts(device_schema(), "help");
  ASSERT_TRUE(bare.ok());
  EXPECT_TRUE(bare->help_requested());
  EXPECT_EQ(bare->string("driver"), std::nullopt);
  auto q = parse_opts(device_schema(), "nvme,?");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->help_requested());

  EXPECT_EQ(format_help(device_schema(), "nvme"),
            "nvme options:\n"
            "  drive=<str>\n"
            "  driver=<str>\n"
            "  msix=<bool>              -  (default: on)\n"
            "  num_queues=<num>         -  (default: 64)\n"
            "  serial=<str>             - serial number\n");
  std::string drive = format_help(drive_schema(), "-drive");
  EXPECT_NE(drive.find("  aio=<str>                - (io_uring or threads) (default: threads)\n"),
            std::string::npos)
      << drive;
  EXPECT_NE(drive.find("  max-size=<size>\n"), std::string::npos);
}

TEST(QemuOpts, InvalidSchemaDefaultIsReported) {
  OptSchema schema{.option = "-x",
                   .properties = {{.name = "n", .type = OptType::kNumber, .default_value = "z"}}};
  auto opts = parse_opts(schema, "");
  ASSERT_FALSE(opts.ok());
  EXPECT_EQ(opts.status().code(), ErrorCode::kInternal);
}

}  // namespace
}  // namespace ferry
