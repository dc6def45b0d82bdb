// FileLock: QEMU's image locking (block/file-posix.c), so that two writers never open one
// image — two ferry-vm processes, two -drives of one process, or Ferry and QEMU.
//
// The layout is QEMU's, which is what makes Ferry and QEMU refuse each other: for each
// permission bit i (consistent read = 0, write = 1, ...) an open file description holds a
// shared OFD read lock on byte 100+i while it uses that permission, and on byte 200+i while
// it refuses to share it with others. A conflict is found by probing (F_OFD_GETLK with a
// write lock) the opposite byte: wanting "write" while someone holds 201 fails with
// `Failed to get "write" lock`; refusing to share "write" while someone holds 101 fails
// with `Failed to get shared "write" lock`. OFD locks belong to the open file description,
// not the process, so two descriptors of one process conflict too, and our own bytes never
// show up in our own probes.
//
// QEMU's users of a -drive: a writable device holds read+write and shares everything but
// write (bytes 100, 101, 201); a read-only device holds read and refuses write (100, 201).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace ferry::block {

// QEMU's BLK_PERM_* bits; the bit index is the lock byte's offset from its base.
enum Permission : uint32_t {
  kPermConsistentRead = 1u << 0,
  kPermWrite = 1u << 1,
  kPermWriteUnchanged = 1u << 2,
  kPermResize = 1u << 3,
};
inline constexpr uint32_t kPermAll = (1u << 4) - 1;

class FileLock {
 public:
  // `fd` is not owned and must outlive the lock's use of it; `path` names the image in
  // errors.
  FileLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  // Holds `held` and refuses to share the rest of kPermAll minus `shared`, then checks that
  // no other open file description conflicts. On failure nothing stays locked and the
  // error is QEMU's (`Failed to get "write" lock` + `Is another process using the image
  // [PATH]?`). Replaces whatever this lock held before.
  Status acquire(uint32_t held, uint32_t shared);
  // Releases every byte this lock holds (a no-op when it holds none).
  void release();
  bool held() const { return held_ != 0 || unshared_ != 0; }

  // The permissions a -drive's device takes (QEMU's blkconf_apply_backend_options without
  // share-rw): read, write unless read-only; never sharing write.
  static constexpr uint32_t kDeviceShared = kPermAll & ~kPermWrite;
  static constexpr uint32_t device_held(bool read_only) {
    return read_only ? kPermConsistentRead : (kPermConsistentRead | kPermWrite);
  }

 private:
  // Sets the lock bytes to exactly `held` at 100+i and `unshared` at 200+i.
  Status apply(uint32_t held, uint32_t unshared);
  Status check(uint32_t held, uint32_t unshared) const;

  int fd_;
  std::string path_;
  uint32_t held_ = 0;      // bits whose byte 100+i is locked
  uint32_t unshared_ = 0;  // bits whose byte 200+i is locked
};

}  // namespace ferry::block
