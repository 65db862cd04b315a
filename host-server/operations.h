// The host's operation handlers, one file per family:
//   ops_attr.cpp   lookup, getattr, setattr, statfs
//   ops_data.cpp   open, create, read, write, flush, release, fsync, fallocate, lseek
//   ops_dir.cpp    mknod, mkdir, unlink, rmdir, symlink, readlink, rename, link,
//                  opendir, readdir, releasedir, fsyncdir
//   ops_xattr.cpp  setxattr, getxattr, listxattr, removexattr
//   ops_lock.cpp   getlk, setlk, flock
// perform() (operations.cpp) routes a request to its handler and refuses modifications of a
// read-only export before any handler runs. Handlers return a file-system result (an errno
// for the client); protocol faults never reach them.
#pragma once

#include <linux/openat2.h>
#include <linux/stat.h>

#include <string>

#include "common/messages.h"
#include "common/result.h"
#include "host-server/session.h"
#include "host-server/uring.h"

namespace enclavefs::host {

Co<Outcome> perform(Session& session, const msg::Request& request, Bytes& payload);
// The attributes of those `nodes` that are directories, read now.
std::vector<msg::NodeAttr> directoryAttrs(Session& session, const std::vector<msg::NodeId>& nodes);
// The same for a session that holds a block volume (ops_block.cpp).
Co<Outcome> performBlock(Session& session, const msg::Request& request, Bytes& payload);

namespace ops {
Co<Outcome> lookup(Session& s, const msg::Request& r);
Co<Outcome> getattr(Session& s, const msg::Request& r);
Co<Outcome> setattr(Session& s, const msg::Request& r, const msg::op::SetAttr& op);
Co<Outcome> statfs(Session& s, const msg::Request& r);

Co<Outcome> open(Session& s, const msg::Request& r, const msg::op::Open& op);
Co<Outcome> create(Session& s, const msg::Request& r, const msg::op::Create& op);
Co<Outcome> read(Session& s, const msg::Request& r, const msg::op::Read& op);
Co<Outcome> write(Session& s, const msg::Request& r, const msg::op::Write& op, Bytes& data);
Co<Outcome> flush(Session& s, const msg::Request& r);
Co<Outcome> release(Session& s, const msg::Request& r);
Co<Outcome> fsync(Session& s, const msg::Request& r, bool datasync);
Co<Outcome> fallocate(Session& s, const msg::Request& r, const msg::op::Fallocate& op);
Co<Outcome> lseek(Session& s, const msg::Request& r, const msg::op::Lseek& op);

Co<Outcome> mknod(Session& s, const msg::Request& r, const msg::op::MakeNode& op);
Co<Outcome> mkdir(Session& s, const msg::Request& r, const msg::op::MakeDir& op);
Co<Outcome> unlink(Session& s, const msg::Request& r, bool directory);
Co<Outcome> symlink(Session& s, const msg::Request& r, const msg::op::Symlink& op);
Co<Outcome> readlink(Session& s, const msg::Request& r);
Co<Outcome> rename(Session& s, const msg::Request& r, const msg::op::Rename& op);
Co<Outcome> link(Session& s, const msg::Request& r, const msg::op::Link& op);
Co<Outcome> opendir(Session& s, const msg::Request& r);
Co<Outcome> readdir(Session& s, const msg::Request& r, const msg::op::ReadDir& op);
Co<Outcome> releasedir(Session& s, const msg::Request& r);

Co<Outcome> setxattr(Session& s, const msg::Request& r, const msg::op::SetXattr& op, Bytes& value);
Co<Outcome> getxattr(Session& s, const msg::Request& r, const msg::op::GetXattr& op);
Co<Outcome> listxattr(Session& s, const msg::Request& r, const msg::op::ListXattr& op);
Co<Outcome> removexattr(Session& s, const msg::Request& r);

Co<Outcome> getlk(Session& s, const msg::Request& r, const msg::op::GetLock& op);
Co<Outcome> setlk(Session& s, const msg::Request& r, const msg::op::SetLock& op);
Co<Outcome> flock(Session& s, const msg::Request& r, const msg::op::Flock& op);
// flush and release drop the locks a close ends (ops_lock.cpp).
void dropLocksOnFlush(OpenFile& file, std::uint64_t lockOwner);
void dropLocksOnRelease(OpenFile& file);

Co<Outcome> sectorRead(Session& s, const msg::op::SectorRead& op);
Co<Outcome> sectorWrite(Session& s, const msg::op::SectorWrite& op, Bytes& data);
Co<Outcome> sectorFlush(Session& s);
// sectorTrim frees the range; sectorWriteZeroes keeps it allocated where the host file
// system can, and frees it where it cannot. Both read back as zeros.
Co<Outcome> sectorDiscard(Session& s, const char* op, std::uint64_t offset, std::uint64_t length,
                          bool keepAllocated);
}  // namespace ops

// ---- helpers the handlers share (operations.cpp) ---------------------------------------------

Outcome failure(int error);
Outcome success(msg::Body body = msg::body::None{});
// An outcome known before any I/O, as an awaitable.
Co<Outcome> immediately(Outcome outcome);

msg::Attr toAttr(const struct statx& st);

// "/proc/self/fd/N": how a host call reaches the file behind an O_PATH descriptor.
std::string procPath(int fd);

// The node a request names, or ESTALE if the client holds no such node.
Result<NodeRef> findNode(Session& s, msg::NodeId id);
// The directory node a request names, and its `name` checked to be one plain component.
Result<NodeRef> findParent(Session& s, const msg::Request& r);
// findParent for an operation that makes an entry (and so a node): ENFILE before anything
// is made when the connection holds as many nodes as it may.
Result<NodeRef> findParentForNewEntry(Session& s, const msg::Request& r);
// The open file or directory a request names, or EBADF.
Result<OpenFileRef> findHandle(Session& s, msg::HandleId id, bool directory);

// A system call the session makes inline when its files are in memory (Session::inMemory):
// io_uring cannot tell that tmpfs never waits for a device (tmpfs has no RWF_NOWAIT), so it
// hands every such call to a worker thread, two thread switches for a few microseconds of
// work. Elsewhere through the ring. `call` returns what the system call does (-1 and
// errno on failure); `prep` fills the SQE of the same call. Yields the result or a
// negative errno, like a ring operation.
template <class Call, class Prep>
Co<int> inMemoryOrRing(Session& s, Call call, Prep prep) {
  if (s.inMemory()) {
    const long result = call();
    co_return result < 0 ? -errno : static_cast<int>(result);
  }
  co_return co_await s.ring().op(std::move(prep));
}

// The same for a call the blocking pool would make: `job` returns an errno (or 0).
template <class Job>
Co<int> inMemoryOrPool(Session& s, Job job) {
  if (s.inMemory()) co_return job();
  co_return co_await s.pool().run(std::move(job));
}

// Up to `size` bytes of `fd` from `offset`, spliced into a pipe of the session's pool rather
// than copied (pipes.h); fewer only at the end of the file. None, for the caller to copy
// instead, when the read is small, no pipe is free or large enough, or the file cannot be
// spliced from.
Co<Result<std::optional<PipedBytes>>> readIntoPipe(Session& s, int fd, std::uint64_t offset,
                                                   std::size_t size);

// statx of an O_PATH descriptor (inMemoryOrRing).
Co<Result<struct statx>> statNode(Session& s, int fd);

// For an open that must yield a regular file (create, open), made with O_NONBLOCK so that
// neither a FIFO without a writer nor a lease break can hold the loop thread or a ring
// worker: `fd` (a descriptor or a negative errno) with O_NONBLOCK cleared again, or
// -EINVAL (and the descriptor closed) when it is not a regular file, as open refuses.
int regularOrClosed(int fd);

// openat2 made inline when the kernel can resolve `name` from its caches alone
// (RESOLVE_CACHED, which fails with EAGAIN rather than block), else through the ring.
// Yields the descriptor or a negative errno, like a ring operation.
Co<int> openat2Cached(Session& s, int dirFd, const char* name, open_how how);

// Resolves `name` in `parent` confined to the export (openat2, RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV, never following a final symlink), and counts a
// lookup of the node it names.
Co<Result<msg::Entry>> lookupName(Session& s, const Node& parent, const std::string& name);

// Gives a newly made entry the owner the export's policy names: the enclave caller's ids
// (passthrough) or the export's squash ids. In a set-group-ID directory the group stays the
// directory's, as the kernel made it.
Co<Result<void>> applyOwnerPolicy(Session& s, const Node& parent, const std::string& name,
                                  const msg::Caller& caller);

// Mode bits a client may set on the host: never set-user-ID, and set-group-ID only where
// it grants no privilege: on directories ("inherit the group") and on files the group may not
// execute.
std::uint32_t sanitizeMode(std::uint32_t mode);

// Clears the set-user-ID bit of the regular file `fd` refers to, and its set-group-ID bit
// when the group may execute it: what a write or truncate by a process without CAP_FSETID
// does. Made before every write, truncate, O_TRUNC open and fallocate, whoever the enclave's
// caller was: a root server has CAP_FSETID, so the kernel would keep the bits, and the
// enclave is not trusted to say when they may stay (Request.killSetId is ignored). Judged by
// the file as it is on the host; yields an errno (or 0).
Co<int> clearSetIdBits(Session& s, int fd);

}  // namespace enclavefs::host
