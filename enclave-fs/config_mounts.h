// `enclavefs-mount --config FILE`: the mounts an enclave image declares, made in order and
// undone in reverse.
//
// Each entry is mounted by running this program again with the entry as command-line
// options, so every entry gets exactly what a hand-typed mount gets (its own process, its
// checks, its one-line errors), and a failing entry's error comes back word for word, with
// the entry named in front. If one fails, the ones already mounted are unmounted (a block
// mount until its lease is back) and the paths they created are removed: nothing is left.
#pragma once

#include <string>

#include "enclave-fs/mount_config.h"

namespace enclavefs::enclave {

// Extra options every entry's process is given.
struct ConfigRun {
  std::string logLevel;  // empty: the default
  std::string logFile;   // empty: none
};

// Mounts every entry in order; the exit status of the command.
int mountFromConfig(const MountConfig& config, const ConfigRun& run);

// Unmounts every entry that is mounted, in reverse order, and removes the mount paths of
// entries without forceMount (they did not exist before the mount). Goes on past a failure;
// the exit status is 1 if anything failed.
int unmountFromConfig(const MountConfig& config);

}  // namespace enclavefs::enclave
