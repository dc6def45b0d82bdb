#include "block/file_lock.h"

#include <fcntl.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <tuple>

namespace ferry::block {
namespace {

constexpr int kPermBase = 100;    // locked while the permission is used
constexpr int kSharedBase = 200;  // locked while the permission is not shared
constexpr int kPermBits = 4;

// QEMU's names of the permissions, as its messages spell them.
constexpr std::array<std::string_view, kPermBits> kPermNames = {"consistent read", "write",
                                                                "write unchanged", "resize"};

int set_byte(int fd, int offset, short type) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = offset;
  lock.l_len = 1;
  return fcntl(fd, F_OFD_SETLK, &lock) == 0 ? 0 : errno;
}

// Whether another open file description holds a lock on the byte (ours never show up).
// Returns 0 when free, EAGAIN when taken, another errno when the probe failed.
int probe_byte(int fd, int offset) {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = offset;
  lock.l_len = 1;
  if (fcntl(fd, F_OFD_GETLK, &lock) != 0) return errno;
  return lock.l_type == F_UNLCK ? 0 : EAGAIN;
}

}  // namespace

Status FileLock::acquire(uint32_t held, uint32_t shared) {
  uint32_t unshared = kPermAll & ~shared;
  // Lock first, then probe: two openers racing each see the other's bytes.
  Status st = apply(held, unshared);
  if (st.ok()) st = check(held, unshared);
  if (!st.ok()) release();
  return st;
}

void FileLock::release() { (void)apply(0, 0); }

Status FileLock::apply(uint32_t held, uint32_t unshared) {
  for (int i = 0; i < kPermBits; ++i) {
    uint32_t bit = 1u << i;
    for (auto [want, have, base] : {std::tuple{held, &held_, kPermBase},
                                    std::tuple{unshared, &unshared_, kSharedBase}}) {
      bool wanted = (want & bit) != 0;
      if (wanted == ((*have & bit) != 0)) continue;
      int err = set_byte(fd_, base + i, wanted ? F_RDLCK : F_UNLCK);
      if (err != 0)
        return Error(ErrorCode::kIo, "Failed to {}lock byte {}: {}", wanted ? "" : "un",
                     base + i, std::strerror(err));
      *have ^= bit;
    }
  }
  return {};
}

Status FileLock::check(uint32_t held, uint32_t unshared) const {
  for (int i = 0; i < kPermBits; ++i) {
    uint32_t bit = 1u << i;
    // Using a permission someone refuses to share, or refusing one someone uses.
    if ((held & bit) != 0 && probe_byte(fd_, kSharedBase + i) != 0)
      return Error(ErrorCode::kFailedPrecondition,
                   "Failed to get \"{}\" lock\nIs another process using the image [{}]?",
                   kPermNames[i], path_);
    if ((unshared & bit) != 0 && probe_byte(fd_, kPermBase + i) != 0)
      return Error(ErrorCode::kFailedPrecondition,
                   "Failed to get shared \"{}\" lock\nIs another process using the image [{}]?",
                   kPermNames[i], path_);
  }
  return {};
}

}  // namespace ferry::block
