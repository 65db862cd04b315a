// lookup, forget, getattr, setattr, statfs.
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>

#include "common/hard_limits.h"
#include "enclave-fs/basic_fs.h"
#include "enclave-fs/set_id_bits.h"

namespace enclavefs::enclave::fs {
namespace {

void replyAttr(BasicFs& fs, fuse_req_t req, fuse_ino_t ino, const char* op,
               const Result<Answer>& answer) {
  auto attr = expect<msg::Attr>(fs, op, answer);
  if (!attr) {
    fuse_reply_err(req, attr.error().value);
    return;
  }
  Check valid = checkAttr(**attr);
  if (valid) valid = fs.nodes().agrees(ino, **attr);
  if (!valid) {
    fuse_reply_err(req, fs.refuse(op, valid.error()));
    return;
  }
  if (((*attr)->mode & S_IFMT) == S_IFDIR) fs.dirAttrs().store(ino, **attr);
  fs.attrsSeen(ino);
  struct stat st = fs.statOf(**attr);
  fuse_reply_attr(req, &st, fs.timeouts().attr);
}

}  // namespace

void lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (std::strlen(name) > limits::kMaxNameBytes) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  BasicFs& fs = BasicFs::of(req);
  // A negative entry: the kernel answers this name itself until the entry timeout, or until
  // the host reports the name created.
  auto replyAbsent = [&fs, req] {
    fuse_entry_param none{};
    none.entry_timeout = fs.timeouts().entry;
    fuse_reply_entry(req, &none);
  };
  if (fs.hostPushesChanges()) {
    if (fs.completeDirs().surelyAbsent(parent, name)) {
      replyAbsent();
      return;
    }
    if (auto listed = fs.listedDirs().take(parent, name)) {
      replyWithEntry(fs, req, "lookup", *listed);
      return;
    }
  }
  // Made here: `req` is answered before a listing this lookup may start is sent.
  msg::Request listing = fs.request(req, parent, msg::op::OpenDir{});
  fs.send(fs.request(req, parent, msg::op::Lookup{}, name),
          [&fs, req, replyAbsent, listing](Result<Answer> a) {
            if (a && a->reply.error == ENOENT && fs.hostPushesChanges()) {
              replyAbsent();
              return;
            }
            // Only names found, and believed, count: a listing answers no missing ones.
            replyEntry(fs, req, "lookup", a, 0, [&fs, &listing](const msg::Entry&) {
              if (fs.hostPushesChanges() && fs.listedDirs().foundOnHost(listing.node)) {
                fs.invalidator().later([&fs, listing] { listForLookups(fs, listing); });
              }
            });
          });
}

void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  BasicFs& fs = BasicFs::of(req);
  fs.nodes().forget(ino, nlookup);
  if (fs.nodes().typeOf(ino) || fs.mustGiveBack(ino, nlookup)) fs.forgetOnHost({{ino, nlookup}});
  fuse_reply_none(req);
}

void forgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  BasicFs& fs = BasicFs::of(req);
  std::vector<msg::op::ForgetItem> items;
  items.reserve(std::min(count, limits::kMaxForgetItems));
  for (size_t i = 0; i < count; ++i) {
    const fuse_ino_t ino = forgets[i].ino;
    fs.nodes().forget(ino, forgets[i].nlookup);
    if (!fs.nodes().typeOf(ino) && !fs.mustGiveBack(ino, forgets[i].nlookup)) continue;
    items.push_back({ino, forgets[i].nlookup});
    if (items.size() == limits::kMaxForgetItems) {
      fs.forgetOnHost(std::move(items));
      items.clear();
    }
  }
  if (!items.empty()) fs.forgetOnHost(std::move(items));
  fuse_reply_none(req);
}

void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  BasicFs& fs = BasicFs::of(req);
  if (auto cached = fs.cachedDirAttr(ino)) {
    struct stat st = fs.statOf(*cached);
    fuse_reply_attr(req, &st, fs.timeouts().attr);
    return;
  }
  fs.send(fs.request(req, ino, msg::op::GetAttr{}),
          [&fs, req, ino](Result<Answer> a) { replyAttr(fs, req, ino, "getattr", a); });
}

void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int toSet, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  fs.modifying(ino);
  msg::op::SetAttr op;
  if (toSet & FUSE_SET_ATTR_MODE) {
    op.valid |= msg::op::kMode;
    op.mode = attr->st_mode;
  }
  if (toSet & FUSE_SET_ATTR_UID) {
    op.valid |= msg::op::kUid;
    op.uid = attr->st_uid;
  }
  if (toSet & FUSE_SET_ATTR_GID) {
    op.valid |= msg::op::kGid;
    op.gid = attr->st_gid;
  }
  if (toSet & FUSE_SET_ATTR_SIZE) {
    op.valid |= msg::op::kSize;
    op.size = static_cast<std::uint64_t>(attr->st_size);
  }
  if (toSet & FUSE_SET_ATTR_ATIME_NOW) {
    op.valid |= msg::op::kAtimeNow;
  } else if (toSet & FUSE_SET_ATTR_ATIME) {
    op.valid |= msg::op::kAtime;
    op.atime = {attr->st_atim.tv_sec, static_cast<std::uint32_t>(attr->st_atim.tv_nsec)};
  }
  if (toSet & FUSE_SET_ATTR_MTIME_NOW) {
    op.valid |= msg::op::kMtimeNow;
  } else if (toSet & FUSE_SET_ATTR_MTIME) {
    op.valid |= msg::op::kMtime;
    op.mtime = {attr->st_mtim.tv_sec, static_cast<std::uint32_t>(attr->st_mtim.tv_nsec)};
  }
  msg::Request request = fs.request(req, ino, op, nullptr, fi != nullptr ? fi->fh : 0);
  request.killSetId = set_id_bits::requested(set_id_bits::Marked::setattr, ino);
  fs.send(request, [&fs, req, ino](Result<Answer> a) { replyAttr(fs, req, ino, "setattr", a); });
}

void statfs(fuse_req_t req, fuse_ino_t ino) {
  BasicFs& fs = BasicFs::of(req);
  fs.send(fs.request(req, ino, msg::op::StatFs{}), [&fs, req](Result<Answer> a) {
    auto st = expect<msg::body::StatFs>(fs, "statfs", a);
    if (!st) {
      fuse_reply_err(req, st.error().value);
      return;
    }
    if (auto valid = checkStatFs(**st); !valid) {
      fuse_reply_err(req, fs.refuse("statfs", valid.error()));
      return;
    }
    struct statvfs out {};
    out.f_bsize = (*st)->bsize;
    out.f_frsize = (*st)->frsize;
    out.f_blocks = (*st)->blocks;
    out.f_bfree = (*st)->bfree;
    out.f_bavail = (*st)->bavail;
    out.f_files = (*st)->files;
    out.f_ffree = (*st)->ffree;
    out.f_namemax = (*st)->namemax;
    fuse_reply_statfs(req, &out);
  });
}

}  // namespace enclavefs::enclave::fs
