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

// Who owns, on the host, what an enclave creates in an export, as configured.
struct OwnerMapping {
  enum class Mode {
    squash,       // everything belongs to one host uid:gid
    passthrough,  // the enclave's own uid:gid are kept
  };
  Mode mode = Mode::squash;
  // Squash only. Unset: the server's own euid / egid.
  std::optional<std::uint32_t> uid;
  std::optional<std::uint32_t> gid;
};

// An export as configured (command line or config file), before it is opened.
struct ExportSettings {
  std::string name;  // a plain name (isPlainName), unique
  std::string path;  // not yet checked to exist
  bool readOnly = false;
  OwnerMapping owner;
  AccessPolicy allow;
  std::uint32_t maxConnectionsPerPeer = 0;       // 0: unlimited
  std::optional<std::size_t> maxHandlesPerPeer;  // unset: only the per-connection cap
  // Where it was configured ("FILE:LINE"), for errors found when it is opened; empty for the
  // command line.
  std::string origin;
};

struct Export {
  std::string name;
  std::string path;
  bool readOnly = false;
  UniqueFd root;  // O_PATH
  OwnerPolicy owner;
  AccessPolicy allow;
  std::uint32_t maxConnectionsPerPeer = 0;
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

// Parses --owner: squash, squash:UID:GID or passthrough.
Result<OwnerMapping, std::string> parseOwnerSpec(const std::string& spec);

// Parses NAME=PATH as given to --export and --volume; `kind` ("export", "volume") names it
// in errors.
Result<std::pair<std::string, std::string>, std::string> parseNamedPath(const std::string& spec,
                                                                       const std::string& kind);

}  // namespace enclavefs::host
