#include "memory/ram_block.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ferry::memory {
namespace {

// Closes a descriptor unless released (for error paths while creating a block).
struct FdGuard {
  int fd = -1;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

Status check_spec(const RamBlockSpec& spec) {
  if (spec.idstr.empty() || spec.idstr.size() > 255)
    return Error(ErrorCode::kInvalidArgument,
                 "RAM block name must be 1..255 bytes, got {} bytes ('{}')", spec.idstr.size(),
                 spec.idstr);
  if (spec.size == 0 || spec.size % kPageSize != 0)
    return Error(ErrorCode::kInvalidArgument,
                 "RAM block '{}': size {} is not a non-zero multiple of {}", spec.idstr,
                 spec.size, kPageSize);
  if (spec.size > kMaxRamBlockSize)
    return Error(ErrorCode::kInvalidArgument, "RAM block '{}': size {} exceeds the limit {}",
                 spec.idstr, spec.size, kMaxRamBlockSize);
  if (spec.backing == RamBacking::kFile && spec.mem_path.empty())
    return Error(ErrorCode::kInvalidArgument, "RAM block '{}': file backing needs mem-path",
                 spec.idstr);
  return {};
}

Result<int> open_backing_file(const RamBlockSpec& spec) {
  struct stat st {};
  if (::stat(spec.mem_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    // A directory: an unnamed file inside it, gone when the block is.
    int fd = ::open(spec.mem_path.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
      return Error(ErrorCode::kIo, "RAM block '{}': cannot create a file in mem-path '{}': {}",
                   spec.idstr, spec.mem_path, std::strerror(errno));
    return fd;
  }
  int fd = ::open(spec.mem_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return Error(ErrorCode::kIo, "RAM block '{}': cannot open mem-path '{}': {}", spec.idstr,
                 spec.mem_path, std::strerror(errno));
  return fd;
}

// Returns true when the file was empty and has just been grown: its pages are all zero.
Result<bool> size_backing_file(const RamBlockSpec& spec, int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return Error(ErrorCode::kIo, "RAM block '{}': fstat of '{}' failed: {}", spec.idstr,
                 spec.mem_path, std::strerror(errno));
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size > 0 && file_size < spec.size)
    return Error(ErrorCode::kInvalidArgument,
                 "RAM block '{}': backing store size 0x{:x} of '{}' does not match 'size' "
                 "option 0x{:x}",
                 spec.idstr, file_size, spec.mem_path, spec.size);
  if (file_size == 0 && ::ftruncate(fd, static_cast<off_t>(spec.size)) != 0)
    return Error(ErrorCode::kIo, "RAM block '{}': cannot grow '{}' to {} bytes: {}", spec.idstr,
                 spec.mem_path, spec.size, std::strerror(errno));
  return file_size == 0;
}

}  // namespace

Result<std::unique_ptr<RamBlock>> RamBlock::anonymous(std::string idstr, uint64_t size) {
  return create({.idstr = std::move(idstr), .size = size});
}

Result<std::unique_ptr<RamBlock>> RamBlock::create(const RamBlockSpec& spec) {
  FERRY_RETURN_IF_ERROR(check_spec(spec));
  FdGuard fd;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  bool zeroed = true;  // anonymous memory and a new memfd read as zeros until written
  switch (spec.backing) {
    case RamBacking::kAnonymous:
      break;
    case RamBacking::kMemfd: {
      fd.fd = ::memfd_create(spec.idstr.c_str(), MFD_CLOEXEC);
      if (fd.fd < 0)
        return Error(ErrorCode::kIo, "RAM block '{}': memfd_create failed: {}", spec.idstr,
                     std::strerror(errno));
      if (::ftruncate(fd.fd, static_cast<off_t>(spec.size)) != 0)
        return Error(ErrorCode::kIo, "RAM block '{}': cannot size memfd to {} bytes: {}",
                     spec.idstr, spec.size, std::strerror(errno));
      flags = spec.share ? MAP_SHARED : MAP_PRIVATE;
      break;
    }
    case RamBacking::kFile: {
      Result<int> opened = open_backing_file(spec);
      if (!opened.ok()) return opened.take_status();
      fd.fd = *opened;
      Result<bool> grown = size_backing_file(spec, fd.fd);
      if (!grown.ok()) return grown.take_status();
      zeroed = *grown;
      flags = spec.share ? MAP_SHARED : MAP_PRIVATE;
      break;
    }
  }
  void* host = ::mmap(nullptr, spec.size, PROT_READ | PROT_WRITE, flags, fd.fd, 0);
  if (host == MAP_FAILED)
    return Error(ErrorCode::kIo, "RAM block '{}': mmap of {} bytes failed: {}", spec.idstr,
                 spec.size, std::strerror(errno));
  return std::unique_ptr<RamBlock>(new RamBlock(spec.idstr, spec.size, spec.backing,
                                                static_cast<uint8_t*>(host), fd.release(),
                                                zeroed));
}

RamBlock::RamBlock(std::string idstr, uint64_t size, RamBacking backing, uint8_t* host, int fd,
                   bool starts_zeroed)
    : idstr_(std::move(idstr)),
      size_(size),
      backing_(backing),
      host_(host),
      fd_(fd),
      starts_zeroed_(starts_zeroed),
      dirty_(size) {}

RamBlock::~RamBlock() {
  ::munmap(host_, size_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace ferry::memory
