#include "host-server/exports.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/names.h"

namespace enclavefs::host {

Result<std::pair<std::string, std::string>, std::string> parseNamedPath(const std::string& spec,
                                                                       const std::string& kind) {
  auto eq = spec.find('=');
  if (eq == std::string::npos) return Fail{kind + " '" + spec + "' is not NAME=PATH"};
  std::string name = spec.substr(0, eq);
  std::string path = spec.substr(eq + 1);
  if (!isPlainName(name)) {
    return Fail{kind + " name '" + name + "' must be 1-255 bytes without '/' and not . or .."};
  }
  if (path.empty()) return Fail{kind + " '" + name + "' has an empty path"};
  return std::pair{name, path};
}

Result<OwnerMapping, std::string> parseOwnerSpec(const std::string& spec) {
  OwnerMapping mapping;
  if (spec == "passthrough") {
    mapping.mode = OwnerMapping::Mode::passthrough;
    return mapping;
  }
  if (spec == "squash") return mapping;
  std::uint32_t uid = 0, gid = 0;
  char rest = 0;
  if (std::sscanf(spec.c_str(), "squash:%u:%u%c", &uid, &gid, &rest) == 2 &&
      spec.find('-') == std::string::npos) {
    mapping.uid = uid;
    mapping.gid = gid;
    return mapping;
  }
  return Fail{"owner '" + spec + "' must be squash, squash:UID:GID or passthrough"};
}

Result<void, std::string> ExportTable::add(const ExportSettings& settings) {
  const std::string& name = settings.name;
  const std::string where = settings.origin.empty() ? "" : settings.origin + ": ";
  const std::string& path = settings.path;
  if (exports_.contains(settings.name)) return Fail{where + "export '" + name + "' is given twice"};
  OwnerPolicy owner;
  owner.mapping = settings.owner.mode == OwnerMapping::Mode::passthrough
                      ? OwnerPolicy::Mapping::passthrough
                      : OwnerPolicy::Mapping::squash;
  owner.uid = settings.owner.uid.value_or(::geteuid());
  owner.gid = settings.owner.gid.value_or(::getegid());
  const bool serverIsRoot = ::geteuid() == 0;
  if (owner.mapping == OwnerPolicy::Mapping::passthrough && !serverIsRoot) {
    return Fail{where + "export '" + name + "': owner mapping passthrough needs a server running as root"};
  }
  if (owner.mapping == OwnerPolicy::Mapping::squash && !serverIsRoot &&
      (owner.uid != ::geteuid() || owner.gid != ::getegid())) {
    return Fail{where + "export '" + name + "': squashing to " + std::to_string(owner.uid) + ":" +
                std::to_string(owner.gid) + " needs a server running as root"};
  }
  UniqueFd root(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!root) {
    return Fail{where + "export '" + name + "': cannot open " + path + ": " + std::strerror(errno)};
  }
  struct stat st;
  if (::fstat(root.get(), &st) != 0) {
    return Fail{where + "export '" + name + "': cannot stat " + path + ": " + std::strerror(errno)};
  }
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
    return Fail{where + "export '" + name + "': " + path + " is neither a directory nor a regular file"};
  }
  exports_.emplace(settings.name,
                   Export{settings.name, path, settings.readOnly, std::move(root), owner,
                          settings.allow, settings.maxConnectionsPerPeer,
                          settings.maxHandlesPerPeer});
  return {};
}

const Export* ExportTable::find(const std::string& name) const {
  auto it = exports_.find(name);
  return it == exports_.end() ? nullptr : &it->second;
}

}  // namespace enclavefs::host
