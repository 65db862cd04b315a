// The exports this server offers: a name, a host directory (or a single file), read-only or
// not, who may mount it and whose the files it creates are. Each root is held open as an
// O_PATH descriptor from the start, so a later rename of the host path does not redirect the
// export.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "host-server/access.h"

namespace enclavefs::host {

// An export as configured, before it is opened.
struct ExportSettings {
  std::string name;
  std::string path;
  bool readOnly = false;
  OwnerPolicy::Mapping mapping = OwnerPolicy::Mapping::squash;
  std::optional<std::uint32_t> squashUid, squashGid;  // default: the server's own
  AccessPolicy access;
  std::size_t maxConnectionsPerPeer = 0;  // 0: no cap
  std::optional<std::size_t> maxHandlesPerPeer;  // default: only the per-connection cap
};

struct Export {
  std::string name;
  std::string path;
  bool readOnly = false;
  UniqueFd root;  // O_PATH
  OwnerPolicy owner;
  AccessPolicy access;
  std::size_t maxConnectionsPerPeer = 0;
  std::optional<std::size_t> maxHandlesPerPeer;
};

class ExportTable {
 public:
  // Opens the export's root and resolves its owner policy. The error names the export and
  // what is wrong with it.
  Result<void, std::string> add(const ExportSettings& settings);
  const Export* find(const std::string& name) const;
  const std::map<std::string, Export>& all() const { return exports_; }

 private:
  std::map<std::string, Export> exports_;
};

// Parses --owner: squash, squash:UID:GID or passthrough, into the owner fields of settings.
Result<ExportSettings, std::string> parseOwnerSpec(const std::string& spec);

// Parses NAME=DIR as given to --export.
Result<std::pair<std::string, std::string>, std::string> parseExportSpec(const std::string& spec);

}  // namespace enclavefs::host
