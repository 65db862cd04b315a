#include "enclave-fs/config_mounts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/log.h"
#include "enclave-fs/block_mount.h"
#include "enclave-fs/force_mount.h"
#include "enclave-fs/run_tool.h"
#include "enclave-fs/program.h"

namespace enclavefs::enclave {
namespace {

// What fail() puts before a message, to take it off a failed entry's error line.
const std::string kErrorPrefix = std::string(kProgram) + ": error: ";

// "mounts[1] 'db' (image.yaml:7) on /data"
std::string entryName(const MountConfig& config, std::size_t index) {
  const MountEntry& entry = config.mounts[index];
  return "mounts[" + std::to_string(index) + "] '" + printable(entry.name) + "' (" + entry.origin +
         ") on " + entry.mountPath;
}

std::string selfPath() {
  std::string path(4096, '\0');
  ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size());
  if (n <= 0) return kProgram;
  path.resize(static_cast<std::size_t>(n));
  return path;
}

// The command line that mounts `entry`.
std::vector<std::string> commandFor(const MountConfig& config, const MountEntry& entry,
                                    const ConfigRun& run) {
  std::vector<std::string> argv = {kProgram, "--host", config.host.toString(),
                                   entry.type == MountEntry::Type::block ? "--volume" : "--export",
                                   entry.name};
  if (entry.forceMount != 0) argv.insert(argv.end(), {"--force-mount", forceMountList(entry.forceMount)});
  std::string options = entry.readOnly ? "ro" : "rw";
  if (entry.exec) options += *entry.exec ? ",exec" : ",noexec";
  if (entry.followSymlinks) options += *entry.followSymlinks ? ",symlinks=follow" : ",symlinks=inside";
  argv.insert(argv.end(), {"-o", options});
  if (!run.logLevel.empty()) argv.insert(argv.end(), {"--log-level", run.logLevel});
  if (!run.logFile.empty()) argv.insert(argv.end(), {"--log-file", run.logFile});
  argv.push_back(entry.mountPath);
  return argv;
}

bool isMountPoint(const std::string& path) {
  struct statx st;
  return ::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &st) == 0 &&
         (st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
         (st.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

// Unmounts one entry (if mounted) and removes its path if the mount made it. False on failure
// (already reported).
bool unmountEntry(const MountEntry& entry) {
  bool ok = true;
  if (isMountPoint(entry.mountPath)) ok = unmountMountPoint(entry.mountPath) == 0;
  // Without forceMount the path did not exist before the mount: take it away again, unless
  // something was put there since (rmdir of a non-empty directory fails, and so it stays).
  if (ok && entry.forceMount == 0) {
    struct stat st;
    if (::lstat(entry.mountPath.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) {
        ::rmdir(entry.mountPath.c_str());
      } else if (S_ISREG(st.st_mode) && st.st_size == 0) {
        ::unlink(entry.mountPath.c_str());
      }
    }
  }
  return ok;
}

}  // namespace

int mountFromConfig(const MountConfig& config, const ConfigRun& run) {
  const std::string self = selfPath();
  for (std::size_t i = 0; i < config.mounts.size(); ++i) {
    auto finished = runProgram(self, commandFor(config, config.mounts[i], run));
    std::string why;
    if (!finished) {
      why = finished.error();
    } else if (!finished->succeeded) {
      why = finished->lastErrorLine;
      if (why.starts_with(kErrorPrefix)) why.erase(0, kErrorPrefix.size());
      if (why.empty()) why = "the mount process " + finished->how;
    } else {
      continue;
    }
    fail(entryName(config, i) + ": " + why);
    for (std::size_t j = i; j-- > 0;) {
      if (!unmountEntry(config.mounts[j])) fail("could not undo " + entryName(config, j));
    }
    return 1;
  }
  return 0;
}

int unmountFromConfig(const MountConfig& config) {
  int status = 0;
  for (std::size_t j = config.mounts.size(); j-- > 0;) {
    if (!unmountEntry(config.mounts[j])) status = 1;
  }
  return status;
}

}  // namespace enclavefs::enclave
