#include "enclave-fs/block_mount.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "common/hard_limits.h"
#include "common/log.h"
#include "common/volume_contents.h"
#include "enclave-fs/background.h"
#include "enclave-fs/block_fs.h"
#include "enclave-fs/connection.h"
#include "enclave-fs/force_mount.h"
#include "enclave-fs/fuse_device.h"
#include "enclave-fs/fuse_session.h"
#include "enclave-fs/loop_device.h"
#include "enclave-fs/run_tool.h"
#include "enclave-fs/program.h"

namespace enclavefs::enclave {
namespace {


// Where the block mount keeps its lock and serves its FUSE file. ENCLAVEFS_RUN_DIR moves it,
// so that tests can play two enclaves on one machine.
struct RunPaths {
  std::string dir, fuseDir, lockFile, volumeFile;
};

const RunPaths& runPaths() {
  static const RunPaths paths = [] {
    const char* fromEnvironment = std::getenv("ENCLAVEFS_RUN_DIR");
    std::string dir = fromEnvironment != nullptr && *fromEnvironment != '\0' ? fromEnvironment
                                                                             : "/run/enclavefs";
    return RunPaths{dir, dir + "/block", dir + "/block.lock",
                    dir + "/block/" + BlockFs::kFileName};
  }();
  return paths;
}
constexpr auto kUnmountWait = std::chrono::seconds(30);
// Read-ahead of the volume's loop device, in KiB: one request (max_read) per step.
constexpr std::uint32_t kReadAheadKiB = 1024;

std::string errnoText() { return std::strerror(errno); }

// A volume name as an ext4 label, when it can be one as it is.
std::optional<std::string> labelFor(const std::string& name) {
  if (name.size() > 16) return std::nullopt;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return std::nullopt;
    }
  }
  return name;
}

// ---- the one-block-mount lock ---------------------------------------------------------------

// Who holds the block mount, as the holder wrote it: "PID\0VOLUME\0MOUNTPOINT\0".
struct Holder {
  std::string pid, volume, mountPoint;
};

std::optional<Holder> readHolder(int fd) {
  std::string text(8192, '\0');
  ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  if (n <= 0) return std::nullopt;
  text.resize(static_cast<std::size_t>(n));
  std::vector<std::string> fields;
  std::size_t start = 0;
  for (std::size_t nul; (nul = text.find('\0', start)) != std::string::npos; start = nul + 1) {
    fields.push_back(text.substr(start, nul - start));
  }
  if (fields.size() != 3) return std::nullopt;
  return Holder{fields[0], fields[1], fields[2]};
}

void writeHolder(int fd, const Holder& holder) {
  std::string text = holder.pid + '\0' + holder.volume + '\0' + holder.mountPoint + '\0';
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] auto n = ::pwrite(fd, text.data(), text.size(), 0);
  }
}

// A directory of ours under /run: made if missing, and refused if it is anything but a
// directory owned by root (a symlink planted there must not redirect the mount).
Result<void, std::string> ensureDirectory(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Fail{"cannot create " + path + ": " + errnoText()};
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Fail{"cannot stat " + path + ": " + errnoText()};
  if (!S_ISDIR(st.st_mode) || st.st_uid != 0) {
    return Fail{path + " is not a directory owned by root"};
  }
  if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0) {
    return Fail{"cannot set the mode of " + path + ": " + errnoText()};
  }
  return {};
}

// ---- the mount ------------------------------------------------------------------------------

class BlockMount {
 public:
  explicit BlockMount(const MountRequest& request) : request_(request), log_(logger("block")) {}
  int run();

 private:
  Result<void, std::string> takeBlockLock();
  Result<void, std::string> connectAndServeFile();
  Result<void, std::string> attachFormatMount();
  void serveUntilUnmounted();
  void undo();
  int failed(const std::string& message);


  const MountRequest& request_;
  std::shared_ptr<spdlog::logger> log_;
  UniqueFd lockFd_;
  std::unique_ptr<Connection> connection_;
  std::unique_ptr<BlockFs> fs_;
  FuseSession fuse_;
  std::optional<Background> background_;
  std::thread fuseLoop_;
  UniqueFd over_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));  // the FUSE file's last release
  std::optional<LoopDevice> loop_;
  std::optional<MountPath> mountPath_;  // removed with the mount if it created the path
};

Result<void, std::string> BlockMount::takeBlockLock() {
  const RunPaths& paths = runPaths();
  if (auto made = ensureDirectory(paths.dir, 0755); !made) return made;
  lockFd_ = UniqueFd(::open(paths.lockFile.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!lockFd_) return Fail{"cannot open " + paths.lockFile + ": " + errnoText()};
  if (::flock(lockFd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return Fail{"cannot lock " + paths.lockFile + ": " + errnoText()};
    auto holder = readHolder(lockFd_.get());
    if (!holder) return Fail{"only one block mount per enclave, and another is being set up"};
    return Fail{"only one block mount per enclave: volume '" + printable(holder->volume) +
                "' is mounted on " + printable(holder->mountPoint) + " (enclavefs-mount pid " +
                holder->pid + ")"};
  }
  return {};
}

Result<void, std::string> BlockMount::connectAndServeFile() {
  const std::string& fuseDir = runPaths().fuseDir;
  if (auto made = ensureDirectory(fuseDir, 0700); !made) return made;
  // Whatever is mounted there was left by a block mount that died: we hold the lock now.
  while (::umount2(fuseDir.c_str(), MNT_DETACH) == 0) {
  }

  msg::Hello hello;
  hello.version = msg::kProtocolVersion;
  hello.kind = msg::MountKind::block;
  hello.name = request_.name;
  hello.features = msg::kFeatureOrderedWrites;
  auto timeout = std::chrono::milliseconds(
      static_cast<long long>(request_.options.requestTimeoutSeconds * 1000));
  auto connection =
      Connection::open(request_.host, hello, timeout);
  if (!connection) return Fail{connection.error()};
  connection_ = std::move(*connection);
  fs_ = std::make_unique<BlockFs>(*connection_, request_.options.readOnly);

  std::string kernelOptions =
      "fsname=enclavefs-volume,subtype=enclavefs-block,default_permissions,nosuid,nodev,"
      "noexec,max_read=" +
      std::to_string(fs_->maxRead()) + (request_.options.readOnly ? ",ro" : "");
  std::vector<const char*> args = {kProgram, "-o", kernelOptions.c_str()};
  if (request_.options.debug) args.push_back("-d");
  fuse_args fuseArgs = FUSE_ARGS_INIT(static_cast<int>(args.size()), const_cast<char**>(args.data()));
  fuse_.session = fuse_session_new(&fuseArgs, &blockOperations(), sizeof(fuse_lowlevel_ops), fs_.get());
  fuse_opt_free_args(&fuseArgs);
  if (fuse_.session == nullptr) return Fail{std::string("cannot create the FUSE session")};
  if (fuse_session_mount(fuse_.session, fuseDir.c_str()) != 0) {
    return Fail{"cannot mount the volume file on " + fuseDir +
                " (is /dev/fuse available, and are we root?)"};
  }
  fuse_.mounted = true;
  const fuse_device::Hooks hooks{
      .busyPoll = std::chrono::microseconds(request_.options.busyPollMicros)};
  if (!fuse_device::takeOver(fuse_.session, hooks)) {
    return Fail{std::string("cannot take over the FUSE session's I/O")};
  }
  return {};
}

Result<void, std::string> BlockMount::attachFormatMount() {
  const std::string& name = request_.name;
  const bool readOnly = request_.options.readOnly;
  auto loop = LoopDevice::attach(runPaths().volumeFile, fs_->sectorSize(), readOnly);
  if (!loop) return Fail{loop.error()};
  loop_ = std::move(*loop);
  // The loop device now holds the only open of the volume file: its last release is the
  // end of the mount.
  fs_->armLastRelease([this] {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(over_.get(), &one, sizeof one);
  });
  if (!loop_->directIo()) {
    log_->warn("{} does not use direct I/O: every sector is cached twice", loop_->path());
  }
  // Every read the loop device makes is a round trip to the host: read ahead in large steps
  // (the default is 128 KiB).
  if (!loop_->setReadAhead(kReadAheadKiB)) {
    log_->warn("cannot set {}'s read-ahead: {}", loop_->path(), std::strerror(errno));
  }

  std::vector<std::byte> head(kVolumeProbeBytes);
  ssize_t n = ::pread(loop_->fd(), head.data(), head.size(), 0);
  if (n != static_cast<ssize_t>(head.size())) {
    return Fail{"cannot read the start of volume '" + name + "': " +
                (n < 0 ? errnoText() : std::string("short read"))};
  }
  const VolumeContents contents = identifyVolume(head);
  if (contents.kind == VolumeContents::Kind::unknown) {
    return Fail{"volume '" + name + "' holds data that is not an ext4 file system; refusing to "
                "format it (delete and re-create the volume on the host to start afresh)"};
  }
  if (contents.kind == VolumeContents::Kind::blank) {
    if (readOnly) return Fail{"volume '" + name + "' was never formatted, and is mounted read-only"};
    log_->info("volume '{}' was never formatted: making an ext4 file system on it", name);
    // The volume reads as zeros, so mkfs need neither discard nor zero anything.
    std::vector<std::string> mkfs = {"mkfs.ext4", "-q", "-F", "-b", "4096", "-E",
                                     "nodiscard,assume_storage_prezeroed=1"};
    if (auto label = labelFor(name)) mkfs.insert(mkfs.end(), {"-L", *label});
    mkfs.push_back(loop_->path());
    if (auto made = runTool(mkfs); !made) return Fail{"cannot format volume '" + name + "': " + made.error()};
  }

  if (contents.kind == VolumeContents::Kind::ext4 && contents.fileSystemBytes < fs_->size() &&
      !readOnly) {
    // Offline, before the mount: online growth needs CAP_SYS_RESOURCE, which a container or
    // a trimmed enclave may lack, and resize2fs wants a freshly checked file system (exit
    // status 1 of e2fsck means it fixed something, and the file system is now consistent).
    log_->info("volume '{}' grew to {} bytes: growing its file system from {} bytes", name,
               fs_->size(), contents.fileSystemBytes);
    if (auto checked = runTool({"e2fsck", "-f", "-p", loop_->path()}, 1); !checked) {
      return Fail{"cannot check the file system of volume '" + name + "' before growing it: " +
                  checked.error()};
    }
    if (auto grown = runTool({"resize2fs", loop_->path()}); !grown) {
      return Fail{"cannot grow the file system of volume '" + name + "': " + grown.error()};
    }
  }

  // The mount path is checked (and made if absent) right before the mount.
  auto path = MountPath::prepare(request_.mountPoint, request_.forceMount, MountTarget::directory,
                                 "volume '" + name + "'");
  if (!path) return Fail{path.error()};
  mountPath_.emplace(std::move(*path));

  unsigned long flags = MS_NOSUID | MS_NODEV;
  if (readOnly) flags |= MS_RDONLY;
  if (!request_.options.exec.value_or(true)) flags |= MS_NOEXEC;
  if (::mount(loop_->path().c_str(), request_.mountPoint.c_str(), "ext4", flags,
              "errors=remount-ro") != 0) {
    return Fail{"cannot mount the ext4 file system of volume '" + name + "' on " +
                request_.mountPoint + ": " + errnoText() + " (the kernel log says more)"};
  }
  // The mount is the last step, so nothing after it can fail and need it undone. From here
  // only the mounted file system holds the loop device, and it is the user's to unmount:
  // that detaches the device and ends the mount.
  loop_.reset();
  mountPath_->keep();
  return {};
}

// Waits for the end: the FUSE file's last release (someone unmounted the file system), or a
// signal, which unmounts the file system if it is not busy and otherwise keeps serving it
// (pulling the disk from under a mounted ext4 would lose what it has not written).
void BlockMount::serveUntilUnmounted() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  UniqueFd signalFd(::signalfd(-1, &signals, SFD_CLOEXEC));
  for (;;) {
    pollfd fds[2] = {{over_.get(), POLLIN, 0}, {signalFd.get(), POLLIN, 0}};
    if (::poll(fds, signalFd ? 2 : 1, -1) < 0) continue;
    if (fds[0].revents & POLLIN) return;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      [[maybe_unused]] auto n = ::read(signalFd.get(), &info, sizeof info);
      log_->info("signal {}: unmounting {}", info.ssi_signo, request_.mountPoint);
      if (::umount2(request_.mountPoint.c_str(), 0) != 0) {
        log_->warn("cannot unmount {}: {}; still serving it", request_.mountPoint, errnoText());
      }
    }
  }
}

// Takes down whatever the setup built, in reverse order.
void BlockMount::undo() {
  if (loop_) loop_->detach();
  loop_.reset();
  if (fuse_.session != nullptr) fuse_session_exit(fuse_.session);
  if (fuse_.mounted) fuse_session_unmount(fuse_.session);
  fuse_.mounted = false;
  if (fuseLoop_.joinable()) fuseLoop_.join();
  if (connection_) connection_->stop();
  mountPath_.reset();
}

int BlockMount::failed(const std::string& message) {
  undo();
  int status = fail(message);
  if (background_) background_->failed();
  return status;
}

int BlockMount::run() {
  // A first look, before any work; the check that counts is made right before the mount.
  if (auto ok = MountPath::check(request_.mountPoint, request_.forceMount); !ok) return fail(ok.error());
  if (request_.options.basicOnlyOption) {
    return fail("mount option '" + *request_.options.basicOnlyOption +
                "' applies to basic mounts only, not to volume '" + request_.name + "'");
  }
  if (auto locked = takeBlockLock(); !locked) return fail(locked.error());
  if (auto served = connectAndServeFile(); !served) return failed(served.error());

  if (!request_.foreground) {
    background_ = Background::detach([] { ::umount2(runPaths().fuseDir.c_str(), MNT_DETACH); });
  }
  writeHolder(lockFd_.get(), {std::to_string(::getpid()), request_.name, request_.mountPoint});
  // Signals are taken by serveUntilUnmounted, on this thread only.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // This process is in the write-back path of its own file system: memory reclaim must not
  // make its threads wait on that write-back (they would wait on themselves). The flag is
  // inherited by the threads started below; without CAP_SYS_RESOURCE the kernel refuses it
  // (a debug line: stderr is still the user's terminal, which expects one line on failure).
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
    log_->debug("cannot mark the mount process as an I/O flusher ({}): under memory pressure "
                "the volume's write-back could stall", errnoText());
  }
  connection_->start(std::chrono::microseconds(request_.options.busyPollMicros));
  fuseLoop_ = std::thread([this] {
    fuse_.serve(request_.options.maxThreads);
    // However the session ended (the FUSE connection aborted, too), the mount is over.
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(over_.get(), &one, sizeof one);
  });
  if (auto mounted = attachFormatMount(); !mounted) return failed(mounted.error());

  log_->info("mounted volume '{}' from {} on {}", request_.name, request_.host.toString(),
             request_.mountPoint);
  if (background_) background_->ready();
  serveUntilUnmounted();
  undo();
  log_->info("unmounted {}; volume '{}' given back", request_.mountPoint, request_.name);
  return 0;
}

std::string canonical(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return path;
  std::string result(resolved);
  std::free(resolved);
  return result;
}

}  // namespace

int runBlockMount(const MountRequest& request) { return BlockMount(request).run(); }

int unmountMountPoint(const std::string& mountPoint) {
  // Is it the block mount? Its holder's lock says where that is.
  UniqueFd lockFd(::open(runPaths().lockFile.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  std::optional<Holder> holder;
  if (lockFd && ::flock(lockFd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    holder = readHolder(lockFd.get());
    if (holder && canonical(holder->mountPoint) != canonical(mountPoint)) holder.reset();
  }
  if (::umount2(mountPoint.c_str(), 0) != 0) {
    if (errno == EINVAL) return fail(mountPoint + " is not a mount point");
    return fail("cannot unmount " + mountPoint + ": " + errnoText());
  }
  if (!holder) return 0;
  // The chain comes down by itself; the lock is free once the mount process has closed the
  // connection, that is, once the host has the volume back.
  auto deadline = std::chrono::steady_clock::now() + kUnmountWait;
  while (::flock(lockFd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      return fail("unmounted " + mountPoint + ", but the mount process (pid " + holder->pid +
                  ") has not given volume '" + printable(holder->volume) + "' back after " +
                  std::to_string(kUnmountWait.count()) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

}  // namespace enclavefs::enclave
