// The -o options of enclavefs-mount. Basic mounts are always nosuid and nodev, and noexec
// unless `exec` is given: the host chooses every byte and mode bit of the files.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "enclave-fs/basic_fs.h"

namespace enclavefs::enclave {

struct MountOptions {
  bool readOnly = false;
  bool exec = false;
  bool debug = false;
  std::optional<double> entryTimeout;  // seconds; unset: chosen by cacheTimeouts()
  std::optional<double> attrTimeout;
  FsPolicy policy;
  double requestTimeoutSeconds = 60;
  unsigned maxThreads = 4;

  // What the kernel may cache for how long. A host that pushes changes keeps long timeouts
  // correct; without it, changes show within a second.
  CacheTimeouts cacheTimeouts(bool hostPushesChanges) const;

  // The option string handed to the kernel through libfuse.
  std::string kernelOptions(const std::string& exportName) const;
};

// Parses "a,b=c,..."; the error names the option that is wrong.
Result<MountOptions, std::string> parseMountOptions(const std::vector<std::string>& groups);

}  // namespace enclavefs::enclave
