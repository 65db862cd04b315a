// Basic mounts: a host export (a directory or a single file) served through FUSE at the
// mount point, by this process, until it is unmounted.
#pragma once

#include "enclave-fs/mount_options.h"

namespace enclavefs::enclave {

// Mounts the export and serves it until it is unmounted. Returns the process exit status;
// errors are printed as one line.
int runBasicMount(MountRequest request);

}  // namespace enclavefs::enclave
