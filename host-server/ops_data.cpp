// open, create, read, write, flush, release, fsync, fallocate, lseek.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "common/hard_limits.h"
#include "host-server/operations.h"

namespace enclavefs::host::ops {
namespace {

// Open flags a client may pass through to the host. Creation flags are decided by the
// operation, never by the client; O_DIRECT is about the enclave's cache, not the host's.
constexpr std::uint32_t kPassedOpenFlags =
    O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC | O_NOATIME;

// An offset or length the host's off_t cannot hold: EINVAL, as lseek gives. Through
// io_uring an offset of 2^64-1 would otherwise mean "the file's current position".
bool beyondOffT(std::uint64_t value) {
  return value > static_cast<std::uint64_t>(INT64_MAX);
}

bool writes(std::uint32_t flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC) != 0;
}

// Up to `size` bytes of `fd` from `offset`; fewer at the end of the file.
Co<Result<Bytes>> readAt(Session& s, int fd, std::uint64_t offset, std::uint32_t size) {
  Bytes data = Bytes::allocate(size);
  int n = co_await inMemoryOrRing(
      s, [&] { return ::pread(fd, data.data(), size, static_cast<off_t>(offset)); },
      [&](io_uring_sqe* sqe) { io_uring_prep_read(sqe, fd, data.data(), size, offset); });
  if (n < 0) co_return Errno{-n};
  data.shrinkTo(static_cast<std::size_t>(n));
  co_return data;
}

}  // namespace

Co<Outcome> open(Session& s, const msg::Request& r, const msg::op::Open& op) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  if ((*node)->type == S_IFDIR) co_return failure(EISDIR);
  if ((*node)->type != S_IFREG) co_return failure(EINVAL);
  if (s.readOnly() && writes(op.flags)) co_return failure(EROFS);
  if (r.openData > limits::kMaxOpenDataBytes) co_return failure(EINVAL);
  const std::string path = procPath((*node)->fd.get());
  const int flags = static_cast<int>(op.flags & kPassedOpenFlags) | O_CLOEXEC | O_NONBLOCK;
  int fd = regularOrClosed(co_await inMemoryOrRing(
      s, [&] { return ::openat(AT_FDCWD, path.c_str(), flags, 0); },
      [&](io_uring_sqe* sqe) { io_uring_prep_openat(sqe, AT_FDCWD, path.c_str(), flags, 0); }));
  if (fd < 0) co_return failure(-fd);
  UniqueFd opened(fd);
  if ((op.flags & O_TRUNC) != 0) {
    if (int err = co_await clearSetIdBits(s, fd); err != 0) co_return failure(err);
  }
  auto file = std::make_shared<OpenFile>(OpenFile{std::move(opened), *node, false, false, {}});
  auto handle = s.handles().add(file);
  if (!handle) co_return failure(handle.error().value);
  Outcome out = success(msg::body::Opened{*handle});
  // The file's first bytes, which the enclave's first read would ask for next. A read that
  // fails here (a file opened for writing only) is left to that read.
  if (r.openData > 0 && (op.flags & O_ACCMODE) != O_WRONLY) {
    auto data = co_await readAt(s, file->fd.get(), 0, r.openData);
    if (data) out.payload = std::move(*data);
  }
  co_return out;
}

Co<Outcome> create(Session& s, const msg::Request& r, const msg::op::Create& op) {
  auto parent = findParentForNewEntry(s, r);
  if (!parent) co_return failure(parent.error().value);
  if ((op.mode & S_IFMT) != 0 && (op.mode & S_IFMT) != S_IFREG) co_return failure(EINVAL);
  open_how how{};
  how.flags = (op.flags & (kPassedOpenFlags | O_EXCL)) | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
              O_NONBLOCK;
  how.mode = sanitizeMode(S_IFREG | (op.mode & 07777)) & 07777;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  const int dirFd = (*parent)->fd.get();
  int fd = regularOrClosed(co_await inMemoryOrRing(
      s, [&] { return ::syscall(SYS_openat2, dirFd, r.name.c_str(), &how, sizeof how); },
      [&](io_uring_sqe* sqe) { io_uring_prep_openat2(sqe, dirFd, r.name.c_str(), &how); }));
  if (fd == -EXDEV) co_return failure(EACCES);
  if (fd < 0) co_return failure(-fd);
  UniqueFd opened(fd);
  if ((op.flags & O_TRUNC) != 0) {
    if (int err = co_await clearSetIdBits(s, fd); err != 0) co_return failure(err);
  }
  if (auto owned = co_await applyOwnerPolicy(s, **parent, r.name, r.caller); !owned) {
    co_return failure(owned.error().value);
  }
  auto entry = co_await lookupName(s, **parent, r.name);
  if (!entry) co_return failure(entry.error().value);
  auto file = std::make_shared<OpenFile>(OpenFile{std::move(opened), s.nodes().find(entry->node), false, false, {}});
  auto handle = s.handles().add(std::move(file));
  if (!handle) {
    s.nodes().forget(entry->node, 1);
    co_return failure(handle.error().value);
  }
  co_return success(msg::body::Created{*entry, *handle});
}

Co<Outcome> read(Session& s, const msg::Request& r, const msg::op::Read& op) {
  auto file = findHandle(s, r.handle, false);
  if (!file) co_return failure(file.error().value);
  if (op.size > limits::kMaxIoBytes || beyondOffT(op.offset)) co_return failure(EINVAL);
  Outcome out = success(msg::body::Data{});
  // The kernel asks for what the file holds (its read-ahead stops at the end), so a large
  // read is a large payload: spliced. An open's first bytes (above) are asked for blindly, and
  // most files are small: copied.
  auto piped = co_await readIntoPipe(s, (*file)->fd.get(), op.offset, op.size);
  if (!piped) co_return failure(piped.error().value);
  if (*piped) {
    out.payload = std::move(**piped);
    co_return out;
  }
  auto data = co_await readAt(s, (*file)->fd.get(), op.offset, op.size);
  if (!data) co_return failure(data.error().value);
  out.payload = std::move(*data);
  co_return out;
}

Co<Outcome> write(Session& s, const msg::Request& r, const msg::op::Write& op, Bytes& data) {
  auto file = findHandle(s, r.handle, false);
  if (!file) co_return failure(file.error().value);
  if (beyondOffT(op.offset)) co_return failure(EINVAL);
  const int fd = (*file)->fd.get();
  if (int err = co_await clearSetIdBits(s, fd); err != 0) co_return failure(err);
  int n = co_await inMemoryOrRing(
      s, [&] { return ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(op.offset)); },
      [&](io_uring_sqe* sqe) {
        io_uring_prep_write(sqe, fd, data.data(), static_cast<unsigned>(data.size()), op.offset);
      });
  if (n < 0) co_return failure(-n);
  co_return success(msg::body::Written{static_cast<std::uint32_t>(n)});
}

Co<Outcome> flush(Session& s, const msg::Request& r) {
  // Writes reach the host file as they are made, so a close has nothing left to push; it
  // does end the closing process's POSIX locks on the file.
  auto file = findHandle(s, r.handle, false);
  if (!file) co_return failure(file.error().value);
  dropLocksOnFlush(**file, r.lockOwner);
  co_return success();
}

Co<Outcome> release(Session& s, const msg::Request& r) {
  auto file = findHandle(s, r.handle, false);
  if (!file) co_return failure(file.error().value);
  dropLocksOnRelease(**file);
  s.handles().remove(r.handle);
  co_return success();
}

Co<Outcome> fsync(Session& s, const msg::Request& r, bool datasync) {
  bool directory = std::holds_alternative<msg::op::FsyncDir>(r.op);
  auto file = findHandle(s, r.handle, directory);
  if (!file) co_return failure(file.error().value);
  const int fd = (*file)->fd.get();
  int rc = co_await inMemoryOrRing(
      s, [&] { return datasync ? ::fdatasync(fd) : ::fsync(fd); },
      [&](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0); });
  if (rc < 0) co_return failure(-rc);
  co_return success();
}

Co<Outcome> fallocate(Session& s, const msg::Request& r, const msg::op::Fallocate& op) {
  auto file = findHandle(s, r.handle, false);
  if (!file) co_return failure(file.error().value);
  if (beyondOffT(op.offset) || beyondOffT(op.length)) co_return failure(EINVAL);
  const int fd = (*file)->fd.get();
  if (int err = co_await clearSetIdBits(s, fd); err != 0) co_return failure(err);
  int rc = co_await inMemoryOrRing(
      s,
      [&] {
        return ::fallocate(fd, op.mode, static_cast<off_t>(op.offset),
                           static_cast<off_t>(op.length));
      },
      [&](io_uring_sqe* sqe) { io_uring_prep_fallocate(sqe, fd, op.mode, op.offset, op.length); });
  if (rc < 0) co_return failure(-rc);
  co_return success();
}

Co<Outcome> lseek(Session& s, const msg::Request& r, const msg::op::Lseek& op) {
  auto file = findHandle(s, r.handle, false);
  if (!file) co_return failure(file.error().value);
  if (op.whence != SEEK_DATA && op.whence != SEEK_HOLE) co_return failure(EINVAL);
  if (beyondOffT(op.offset)) co_return failure(EINVAL);
  off_t result = 0;
  int err = co_await inMemoryOrPool(s, [&] {
    result = ::lseek((*file)->fd.get(), static_cast<off_t>(op.offset), static_cast<int>(op.whence));
    return result < 0 ? errno : 0;
  });
  if (err != 0) co_return failure(err);
  co_return success(msg::body::Offset{static_cast<std::uint64_t>(result)});
}

}  // namespace enclavefs::host::ops
