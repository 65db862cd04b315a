// The basic-mount FUSE file system: state shared by its operations, and the helpers that give
// every operation the same shape.
//
// An operation is two halves. The FUSE worker builds a request and hands it to the
// connection (`send`), then returns. The receiver thread later runs the reply half: it turns
// the Answer into the one value the operation needs, through `expect<Body>` and the checks of
// reply_check.h, and makes exactly one fuse_reply_* call. Any failed check answers EIO and
// logs why.
//
// Operations, one file per family:
//   fs_attr.cpp   lookup, forget, getattr, setattr, statfs
//   fs_data.cpp   open, create, read, write, flush, release, fsync, fallocate, lseek
//   fs_dir.cpp    mknod, mkdir, unlink, rmdir, symlink, readlink, rename, link,
//                 opendir, readdir, readdirplus, releasedir, fsyncdir
//   fs_xattr.cpp  setxattr, getxattr, listxattr, removexattr
//   fs_lock.cpp   getlk, setlk, flock
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <functional>
#include <span>
#include <string>
#include <variant>

#include "common/log.h"
#include "common/messages.h"
#include "enclave-fs/complete_dirs.h"
#include "enclave-fs/connection.h"
#include "enclave-fs/dir_attr_cache.h"
#include "enclave-fs/invalidator.h"
#include "enclave-fs/listed_dirs.h"
#include "enclave-fs/node_registry.h"
#include "enclave-fs/open_data.h"
#include "enclave-fs/reply_check.h"
#include "enclave-fs/write_behind.h"

namespace enclavefs::enclave {

struct CacheTimeouts {
  double entry = 1.0;  // seconds the kernel may trust a name lookup
  double attr = 1.0;   // seconds the kernel may trust attributes
};

// What the enclave allows of the host's files beyond what the kernel mount flags say.
struct FsPolicy {
  bool followOutwardSymlinks = false;  // absolute or ".." link targets
};

// How the kernel may cache.
struct CachePolicy {
  CacheTimeouts timeouts;
  // The host's change notifications drop whatever they make stale, so the kernel may keep a
  // file's pages across opens, and remember a failed lookup for the entry timeout.
  bool hostPushesChanges = false;
  // Answer a write once it is sent, before the host has done it (write_behind.h): only
  // with a host that orders requests behind writes.
  bool writeBehind = false;
};

class BasicFs {
 public:
  BasicFs(Connection& connection, CachePolicy cache, FsPolicy policy, Invalidator& invalidator);

  static BasicFs& of(fuse_req_t req) { return *static_cast<BasicFs*>(fuse_req_userdata(req)); }

  // A request on `node` from the caller of `req`.
  msg::Request request(fuse_req_t req, fuse_ino_t node, msg::Op op, const char* name = nullptr,
                       msg::HandleId handle = 0) const;

  void send(const msg::Request& request, ReplyHandler handler,
            std::span<const std::byte> payload = {}) {
    connection_.call(request, payload, std::move(handler));
  }
  // For a request the host may rightly hold as long as it needs (a lock that waits).
  void sendUnbounded(const msg::Request& request, ReplyHandler handler) {
    connection_.call(request, {}, std::move(handler), true);
  }
  // Gives the host back lookup counts (the registry is the caller's to update). From a FUSE
  // worker only: the receiver thread must never send (Connection::send says why).
  void forgetOnHost(std::vector<msg::op::ForgetItem> items);
  // The same, sent from the invalidator thread: for reply handlers, which run on the receiver.
  void giveBackLater(std::vector<msg::op::ForgetItem> items);
  // Closes a handle the kernel never received (a refused or interrupted open, create or
  // opendir), sent from the invalidator thread: for reply handlers. `op` is Release or
  // ReleaseDir.
  void closeOnHostLater(msg::NodeId node, msg::HandleId handle, msg::Op op);

  // Logs why a reply was refused and yields the errno the application sees.
  int refuse(const char* op, const std::string& why) const;

  // Keeps the directory attributes a reply or notification carries (dir_attr_cache.h), if
  // they pass the checks; from the receiver thread only, in frame order.
  void keepDirAttrs(const std::vector<msg::NodeAttr>& attrs);
  void keepDirAttrs(const Result<Answer>& answer) {
    if (answer) keepDirAttrs(answer->reply.dirAttrs);
  }
  // The attributes of directory `node` as the host last sent them, if still fresh.
  std::optional<msg::Attr> cachedDirAttr(msg::NodeId node) const;
  DirAttrCache& dirAttrs() { return dirAttrs_; }
  // Directories whose every entry is known (complete_dirs.h), while the host pushes changes.
  CompleteDirs& completeDirs() { return completeDirs_; }
  // Listings of directories where the host keeps finding names (listed_dirs.h), while the
  // host pushes changes.
  ListedDirs& listedDirs() { return listedDirs_; }
  // A request that may make `name` in `dir` is being sent.
  void mayMake(msg::NodeId dir, const char* name) {
    completeDirs_.mayBePresent(dir, name);
    listedDirs_.nameChanged(dir);
  }
  // A request that may remove or move a name out of `dir` is being sent.
  void mayRemove(msg::NodeId dir) { listedDirs_.nameChanged(dir); }
  // The kernel forgot the node, giving back its last `count` lookups: drops what is kept of
  // it. False if the lookups are held for the host instead (complete_dirs.h).
  bool mustGiveBack(msg::NodeId node, std::uint64_t count) {
    dirAttrs_.drop(node);
    openData_.forgotten(node);
    listedDirs_.nodeChanged(node);
    return !completeDirs_.holdLookups(node, count);
  }

  fuse_entry_param entryParam(const msg::Entry& entry) const;
  struct stat statOf(const msg::Attr& attr) const;

  NodeRegistry& nodes() { return nodes_; }
  const CacheTimeouts& timeouts() const { return cache_.timeouts; }
  bool hostPushesChanges() const { return cache_.hostPushesChanges; }
  bool writeBehind() const { return cache_.writeBehind; }
  WriteBehind& pendingWrites() { return pendingWrites_; }
  // File bytes that came with opens (open_data.h), while the host pushes changes.
  OpenData& openData() { return openData_; }
  // This mount writes, truncates, allocates or otherwise sets attributes of `node`: what is
  // kept of it from before (its first bytes, a listed entry's attributes) may be stale.
  void modifying(msg::NodeId node) {
    openData_.drop(node);
    listedDirs_.nodeChanged(node);
  }
  // A reply gives the kernel attributes of `node`, newer than what may be kept of it.
  void attrsSeen(msg::NodeId node) {
    openData_.drop(node);
    listedDirs_.attrsSeen(node);
  }
  const FsPolicy& policy() const { return policy_; }
  Connection& connection() { return connection_; }
  Invalidator& invalidator() { return invalidator_; }
  spdlog::logger& log() const { return *log_; }

 private:
  Connection& connection_;
  CachePolicy cache_;
  FsPolicy policy_;
  Invalidator& invalidator_;
  NodeRegistry nodes_;
  DirAttrCache dirAttrs_;
  CompleteDirs completeDirs_;
  ListedDirs listedDirs_;
  WriteBehind pendingWrites_;
  OpenData openData_;
  std::shared_ptr<spdlog::logger> log_;
};

// Replies to an operation whose answer is just success or an errno.
void replyStatus(BasicFs& fs, fuse_req_t req, const char* op, const Result<Answer>& answer);

// What an operation does with an entry it believes, before the kernel has it.
using EntryAccepted = std::function<void(const msg::Entry&)>;

// Replies with an entry for a new or looked-up name. `expectedType` (S_IF*) or 0 for any;
// `accepted` runs only if the entry passes every check.
void replyEntry(BasicFs& fs, fuse_req_t req, const char* op, const Result<Answer>& answer,
                std::uint32_t expectedType = 0, const EntryAccepted& accepted = {});
// The same for an entry the host sent earlier, whose host lookup the caller holds.
void replyWithEntry(BasicFs& fs, fuse_req_t req, const char* op, const msg::Entry& entry,
                    std::uint32_t expectedType = 0, const EntryAccepted& accepted = {});

const fuse_lowlevel_ops& basicOperations();

// Operation entry points (FUSE lowlevel signatures).
namespace fs {
// Lists directory `listing.node` into fs.listedDirs() (listed_dirs.h) as `listing.caller`,
// in the background: opendir (leaving the access time alone), then readdirplus until the
// end or ListedDirs::kMaxEntries, releasedir. Not from the receiver thread.
void listForLookups(BasicFs& fs, msg::Request listing);
void lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void forgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets);
void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int toSet, fuse_file_info* fi);
void statfs(fuse_req_t req, fuse_ino_t ino);

void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
           fuse_file_info* fi);
void flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info* fi);
void lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);

void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
void unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
void symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name);
void readlink(fuse_req_t req, fuse_ino_t ino);
void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newParent,
            const char* newName, unsigned int flags);
void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newParent, const char* newName);
void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);

void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags);
void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

void getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock);
void setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock, int sleep);
void flock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op);
}  // namespace fs

}  // namespace enclavefs::enclave
