// mknod, mkdir, unlink, rmdir, symlink, readlink, rename, link, opendir, readdir, releasedir.
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/hard_limits.h"
#include "common/names.h"
#include "host-server/operations.h"

namespace enclavefs::host::ops {
namespace {

// Kernel dirent sizes (struct fuse_dirent / fuse_direntplus), so the host sends exactly what
// fits in the buffer the kernel offered.
constexpr std::size_t kDirentBytes = 24;
constexpr std::size_t kDirentPlusBytes = 128 + 24;
constexpr std::size_t direntSize(std::size_t nameLen, bool plus) {
  return ((plus ? kDirentPlusBytes : kDirentBytes) + nameLen + 7) & ~std::size_t{7};
}

bool isDotOrDotDot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

struct Listed {
  msg::body::DirEntry dirent;
  UniqueFd fd;  // readdirplus: the entry opened O_PATH
  struct statx st {};
};

// Reads entries from `offset` until the kernel's buffer of `size` bytes would overflow. For
// readdirplus every entry is also opened and stat'ed here, on the pool thread, so one hop
// serves the whole batch.
int listDirectory(int dirFd, const msg::op::ReadDir& op, std::vector<Listed>& out) {
  if (::lseek(dirFd, static_cast<off_t>(op.offset), SEEK_SET) < 0) return errno;
  std::vector<char> buffer(32 * 1024);
  std::size_t used = 0;
  for (;;) {
    ssize_t n = ::getdents64(dirFd, buffer.data(), buffer.size());
    if (n < 0) return errno;
    if (n == 0) return 0;
    for (ssize_t at = 0; at < n;) {
      auto* d = reinterpret_cast<dirent64*>(buffer.data() + at);
      at += d->d_reclen;
      std::size_t nameLen = std::strlen(d->d_name);
      std::size_t size = direntSize(nameLen, op.plus);
      if (used + size > op.size) return 0;
      used += size;
      Listed item;
      item.dirent.name.assign(d->d_name, nameLen);
      item.dirent.ino = d->d_ino;
      item.dirent.type = d->d_type;
      item.dirent.nextOffset = static_cast<std::uint64_t>(d->d_off);
      if (op.plus && !isDotOrDotDot(d->d_name)) {
        open_how how{};
        how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
        int fd = static_cast<int>(::syscall(SYS_openat2, dirFd, d->d_name, &how, sizeof how));
        // An entry that vanished, or a mount point, is listed without attributes; the
        // kernel looks it up by name if it needs it.
        if (fd >= 0) {
          item.fd.reset(fd);
          if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS,
                      &item.st) != 0) {
            item.fd.reset();
          }
        }
      }
      out.push_back(std::move(item));
    }
  }
}

Co<Outcome> entryReply(Session& s, const Node& parent, const msg::Request& r) {
  if (auto owned = co_await applyOwnerPolicy(s, parent, r.name, r.caller); !owned) {
    co_return failure(owned.error().value);
  }
  auto entry = co_await lookupName(s, parent, r.name);
  if (!entry) co_return failure(entry.error().value);
  co_return success(*entry);
}

}  // namespace

Co<Outcome> mknod(Session& s, const msg::Request& r, const msg::op::MakeNode& op) {
  auto parent = findParentForNewEntry(s, r);
  if (!parent) co_return failure(parent.error().value);
  std::uint32_t type = op.mode & S_IFMT;
  if (type == 0) type = S_IFREG;
  // Device nodes would let the enclave reach host devices.
  if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK) co_return failure(EPERM);
  const mode_t mode = type | (sanitizeMode(op.mode) & 07777);
  int err = co_await inMemoryOrPool(s, [&] {
    return ::mknodat((*parent)->fd.get(), r.name.c_str(), mode, 0) == 0 ? 0 : errno;
  });
  if (err != 0) co_return failure(err);
  co_return co_await entryReply(s, **parent, r);
}

Co<Outcome> mkdir(Session& s, const msg::Request& r, const msg::op::MakeDir& op) {
  auto parent = findParentForNewEntry(s, r);
  if (!parent) co_return failure(parent.error().value);
  const mode_t mode = sanitizeMode(S_IFDIR | (op.mode & 07777)) & 07777;
  const int dirFd = (*parent)->fd.get();
  int rc = co_await inMemoryOrRing(
      s, [&] { return ::mkdirat(dirFd, r.name.c_str(), mode); },
      [&](io_uring_sqe* sqe) { io_uring_prep_mkdirat(sqe, dirFd, r.name.c_str(), mode); });
  if (rc < 0) co_return failure(-rc);
  co_return co_await entryReply(s, **parent, r);
}

Co<Outcome> unlink(Session& s, const msg::Request& r, bool directory) {
  auto parent = findParent(s, r);
  if (!parent) co_return failure(parent.error().value);
  const int dirFd = (*parent)->fd.get();
  const int flags = directory ? AT_REMOVEDIR : 0;
  int rc = co_await inMemoryOrRing(
      s, [&] { return ::unlinkat(dirFd, r.name.c_str(), flags); },
      [&](io_uring_sqe* sqe) { io_uring_prep_unlinkat(sqe, dirFd, r.name.c_str(), flags); });
  if (rc < 0) co_return failure(-rc);
  co_return success();
}

Co<Outcome> symlink(Session& s, const msg::Request& r, const msg::op::Symlink& op) {
  auto parent = findParentForNewEntry(s, r);
  if (!parent) co_return failure(parent.error().value);
  if (op.target.empty()) co_return failure(ENOENT);
  const int dirFd = (*parent)->fd.get();
  int rc = co_await inMemoryOrRing(
      s, [&] { return ::symlinkat(op.target.c_str(), dirFd, r.name.c_str()); },
      [&](io_uring_sqe* sqe) {
        io_uring_prep_symlinkat(sqe, op.target.c_str(), dirFd, r.name.c_str());
      });
  if (rc < 0) co_return failure(-rc);
  co_return co_await entryReply(s, **parent, r);
}

Co<Outcome> readlink(Session& s, const msg::Request& r) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  if ((*node)->type != S_IFLNK) co_return failure(EINVAL);
  std::string target(limits::kMaxPathBytes, '\0');
  ssize_t n = 0;
  int err = co_await inMemoryOrPool(s, [&] {
    n = ::readlinkat((*node)->fd.get(), "", target.data(), target.size());
    return n < 0 ? errno : 0;
  });
  if (err != 0) co_return failure(err);
  target.resize(static_cast<std::size_t>(n));
  co_return success(msg::body::Target{std::move(target)});
}

Co<Outcome> rename(Session& s, const msg::Request& r, const msg::op::Rename& op) {
  auto parent = findParent(s, r);
  if (!parent) co_return failure(parent.error().value);
  auto newParent = findNode(s, op.newParent);
  if (!newParent) co_return failure(newParent.error().value);
  if ((*newParent)->type != S_IFDIR) co_return failure(ENOTDIR);
  if (!isPlainName(op.newName)) co_return failure(EINVAL);
  constexpr std::uint32_t kAllowed = RENAME_NOREPLACE | RENAME_EXCHANGE;
  if ((op.flags & ~kAllowed) != 0 || op.flags == kAllowed) co_return failure(EINVAL);
  const int fromFd = (*parent)->fd.get(), toFd = (*newParent)->fd.get();
  int rc = co_await inMemoryOrRing(
      s,
      [&] { return ::renameat2(fromFd, r.name.c_str(), toFd, op.newName.c_str(), op.flags); },
      [&](io_uring_sqe* sqe) {
        io_uring_prep_renameat(sqe, fromFd, r.name.c_str(), toFd, op.newName.c_str(), op.flags);
      });
  if (rc < 0) co_return failure(-rc);
  co_return success();
}

Co<Outcome> link(Session& s, const msg::Request& r, const msg::op::Link& op) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  if ((*node)->type == S_IFDIR) co_return failure(EPERM);
  auto newParent = findNode(s, op.newParent);
  if (!newParent) co_return failure(newParent.error().value);
  if ((*newParent)->type != S_IFDIR) co_return failure(ENOTDIR);
  if (!isPlainName(op.newName)) co_return failure(EINVAL);
  const std::string path = procPath((*node)->fd.get());
  const int toFd = (*newParent)->fd.get();
  int rc = co_await inMemoryOrRing(
      s,
      [&] { return ::linkat(AT_FDCWD, path.c_str(), toFd, op.newName.c_str(), AT_SYMLINK_FOLLOW); },
      [&](io_uring_sqe* sqe) {
        io_uring_prep_linkat(sqe, AT_FDCWD, path.c_str(), toFd, op.newName.c_str(),
                             AT_SYMLINK_FOLLOW);
      });
  if (rc < 0) co_return failure(-rc);
  auto entry = co_await lookupName(s, **newParent, op.newName);
  if (!entry) co_return failure(entry.error().value);
  co_return success(*entry);
}

Co<Outcome> opendir(Session& s, const msg::Request& r) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  if ((*node)->type != S_IFDIR) co_return failure(ENOTDIR);
  const int dirFd = (*node)->fd.get();
  const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (r.noAtime ? O_NOATIME : 0);
  int fd = co_await inMemoryOrRing(
      s, [&] { return ::openat(dirFd, ".", flags); },
      [&](io_uring_sqe* sqe) { io_uring_prep_openat(sqe, dirFd, ".", flags, 0); });
  if (fd < 0) co_return failure(-fd);
  auto file = std::make_shared<OpenFile>(OpenFile{UniqueFd(fd), *node, true, r.noAtime, {}});
  auto handle = s.handles().add(std::move(file));
  if (!handle) co_return failure(handle.error().value);
  co_return success(msg::body::Opened{*handle});
}

Co<Outcome> readdir(Session& s, const msg::Request& r, const msg::op::ReadDir& op) {
  auto dir = findHandle(s, r.handle, true);
  if (!dir) co_return failure(dir.error().value);
  if (op.size > limits::kMaxReadDirBytes) co_return failure(EINVAL);
  if (op.offset > static_cast<std::uint64_t>(INT64_MAX)) co_return failure(EINVAL);
  std::vector<Listed> listed;
  int err = co_await inMemoryOrPool(s, [&] { return listDirectory((*dir)->fd.get(), op, listed); });
  if (err != 0) co_return failure(err);
  msg::body::Entries entries;
  entries.items.reserve(listed.size());
  for (Listed& item : listed) {
    if (item.fd && !((*dir)->speculative && s.nodes().halfFull())) {
      auto attr = toAttr(item.st);
      auto node = s.nodes().adopt(std::move(item.fd), item.st);
      if (node) item.dirent.entry = msg::Entry{(*node)->id, 0, attr};
    }
    entries.items.push_back(std::move(item.dirent));
  }
  co_return success(std::move(entries));
}

Co<Outcome> releasedir(Session& s, const msg::Request& r) {
  auto dir = findHandle(s, r.handle, true);
  if (!dir) co_return failure(dir.error().value);
  s.handles().remove(r.handle);
  co_return success();
}

}  // namespace enclavefs::host::ops
