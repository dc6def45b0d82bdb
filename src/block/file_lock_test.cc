#include "block/file_lock.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

namespace ferry::block {
namespace {

constexpr uint32_t kWriter = kPermConsistentRead | kPermWrite;
constexpr uint32_t kReader = kPermConsistentRead;

// An empty temporary file, removed at the end; opens give separate file descriptions, as
// two processes or two -drives have.
class LockFile {
 public:
  LockFile() {
    path_ = "/tmp/ferry-file-lock-XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd >= 0) close(fd);
    else path_.clear();
  }
  ~LockFile() {
    for (int fd : fds_) close(fd);
    if (!path_.empty()) unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  int open_fd() {
    int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    fds_.push_back(fd);
    return fd;
  }
  // Whether some open file description holds a lock on `byte` (probed from a fresh one).
  bool byte_locked(int byte) {
    int fd = open_fd();
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = byte;
    lock.l_len = 1;
    if (fcntl(fd, F_OFD_GETLK, &lock) != 0) return false;
    return lock.l_type != F_UNLCK;
  }

 private:
  std::string path_;
  std::vector<int> fds_;
};

std::string write_lock_error(const std::string& path, bool shared) {
  return std::string("Failed to get ") + (shared ? "shared " : "") +
         "\"write\" lock\nIs another process using the image [" + path + "]?";
}

TEST(FileLockTest, WriterHoldsQemusBytes) {
  LockFile file;
  ASSERT_FALSE(file.path().empty());
  FileLock lock(file.open_fd(), file.path());
  ASSERT_TRUE(lock.acquire(kWriter, FileLock::kDeviceShared).ok());
  EXPECT_TRUE(lock.held());
  // QEMU 7.2 with a writable device on the image holds exactly 100, 101 and 201.
  EXPECT_TRUE(file.byte_locked(100));
  EXPECT_TRUE(file.byte_locked(101));
  EXPECT_TRUE(file.byte_locked(201));
  for (int byte : {102, 103, 200, 202, 203}) EXPECT_FALSE(file.byte_locked(byte)) << byte;
  lock.release();
  EXPECT_FALSE(lock.held());
  for (int byte : {100, 101, 201}) EXPECT_FALSE(file.byte_locked(byte)) << byte;
}

TEST(FileLockTest, ReaderHoldsReadAndRefusesWrite) {
  LockFile file;
  FileLock lock(file.open_fd(), file.path());
  ASSERT_TRUE(lock.acquire(kReader, FileLock::kDeviceShared).ok());
  EXPECT_TRUE(file.byte_locked(100));
  EXPECT_FALSE(file.byte_locked(101));
  EXPECT_TRUE(file.byte_locked(201));
}

TEST(FileLockTest, SecondWriterIsRefusedWithQemusMessage) {
  LockFile file;
  FileLock first(file.open_fd(), file.path());
  FileLock second(file.open_fd(), file.path());
  ASSERT_TRUE(first.acquire(kWriter, FileLock::kDeviceShared).ok());
  Status refused = second.acquire(kWriter, FileLock::kDeviceShared);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.message(), write_lock_error(file.path(), false));
  // The refused one keeps nothing, the first keeps everything.
  EXPECT_FALSE(second.held());
  EXPECT_TRUE(first.held());
  EXPECT_TRUE(file.byte_locked(101));
  // Once the first lets go (a migration source at stop-and-copy), the second gets it.
  first.release();
  EXPECT_TRUE(second.acquire(kWriter, FileLock::kDeviceShared).ok());
  EXPECT_FALSE(first.acquire(kWriter, FileLock::kDeviceShared).ok());
}

TEST(FileLockTest, ReaderAndWriterRefuseEachOther) {
  LockFile file;
  FileLock writer(file.open_fd(), file.path());
  FileLock reader(file.open_fd(), file.path());
  ASSERT_TRUE(writer.acquire(kWriter, FileLock::kDeviceShared).ok());
  // A reader that does not share write cannot open beside a writer (QEMU's wording).
  Status refused = reader.acquire(kReader, FileLock::kDeviceShared);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.message(), write_lock_error(file.path(), true));
  writer.release();
  ASSERT_TRUE(reader.acquire(kReader, FileLock::kDeviceShared).ok());
  refused = writer.acquire(kWriter, FileLock::kDeviceShared);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.message(), write_lock_error(file.path(), false));
}

TEST(FileLockTest, ReadersShare) {
  LockFile file;
  FileLock a(file.open_fd(), file.path());
  FileLock b(file.open_fd(), file.path());
  EXPECT_TRUE(a.acquire(kReader, FileLock::kDeviceShared).ok());
  EXPECT_TRUE(b.acquire(kReader, FileLock::kDeviceShared).ok());
  // Sharing write too (share-rw=on), two writers coexist.
  LockFile other;
  FileLock c(other.open_fd(), other.path());
  FileLock d(other.open_fd(), other.path());
  EXPECT_TRUE(c.acquire(kWriter, kPermAll).ok());
  EXPECT_TRUE(d.acquire(kWriter, kPermAll).ok());
}

TEST(FileLockTest, ClosingTheDescriptorReleases) {
  LockFile file;
  int fd = ::open(file.path().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  FileLock crashed(fd, file.path());
  ASSERT_TRUE(crashed.acquire(kWriter, FileLock::kDeviceShared).ok());
  close(fd);  // what a killed process's exit does: no stale lock survives it
  FileLock next(file.open_fd(), file.path());
  EXPECT_TRUE(next.acquire(kWriter, FileLock::kDeviceShared).ok());
}

TEST(FileLockTest, BadDescriptorIsAnErrorNamingTheByte) {
  FileLock lock(-1, "/nonexistent");
  Status st = lock.acquire(kWriter, FileLock::kDeviceShared);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "Failed to lock byte 100: Bad file descriptor");
  EXPECT_FALSE(lock.held());
}

}  // namespace
}  // namespace ferry::block
