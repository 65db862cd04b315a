#include "enclave-fs/block_fs.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <ctime>

#include "common/hard_limits.h"
#include "common/log.h"
#include "enclave-fs/reply_check.h"

namespace enclavefs::enclave {
namespace {

constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
constexpr fuse_ino_t kFileIno = 2;
// Nothing about the directory or the file changes while the volume is mounted.
constexpr double kForever = 86400;

timespec now() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

msg::Request sectorRequest(msg::Op op) {
  msg::Request request;
  request.op = std::move(op);
  return request;
}

// Replies to a request whose answer is just success or an errno.
void replyStatus(BlockFs& fs, fuse_req_t req, const char* op, const Result<Answer>& answer) {
  auto none = expect<msg::body::None>(fs, op, answer);
  fuse_reply_err(req, none ? 0 : none.error().value);
}

bool aligned(const BlockFs& fs, std::uint64_t value) { return value % fs.sectorSize() == 0; }

// 0 if the host wrote all `size` bytes, else the errno the write fails with.
int writeOutcome(BlockFs& fs, const Result<Answer>& answer, std::size_t size) {
  auto written = expect<msg::body::Written>(fs, "sectorWrite", answer);
  if (!written) return written.error().value;
  if ((*written)->count != size) {
    return fs.refuse("sectorWrite", "wrote " + std::to_string((*written)->count) + " of " +
                                        std::to_string(size) + " bytes");
  }
  return 0;
}

// At most the protocol's limit, rounded down to whole sectors (the welcome check guarantees
// at least one).
std::uint32_t wholeSectors(std::uint32_t hostLimit, std::uint32_t sectorSize) {
  const std::uint32_t bytes = std::min(hostLimit, limits::kMaxIoBytes);
  return bytes - bytes % sectorSize;
}

// ---- operations -----------------------------------------------------------------------------

void init(void* userdata, fuse_conn_info* conn) {
  auto& fs = *static_cast<BlockFs*>(userdata);
  // Direct I/O from the loop device in flight at once, not one request after another.
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  conn->max_write = fs.maxWrite();
  conn->max_read = fs.maxRead();  // as the mount option says
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto& fs = BlockFs::of(req);
  if (parent != kRootIno || std::string_view(name) != BlockFs::kFileName) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_entry_param entry{};
  entry.ino = kFileIno;
  entry.generation = 1;
  entry.attr = fs.statOf(kFileIno);
  entry.attr_timeout = kForever;
  entry.entry_timeout = kForever;
  fuse_reply_entry(req, &entry);
}

void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st = BlockFs::of(req).statOf(ino);
  fuse_reply_attr(req, &st, kForever);
}

void setattr(fuse_req_t req, fuse_ino_t ino, struct stat*, int toSet, fuse_file_info*) {
  // The volume's size and ownership are the host's to set; only timestamps may be touched,
  // and they are not kept.
  constexpr int kTimes = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                         FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  if ((toSet & ~kTimes) != 0) {
    fuse_reply_err(req, EPERM);
    return;
  }
  struct stat st = BlockFs::of(req).statOf(ino);
  fuse_reply_attr(req, &st, kForever);
}

void statfs(fuse_req_t req, fuse_ino_t) {
  auto& fs = BlockFs::of(req);
  // The loop device takes its discard granularity from the block size here.
  struct statvfs st{};
  st.f_bsize = fs.sectorSize();
  st.f_frsize = fs.sectorSize();
  st.f_blocks = fs.size() / fs.sectorSize();
  st.f_files = 2;
  st.f_namemax = limits::kMaxNameBytes;
  fuse_reply_statfs(req, &st);
}

void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto& fs = BlockFs::of(req);
  if (ino != kFileIno) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (fs.readOnly() && (fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (fi->flags & O_TRUNC) {
    fuse_reply_err(req, EPERM);
    return;
  }
  fs.opened();
  if (fuse_reply_open(req, fi) != 0) fs.released();  // the opener is gone: no release follows
}

void release(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  auto& fs = BlockFs::of(req);
  fuse_reply_err(req, 0);
  // The last release ends the mount: not before the writes on their way are on the host.
  fs.pendingWrites().whenSettled(kFileIno, [&fs](int error) {
    if (error != 0) {
      fs.log().error("a write failed after the volume's last flush ({}): the volume may not "
                     "hold what was written to it",
                     std::strerror(error));
    }
    fs.released();
  });
}

void flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // A close waits for the writes still on their way and reports what they met.
  BlockFs::of(req).pendingWrites().whenSettled(kFileIno,
                                               [req](int error) { fuse_reply_err(req, error); });
}

void read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  auto& fs = BlockFs::of(req);
  const auto offset = static_cast<std::uint64_t>(off);
  if (offset >= fs.size()) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  const std::uint64_t length = std::min<std::uint64_t>(size, fs.size() - offset);
  if (!aligned(fs, offset) || !aligned(fs, length) || length > fs.maxRead()) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  const auto wanted = static_cast<std::uint32_t>(length);
  if (auto kept = fs.readAround().kept(offset, wanted)) {
    fuse_reply_buf(req, reinterpret_cast<const char*>(kept->view.data()), kept->view.size());
    return;
  }
  // The window around the read, or the read itself.
  std::optional<ReadAround::Fetch> window;
  if (fs.maxRead() >= ReadAround::kWindowBytes) window = fs.readAround().around(offset, wanted);
  const std::uint64_t from = window ? window->offset : offset;
  const std::uint32_t count = window ? window->length : wanted;
  fs.connection().call(
      sectorRequest(msg::op::SectorRead{from, count}), {},
      [req, &fs, window, from, count, offset, wanted](Result<Answer> a) {
        auto data = expect<msg::body::Data>(fs, "sectorRead", a);
        const bool whole = data && a->payload.size() == count;
        if (window) fs.readAround().fetched(*window, whole ? a->payload : std::span<const std::byte>{});
        if (!data) {
          fuse_reply_err(req, data.error().value);
        } else if (!whole) {
          fuse_reply_err(req, fs.refuse("sectorRead", "answered " + std::to_string(a->payload.size()) +
                                                          " bytes for a read of " + std::to_string(count)));
        } else {
          auto bytes = a->payload.subspan(offset - from, wanted);
          fuse_reply_buf(req, reinterpret_cast<const char*>(bytes.data()), bytes.size());
        }
      });
}

void write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
           fuse_file_info* fi) {
  auto& fs = BlockFs::of(req);
  const auto offset = static_cast<std::uint64_t>(off);
  if (!aligned(fs, offset) || !aligned(fs, size) || size == 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (offset > fs.size() || size > fs.size() - offset) {
    fuse_reply_err(req, ENOSPC);  // a volume does not grow by writing past its end
    return;
  }
  const bool fua = (fi->flags & (O_DSYNC | O_SYNC)) != 0;
  const std::uint64_t change = fs.readAround().changing(offset, size);
  const std::span data(reinterpret_cast<const std::byte*>(buf), size);
  if (fs.writesBehind() && !fua && fs.connection().alive()) {
    fs.pendingWrites().started(kFileIno);
    fs.connection().call(
        sectorRequest(msg::op::SectorWrite{offset, false}), data,
        [&fs, offset, size, change](Result<Answer> a) {
          fs.readAround().changed(change);
          const int error = writeOutcome(fs, a, size);
          if (error != 0) {
            fs.log().error("a write of {} bytes at {} failed after it was answered ({}); the "
                           "next flush of the volume reports it",
                           size, offset, std::strerror(error));
          }
          fs.pendingWrites().finished(kFileIno, error);
        });
    fuse_reply_write(req, size);
    return;
  }
  fs.connection().call(sectorRequest(msg::op::SectorWrite{offset, fua}), data,
                       [req, &fs, size, change](Result<Answer> a) {
                         fs.readAround().changed(change);
                         if (int error = writeOutcome(fs, a, size); error != 0) {
                           fuse_reply_err(req, error);
                         } else {
                           fuse_reply_write(req, size);
                         }
                       });
}

void fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  auto& fs = BlockFs::of(req);
  // The host runs the flush after the writes sent before it and answers them first, so
  // their errors are known when its answer arrives (and nothing is sent from the receiver
  // thread).
  fs.connection().call(sectorRequest(msg::op::SectorFlush{}), {}, [req, &fs](Result<Answer> a) {
    auto none = expect<msg::body::None>(fs, "sectorFlush", a);
    const int flushError = none ? 0 : none.error().value;
    fs.pendingWrites().whenSettled(kFileIno, [req, flushError](int writeError) {
      fuse_reply_err(req, writeError != 0 ? writeError : flushError);
    });
  });
}

// The loop device discards with a punched hole and zeroes with a zeroed range (or a hole).
void fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info*) {
  auto& fs = BlockFs::of(req);
  const auto offset = static_cast<std::uint64_t>(off);
  const auto length = static_cast<std::uint64_t>(len);
  if (off < 0 || len <= 0 || offset > fs.size() || length > fs.size() - offset) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  auto answer = [req, &fs](const char* op, std::uint64_t change) {
    return [req, &fs, op, change](Result<Answer> a) {
      fs.readAround().changed(change);
      replyStatus(fs, req, op, a);
    };
  };
  // A punched hole must read back as zeros (the loop device also zeroes with it), so both
  // kinds take whole sectors only; the loop device never asks for less.
  if (!aligned(fs, offset) || !aligned(fs, length)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    fs.connection().call(sectorRequest(msg::op::SectorTrim{offset, length}), {},
                         answer("sectorTrim", fs.readAround().changing(offset, length)));
  } else if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
    fs.connection().call(sectorRequest(msg::op::SectorWriteZeroes{offset, length}), {},
                         answer("sectorWriteZeroes", fs.readAround().changing(offset, length)));
  } else {
    fuse_reply_err(req, EOPNOTSUPP);  // a volume is fully sized from the start
  }
}

void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kRootIno) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_reply_open(req, fi);
}

void readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  auto& fs = BlockFs::of(req);
  struct Item {
    const char* name;
    fuse_ino_t ino;
  };
  static constexpr Item kItems[] = {{".", kRootIno}, {"..", kRootIno}, {BlockFs::kFileName, kFileIno}};
  std::string buffer(size, '\0');
  std::size_t used = 0;
  for (off_t i = off; i < static_cast<off_t>(std::size(kItems)); ++i) {
    struct stat st = fs.statOf(kItems[i].ino);
    std::size_t need = fuse_add_direntry(req, buffer.data() + used, size - used, kItems[i].name,
                                         &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buffer.data(), used);
}

void releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

constexpr fuse_lowlevel_ops makeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = init;
  ops.lookup = lookup;
  ops.getattr = getattr;
  ops.setattr = setattr;
  ops.statfs = statfs;
  ops.open = open;
  ops.release = release;
  ops.flush = flush;
  ops.read = read;
  ops.write = write;
  ops.fsync = fsync;
  ops.fallocate = fallocate;
  ops.opendir = opendir;
  ops.readdir = readdir;
  ops.releasedir = releasedir;
  return ops;
}

constexpr fuse_lowlevel_ops kOperations = makeOperations();

}  // namespace

BlockFs::BlockFs(Connection& connection, bool readOnly)
    : connection_(connection),
      size_(connection.welcome().volumeSize),
      sectorSize_(connection.welcome().sectorSize),
      maxRead_(wholeSectors(connection.welcome().maxRead, sectorSize_)),
      maxWrite_(wholeSectors(connection.welcome().maxWrite, sectorSize_)),
      readOnly_(readOnly),
      mountTime_(now()),
      log_(logger("block")),
      readAround_(size_),
      writesBehind_((connection.welcome().features & msg::kFeatureOrderedWrites) != 0) {}

struct stat BlockFs::statOf(fuse_ino_t ino) const {
  struct stat st{};
  st.st_ino = ino;
  st.st_uid = 0;
  st.st_gid = 0;
  st.st_atim = st.st_mtim = st.st_ctim = mountTime_;
  st.st_blksize = static_cast<blksize_t>(sectorSize_);
  if (ino == kFileIno) {
    st.st_mode = S_IFREG | (readOnly_ ? 0400 : 0600);
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(size_);
    st.st_blocks = static_cast<blkcnt_t>(size_ / 512);
  } else {
    st.st_mode = S_IFDIR | 0700;
    st.st_nlink = 2;
  }
  return st;
}

int BlockFs::refuse(const char* op, const std::string& why) const {
  log_->error("refused the host's reply to {}: {}", op, printable(why, 300));
  return EIO;
}

void BlockFs::opened() {
  std::lock_guard lock(openMutex_);
  ++openFiles_;
}

void BlockFs::released() {
  std::function<void()> lastReleased;
  {
    std::lock_guard lock(openMutex_);
    if (openFiles_ > 0) --openFiles_;
    if (openFiles_ == 0) lastReleased = std::move(lastReleased_);
  }
  if (lastReleased) lastReleased();
}

void BlockFs::armLastRelease(std::function<void()> lastReleased) {
  std::lock_guard lock(openMutex_);
  lastReleased_ = std::move(lastReleased);
}

const fuse_lowlevel_ops& blockOperations() { return kOperations; }

}  // namespace enclavefs::enclave
