#include "enclave-fs/basic_fs.h"

#include <cerrno>

namespace enclavefs::enclave {

BasicFs::BasicFs(Connection& connection, CachePolicy cache, FsPolicy policy,
                 Invalidator& invalidator)
    : connection_(connection),
      cache_(cache),
      policy_(policy),
      invalidator_(invalidator),
      dirAttrs_(std::chrono::duration<double>(cache.timeouts.attr)),
      completeDirs_(std::chrono::duration<double>(cache.timeouts.entry),
                    [this](std::vector<msg::op::ForgetItem> held) { giveBackLater(std::move(held)); }),
      listedDirs_(std::chrono::duration<double>(cache.timeouts.entry),
                  [this](std::vector<msg::op::ForgetItem> held) { giveBackLater(std::move(held)); }),
      log_(logger("mount")) {
  nodes_.addRoot(connection.welcome().root.mode);
}

msg::Request BasicFs::request(fuse_req_t req, fuse_ino_t node, msg::Op op, const char* name,
                              msg::HandleId handle) const {
  msg::Request r;
  r.node = node;
  r.handle = handle;
  if (name != nullptr) r.name = name;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  r.caller = {ctx->uid, ctx->gid};
  r.op = std::move(op);
  return r;
}

void BasicFs::giveBackLater(std::vector<msg::op::ForgetItem> items) {
  invalidator_.later([this, items = std::move(items)]() mutable { forgetOnHost(std::move(items)); });
}

void BasicFs::closeOnHostLater(msg::NodeId node, msg::HandleId handle, msg::Op op) {
  msg::Request r;
  r.node = node;
  r.handle = handle;
  r.op = std::move(op);
  invalidator_.later([this, r = std::move(r)] { send(r, [](Result<Answer>) {}); });
}

void BasicFs::forgetOnHost(std::vector<msg::op::ForgetItem> items) {
  msg::Request r;
  r.op = msg::op::Forget{std::move(items)};
  connection_.post(r);
}

void BasicFs::keepDirAttrs(const std::vector<msg::NodeAttr>& attrs) {
  if (!cache_.hostPushesChanges) return;
  std::size_t refused = 0;
  std::string firstRefusal;
  for (const msg::NodeAttr& a : attrs) {
    // Only for directories the kernel holds: a host must not fill the cache with nodes it
    // never handed out, or with attributes for a node the kernel will learn as a file.
    if (nodes_.typeOf(a.node) != S_IFDIR) continue;
    Check valid = checkAttr(a.attr);
    if (valid && (a.attr.mode & S_IFMT) != S_IFDIR) valid = Fail{std::string("not a directory")};
    if (valid) {
      dirAttrs_.store(a.node, a.attr);
    } else {
      dirAttrs_.drop(a.node);
      if (refused++ == 0)
        firstRefusal = "directory " + std::to_string(a.node) + ": " + valid.error();
    }
  }
  // One line a frame, whatever the host puts in it (up to thousands of attributes).
  if (refused > 0) {
    log_->error("refused the host's attributes of {} director{} ({}{})", refused,
                refused == 1 ? "y" : "ies", firstRefusal, refused > 1 ? ", and others" : "");
  }
}

std::optional<msg::Attr> BasicFs::cachedDirAttr(msg::NodeId node) const {
  if (!cache_.hostPushesChanges || nodes_.typeOf(node) != S_IFDIR) return std::nullopt;
  return dirAttrs_.find(node);
}

int BasicFs::refuse(const char* op, const std::string& why) const {
  // `why` may quote host-chosen bytes.
  log_->error("refused the host's reply to {}: {}", op, printable(why, 300));
  return EIO;
}

struct stat BasicFs::statOf(const msg::Attr& a) const {
  struct stat st {};
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_rdev = a.rdev;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_blksize = a.blksize;
  st.st_atim = {static_cast<time_t>(a.atime.sec), static_cast<long>(a.atime.nsec)};
  st.st_mtim = {static_cast<time_t>(a.mtime.sec), static_cast<long>(a.mtime.nsec)};
  st.st_ctim = {static_cast<time_t>(a.ctime.sec), static_cast<long>(a.ctime.nsec)};
  return st;
}

fuse_entry_param BasicFs::entryParam(const msg::Entry& entry) const {
  fuse_entry_param e{};
  e.ino = entry.node;
  e.generation = entry.generation;
  e.attr = statOf(entry.attr);
  e.attr_timeout = cache_.timeouts.attr;
  e.entry_timeout = cache_.timeouts.entry;
  return e;
}

void replyStatus(BasicFs& fs, fuse_req_t req, const char* op, const Result<Answer>& answer) {
  fs.keepDirAttrs(answer);
  auto body = expect<msg::body::None>(fs, op, answer);
  fuse_reply_err(req, body ? 0 : body.error().value);
}

void replyEntry(BasicFs& fs, fuse_req_t req, const char* op, const Result<Answer>& answer,
                std::uint32_t expectedType, const EntryAccepted& accepted) {
  fs.keepDirAttrs(answer);
  auto entry = expect<msg::Entry>(fs, op, answer);
  if (!entry) {
    fuse_reply_err(req, entry.error().value);
    return;
  }
  replyWithEntry(fs, req, op, **entry, expectedType, accepted);
}

void replyWithEntry(BasicFs& fs, fuse_req_t req, const char* op, const msg::Entry& e,
                    std::uint32_t expectedType, const EntryAccepted& accepted) {
  Check valid = expectedType != 0 ? checkEntryType(e, expectedType) : checkEntry(e);
  if (valid) valid = fs.nodes().learn(e);
  if (!valid) {
    // The host counted a lookup the kernel will never forget: give it back.
    fs.giveBackLater({{e.node, 1}});
    fuse_reply_err(req, fs.refuse(op, valid.error()));
    return;
  }
  fs.attrsSeen(e.node);
  if (accepted) accepted(e);
  fuse_entry_param param = fs.entryParam(e);
  if (fuse_reply_entry(req, &param) != 0) {
    // The request was interrupted: the kernel did not take the reference.
    fs.nodes().forget(e.node, 1);
    fs.giveBackLater({{e.node, 1}});
  }
}

}  // namespace enclavefs::enclave
