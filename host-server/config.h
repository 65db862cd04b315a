// The host configuration file, `enclavefs-hostd --config FILE`: YAML, schema version 1.
//
// This module only turns text into a plain HostConfig and refuses anything it does not fully
// understand (unknown or repeated keys, wrong types, numbers out of range): a typo in a
// security setting such as `allow:` must stop the server, never be silently ignored.
// Whatever needs the system (does an export path exist, which euid is ours) is checked later
// by the code that uses the value.
//
// Settings the command line can also give are std::optional, so main.cpp can apply the file
// first and let command-line flags override or add to it.
#pragma once

#include <spdlog/common.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/result.h"
#include "host-server/exports.h"
#include "host-server/volumes.h"

namespace enclavefs::host {

// The accepted values of each bounded number, shared with the command-line flags that set
// the same limits so both refuse the same values.
struct ConfigRange {
  std::uint64_t min;
  std::uint64_t max;
};
inline constexpr ConfigRange kMaxClientsRange{1, 65536};
inline constexpr ConfigRange kMaxInFlightRange{1, 65536};
inline constexpr ConfigRange kMaxNodesRange{16, 1 << 24};
inline constexpr ConfigRange kMaxHandlesRange{16, 1 << 20};
inline constexpr ConfigRange kPoolThreadsRange{1, 64};
inline constexpr ConfigRange kMaxConnectionsPerPeerRange{1, 65536};
inline constexpr ConfigRange kMaxHandlesPerPeerRange{16, 1 << 20};

// `limits:`. Unset fields keep the command-line value or the built-in default.
struct LimitsConfig {
  std::optional<std::size_t> maxClients;   // connections served at once
  std::optional<std::size_t> maxInFlight;  // per client
  std::optional<std::size_t> maxNodes;     // per client
  std::optional<std::size_t> maxHandles;   // per client
  std::optional<unsigned> poolThreads;
};

struct HostConfig {
  std::optional<Address> listen;
  std::optional<Address> control;     // the control socket (unix: only, checked when opened)
  std::optional<std::string> metrics;  // IPV4-ADDRESS:PORT, checked when opened
  std::optional<spdlog::level::level_enum> logLevel;
  LimitsConfig limits;
  std::vector<ExportSettings> exports;
  std::vector<VolumeSettings> volumes;
};

// Parses the text of a configuration. `sourceName` starts every error ("<config>" when the
// text has no file); an error is one sentence with the line and the key or value at fault.
// Never throws.
Result<HostConfig, std::string> parseHostConfig(const std::string& yamlText,
                                                const std::string& sourceName = "<config>");

// Reads and parses the file at `path`. An unreadable file gives an error naming the path.
// Never throws.
Result<HostConfig, std::string> loadHostConfig(const std::string& path);

}  // namespace enclavefs::host
