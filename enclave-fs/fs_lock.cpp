// getlk, setlk, flock. The host holds the locks (host-server/ops_lock.cpp); the enclave
// passes the kernel's lock owner through, so POSIX, OFD and flock semantics are the host's.
#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <climits>

#include "enclave-fs/basic_fs.h"

namespace enclavefs::enclave::fs {
namespace {

msg::Lock toLock(const struct flock& fl) {
  msg::Lock lock;
  lock.type = static_cast<std::uint32_t>(fl.l_type);
  lock.start = static_cast<std::uint64_t>(fl.l_start);
  // The kernel hands FUSE absolute ranges; l_len 0 or an end at OFFSET_MAX means "to EOF".
  lock.end = fl.l_len == 0 ? UINT64_MAX : static_cast<std::uint64_t>(fl.l_start + fl.l_len - 1);
  lock.pid = fl.l_pid > 0 ? static_cast<std::uint32_t>(fl.l_pid) : 0;
  return lock;
}

// A granted lock is where another enclave's writes become this one's to read: the file's
// cached pages and attributes are dropped before the application hears it has the lock.
void replyLocked(BasicFs& fs, fuse_req_t req, fuse_ino_t ino, const char* op, bool acquired,
                 const Result<Answer>& answer) {
  auto body = expect<msg::body::None>(fs, op, answer);
  if (!body) {
    fuse_reply_err(req, body.error().value);
    return;
  }
  if (!acquired) {
    fuse_reply_err(req, 0);
    return;
  }
  fs.openData().changed(ino);
  fs.invalidator().invalidateThen(ino, [req] { fuse_reply_err(req, 0); });
}

}  // namespace

void getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock) {
  BasicFs& fs = BasicFs::of(req);
  msg::op::GetLock op{fi->lock_owner, toLock(*lock)};
  fs.send(fs.request(req, ino, op, nullptr, fi->fh), [&fs, req](Result<Answer> a) {
    auto conflict = expect<msg::Lock>(fs, "getlk", a);
    if (!conflict) {
      fuse_reply_err(req, conflict.error().value);
      return;
    }
    if (auto valid = checkLock(**conflict); !valid) {
      fuse_reply_err(req, fs.refuse("getlk", valid.error()));
      return;
    }
    const msg::Lock& l = **conflict;
    struct flock out {};
    out.l_type = static_cast<short>(l.type);
    out.l_whence = SEEK_SET;
    out.l_start = static_cast<off_t>(l.start);
    out.l_len = l.end >= static_cast<std::uint64_t>(INT64_MAX) ? 0
                                                               : static_cast<off_t>(l.end - l.start + 1);
    out.l_pid = static_cast<pid_t>(l.pid);
    fuse_reply_lock(req, &out);
  });
}

void setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock, int sleep) {
  BasicFs& fs = BasicFs::of(req);
  fs.nodes().noteLockUse(ino);  // before the host can grant it: see flush
  msg::op::SetLock op{fi->lock_owner, toLock(*lock), sleep != 0};
  auto r = fs.request(req, ino, op, nullptr, fi->fh);
  const bool acquired = lock->l_type != F_UNLCK;
  auto reply = [&fs, req, ino, acquired](Result<Answer> a) {
    replyLocked(fs, req, ino, "setlk", acquired, a);
  };
  if (sleep != 0) {
    fs.sendUnbounded(r, reply);
  } else {
    fs.send(r, reply);
  }
}

void flock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op) {
  BasicFs& fs = BasicFs::of(req);
  auto r = fs.request(req, ino, msg::op::Flock{static_cast<std::uint32_t>(op)}, nullptr, fi->fh);
  const bool acquired = (op & LOCK_UN) == 0;
  auto reply = [&fs, req, ino, acquired](Result<Answer> a) {
    replyLocked(fs, req, ino, "flock", acquired, a);
  };
  if ((op & LOCK_NB) == 0 && (op & LOCK_UN) == 0) {
    fs.sendUnbounded(r, reply);
  } else {
    fs.send(r, reply);
  }
}

}  // namespace enclavefs::enclave::fs
