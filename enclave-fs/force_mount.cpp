#include "enclave-fs/force_mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/unique_fd.h"

namespace enclavefs::enclave {
namespace {

struct Inspection {
  Found found = Found::absent;
  std::string description;  // what was found, as the error says it
};

std::string errnoText() { return std::strerror(errno); }

std::string describeMode(mode_t mode) {
  if (S_ISFIFO(mode)) return "a fifo";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

Result<bool, std::string> directoryIsEmpty(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  DIR* dir = fd ? ::fdopendir(fd.get()) : nullptr;
  if (dir == nullptr) return Fail{"cannot read mount path " + path + ": " + errnoText()};
  fd.release();  // the DIR owns it now
  bool empty = true;
  while (dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  ::closedir(dir);
  return empty;
}

// The directories above `path`, outermost first: "/a/b/c" gives "/a", "/a/b".
std::vector<std::string> ancestors(const std::string& path) {
  std::vector<std::string> result;
  for (auto slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    result.push_back(path.substr(0, slash));
  }
  return result;
}

Result<Inspection, std::string> inspect(const std::string& path) {
  if (path.empty() || path[0] != '/') return Fail{"mount path '" + printable(path) + "' is not absolute"};
  for (const std::string& above : ancestors(path)) {
    struct stat st;
    if (::lstat(above.c_str(), &st) != 0) {
      if (errno == ENOENT) return Inspection{Found::absent, "absent"};
      return Fail{"mount path " + path + ": cannot examine " + above + ": " + errnoText()};
    }
    if (S_ISLNK(st.st_mode)) {
      return Fail{"mount path " + path + " lies under " + above +
                  ", a symbolic link, which would redirect the mount; it is always refused"};
    }
    if (!S_ISDIR(st.st_mode)) {
      return Fail{"mount path " + path + " lies under " + above + ", which is not a directory"};
    }
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Inspection{Found::absent, "absent"};
    return Fail{"cannot examine mount path " + path + ": " + errnoText()};
  }
  if (S_ISLNK(st.st_mode)) return Inspection{Found::symlink, describe(Found::symlink)};
  if (S_ISREG(st.st_mode)) return Inspection{Found::regularFile, describe(Found::regularFile)};
  if (S_ISDIR(st.st_mode)) {
    auto empty = directoryIsEmpty(path);
    if (!empty) return Fail{empty.error()};
    Found found = *empty ? Found::emptyDirectory : Found::fullDirectory;
    return Inspection{found, describe(found)};
  }
  return Inspection{Found::other, describeMode(st.st_mode)};
}

const char* flagName(ForceMountFlag flag) {
  switch (flag) {
    case kForceEmpty: return "empty";
    case kForceFile: return "file";
    case kForceFull: return "full";
    case kForceAll: return "all";
  }
  return "?";
}

Result<Inspection, std::string> checkFlags(const std::string& path, ForceMount flags) {
  auto inspection = inspect(path);
  if (!inspection) return inspection;
  const Found found = inspection->found;
  if (found == Found::symlink) {
    return Fail{"mount path " + path + " is a symbolic link, which would redirect the mount; "
                "forceMount never allows one"};
  }
  if (!allows(flags, found)) {
    const ForceMountFlag needed = *flagFor(found);
    std::string allowedBy = found == Found::other ? std::string("'all'")
                                                  : "'" + std::string(flagName(needed)) + "' or 'all'";
    return Fail{"mount path " + path + " is " + inspection->description + ", which forceMount " +
                describeForceMount(flags) + " does not allow (" + allowedBy + " would)"};
  }
  return inspection;
}

}  // namespace

std::string forceMountList(ForceMount flags) {
  std::string list;
  for (ForceMountFlag flag : {kForceEmpty, kForceFile, kForceFull, kForceAll}) {
    if ((flags & flag) == 0) continue;
    if (!list.empty()) list += ',';
    list += flagName(flag);
  }
  return list;
}

std::string describe(Found found) {
  switch (found) {
    case Found::absent: return "absent";
    case Found::emptyDirectory: return "an empty directory";
    case Found::fullDirectory: return "a non-empty directory";
    case Found::regularFile: return "a regular file";
    case Found::symlink: return "a symbolic link";
    case Found::other: return "a special file";
  }
  return "?";
}

std::optional<ForceMountFlag> flagFor(Found found) {
  switch (found) {
    case Found::emptyDirectory: return kForceEmpty;
    case Found::fullDirectory: return kForceFull;
    case Found::regularFile: return kForceFile;
    case Found::other: return kForceAll;
    case Found::absent:
    case Found::symlink: return std::nullopt;
  }
  return std::nullopt;
}

bool allows(ForceMount flags, Found found) {
  if (found == Found::absent) return true;
  if (found == Found::symlink) return false;
  if (flags & kForceAll) return true;
  auto needed = flagFor(found);
  return needed && (flags & *needed) != 0;
}

Result<void, std::string> MountPath::check(const std::string& path, ForceMount flags) {
  auto checked = checkFlags(path, flags);
  if (!checked) return Fail{checked.error()};
  return {};
}

Result<MountPath, std::string> MountPath::prepare(const std::string& path, ForceMount flags,
                                                  MountTarget target, const std::string& what) {
  auto checked = checkFlags(path, flags);
  if (!checked) return Fail{checked.error()};
  const Found found = checked->found;
  const bool wantDirectory = target == MountTarget::directory;
  MountPath prepared;
  prepared.path_ = path;
  if (found == Found::absent) {
    for (const std::string& above : ancestors(path)) {
      if (::mkdir(above.c_str(), 0755) == 0) {
        prepared.created_.push_back(above);
      } else if (errno != EEXIST) {
        return Fail{"cannot create " + above + " for mount path " + path + ": " + errnoText()};
      }
    }
    int made = wantDirectory ? ::mkdir(path.c_str(), 0755)
                             : ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (made < 0) return Fail{"cannot create mount path " + path + ": " + errnoText()};
    if (!wantDirectory) ::close(made);
    prepared.created_.push_back(path);
    return prepared;
  }
  const bool isDirectory = found == Found::emptyDirectory || found == Found::fullDirectory;
  if (wantDirectory && !isDirectory) {
    return Fail{"mount path " + path + " is " + checked->description + ", but " + what +
                " needs a directory"};
  }
  if (!wantDirectory && found != Found::regularFile) {
    return Fail{"mount path " + path + " is " + checked->description + ", but " + what +
                " is a single file and needs a regular file"};
  }
  return prepared;
}

MountPath::~MountPath() {
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    if (::rmdir(it->c_str()) != 0 && errno == ENOTDIR) ::unlink(it->c_str());
  }
}

}  // namespace enclavefs::enclave
