// The basic file system's FUSE operation table, and the session set-up it asks the kernel for.
#include "common/hard_limits.h"
#include "enclave-fs/basic_fs.h"

namespace enclavefs::enclave {
namespace {

void init(void* userdata, fuse_conn_info* conn) {
  auto& fs = *static_cast<BasicFs*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_ASYNC_READ);
  // The kernel drops cached pages when the host reports a changed mtime or size.
  want(FUSE_CAP_AUTO_INVAL_DATA);
  // Locks are held on the host, so they exclude other enclaves and host processes too.
  want(FUSE_CAP_POSIX_LOCKS);
  want(FUSE_CAP_FLOCK_LOCKS);
  // Writes go through to the host as they are made: other clients and host processes
  // share the files, so the enclave must not hold dirty pages back.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Set-ID bits are cleared by the host when the kernel marks a request for it
  // (set_id_bits.h: FUSE_HANDLE_KILLPRIV_V2, which libfuse cannot ask for itself), or else
  // by the enclave's kernel; never on every write as the older FUSE_HANDLE_KILLPRIV would.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  // Requests are read whole through set_id_bits' hook, never spliced past it.
  conn->want &= ~FUSE_CAP_SPLICE_READ;
  conn->max_write = std::min(fs.connection().welcome().maxWrite, limits::kMaxIoBytes);
  conn->max_background = 64;
}

constexpr fuse_lowlevel_ops makeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = init;
  ops.lookup = fs::lookup;
  ops.forget = fs::forget;
  ops.forget_multi = fs::forgetMulti;
  ops.getattr = fs::getattr;
  ops.setattr = fs::setattr;
  ops.readlink = fs::readlink;
  ops.mknod = fs::mknod;
  ops.mkdir = fs::mkdir;
  ops.unlink = fs::unlink;
  ops.rmdir = fs::rmdir;
  ops.symlink = fs::symlink;
  ops.rename = fs::rename;
  ops.link = fs::link;
  ops.open = fs::open;
  ops.read = fs::read;
  ops.write = fs::write;
  ops.flush = fs::flush;
  ops.release = fs::release;
  ops.fsync = fs::fsync;
  ops.opendir = fs::opendir;
  ops.readdir = fs::readdir;
  ops.releasedir = fs::releasedir;
  ops.fsyncdir = fs::fsyncdir;
  ops.statfs = fs::statfs;
  ops.setxattr = fs::setxattr;
  ops.getxattr = fs::getxattr;
  ops.listxattr = fs::listxattr;
  ops.removexattr = fs::removexattr;
  ops.create = fs::create;
  ops.fallocate = fs::fallocate;
  ops.readdirplus = fs::readdirplus;
  ops.lseek = fs::lseek;
  ops.getlk = fs::getlk;
  ops.setlk = fs::setlk;
  ops.flock = fs::flock;
  return ops;
}

constexpr fuse_lowlevel_ops kOperations = makeOperations();

}  // namespace

const fuse_lowlevel_ops& basicOperations() { return kOperations; }

}  // namespace enclavefs::enclave
