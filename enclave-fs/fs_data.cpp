// open, create, read, write, flush, release, fsync, fallocate, lseek.
#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "common/hard_limits.h"
#include "enclave-fs/basic_fs.h"
#include "enclave-fs/set_id_bits.h"

namespace enclavefs::enclave::fs {
namespace {

// For a write already answered as whole: 0 if the host wrote all `size` bytes, else the
// errno the next close or fsync reports.
int writeBehindOutcome(BasicFs& fs, const Result<Answer>& answer, std::size_t size) {
  auto written = expect<msg::body::Written>(fs, "write", answer);
  if (!written) return written.error().value;
  if (auto valid = checkDataSize((*written)->count, size); !valid) {
    return fs.refuse("write", valid.error());
  }
  return (*written)->count == size ? 0 : EIO;
}

}  // namespace

void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  fuse_file_info info = *fi;
  msg::Request request = fs.request(req, ino, msg::op::Open{static_cast<std::uint32_t>(fi->flags)});
  request.killSetId = set_id_bits::requested(set_id_bits::Marked::open, ino);
  // A file opened only to be read comes with its first bytes, for the kernel's first read.
  if (fs.hostPushesChanges() && (fi->flags & O_ACCMODE) == O_RDONLY &&
      (fi->flags & (O_DIRECT | O_TRUNC)) == 0) {
    request.openData = fs.openData().asking(ino);
  }
  const std::uint32_t asked = request.openData;
  fs.send(request, [&fs, req, ino, info, asked](Result<Answer> a) mutable {
    auto opened = expect<msg::body::Opened>(fs, "open", a);
    Check valid = opened ? checkHandle((*opened)->handle) : Check{};
    if (opened && valid && a->payload.size() > asked) {
      valid = Fail{"sent " + std::to_string(a->payload.size()) + " bytes of the file where " +
                   std::to_string(asked) + " were asked"};
    }
    if (asked != 0) {
      fs.openData().opened(ino, opened && valid ? std::optional((*opened)->handle) : std::nullopt,
                           opened && valid ? a->payload : std::span<const std::byte>{}, asked);
    }
    if (!opened) {
      fuse_reply_err(req, opened.error().value);
      return;
    }
    if (!valid) {
      if (checkHandle((*opened)->handle))
        fs.closeOnHostLater(ino, (*opened)->handle, msg::op::Release{});
      fuse_reply_err(req, fs.refuse("open", valid.error()));
      return;
    }
    info.fh = (*opened)->handle;
    info.keep_cache = fs.hostPushesChanges() ? 1 : 0;
    if (fuse_reply_open(req, &info) != 0) {
      fs.openData().released(info.fh);
      fs.closeOnHostLater(ino, info.fh, msg::op::Release{});
    }
  });
}

void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  if (std::strlen(name) > limits::kMaxNameBytes) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  BasicFs& fs = BasicFs::of(req);
  fuse_file_info info = *fi;
  msg::op::Create op{mode, static_cast<std::uint32_t>(fi->flags)};
  fs.mayMake(parent, name);
  msg::Request request = fs.request(req, parent, op, name);
  request.killSetId = set_id_bits::requested(set_id_bits::Marked::create, parent);
  fs.send(request, [&fs, req, info](Result<Answer> a) mutable {
    fs.keepDirAttrs(a);
    auto created = expect<msg::body::Created>(fs, "create", a);
    if (!created) {
      fuse_reply_err(req, created.error().value);
      return;
    }
    const msg::Entry& e = (*created)->entry;
    Check valid = checkEntryType(e, S_IFREG);
    if (valid) valid = checkHandle((*created)->handle);
    if (valid) valid = fs.nodes().learn(e);
    if (!valid) {
      fs.giveBackLater({{e.node, 1}});
      fs.closeOnHostLater(e.node, (*created)->handle, msg::op::Release{});
      fuse_reply_err(req, fs.refuse("create", valid.error()));
      return;
    }
    info.fh = (*created)->handle;
    fuse_entry_param param = fs.entryParam(e);
    if (fuse_reply_create(req, &param, &info) != 0) {
      fs.nodes().forget(e.node, 1);
      fs.giveBackLater({{e.node, 1}});
      fs.closeOnHostLater(e.node, info.fh, msg::op::Release{});
    }
  });
}

void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  size = std::min<size_t>(size, limits::kMaxIoBytes);
  if (auto kept = fs.openData().read(fi->fh, ino, static_cast<std::uint64_t>(off),
                                     static_cast<std::uint32_t>(size))) {
    fuse_reply_buf(req, reinterpret_cast<const char*>(kept->view.data()), kept->view.size());
    return;
  }
  msg::op::Read op{static_cast<std::uint64_t>(off), static_cast<std::uint32_t>(size)};
  fs.send(fs.request(req, ino, op, nullptr, fi->fh), [&fs, req, ino, size](Result<Answer> a) {
    auto data = expect<msg::body::Data>(fs, "read", a);
    if (!data) {
      fuse_reply_err(req, data.error().value);
      return;
    }
    if (auto valid = checkDataSize(a->payload.size(), size); !valid) {
      fuse_reply_err(req, fs.refuse("read", valid.error()));
      return;
    }
    if (fs.hostPushesChanges()) fs.openData().wasRead(ino);
    fuse_reply_buf(req, reinterpret_cast<const char*>(a->payload.data()), a->payload.size());
  });
}

void write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
           fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  if (size > limits::kMaxIoBytes) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  fs.modifying(ino);
  msg::op::Write op{static_cast<std::uint64_t>(off), static_cast<std::uint32_t>(fi->flags)};
  msg::Request request = fs.request(req, ino, op, nullptr, fi->fh);
  request.killSetId = set_id_bits::requested(set_id_bits::Marked::write, ino);
  const auto data = std::span(reinterpret_cast<const std::byte*>(buf), size);
  // A writer that opened with O_SYNC, O_DSYNC or O_DIRECT asks for each write's outcome.
  if (fs.writeBehind() && (fi->flags & (O_DSYNC | O_DIRECT)) == 0 && fs.connection().alive()) {
    fs.pendingWrites().started(ino);
    fs.send(
        request,
        [&fs, ino, size](Result<Answer> a) {
          int error = writeBehindOutcome(fs, a, size);
          if (error != 0) {
            fs.log().error("a write to node {} failed after it was answered ({}); the next "
                           "close or fsync of the file reports it",
                           ino, std::strerror(error));
          }
          fs.pendingWrites().finished(ino, error);
        },
        data);
    fuse_reply_write(req, size);
    return;
  }
  fs.send(
      request,
      [&fs, req, size](Result<Answer> a) {
        auto written = expect<msg::body::Written>(fs, "write", a);
        if (!written) {
          fuse_reply_err(req, written.error().value);
          return;
        }
        if (auto valid = checkDataSize((*written)->count, size); !valid) {
          fuse_reply_err(req, fs.refuse("write", valid.error()));
          return;
        }
        fuse_reply_write(req, (*written)->count);
      },
      data);
}

void flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  // A close waits for the file's writes still on their way, so that what it wrote is on
  // the host when close() returns (close-to-open), and reports any error they met.
  // It also ends the closing process's POSIX locks, and the host holds none on a file no
  // process here ever locked: then the mount only waits for the writes' answers.
  if (!fs.nodes().mayHoldLocks(ino)) {
    fs.pendingWrites().whenSettled(ino, [req](int error) { fuse_reply_err(req, error); });
    return;
  }
  // The host runs the flush after the writes sent before it and answers them first, so
  // their errors are known when its answer arrives (and nothing is sent from the receiver
  // thread).
  msg::Request r = fs.request(req, ino, msg::op::Flush{}, nullptr, fi->fh);
  r.lockOwner = fi->lock_owner;  // the closing process's POSIX locks end here
  fs.send(r, [&fs, req, ino](Result<Answer> a) {
    auto body = expect<msg::body::None>(fs, "flush", a);
    int error = fs.pendingWrites().takeError(ino);
    if (error == 0 && !body) error = body.error().value;
    fuse_reply_err(req, error);
  });
}

void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  fs.openData().released(fi->fh);
  fs.send(fs.request(req, ino, msg::op::Release{}, nullptr, fi->fh),
          [&fs, req](Result<Answer> a) { replyStatus(fs, req, "release", a); });
}

void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  // The host runs the fsync after the writes sent before it, and their answers arrive
  // before its own: so any error they met is known when it is answered.
  fs.send(fs.request(req, ino, msg::op::Fsync{datasync != 0}, nullptr, fi->fh),
          [&fs, req, ino](Result<Answer> a) {
            auto body = expect<msg::body::None>(fs, "fsync", a);
            int error = body ? 0 : body.error().value;
            if (int behind = fs.pendingWrites().takeError(ino); error == 0) error = behind;
            fuse_reply_err(req, error);
          });
}

void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  if (offset < 0 || length <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  fs.modifying(ino);
  msg::op::Fallocate op{mode, static_cast<std::uint64_t>(offset), static_cast<std::uint64_t>(length)};
  msg::Request request = fs.request(req, ino, op, nullptr, fi->fh);
  // The kernel marks no fallocate for the host: a caller other than root is taken to lack
  // CAP_FSETID, as on a local file system it almost always does.
  request.killSetId = set_id_bits::hostClears() && fuse_req_ctx(req)->uid != 0;
  fs.send(request, [&fs, req](Result<Answer> a) { replyStatus(fs, req, "fallocate", a); });
}

void lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  BasicFs& fs = BasicFs::of(req);
  if (off < 0 || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  msg::op::Lseek op{static_cast<std::uint64_t>(off), static_cast<std::uint32_t>(whence)};
  fs.send(fs.request(req, ino, op, nullptr, fi->fh), [&fs, req, op](Result<Answer> a) {
    auto offset = expect<msg::body::Offset>(fs, "lseek", a);
    if (!offset) {
      fuse_reply_err(req, offset.error().value);
      return;
    }
    // The next data or hole is never before where the search starts: an answer that goes
    // back would make a program walking the extents loop.
    if ((*offset)->offset > static_cast<std::uint64_t>(INT64_MAX) ||
        (*offset)->offset < op.offset) {
      fuse_reply_err(req,
                     fs.refuse("lseek", "offset " + std::to_string((*offset)->offset) +
                                            " out of range from " + std::to_string(op.offset)));
      return;
    }
    fuse_reply_lseek(req, static_cast<off_t>((*offset)->offset));
  });
}

}  // namespace enclavefs::enclave::fs
