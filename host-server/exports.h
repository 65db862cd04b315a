// The exports this server offers: a name, a host directory (or a single file), read-only or
// not. Each root is held open as an O_PATH descriptor from the start, so a later rename of
// the host path does not redirect the export.
#pragma once

#include <map>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace enclavefs::host {

struct Export {
  std::string name;
  std::string path;
  bool readOnly = false;
  UniqueFd root;  // O_PATH
};

class ExportTable {
 public:
  // The error names the export and what is wrong with it.
  Result<void, std::string> add(const std::string& name, const std::string& path, bool readOnly);
  const Export* find(const std::string& name) const;
  const std::map<std::string, Export>& all() const { return exports_; }

 private:
  std::map<std::string, Export> exports_;
};

// Parses NAME=DIR as given to --export.
Result<std::pair<std::string, std::string>, std::string> parseExportSpec(const std::string& spec);

}  // namespace enclavefs::host
