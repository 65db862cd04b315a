// The mount configuration of an enclave, `enclavefs-mount --config FILE`: YAML, schema
// version 1, baked into the enclave image.
//
//   version: 1
//   host: vsock:3:7000
//   mounts:
//   - type: basic              # basic (an export) or block (a volume)
//     name: enclave-data       # the export or volume name on the host
//     mountPath: /shared/enclave-data
//     forceMount: empty        # a flag or a list of flags; absent: the path must not exist
//     readOnly: false
//
// This module only turns text into a plain MountConfig and refuses anything it does not fully
// understand (unknown or repeated keys, wrong types, paths that are not absolute and
// normalized, mounts that overlap): the file decides what the enclave's applications will see
// at each path, so a mistake must stop the enclave, never be guessed around. What needs the
// system (what exists at a mount path) is checked later, immediately before each mount.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/result.h"

namespace enclavefs::enclave {

// What may already exist at a mount path (DESIGN: each flag allows exactly one kind).
enum ForceMountFlag : unsigned { kForceEmpty = 1, kForceFile = 2, kForceFull = 4, kForceAll = 8 };
using ForceMount = unsigned;  // bit set; 0 = the path must not exist

// Parses "empty,full" (the command line's spelling). The error names the unknown or repeated
// flag and lists the known ones.
Result<ForceMount, std::string> parseForceMount(const std::string& commaList);

// "[empty, full]", or "none" for 0.
std::string describeForceMount(ForceMount flags);

struct MountEntry {
  enum class Type { basic, block } type = Type::basic;
  std::string name;       // plain name, 1-255 bytes, no '/', not . or ..
  std::string mountPath;  // absolute, normalized
  ForceMount forceMount = 0;
  bool readOnly = false;
  std::optional<bool> exec;            // unset: the kind's default (basic noexec, block exec)
  std::optional<bool> followSymlinks;  // `symlinks: inside|follow`; basic only
  std::string origin;                  // "FILE:LINE" of the entry, for errors
};

struct MountConfig {
  Address host;
  std::vector<MountEntry> mounts;  // at least one; no two at or inside each other's paths
};

// Parses the text of a configuration. `sourceName` starts every error ("<config>" when the
// text has no file); an error is one sentence with the line and the key path at fault, and
// for a clash between two mounts the line of the earlier one as well. Never throws.
Result<MountConfig, std::string> parseMountConfig(const std::string& yamlText,
                                                  const std::string& sourceName = "<config>");

// Reads and parses the file at `path`. An unreadable file gives an error naming the path.
// Never throws.
Result<MountConfig, std::string> loadMountConfig(const std::string& path);

}  // namespace enclavefs::enclave
