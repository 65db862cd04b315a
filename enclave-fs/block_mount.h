// Block mounts: a volume on the host becomes an ext4 file system at the mount point.
//
// The chain, built in this order and taken down in the reverse one:
//
//   lease on the host      the handshake (the host refuses a volume another client holds)
//   FUSE file              /run/enclavefs/block/volume, served by this process (block_fs.h)
//   loop device            over the FUSE file, direct I/O, autoclear (loop_device.h)
//   ext4                   formatted on first use only, grown after the volume was, mounted
//
// `umount MOUNTPOINT` starts the teardown: the file system goes, the loop device detaches
// itself, the FUSE file's last release tells this process, which unmounts the FUSE file and
// closes the connection, and the host ends the lease. A failure at any step of the setup
// undoes the steps before it. One enclave has at most one block mount, held by a lock on
// /run/enclavefs/block.lock, which also says which volume is mounted where.
#pragma once

#include <string>

#include "enclave-fs/mount_options.h"

namespace enclavefs::enclave {

// Mounts the volume and serves it until it is unmounted. Returns the process exit status;
// errors are printed as one line.
int runBlockMount(const MountRequest& request);

// `enclavefs-mount --unmount MOUNTPOINT`: unmounts a basic or block mount; for a block mount
// it returns once the whole chain is down and the lease is given back.
int unmountMountPoint(const std::string& mountPoint);

}  // namespace enclavefs::enclave
