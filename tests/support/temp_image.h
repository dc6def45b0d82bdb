// A sparse raw image file for tests that give VMs a -drive: created in /tmp with a
// unique name, removed with the object; read and write its bytes as any other reader would.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/ferry_vm.h"

namespace ferry::testing {

// A sparse raw image file, removed with the object.
class TempImage {
 public:
  explicit TempImage(uint64_t bytes) : path_(unique_base("nvme-img") + ".img"), bytes_(bytes) {
    std::ofstream file(path_, std::ios::binary);
    file.seekp(static_cast<std::streamoff>(bytes - 1));
    file.put('\0');
  }
  ~TempImage() { ::unlink(path_.c_str()); }
  TempImage(const TempImage&) = delete;
  TempImage& operator=(const TempImage&) = delete;

  const std::string& path() const { return path_; }
  uint64_t bytes() const { return bytes_; }

  // The file's bytes as any other reader of the image sees them.
  std::vector<uint8_t> read(uint64_t offset, uint64_t length) const {
    std::vector<uint8_t> out(length);
    std::ifstream file(path_, std::ios::binary);
    file.seekg(static_cast<std::streamoff>(offset));
    file.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(length));
    EXPECT_TRUE(file) << "reading " << length << " bytes at " << offset << " of " << path_;
    return out;
  }
  void write(uint64_t offset, const std::vector<uint8_t>& data) const {
    std::fstream file(path_, std::ios::binary | std::ios::in | std::ios::out);
    file.seekp(static_cast<std::streamoff>(offset));
    file.write(reinterpret_cast<const char*>(data.data()),
               static_cast<std::streamsize>(data.size()));
    EXPECT_TRUE(file) << "writing " << data.size() << " bytes at " << offset << " of " << path_;
  }

 private:
  std::string path_;
  uint64_t bytes_;
};

}  // namespace ferry::testing
