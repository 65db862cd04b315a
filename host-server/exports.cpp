#include "host-server/exports.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "host-server/names.h"

namespace enclavefs::host {

Result<std::pair<std::string, std::string>, std::string> parseExportSpec(const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == std::string::npos) return Fail{"export '" + spec + "' is not NAME=PATH"};
  std::string name = spec.substr(0, eq);
  std::string path = spec.substr(eq + 1);
  if (!isPlainName(name)) {
    return Fail{"export name '" + name + "' must be 1-255 bytes without '/' and not . or .."};
  }
  if (path.empty()) return Fail{"export '" + name + "' has an empty path"};
  return std::pair{name, path};
}

Result<void, std::string> ExportTable::add(const std::string& name, const std::string& path,
                                           bool readOnly) {
  if (exports_.contains(name)) return Fail{"export '" + name + "' is given twice"};
  UniqueFd root(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!root) {
    return Fail{"export '" + name + "': cannot open " + path + ": " + std::strerror(errno)};
  }
  struct stat st;
  if (::fstat(root.get(), &st) != 0) {
    return Fail{"export '" + name + "': cannot stat " + path + ": " + std::strerror(errno)};
  }
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
    return Fail{"export '" + name + "': " + path + " is neither a directory nor a regular file"};
  }
  exports_.emplace(name, Export{name, path, readOnly, std::move(root)});
  return {};
}

const Export* ExportTable::find(const std::string& name) const {
  auto it = exports_.find(name);
  return it == exports_.end() ? nullptr : &it->second;
}

}  // namespace enclavefs::host
