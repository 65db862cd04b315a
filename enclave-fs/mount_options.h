// The -o options of enclavefs-mount. Basic mounts are always nosuid and nodev, and noexec
// unless `exec` is given: the host chooses every byte and mode bit of the files. Block mounts
// are nosuid and nodev, and exec unless `noexec` is given: the enclave wrote every file on
// them itself.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/result.h"
#include "enclave-fs/basic_fs.h"
#include "enclave-fs/mount_config.h"

namespace enclavefs::enclave {

struct MountOptions {
  bool readOnly = false;
  std::optional<bool> exec;  // unset: the mount kind's default
  bool debug = false;
  std::optional<double> entryTimeout;  // seconds; unset: chosen by cacheTimeouts()
  std::optional<double> attrTimeout;
  FsPolicy policy;
  // Every write() waits for the host's answer, instead of write-behind (write_behind.h).
  bool writeThrough = false;
  double requestTimeoutSeconds = 60;
  unsigned maxThreads = 4;
  // How long the thread that receives the host's answers, and a FUSE worker that has just
  // answered a request, keep looking for the next message before they sleep (busy_poll.h);
  // 0: they sleep at once.
  unsigned busyPollMicros = 50;
  // The first option given that only a basic mount understands (symlinks, entry_timeout,
  // attr_timeout, write_through), so a block mount can refuse it by name.
  std::optional<std::string> basicOnlyOption;

  // What the kernel may cache for how long. A host that pushes changes keeps long timeouts
  // correct; without it, changes show within a second.
  CacheTimeouts cacheTimeouts(bool hostPushesChanges) const;

  // The option string handed to the kernel through libfuse.
  std::string kernelOptions(const std::string& exportName) const;
};

// One mount, as the command line (or a configuration entry) asks for it.
struct MountRequest {
  Address host;
  std::string name;  // the export (basic) or volume (block) on the host
  std::string mountPoint;
  MountOptions options;
  ForceMount forceMount = 0;  // what may already be at mountPoint (force_mount.h)
  bool foreground = false;
};

// Parses "a,b=c,..."; the error names the option that is wrong.
Result<MountOptions, std::string> parseMountOptions(const std::vector<std::string>& groups);

}  // namespace enclavefs::enclave
