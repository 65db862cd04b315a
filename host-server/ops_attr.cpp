// lookup, getattr, setattr, statfs.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>

#include "host-server/operations.h"

namespace enclavefs::host::ops {
namespace {

// Applies the attribute changes of one setattr on a pool thread; returns an errno.
int applySetAttr(const Node& node, const OpenFile* file, const msg::op::SetAttr& op) {
  const std::string path = procPath(node.fd.get());
  if (op.valid & msg::op::kMode) {
    // The node's real type decides what may be set, never type bits the client sent.
    const std::uint32_t mode = sanitizeMode(node.type | (op.mode & 07777)) & 07777;
    if (::fchmodat(AT_FDCWD, path.c_str(), mode, 0) != 0) return errno;
  }
  if (op.valid & (msg::op::kUid | msg::op::kGid)) {
    uid_t uid = (op.valid & msg::op::kUid) ? op.uid : static_cast<uid_t>(-1);
    gid_t gid = (op.valid & msg::op::kGid) ? op.gid : static_cast<gid_t>(-1);
    if (::fchownat(node.fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      return errno;
    }
  }
  if (op.valid & msg::op::kSize) {
    if (node.type == S_IFDIR) return EISDIR;
    if (node.type != S_IFREG) return EINVAL;
    if (op.size > static_cast<std::uint64_t>(INT64_MAX)) return EFBIG;
    auto size = static_cast<off_t>(op.size);
    int rc = file != nullptr ? ::ftruncate(file->fd.get(), size) : ::truncate(path.c_str(), size);
    if (rc != 0) return errno;
  }
  if (op.valid & (msg::op::kAtime | msg::op::kMtime | msg::op::kAtimeNow | msg::op::kMtimeNow)) {
    auto pick = [&](std::uint32_t set, std::uint32_t now, const msg::Timespec& t) {
      timespec ts{0, UTIME_OMIT};
      if (op.valid & now) {
        ts.tv_nsec = UTIME_NOW;
      } else if (op.valid & set) {
        ts = {static_cast<time_t>(t.sec), static_cast<long>(t.nsec)};
      }
      return ts;
    };
    timespec times[2] = {pick(msg::op::kAtime, msg::op::kAtimeNow, op.atime),
                         pick(msg::op::kMtime, msg::op::kMtimeNow, op.mtime)};
    if (node.type == S_IFLNK) {
      // A magic link would be followed to the link's target; the empty path names the link.
      if (::utimensat(node.fd.get(), "", times, AT_EMPTY_PATH) != 0) return errno;
    } else if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
      return errno;
    }
  }
  return 0;
}

}  // namespace

Co<Outcome> lookup(Session& s, const msg::Request& r) {
  auto parent = findParent(s, r);
  if (!parent) co_return failure(parent.error().value);
  auto entry = co_await lookupName(s, **parent, r.name);
  if (!entry) co_return failure(entry.error().value);
  co_return success(*entry);
}

Co<Outcome> getattr(Session& s, const msg::Request& r) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  auto st = co_await statNode(s, (*node)->fd.get());
  if (!st) co_return failure(st.error().value);
  co_return success(toAttr(*st));
}

Co<Outcome> setattr(Session& s, const msg::Request& r, const msg::op::SetAttr& op) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  // Under squash every file the enclave makes has the export's ids; it may not give one away.
  const OwnerPolicy& owner = s.exported().owner;
  if (owner.mapping == OwnerPolicy::Mapping::squash &&
      (((op.valid & msg::op::kUid) && op.uid != owner.uid) ||
       ((op.valid & msg::op::kGid) && op.gid != owner.gid))) {
    co_return failure(EPERM);
  }
  OpenFileRef file;
  if (r.handle != 0) {
    auto handle = findHandle(s, r.handle, false);
    if (!handle) co_return failure(handle.error().value);
    if ((*handle)->node != *node) co_return failure(EBADF);
    file = *handle;
  }
  if ((op.valid & msg::op::kSize) != 0) {
    if (int err = co_await clearSetIdBits(s, (*node)->fd.get()); err != 0) co_return failure(err);
  }
  // On the pool even for a memory file system: a truncate waits for a host lease to break.
  int err = co_await s.pool().run([&] { return applySetAttr(**node, file.get(), op); });
  if (err != 0) co_return failure(err);
  auto st = co_await statNode(s, (*node)->fd.get());
  if (!st) co_return failure(st.error().value);
  co_return success(toAttr(*st));
}

Co<Outcome> statfs(Session& s, const msg::Request& r) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  struct statfs st;
  int err = co_await inMemoryOrPool(s, [&] { return ::fstatfs((*node)->fd.get(), &st) == 0 ? 0 : errno; });
  if (err != 0) co_return failure(err);
  msg::body::StatFs out;
  out.blocks = st.f_blocks;
  out.bfree = st.f_bfree;
  out.bavail = st.f_bavail;
  out.files = st.f_files;
  out.ffree = st.f_ffree;
  out.bsize = static_cast<std::uint32_t>(st.f_bsize);
  out.frsize = static_cast<std::uint32_t>(st.f_frsize);
  out.namemax = static_cast<std::uint32_t>(st.f_namelen);
  co_return success(out);
}

}  // namespace enclavefs::host::ops
