// forceMount: what may already exist at a mount path before a mount covers it.
//
// Without flags the path must not exist, and the mount creates it. Each flag allows exactly
// one kind of thing found there: `empty` an empty directory, `file` a regular file (for a
// single-file export), `full` a directory with entries (unchecked: the least safe), `all`
// anything but a symlink. A symlink is always refused, at the mount path or at any directory
// above it, since it would redirect the mount. The check runs immediately before the mount;
// what it refuses is named with the path, what was found there and the flag that would allow
// it, so a changed base image stops the enclave instead of silently hiding its files (or
// exposing the mount where the application does not expect it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "enclave-fs/mount_config.h"

namespace enclavefs::enclave {

// What lies at a path.
enum class Found { absent, emptyDirectory, fullDirectory, regularFile, symlink, other };

// The flags as --force-mount takes them: "empty,full".
std::string forceMountList(ForceMount flags);

// "a non-empty directory", "a fifo", ...
std::string describe(Found found);

// The flag needed for `found`, or nothing when no flag can allow it (a symlink) or none is
// needed (absent).
std::optional<ForceMountFlag> flagFor(Found found);

// Whether `flags` allow a mount over `found`.
bool allows(ForceMount flags, Found found);

// What the mount puts at the path: a directory (a directory export, a volume) or a regular
// file (a single-file export). A path that was absent is created as this.
enum class MountTarget { directory, regularFile };

// A checked mount path. It owns whatever it created and removes it when destroyed, so a
// failed mount leaves nothing behind, until keep() says the mount is up. Then the path stays
// after the mount; `enclavefs-mount --config FILE --unmount` removes the paths of entries
// without forceMount, which must have been absent before.
class MountPath {
 public:
  MountPath() = default;
  MountPath(MountPath&& other) noexcept : path_(std::move(other.path_)), created_(std::move(other.created_)) {
    other.created_.clear();
  }
  MountPath& operator=(MountPath&&) = delete;
  MountPath(const MountPath&) = delete;
  ~MountPath();

  // Checks `path` against `flags` and the target kind, and creates it (with its missing
  // parents, mode 0755; a file 0644) if absent. `what` names the mount in errors
  // ("export 'data'", "volume 'db'").
  static Result<MountPath, std::string> prepare(const std::string& path, ForceMount flags,
                                                MountTarget target, const std::string& what);

  // Checks only, creating nothing: for a first look before any work is done. The kind the
  // mount needs may not be known yet.
  static Result<void, std::string> check(const std::string& path, ForceMount flags);

  // The mount is up: what was created stays.
  void keep() { created_.clear(); }

 private:
  std::string path_;
  std::vector<std::string> created_;  // outermost first
};

}  // namespace enclavefs::enclave
