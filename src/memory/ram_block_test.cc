#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "memory/ram_block.h"

namespace ferry::memory {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/ferry_ram_XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  return d ? d : "";
}

TEST(RamBlock, AnonymousIsZeroedAndWritable) {
  auto block = RamBlock::anonymous("pc.ram", 16 * kPageSize);
  ASSERT_TRUE(block.ok()) << block.status().to_string();
  EXPECT_EQ((*block)->idstr(), "pc.ram");
  EXPECT_EQ((*block)->pages(), 16u);
  EXPECT_EQ((*block)->dirty().pages(), 16u);
  EXPECT_EQ((*block)->host()[5], 0);
  (*block)->host()[16 * kPageSize - 1] = 1;
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*block)->host()) % kPageSize, 0u);
}

TEST(RamBlock, RefusesBadSizesAndNames) {
  auto odd = RamBlock::anonymous("pc.ram", 5000);
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.status().to_string().find("size 5000"), std::string::npos);
  EXPECT_FALSE(RamBlock::anonymous("pc.ram", 0).ok());
  EXPECT_FALSE(RamBlock::anonymous("", kPageSize).ok());
  EXPECT_FALSE(RamBlock::anonymous(std::string(256, 'x'), kPageSize).ok());
  EXPECT_FALSE(RamBlock::create({.idstr = "f", .size = kPageSize, .backing = RamBacking::kFile})
                   .ok());
}

TEST(RamBlock, MemfdSharedIsVisibleThroughTheFd) {
  auto block = RamBlock::create(
      {.idstr = "mem0", .size = 4 * kPageSize, .backing = RamBacking::kMemfd, .share = true});
  ASSERT_TRUE(block.ok()) << block.status().to_string();
  (*block)->host()[kPageSize + 3] = 0x5a;
  uint8_t b = 0;
  ASSERT_EQ(::pread((*block)->fd(), &b, 1, kPageSize + 3), 1);
  EXPECT_EQ(b, 0x5a);
}

TEST(RamBlock, FileShareOnWritesTheFileShareOffDoesNot) {
  std::string dir = temp_dir();
  ASSERT_FALSE(dir.empty());
  std::string path = dir + "/ram";
  {
    auto shared = RamBlock::create({.idstr = "pc.ram", .size = 2 * kPageSize,
                                    .backing = RamBacking::kFile, .mem_path = path,
                                    .share = true});
    ASSERT_TRUE(shared.ok()) << shared.status().to_string();
    (*shared)->host()[7] = 0x11;
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(2 * kPageSize));  // grown from empty
  {
    auto priv = RamBlock::create({.idstr = "pc.ram", .size = 2 * kPageSize,
                                  .backing = RamBacking::kFile, .mem_path = path,
                                  .share = false});
    ASSERT_TRUE(priv.ok()) << priv.status().to_string();
    EXPECT_EQ((*priv)->host()[7], 0x11);  // sees the file
    (*priv)->host()[7] = 0x22;            // copy-on-write
  }
  int fd = ::open(path.c_str(), O_RDONLY);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, 7), 1);
  ::close(fd);
  EXPECT_EQ(b, 0x11);

  auto too_big = RamBlock::create({.idstr = "pc.ram", .size = 4 * kPageSize,
                                   .backing = RamBacking::kFile, .mem_path = path,
                                   .share = true});
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(too_big.status().to_string().find("does not match"), std::string::npos)
      << too_big.status().to_string();

  auto in_dir = RamBlock::create({.idstr = "pc.ram", .size = kPageSize,
                                  .backing = RamBacking::kFile, .mem_path = dir, .share = true});
  ASSERT_TRUE(in_dir.ok()) << in_dir.status().to_string();
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace ferry::memory
