#include "host-server/operations.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>

#include "common/hard_limits.h"
#include "common/overloaded.h"
#include "common/names.h"
#include "host-server/change_watch.h"

namespace enclavefs::host {
namespace {

constexpr int kStatFlags = AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW;

// The bits clearSetIdBits clears from a file of `mode`.
std::uint32_t setIdBitsToClear(std::uint32_t mode) {
  if (!S_ISREG(mode)) return 0;
  std::uint32_t clear = mode & S_ISUID;
  if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) clear |= S_ISGID;
  return clear;
}

// Operations that change the export, refused with EROFS on a read-only export. Open is
// decided by its access mode in ops::open.
bool modifies(const msg::Op& op) {
  return std::visit(
      Overloaded{
          [](const msg::op::SetAttr&) { return true; },
          [](const msg::op::MakeNode&) { return true; },
          [](const msg::op::MakeDir&) { return true; },
          [](const msg::op::Unlink&) { return true; },
          [](const msg::op::RemoveDir&) { return true; },
          [](const msg::op::Symlink&) { return true; },
          [](const msg::op::Rename&) { return true; },
          [](const msg::op::Link&) { return true; },
          [](const msg::op::Create&) { return true; },
          [](const msg::op::Write&) { return true; },
          [](const msg::op::Fallocate&) { return true; },
          [](const msg::op::SetXattr&) { return true; },
          [](const msg::op::RemoveXattr&) { return true; },
          [](const auto&) { return false; },
      },
      op);
}

// The inotify event an operation that succeeds makes in its directory (r.node), if it
// makes exactly one there.
std::uint32_t nameEvent(const msg::Op& op) {
  return std::visit(
      [](const auto& o) -> std::uint32_t {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, msg::op::Create> || std::is_same_v<T, msg::op::MakeNode> ||
                      std::is_same_v<T, msg::op::MakeDir> || std::is_same_v<T, msg::op::Symlink>) {
          return IN_CREATE;
        } else if constexpr (std::is_same_v<T, msg::op::Unlink> ||
                             std::is_same_v<T, msg::op::RemoveDir>) {
          return IN_DELETE;
        } else {
          return 0;
        }
      },
      op);
}

Co<Outcome> dispatch(Session& s, const msg::Request& r, Bytes& payload) {
  if (s.readOnly() && modifies(r.op)) return immediately(failure(EROFS));
  return std::visit(
      Overloaded{
          [&](const msg::op::Lookup&) { return ops::lookup(s, r); },
          [&](const msg::op::Forget&) { return immediately(failure(EINVAL)); },  // one-way
          [&](const msg::op::GetAttr&) { return ops::getattr(s, r); },
          [&](const msg::op::SetAttr& op) { return ops::setattr(s, r, op); },
          [&](const msg::op::ReadLink&) { return ops::readlink(s, r); },
          [&](const msg::op::MakeNode& op) { return ops::mknod(s, r, op); },
          [&](const msg::op::MakeDir& op) { return ops::mkdir(s, r, op); },
          [&](const msg::op::Unlink&) { return ops::unlink(s, r, false); },
          [&](const msg::op::RemoveDir&) { return ops::unlink(s, r, true); },
          [&](const msg::op::Symlink& op) { return ops::symlink(s, r, op); },
          [&](const msg::op::Rename& op) { return ops::rename(s, r, op); },
          [&](const msg::op::Link& op) { return ops::link(s, r, op); },
          [&](const msg::op::Open& op) { return ops::open(s, r, op); },
          [&](const msg::op::Create& op) { return ops::create(s, r, op); },
          [&](const msg::op::Read& op) { return ops::read(s, r, op); },
          [&](const msg::op::Write& op) { return ops::write(s, r, op, payload); },
          [&](const msg::op::Flush&) { return ops::flush(s, r); },
          [&](const msg::op::Release&) { return ops::release(s, r); },
          [&](const msg::op::Fsync& op) { return ops::fsync(s, r, op.datasync); },
          [&](const msg::op::Fallocate& op) { return ops::fallocate(s, r, op); },
          [&](const msg::op::OpenDir&) { return ops::opendir(s, r); },
          [&](const msg::op::ReadDir& op) { return ops::readdir(s, r, op); },
          [&](const msg::op::ReleaseDir&) { return ops::releasedir(s, r); },
          [&](const msg::op::FsyncDir& op) { return ops::fsync(s, r, op.datasync); },
          [&](const msg::op::StatFs&) { return ops::statfs(s, r); },
          [&](const msg::op::SetXattr& op) { return ops::setxattr(s, r, op, payload); },
          [&](const msg::op::GetXattr& op) { return ops::getxattr(s, r, op); },
          [&](const msg::op::ListXattr& op) { return ops::listxattr(s, r, op); },
          [&](const msg::op::RemoveXattr&) { return ops::removexattr(s, r); },
          [&](const msg::op::Lseek& op) { return ops::lseek(s, r, op); },
          [&](const msg::op::GetLock& op) { return ops::getlk(s, r, op); },
          [&](const msg::op::SetLock& op) { return ops::setlk(s, r, op); },
          [&](const msg::op::Flock& op) { return ops::flock(s, r, op); },
          // Block operations mean nothing on an export.
          [&](const msg::op::SectorRead&) { return immediately(failure(EOPNOTSUPP)); },
          [&](const msg::op::SectorWrite&) { return immediately(failure(EOPNOTSUPP)); },
          [&](const msg::op::SectorFlush&) { return immediately(failure(EOPNOTSUPP)); },
          [&](const msg::op::SectorTrim&) { return immediately(failure(EOPNOTSUPP)); },
          [&](const msg::op::SectorWriteZeroes&) { return immediately(failure(EOPNOTSUPP)); },
      },
      r.op);
}

}  // namespace

Co<Outcome> immediately(Outcome outcome) { co_return outcome; }

Co<Outcome> perform(Session& s, const msg::Request& r, Bytes& payload) {
  ChangeWatch* watch = s.changeWatch();
  const std::uint32_t event = nameEvent(r.op);
  const std::uint64_t ticket =
      watch != nullptr && event != 0 ? watch->expect(s.id(), r.node, r.name, event) : 0;
  Outcome outcome = co_await dispatch(s, r, payload);
  if (ticket != 0) watch->done(ticket, outcome.reply.error == 0);
  // Read now, with nothing awaited before the reply is queued: so the client gets every
  // snapshot of a directory's attributes in the order they were taken (session.cpp).
  outcome.reply.dirAttrs = directoryAttrs(s, msg::directoriesChanged(r));
  co_return outcome;
}

std::vector<msg::NodeAttr> directoryAttrs(Session& s, const std::vector<msg::NodeId>& nodes) {
  std::vector<msg::NodeAttr> attrs;
  for (msg::NodeId id : nodes) {
    NodeRef node = s.nodes().find(id);
    if (!node || node->type != S_IFDIR) continue;
    // What the host kernel has in memory: no round trip to a network file system's server
    // on the loop thread (there, a notification may be a little ahead of these attributes).
    struct statx st;
    if (::statx(node->fd.get(), "", kStatFlags | AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &st) == 0) {
      attrs.push_back({id, toAttr(st)});
    }
  }
  return attrs;
}

Outcome failure(int error) { return Outcome{msg::Reply{error, msg::body::None{}, {}}, {}}; }

Outcome success(msg::Body body) { return Outcome{msg::Reply{0, std::move(body), {}}, {}}; }

msg::Attr toAttr(const struct statx& st) {
  msg::Attr a;
  a.ino = st.stx_ino;
  a.mode = st.stx_mode;
  a.nlink = st.stx_nlink;
  a.uid = st.stx_uid;
  a.gid = st.stx_gid;
  a.rdev = static_cast<std::uint32_t>(makedev(st.stx_rdev_major, st.stx_rdev_minor));
  a.size = st.stx_size;
  a.blocks = st.stx_blocks;
  a.blksize = st.stx_blksize;
  a.atime = {st.stx_atime.tv_sec, st.stx_atime.tv_nsec};
  a.mtime = {st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec};
  a.ctime = {st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec};
  return a;
}

std::string procPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Result<NodeRef> findNode(Session& s, msg::NodeId id) {
  NodeRef node = s.nodes().find(id);
  if (!node) return Errno{ESTALE};
  return node;
}

Result<NodeRef> findParent(Session& s, const msg::Request& r) {
  auto parent = findNode(s, r.node);
  if (!parent) return parent;
  if ((*parent)->type != S_IFDIR) return Errno{ENOTDIR};
  if (!isPlainName(r.name)) return Errno{EINVAL};
  return parent;
}

Result<NodeRef> findParentForNewEntry(Session& s, const msg::Request& r) {
  if (s.nodes().full()) return Errno{ENFILE};
  return findParent(s, r);
}

Result<OpenFileRef> findHandle(Session& s, msg::HandleId id, bool directory) {
  OpenFileRef file = s.handles().find(id);
  if (!file || file->directory != directory) return Errno{EBADF};
  return file;
}

Co<Result<std::optional<PipedBytes>>> readIntoPipe(Session& s, int fd, std::uint64_t offset,
                                                   std::size_t size) {
  // A pipe holds a page per slot: the pages the range touches must all fit.
  static const std::size_t pageSize = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (size < kPipedReadMinBytes || offset % pageSize + size > limits::kMaxPayloadBytes) {
    co_return std::nullopt;
  }
  auto piped = s.pipes().take();
  if (!piped) co_return std::nullopt;
  while (piped->size < size) {
    const std::uint64_t from = offset + piped->size;
    const std::size_t want = size - piped->size;
    // Never waits on the pipe: it has room for the whole range.
    int n = co_await inMemoryOrRing(
        s,
        [&] {
          loff_t at = static_cast<loff_t>(from);
          return ::splice(fd, &at, piped->writeEnd(), nullptr, want, SPLICE_F_NONBLOCK);
        },
        [&](io_uring_sqe* sqe) {
          io_uring_prep_splice(sqe, fd, static_cast<std::int64_t>(from), piped->writeEnd(), -1,
                               static_cast<unsigned>(want), SPLICE_F_NONBLOCK);
        });
    // A file system without splice support, or a pipe full after all: copy instead.
    if ((n == -EINVAL && piped->size == 0) || n == -EAGAIN) co_return std::nullopt;
    if (n < 0) co_return Errno{-n};
    if (n == 0) break;  // the end of the file
    piped->size += static_cast<std::size_t>(n);
  }
  co_return std::move(piped);
}

Co<Result<struct statx>> statNode(Session& s, int fd) {
  struct statx st;
  int rc = co_await inMemoryOrRing(
      s, [&] { return ::statx(fd, "", kStatFlags, STATX_BASIC_STATS, &st); },
      [&](io_uring_sqe* sqe) { io_uring_prep_statx(sqe, fd, "", kStatFlags, STATX_BASIC_STATS, &st); });
  if (rc < 0) co_return Errno{-rc};
  co_return st;
}

int regularOrClosed(int fd) {
  if (fd < 0) return fd;
  struct stat st;
  const int flags = ::fcntl(fd, F_GETFL);
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flags >= 0 &&
      ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0) {
    return fd;
  }
  ::close(fd);
  return -EINVAL;
}

Co<int> openat2Cached(Session& s, int dirFd, const char* name, open_how how) {
  open_how cached = how;
  cached.resolve |= RESOLVE_CACHED;
  const long fd = ::syscall(SYS_openat2, dirFd, name, &cached, sizeof cached);
  if (fd >= 0) co_return static_cast<int>(fd);
  if (errno != EAGAIN) co_return -errno;
  co_return co_await inMemoryOrRing(
      s, [&] { return ::syscall(SYS_openat2, dirFd, name, &how, sizeof how); },
      [&](io_uring_sqe* sqe) { io_uring_prep_openat2(sqe, dirFd, name, &how); });
}

Co<Result<msg::Entry>> lookupName(Session& s, const Node& parent, const std::string& name) {
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  int fd = co_await openat2Cached(s, parent.fd.get(), name.c_str(), how);
  // A mount point inside the export is not part of it.
  if (fd == -EXDEV) co_return Errno{EACCES};
  if (fd < 0) co_return Errno{-fd};
  UniqueFd owned(fd);
  auto st = co_await statNode(s, fd);
  if (!st) co_return st.error();
  auto node = s.nodes().adopt(std::move(owned), *st);
  if (!node) co_return node.error();
  co_return msg::Entry{(*node)->id, 0, toAttr(*st)};
}

Co<Result<void>> applyOwnerPolicy(Session& s, const Node& parent, const std::string& name,
                                  const msg::Caller& caller) {
  const OwnerPolicy& policy = s.exported().owner;
  const bool passthrough = policy.mapping == OwnerPolicy::Mapping::passthrough;
  const uid_t uid = passthrough ? caller.uid : policy.uid;
  const gid_t gid = passthrough ? caller.gid : policy.gid;
  // The entry was made with the server's own ids (and the kernel's set-group-ID rule): when
  // those are the wanted ones, there is nothing to change. Start-up made sure that otherwise
  // the server is root.
  if (uid == ::geteuid() && gid == ::getegid()) co_return Result<void>{};
  int err = co_await inMemoryOrPool(s, [&] {
    struct stat dir;
    if (::fstat(parent.fd.get(), &dir) != 0) return errno;
    gid_t newGid = (dir.st_mode & S_ISGID) ? static_cast<gid_t>(-1) : gid;
    if (::fchownat(parent.fd.get(), name.c_str(), uid, newGid, AT_SYMLINK_NOFOLLOW) != 0) {
      return errno;
    }
    return 0;
  });
  if (err != 0) co_return Errno{err};
  co_return Result<void>{};
}

std::uint32_t sanitizeMode(std::uint32_t mode) {
  mode &= ~static_cast<std::uint32_t>(S_ISUID);
  // Set-group-ID on a file the group cannot execute grants nothing (it once meant mandatory
  // locking), so it stays, as on the host.
  if ((mode & S_IFMT) != S_IFDIR && (mode & S_IXGRP) != 0) {
    mode &= ~static_cast<std::uint32_t>(S_ISGID);
  }
  return mode;
}

Co<int> clearSetIdBits(Session& s, int fd) {
  // Every write comes here, and hardly any file has these bits: first a look at the mode the
  // host kernel holds in memory, which waits for no device (so it is made inline, as
  // directoryAttrs does). On a local file system that is the file's mode; on a network one
  // it is as fresh as the attribute cache.
  struct statx cached;
  if (::statx(fd, "", kStatFlags | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_MODE, &cached) == 0 &&
      setIdBitsToClear(cached.stx_mode) == 0) {
    co_return 0;
  }
  auto st = co_await statNode(s, fd);
  if (!st) co_return st.error().value;
  const std::uint32_t mode = st->stx_mode;
  const std::uint32_t clear = setIdBitsToClear(mode);
  if (clear == 0) co_return 0;
  const std::string path = procPath(fd);
  co_return co_await inMemoryOrPool(s, [&] {
    return ::fchmodat(AT_FDCWD, path.c_str(), mode & 07777 & ~clear, 0) == 0 ? 0 : errno;
  });
}

}  // namespace enclavefs::host
