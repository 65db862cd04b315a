// getlk, setlk, flock: locks held on the host, so that processes in different enclaves and
// on the host exclude each other.
//
// Byte-range locks: the enclave kernel names a lock owner (a process for POSIX locks, an
// open file for OFD locks). Each owner gets its own open file description of the file, and
// its locks are taken there as OFD locks, which conflict with POSIX and OFD locks held by
// anyone else on the host. A close in the enclave (flush) drops its process's locks by
// closing that description; the end of a handle drops those of the owners that used it; a
// disconnect drops all. flock locks belong to the handle's own open file description.
//
// A lock that must wait is retried on a growing timer on the loop, never by blocking a
// thread: it costs nothing while it waits, and stops when the client goes away.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>

#include "host-server/operations.h"

namespace enclavefs::host::ops {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kMaxLockOwnersPerNode = 1024;
constexpr std::chrono::milliseconds kFirstRetry = 1ms;
constexpr std::chrono::milliseconds kLongestRetry = 50ms;

bool validLockType(std::uint32_t type) {
  return type == F_RDLCK || type == F_WRLCK || type == F_UNLCK;
}

Result<struct flock> toFlock(const msg::Lock& lock) {
  if (!validLockType(lock.type)) return Errno{EINVAL};
  if (lock.start > static_cast<std::uint64_t>(INT64_MAX)) return Errno{EINVAL};
  struct flock fl {};
  fl.l_type = static_cast<short>(lock.type);
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(lock.start);
  fl.l_len = lock.end >= static_cast<std::uint64_t>(INT64_MAX)
                 ? 0  // to the end of file
                 : static_cast<off_t>(lock.end - lock.start + 1);
  return fl;
}

msg::Lock fromFlock(const struct flock& fl) {
  msg::Lock lock;
  lock.type = static_cast<std::uint32_t>(fl.l_type);
  lock.start = static_cast<std::uint64_t>(fl.l_start);
  lock.end = fl.l_len == 0 ? UINT64_MAX : static_cast<std::uint64_t>(fl.l_start + fl.l_len - 1);
  lock.pid = fl.l_pid > 0 ? static_cast<std::uint32_t>(fl.l_pid) : 0;  // OFD locks have none
  return lock;
}

// The open file description that carries `owner`'s locks on the file, opened on first use.
Co<Result<std::shared_ptr<UniqueFd>>> lockFdFor(Session& s, Node& node, std::uint64_t owner) {
  if (auto it = node.lockFds.find(owner); it != node.lockFds.end()) co_return it->second;
  if (node.lockFds.size() >= kMaxLockOwnersPerNode) co_return Errno{ENOLCK};
  const std::string path = procPath(node.fd.get());
  // A write lock needs a writable description; a read-only export only ever reads.
  int fd = -EROFS;
  if (!s.readOnly()) {
    fd = co_await s.ring().op([&](io_uring_sqe* sqe) {
      io_uring_prep_openat(sqe, AT_FDCWD, path.c_str(), O_RDWR | O_CLOEXEC, 0);
    });
  }
  if (fd == -EACCES || fd == -EROFS || fd == -ETXTBSY) {
    fd = co_await s.ring().op([&](io_uring_sqe* sqe) {
      io_uring_prep_openat(sqe, AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC, 0);
    });
  }
  if (fd < 0) co_return Errno{-fd};
  // Another request of the same owner may have opened one meanwhile: keep that one.
  auto [it, added] = node.lockFds.try_emplace(owner, std::make_shared<UniqueFd>(fd));
  if (!added) ::close(fd);
  co_return it->second;
}

// Runs `attempt` (which answers 0, EAGAIN/EWOULDBLOCK to retry, or another errno) until it
// succeeds, fails, or the session closes.
template <class Attempt>
Co<int> untilGranted(Session& s, Attempt attempt) {
  auto delay = kFirstRetry;
  for (;;) {
    int err = attempt();
    if (err != EAGAIN && err != EWOULDBLOCK && err != EACCES) co_return err;
    if (s.closed()) co_return EINTR;
    __kernel_timespec ts{0, std::chrono::nanoseconds(delay).count()};
    co_await s.ring().op([&](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, &ts, 0, 0); });
    delay = std::min(delay * 2, kLongestRetry);
  }
}

// The file a lock request is about: a regular file the client has open.
Result<OpenFileRef> lockTarget(Session& s, const msg::Request& r) {
  auto file = findHandle(s, r.handle, false);
  if (!file) return file;
  if ((*file)->node->id != r.node || (*file)->node->type != S_IFREG) return Errno{EBADF};
  return file;
}

// What a byte-range lock request works with: the fcntl form of the lock, and the owner's
// open file description, held by the caller for as long as it uses it (a flush meanwhile
// drops the owner, not this description).
struct RangeLock {
  struct flock fl;
  std::shared_ptr<UniqueFd> description;
};

Co<Result<RangeLock>> rangeLockFor(Session& s, const msg::Request& r, std::uint64_t owner,
                                   const msg::Lock& lock) {
  auto file = lockTarget(s, r);
  if (!file) co_return file.error();
  auto fl = toFlock(lock);
  if (!fl) co_return fl.error();
  NodeRef node = (*file)->node;
  auto fd = co_await lockFdFor(s, *node, owner);
  if (!fd) co_return fd.error();
  (*file)->lockOwners.insert(owner);
  co_return RangeLock{*fl, *fd};
}

}  // namespace

Co<Outcome> getlk(Session& s, const msg::Request& r, const msg::op::GetLock& op) {
  auto lock = co_await rangeLockFor(s, r, op.owner, op.lock);
  if (!lock) co_return failure(lock.error().value);
  if (::fcntl(lock->description->get(), F_OFD_GETLK, &lock->fl) != 0) co_return failure(errno);
  co_return success(fromFlock(lock->fl));
}

Co<Outcome> setlk(Session& s, const msg::Request& r, const msg::op::SetLock& op) {
  auto lock = co_await rangeLockFor(s, r, op.owner, op.lock);
  if (!lock) co_return failure(lock.error().value);
  // F_OFD_SETLK never blocks; waiting is done by untilGranted, on the loop's timers.
  auto attempt = [&] {
    return ::fcntl(lock->description->get(), F_OFD_SETLK, &lock->fl) == 0 ? 0 : errno;
  };
  int err = op.wait ? co_await untilGranted(s, attempt) : attempt();
  if (err == EACCES) err = EAGAIN;
  if (err != 0) co_return failure(err);
  co_return success();
}

Co<Outcome> flock(Session& s, const msg::Request& r, const msg::op::Flock& op) {
  auto file = lockTarget(s, r);
  if (!file) co_return failure(file.error().value);
  const int kind = static_cast<int>(op.operation & ~static_cast<std::uint32_t>(LOCK_NB));
  if (kind != LOCK_SH && kind != LOCK_EX && kind != LOCK_UN) co_return failure(EINVAL);
  const bool wait = (op.operation & LOCK_NB) == 0 && kind != LOCK_UN;
  int fd = (*file)->fd.get();
  auto attempt = [fd, kind] { return ::flock(fd, kind | LOCK_NB) == 0 ? 0 : errno; };
  int err = wait ? co_await untilGranted(s, attempt) : attempt();
  if (err != 0) co_return failure(err);
  co_return success();
}

void dropLocksOnFlush(OpenFile& file, std::uint64_t lockOwner) {
  if (lockOwner != 0) file.node->lockFds.erase(lockOwner);
}

void dropLocksOnRelease(OpenFile& file) {
  for (std::uint64_t owner : file.lockOwners) file.node->lockFds.erase(owner);
  file.lockOwners.clear();
}

}  // namespace enclavefs::host::ops
