// mknod, mkdir, unlink, rmdir, symlink, readlink, rename, link, opendir, readdir,
// readdirplus, releasedir, fsyncdir.
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/hard_limits.h"
#include "enclave-fs/basic_fs.h"

namespace enclavefs::enclave::fs {
namespace {

bool nameTooLong(fuse_req_t req, const char* name) {
  if (std::strlen(name) <= limits::kMaxNameBytes) return false;
  fuse_reply_err(req, ENAMETOOLONG);
  return true;
}

// Fills the kernel's buffer with what fits. For readdirplus, every entry the kernel takes
// carries one lookup reference; the host counted one for every entry it sent with attributes,
// so those the kernel did not take (no room, or refused) are given back to the host.
void replyEntries(BasicFs& fs, fuse_req_t req, size_t size, std::uint64_t offset, bool plus,
                  const Result<Answer>& answer) {
  const char* op = plus ? "readdirplus" : "readdir";
  auto entries = expect<msg::body::Entries>(fs, op, answer);
  if (!entries) {
    fuse_reply_err(req, entries.error().value);
    return;
  }
  std::vector<msg::op::ForgetItem> giveBack;
  if (auto valid = checkDirEntries(**entries, offset, plus); !valid) {
    for (const auto& d : (*entries)->items) {
      if (d.entry && d.entry->node != 0) giveBack.push_back({d.entry->node, 1});
    }
    if (!giveBack.empty()) fs.giveBackLater(std::move(giveBack));
    fuse_reply_err(req, fs.refuse(op, valid.error()));
    return;
  }
  std::vector<char> buffer(size);
  std::vector<msg::NodeId> linkedNodes;
  size_t used = 0;
  bool full = false;
  for (const auto& d : (*entries)->items) {
    auto off = static_cast<off_t>(d.nextOffset);
    if (full) {
      if (d.entry) giveBack.push_back({d.entry->node, 1});
      continue;
    }
    size_t added;
    if (plus) {
      fuse_entry_param param{};
      bool linked = false;
      if (d.entry) {
        if (auto known = fs.nodes().learn(*d.entry); known) {
          fs.attrsSeen(d.entry->node);
          param = fs.entryParam(*d.entry);
          linked = true;
        } else {
          fs.refuse(op, known.error());
          giveBack.push_back({d.entry->node, 1});
        }
      }
      if (!linked) {
        param.attr.st_ino = d.ino;
        param.attr.st_mode = d.type << 12;
      }
      added = fuse_add_direntry_plus(req, buffer.data() + used, size - used, d.name.c_str(),
                                     &param, off);
      if (added > size - used) {
        full = true;
        if (linked) {
          fs.nodes().forget(d.entry->node, 1);
          giveBack.push_back({d.entry->node, 1});
        }
        continue;
      }
      if (linked) linkedNodes.push_back(d.entry->node);
    } else {
      struct stat st {};
      st.st_ino = d.ino;
      st.st_mode = d.type << 12;
      added = fuse_add_direntry(req, buffer.data() + used, size - used, d.name.c_str(), &st, off);
      if (added > size - used) {
        full = true;
        continue;
      }
    }
    used += added;
  }
  if (fuse_reply_buf(req, buffer.data(), used) != 0) {
    // Interrupted: the kernel took none of the entries.
    for (msg::NodeId node : linkedNodes) {
      fs.nodes().forget(node, 1);
      giveBack.push_back({node, 1});
    }
  }
  if (!giveBack.empty()) fs.giveBackLater(std::move(giveBack));
}

void readEntries(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                 bool plus) {
  BasicFs& fs = BasicFs::of(req);
  size = std::min<size_t>(size, limits::kMaxReadDirBytes);
  auto offset = static_cast<std::uint64_t>(off);
  msg::op::ReadDir op{offset, static_cast<std::uint32_t>(size), plus};
  fs.send(fs.request(req, ino, op, nullptr, fi->fh), [&fs, req, size, offset, plus](Result<Answer> a) {
    replyEntries(fs, req, size, offset, plus, a);
  });
}

// One readdirplus of a listing at `offset`, `count` entries in. Its reply arrives on the
// receiver thread, which sends nothing itself: the next step goes out from the invalidator
// thread.
void readListing(BasicFs& fs, msg::Request request, std::uint64_t offset, std::size_t count) {
  request.op = msg::op::ReadDir{offset, limits::kMaxReadDirBytes, true};
  fs.send(request, [&fs, request, offset, count](Result<Answer> a) {
    const msg::NodeId dir = request.node;
    auto endListing = [&fs, &request, dir] {
      fs.listedDirs().finished(dir);
      msg::Request release = request;
      release.op = msg::op::ReleaseDir{};
      fs.invalidator().later([&fs, release] { fs.send(release, [](Result<Answer>) {}); });
    };
    auto entries = expect<msg::body::Entries>(fs, "readdirplus", a);
    Check valid = entries ? checkDirEntries(**entries, offset, true) : Check{};
    if (!entries || !valid) {
      std::vector<msg::op::ForgetItem> giveBack;
      if (entries) {
        fs.refuse("readdirplus", valid.error());
        for (const auto& d : (*entries)->items) {
          if (d.entry && d.entry->node != 0) giveBack.push_back({d.entry->node, 1});
        }
      }
      if (!giveBack.empty()) fs.giveBackLater(std::move(giveBack));
      endListing();
      return;
    }
    const std::vector<msg::body::DirEntry>& items = (*entries)->items;
    fs.listedDirs().add(dir, items);
    const std::size_t listed = count + items.size();
    if (items.empty() || listed >= ListedDirs::kMaxEntries) {
      endListing();
      return;
    }
    const std::uint64_t next = items.back().nextOffset;
    fs.invalidator().later([&fs, request, next, listed] { readListing(fs, request, next, listed); });
  });
}

}  // namespace

void listForLookups(BasicFs& fs, msg::Request listing) {
  const msg::NodeId dir = listing.node;
  listing.op = msg::op::OpenDir{};
  listing.noAtime = true;  // the application did not list the directory
  fs.send(listing, [&fs, listing, dir](Result<Answer> a) mutable {
    auto opened = expect<msg::body::Opened>(fs, "opendir", a);
    if (!opened || !checkHandle((*opened)->handle)) {
      fs.listedDirs().finished(dir);
      return;
    }
    listing.handle = (*opened)->handle;
    fs.invalidator().later([&fs, listing] { readListing(fs, listing, 0, 0); });
  });
}

void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  if (nameTooLong(req, name)) return;
  BasicFs& fs = BasicFs::of(req);
  std::uint32_t type = (mode & S_IFMT) != 0 ? (mode & S_IFMT) : S_IFREG;
  msg::op::MakeNode op{mode, static_cast<std::uint32_t>(rdev)};
  fs.mayMake(parent, name);
  fs.send(fs.request(req, parent, op, name),
          [&fs, req, type](Result<Answer> a) { replyEntry(fs, req, "mknod", a, type); });
}

void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (nameTooLong(req, name)) return;
  BasicFs& fs = BasicFs::of(req);
  fs.mayMake(parent, name);
  fs.send(fs.request(req, parent, msg::op::MakeDir{mode}, name), [&fs, req](Result<Answer> a) {
    replyEntry(fs, req, "mkdir", a, S_IFDIR,
               [&fs](const msg::Entry& made) { fs.completeDirs().madeEmpty(made.node); });
  });
}

void unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (nameTooLong(req, name)) return;
  BasicFs& fs = BasicFs::of(req);
  fs.mayRemove(parent);
  fs.send(fs.request(req, parent, msg::op::Unlink{}, name),
          [&fs, req](Result<Answer> a) { replyStatus(fs, req, "unlink", a); });
}

void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (nameTooLong(req, name)) return;
  BasicFs& fs = BasicFs::of(req);
  fs.mayRemove(parent);
  fs.send(fs.request(req, parent, msg::op::RemoveDir{}, name),
          [&fs, req](Result<Answer> a) { replyStatus(fs, req, "rmdir", a); });
}

void symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  if (nameTooLong(req, name)) return;
  if (std::strlen(target) >= limits::kMaxPathBytes) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  BasicFs& fs = BasicFs::of(req);
  fs.mayMake(parent, name);
  fs.send(fs.request(req, parent, msg::op::Symlink{target}, name),
          [&fs, req](Result<Answer> a) { replyEntry(fs, req, "symlink", a, S_IFLNK); });
}

void readlink(fuse_req_t req, fuse_ino_t ino) {
  BasicFs& fs = BasicFs::of(req);
  fs.send(fs.request(req, ino, msg::op::ReadLink{}), [&fs, req, ino](Result<Answer> a) {
    auto target = expect<msg::body::Target>(fs, "readlink", a);
    if (!target) {
      fuse_reply_err(req, target.error().value);
      return;
    }
    if (auto valid = checkLinkTarget((*target)->path); !valid) {
      fuse_reply_err(req, fs.refuse("readlink", valid.error()));
      return;
    }
    if (!fs.policy().followOutwardSymlinks) {
      if (auto inside = checkLinkStaysInside((*target)->path); !inside) {
        logger("mount")->warn("refused symlink (node {}) -> '{}': {}; mount with "
                              "-o symlinks=follow to allow it",
                              ino, printable((*target)->path), inside.error());
        fuse_reply_err(req, EACCES);
        return;
      }
    }
    fuse_reply_readlink(req, (*target)->path.c_str());
  });
}

void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newParent,
            const char* newName, unsigned int flags) {
  if (nameTooLong(req, name) || nameTooLong(req, newName)) return;
  BasicFs& fs = BasicFs::of(req);
  msg::op::Rename op{newParent, newName, flags};
  fs.mayMake(newParent, newName);
  fs.mayRemove(parent);
  if ((flags & RENAME_EXCHANGE) != 0) fs.mayMake(parent, name);
  fs.send(fs.request(req, parent, op, name), [&fs, req](Result<Answer> a) {
    // A directory it moved changed too (ctime, ".."), and no frame names it.
    fs.dirAttrs().clear();
    replyStatus(fs, req, "rename", a);
  });
}

void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newParent, const char* newName) {
  if (nameTooLong(req, newName)) return;
  BasicFs& fs = BasicFs::of(req);
  std::uint32_t type = fs.nodes().typeOf(ino).value_or(0);
  fs.mayMake(newParent, newName);
  fs.send(fs.request(req, ino, msg::op::Link{newParent, newName}),
          [&fs, req, type](Result<Answer> a) { replyEntry(fs, req, "link", a, type); });
}

void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  fuse_file_info info = *fi;
  fs.send(fs.request(req, ino, msg::op::OpenDir{}), [&fs, req, ino, info](Result<Answer> a) mutable {
    auto opened = expect<msg::body::Opened>(fs, "opendir", a);
    if (!opened) {
      fuse_reply_err(req, opened.error().value);
      return;
    }
    if (auto valid = checkHandle((*opened)->handle); !valid) {
      fuse_reply_err(req, fs.refuse("opendir", valid.error()));
      return;
    }
    info.fh = (*opened)->handle;
    if (fuse_reply_open(req, &info) != 0) fs.closeOnHostLater(ino, info.fh, msg::op::ReleaseDir{});
  });
}

void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  readEntries(req, ino, size, off, fi, false);
}

void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  readEntries(req, ino, size, off, fi, true);
}

void releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  fs.send(fs.request(req, ino, msg::op::ReleaseDir{}, nullptr, fi->fh),
          [&fs, req](Result<Answer> a) { replyStatus(fs, req, "releasedir", a); });
}

void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  fs.send(fs.request(req, ino, msg::op::FsyncDir{datasync != 0}, nullptr, fi->fh),
          [&fs, req](Result<Answer> a) { replyStatus(fs, req, "fsyncdir", a); });
}

}  // namespace enclavefs::enclave::fs
