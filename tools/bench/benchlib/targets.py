"""Targets: the file systems the workloads run in.

A target is an object with setup() / teardown() and, once set up, a directory `dir` in which
workloads run. Targets come in groups; within a group one target is the `subject` (what we
build), and the others are a `peer` (the nearest existing alternative) and a `limit` (what the
storage underneath can do with no transport at all). The report prints the subject's ratio to
each peer and limit of its group.

Group "basic":  enclavefs (subject), sshfs (peer), tmpfs (limit).
Group "block":
    enclavefs-block  subject  enclavefs-volume image on the tmpfs, served by enclavefs-hostd,
                              block-mounted by enclavefs-mount (FUSE file + loop with direct
                              I/O + ext4)
    nbd-ext4         peer     nbdkit --unix SOCK file IMG + nbdfuse + losetup --direct-io=on
                              + mkfs.ext4 + mount: the same chain built from existing tools
    ext4-loop        limit    sparse image on the tmpfs, losetup + mkfs.ext4 + mount
All three images have the same size (Sizes.volume_size) and are made with the same mkfs.ext4
options and mounted with the same options as enclavefs-mount uses. Each target creates its
image under env.tmpfs and its mount point under env.work, and pushes its undo actions (umount,
losetup -d, stop a server) onto self.cleanup as it goes, so a teardown after a partial setup
undoes exactly what was done.
"""

import os
import signal
import subprocess
import time

from .system import (BenchError, CleanupStack, cmdline, detach_loops, find_pids, is_mounted,
                     log, loop_devices, loop_dio, memory_kib, stop_process, unmount,
                     wait_mounted, run)


class Env:
    """What targets share: the work directory, the tmpfs under it, binaries, options."""

    def __init__(self, work, tmpfs, build, args, sizes):
        self.work = work        # temporary directory (not on the tmpfs); mount points live here
        self.tmpfs = tmpfs      # the tmpfs all targets store their data on
        self.build = build      # meson build directory with the enclavefs binaries
        self.logs = os.path.join(work, "logs")
        self.args = args
        self.sizes = sizes      # workloads.Sizes (volume_size for the block targets)
        os.makedirs(self.logs, exist_ok=True)

    @property
    def hostd_bin(self):
        return os.path.join(self.build, "host-server", "enclavefs-hostd")

    @property
    def mount_bin(self):
        return os.path.join(self.build, "enclave-fs", "enclavefs-mount")

    @property
    def volume_bin(self):
        return os.path.join(self.build, "tools", "enclavefs-volume")


class Target:
    name = ""
    group = "basic"
    role = ""               # "subject", "peer" or "limit"
    description = ""
    packages = ()           # Debian packages needed for setup (missing: the target is skipped)
    binaries = ()           # programs it needs from the build directory, relative to it
    required = ()           # labels of processes() that must still run at the end of the run
    # Its FUSE server answers getxattr of security.capability itself (--count-requests
    # times that as the floor under every request).
    answers_capability_in_mount = False

    def __init__(self, env):
        self.env = env
        self.dir = None
        self.cleanup = CleanupStack()

    def setup(self):
        raise NotImplementedError

    def teardown(self):
        """Undoes whatever setup got done (safe after a failed or partial setup)."""
        ok = self.cleanup.run()
        self.dir = None
        return ok

    def processes(self):
        """{label: pid} of the processes serving this target, for the memory report."""
        return {}

    def memory(self):
        """{label: {'VmHWM': KiB, 'VmRSS': KiB}} read now (VmHWM is the peak so far)."""
        return {label: memory_kib(pid) for label, pid in self.processes().items()}

    def info(self):
        """Extra facts for the JSON report (versions, options), read after setup."""
        return {}

    def end_info(self):
        """Extra facts for the JSON report, read after the last workload."""
        return {}

    def served_path(self):
        """A path on what serves the workloads' files: a FUSE server's, if there is one."""
        return self.dir

    def _mkdir(self, *parts):
        path = os.path.join(*parts)
        os.makedirs(path, exist_ok=False)
        return path


def _listening(socket_path):
    """True once the kernel lists socket_path as a listening unix socket."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                # Num RefCount Protocol Flags Type St Inode Path; flags 00010000 = __SO_ACCEPTCON
                if len(parts) >= 8 and parts[7] == socket_path and parts[3] == "00010000":
                    return True
    except OSError:
        pass
    return False


class Server:
    """A server process of ours: its own session, output to a log file, SIGTERM to stop."""

    def __init__(self, label, argv, log_path):
        self.label = label
        self.argv = argv
        self.log_path = log_path
        self.proc = None

    def start(self, ready, what, timeout=10.0):
        """Starts it and waits until ready() (described by what, e.g. "listen")."""
        logf = open(self.log_path, "ab")
        try:
            # Own session: a ^C on the terminal reaches us, and we stop the server in order.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError as e:
            raise BenchError(f"{self.argv[0]}: not found") from e
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited at start ({self.proc.returncode}): "
                                 f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.label} does not {what} after {timeout:.0f} s: "
                                 f"{self.log_tail()}")
            time.sleep(0.01)

    def stop(self, grace=0.0):
        """Gives it grace seconds to exit by itself (e.g. after an unmount), then SIGTERM."""
        if self.proc is not None and grace > 0:
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.proc, self.label)

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:].strip()
        except OSError:
            return ""


class HostServer(Server):
    """An enclavefs-hostd child serving on a unix socket."""

    def __init__(self, env, name, args):
        self.env = env
        self.socket = os.path.join(env.work, f"{name}.sock")
        super().__init__("enclavefs-hostd",
                         [env.hostd_bin, "--listen", "unix:" + self.socket] + list(args),
                         os.path.join(env.logs, f"{name}-hostd.log"))

    def start(self):
        if not os.access(self.env.hostd_bin, os.X_OK):
            raise BenchError(f"{self.env.hostd_bin} not found: build first (ninja -C build)")
        super().start(lambda: _listening(self.socket), "listen")


class EnclavefsProcesses:
    """What the enclavefs targets share: finding their mount process, reporting both
    processes for the memory table. Needs `mountpoint` and `hostd`."""

    def _mount_pid(self):
        mnt = self.mountpoint
        pids = find_pids(lambda argv: os.path.basename(argv[0]) == "enclavefs-mount"
                         and mnt in argv and "--unmount" not in argv)
        return pids[0] if pids else None

    def processes(self):
        out = {}
        pid = self._mount_pid()
        if pid:
            out["enclavefs-mount"] = pid
        if self.hostd.pid:
            out["enclavefs-hostd"] = self.hostd.pid
        return out


class EnclavefsBasic(EnclavefsProcesses, Target):
    name = "enclavefs"
    group = "basic"
    role = "subject"
    description = "enclavefs basic mount: enclavefs-mount -> unix socket -> enclavefs-hostd -> tmpfs"
    binaries = ("host-server/enclavefs-hostd", "enclave-fs/enclavefs-mount")
    required = ("enclavefs-mount",)
    answers_capability_in_mount = True

    def setup(self):
        env = self.env
        export = self._mkdir(env.tmpfs, "enclavefs-export")
        mnt = self._mkdir(env.work, "mnt-enclavefs")
        self.mountpoint = mnt
        self.hostd = HostServer(env, "enclavefs", ["--export", f"bench={export}"])
        self.cleanup.push("stop enclavefs-hostd", self.hostd.stop)
        self.hostd.start()
        self.mount_log = os.path.join(env.logs, "enclavefs-mount.log")
        argv = [env.mount_bin, "--host", "unix:" + self.hostd.socket, "--export", "bench",
                "--force-mount", "empty", "--log-file", self.mount_log]
        for opt in env.args.enclavefs_opt or []:
            argv += ["-o", opt]
        argv.append(mnt)
        self.argv = argv
        # Push the unmount first: a mount that failed half-way may still have mounted.
        self.cleanup.push(f"unmount {mnt}", lambda: unmount(mnt))
        p = run(argv, check=False, timeout=60)
        if p.returncode != 0:
            raise BenchError(f"enclavefs-mount exited {p.returncode}: {p.stdout.strip()} "
                             f"| hostd: {self.hostd.log_tail(500)}")
        wait_mounted(mnt)
        self.dir = mnt

    def info(self):
        return {"mount_argv": self.argv, "hostd_argv": self.hostd.argv}


class Sshfs(Target):
    name = "sshfs"
    group = "basic"
    role = "peer"
    description = "sshfs over a pipe to sftp-server (no ssh, no crypto) -> tmpfs"
    packages = ("sshfs", "openssh-sftp-server")
    SFTP_SERVER = "/usr/lib/openssh/sftp-server"

    def setup(self):
        env = self.env
        remote = self._mkdir(env.tmpfs, "sshfs-remote")
        mnt = self._mkdir(env.work, "mnt-sshfs")
        self.mountpoint = mnt
        script = os.path.join(env.work, "sftp-over-pipe.sh")
        self.sftp_pidfile = os.path.join(env.work, "sftp-server.pid")
        with open(script, "w") as f:
            # sshfs calls this in place of ssh (with ssh's arguments, which we ignore); the
            # shell's PID becomes sftp-server's through exec, so the memory report finds it.
            f.write(f"#!/bin/sh\necho $$ > {self.sftp_pidfile}\nexec {self.SFTP_SERVER}\n")
        os.chmod(script, 0o755)
        self.argv = ["sshfs", "-o", f"ssh_command={script}", f"localhost:{remote}", mnt]
        self.cleanup.push(f"unmount {mnt}", lambda: unmount(mnt))
        run(self.argv, timeout=60)
        wait_mounted(mnt)
        self.dir = mnt

    def processes(self):
        mnt = self.mountpoint
        pids = find_pids(lambda argv: os.path.basename(argv[0]) == "sshfs" and mnt in argv)
        out = {}
        if pids:
            out["sshfs"] = pids[0]
        try:
            with open(self.sftp_pidfile) as f:
                pid = int(f.read().strip())
            if os.path.basename((cmdline(pid) or [""])[0]) == "sftp-server":
                out["sftp-server"] = pid
        except (OSError, ValueError):
            pass
        return out

    def info(self):
        out = run(["sshfs", "--version"], check=False).stdout.splitlines()
        version = next((line.strip() for line in out if line.startswith("SSHFS")), "")
        return {"argv": self.argv, "version": version}


class TmpfsDir(Target):
    name = "tmpfs"
    group = "basic"
    role = "limit"
    description = "the tmpfs directory itself (no FUSE, no transport)"

    def setup(self):
        self.dir = self._mkdir(self.env.tmpfs, "local")


# --- group "block": ext4 on a block device whose sectors live in an image on the tmpfs -------

# As enclavefs-mount formats a blank volume (enclave-fs/block_mount.cpp), without its -L label.
MKFS_EXT4 = ("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "nodiscard,assume_storage_prezeroed=1")
# As enclavefs-mount mounts it: MS_NOSUID | MS_NODEV and "errors=remount-ro".
EXT4_OPTIONS = "nosuid,nodev,errors=remount-ro"


class BlockTarget(Target):
    group = "block"
    image = None            # the image file on the tmpfs
    device = None           # /dev/loopN under the ext4

    def _sparse_image(self, name):
        self.image = os.path.join(self.env.tmpfs, name)
        with open(self.image, "xb") as f:
            f.truncate(_bytes(self.env.sizes.volume_size))
        return self.image

    def _format_and_mount(self, device, mnt):
        self.mkfs_argv = list(MKFS_EXT4) + [device]
        run(self.mkfs_argv, timeout=120)
        self.cleanup.push(f"unmount {mnt}", lambda: unmount(mnt))
        run(["mount", "-t", "ext4", "-o", EXT4_OPTIONS, device, mnt], timeout=60)
        wait_mounted(mnt)

    def info(self):
        return {"image": self.image, "volume_size": self.env.sizes.volume_size,
                "loop_device": self.device, "loop_dio": loop_dio(self.device) if self.device
                else None, "mkfs": " ".join(MKFS_EXT4), "mount_options": EXT4_OPTIONS,
                "e2fsprogs": _first_line(["mkfs.ext4", "-V"])}

    def served_path(self):
        """The file under the loop device (a FUSE server's file for the FUSE targets)."""
        try:
            with open(f"/sys/block/{os.path.basename(self.device)}/loop/backing_file") as f:
                return f.read().rstrip("\n")
        except (OSError, TypeError) as e:
            raise BenchError(f"{self.name}: cannot tell the file under {self.device}: {e}") from e

    def end_info(self):
        """How much of the sparse image the run wrote (the tmpfs memory it holds)."""
        try:
            return {"image_allocated_bytes": os.stat(self.image).st_blocks * 512}
        except (OSError, TypeError):
            return {}


def _bytes(size):
    """ "2G" -> bytes (K, M, G, T: powers of 1024, as enclavefs-volume reads them)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if size and size[-1].upper() in units:
        return int(size[:-1]) * units[size[-1].upper()]
    return int(size)


def _first_line(argv):
    p = run(argv, check=False, timeout=30)
    return (p.stdout or "").strip().splitlines()[0] if (p.stdout or "").strip() else ""


class EnclavefsBlock(EnclavefsProcesses, BlockTarget):
    name = "enclavefs-block"
    role = "subject"
    description = ("enclavefs block mount: ext4 -> loop (direct I/O) -> enclavefs-mount's FUSE "
                   "file -> unix socket -> enclavefs-hostd -> volume image on tmpfs")
    packages = ("e2fsprogs",)   # enclavefs-mount runs mkfs.ext4
    binaries = ("host-server/enclavefs-hostd", "enclave-fs/enclavefs-mount",
                "tools/enclavefs-volume")
    required = ("enclavefs-mount", "enclavefs-hostd")
    VOLUME = "bench"

    def setup(self):
        env = self.env
        image = os.path.join(env.tmpfs, "enclavefs-block.img")
        run([env.volume_bin, "create", "--size", env.sizes.volume_size, "--volume", image],
            timeout=60)
        self.image = image
        self.hostd = HostServer(env, "enclavefs-block", ["--volume", f"{self.VOLUME}={image}"])
        self.cleanup.push("stop enclavefs-hostd (block)", self.hostd.stop)
        self.hostd.start()
        # Its own run directory (lock, FUSE file), so that it neither needs nor disturbs
        # /run/enclavefs; --unmount must see the same one.
        self.run_dir = self._mkdir(env.work, "enclavefs-run")
        self.mount_env = dict(os.environ, ENCLAVEFS_RUN_DIR=self.run_dir)
        mnt = self._mkdir(env.work, "mnt-enclavefs-block")
        self.mountpoint = mnt
        self.mount_pid = None
        self.mount_log = os.path.join(env.logs, "enclavefs-block-mount.log")
        argv = [env.mount_bin, "--host", "unix:" + self.hostd.socket, "--volume", self.VOLUME,
                "--force-mount", "empty", "--log-file", self.mount_log]
        for opt in env.args.enclavefs_block_opt or []:
            argv += ["-o", opt]
        argv.append(mnt)
        self.argv = argv
        # Push the unmount first: a mount that failed half-way may still have mounted.
        self.cleanup.push(f"unmount {mnt} (enclavefs-mount --unmount)", self._unmount)
        p = run(argv, check=False, timeout=120, env=self.mount_env)
        self.mount_pid = self._mount_pid()
        if p.returncode != 0:
            raise BenchError(f"enclavefs-mount exited {p.returncode}: {p.stdout.strip()} "
                             f"| hostd: {self.hostd.log_tail(500)}")
        wait_mounted(mnt)
        devices = loop_devices(os.path.join(self.run_dir, "block", "volume"))
        self.device = devices[0] if devices else None
        if self.device and loop_dio(self.device) is False:
            log(f"WARNING: {self.device} under enclavefs-block does not do direct I/O")
        self.dir = mnt

    def _unmount(self):
        """enclavefs-mount --unmount (returns once the volume is given back); then the mount
        process must be gone. Falls back to umount (-l) so that the teardown goes on."""
        mnt = self.mountpoint
        self.mount_pid = self.mount_pid or self._mount_pid()
        if is_mounted(mnt):
            p = run([self.env.mount_bin, "--unmount", mnt], check=False, timeout=90,
                    env=self.mount_env)
            if p.returncode != 0:
                log(f"enclavefs-mount --unmount {mnt} exited {p.returncode}: "
                    f"{p.stdout.strip()}; falling back to umount")
                unmount(mnt)
        pid = self.mount_pid
        if pid is None or _gone(pid, "enclavefs-mount", 10):
            return
        log(f"enclavefs-mount (pid {pid}) still runs after the unmount; sending SIGTERM")
        _signal(pid, signal.SIGTERM)
        if not _gone(pid, "enclavefs-mount", 10):
            _signal(pid, signal.SIGKILL)
        raise BenchError(f"enclavefs-mount (pid {pid}) did not exit after unmounting {mnt}")

    def info(self):
        out = super().info()
        out.update(mount_argv=self.argv, hostd_argv=self.hostd.argv,
                   run_dir=self.run_dir, mkfs=" ".join(MKFS_EXT4) + " (by enclavefs-mount)")
        return out


def _gone(pid, name, timeout):
    """Waits up to timeout s for process pid (running program name) to exit."""
    deadline = time.monotonic() + timeout
    while True:
        argv = cmdline(pid)     # empty for a zombie or a vanished process
        if not argv or os.path.basename(argv[0]) != name:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except OSError:
        pass


class NbdExt4(BlockTarget):
    name = "nbd-ext4"
    role = "peer"
    description = ("ext4 -> loop (direct I/O) -> nbdfuse's FUSE file -> NBD over a unix socket "
                   "-> nbdkit file plugin -> image on tmpfs")
    packages = ("nbdkit", "libnbd-bin", "fuse3", "mount", "e2fsprogs")
    required = ("nbdfuse", "nbdkit")

    def setup(self):
        env = self.env
        image = self._sparse_image("nbd-ext4.img")
        sock = os.path.join(env.work, "nbdkit.sock")
        self.nbdkit = Server("nbdkit", ["nbdkit", "--foreground", "--unix", sock, "file", image],
                             os.path.join(env.logs, "nbdkit.log"))
        self.cleanup.push("stop nbdkit", self.nbdkit.stop)
        self.nbdkit.start(lambda: _listening(sock), "listen")

        fuse_dir = self._mkdir(env.work, "nbdfuse")
        pidfile = os.path.join(env.work, "nbdfuse.pid")
        # nbdfuse stays in the foreground; it writes the pidfile once it serves.
        self.nbdfuse = Server("nbdfuse", ["nbdfuse", "-P", pidfile, fuse_dir, "--unix", sock],
                              os.path.join(env.logs, "nbdfuse.log"))
        # Unmounting its directory ends nbdfuse; SIGTERM only if it does not.
        self.cleanup.push("stop nbdfuse", lambda: self.nbdfuse.stop(grace=10))
        self.cleanup.push(f"unmount {fuse_dir}", lambda: unmount(fuse_dir))
        self.nbdfuse.start(lambda: _nonempty(pidfile) and is_mounted(fuse_dir), "serve")

        nbd_file = os.path.join(fuse_dir, "nbd")
        self.cleanup.push(f"detach the loop device on {nbd_file}", lambda: detach_loops(nbd_file))
        # Direct I/O, as enclavefs-mount's loop device: ext4's page cache is the only cache
        # above the transport (a buffered loop would cache every block a second time, in the
        # FUSE file's page cache, and send FUSE requests of the page cache's making).
        self.losetup_argv = ["losetup", "-f", "--show", "--direct-io=on", nbd_file]
        self.device = run(self.losetup_argv, timeout=60).stdout.strip()
        if loop_dio(self.device) is False:
            log(f"WARNING: {self.device} on {nbd_file} does not do direct I/O")
        mnt = self._mkdir(env.work, "mnt-nbd-ext4")
        self._format_and_mount(self.device, mnt)
        self.dir = mnt

    def processes(self):
        out = {}
        if self.nbdfuse.pid:
            out["nbdfuse"] = self.nbdfuse.pid
        if self.nbdkit.pid:
            out["nbdkit"] = self.nbdkit.pid
        return out

    def info(self):
        out = super().info()
        out.update(nbdkit_argv=self.nbdkit.argv, nbdfuse_argv=self.nbdfuse.argv,
                   losetup_argv=self.losetup_argv,
                   nbdkit=_first_line(["nbdkit", "--version"]),
                   nbdfuse=_first_line(["nbdfuse", "--version"]))
        return out


def _nonempty(path):
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


class Ext4Loop(BlockTarget):
    name = "ext4-loop"
    role = "limit"
    description = "ext4 -> loop (plain losetup, buffered) -> image on tmpfs (no FUSE, no transport)"
    packages = ("mount", "e2fsprogs")

    def setup(self):
        env = self.env
        image = self._sparse_image("ext4-loop.img")
        self.cleanup.push(f"detach the loop device on {image}", lambda: detach_loops(image))
        # Plain losetup: the image's tmpfs pages are the storage itself, so a buffered loop
        # caches nothing twice; its writes are copies into those pages.
        self.losetup_argv = ["losetup", "-f", "--show", image]
        self.device = run(self.losetup_argv, timeout=60).stdout.strip()
        mnt = self._mkdir(env.work, "mnt-ext4-loop")
        self._format_and_mount(self.device, mnt)
        self.dir = mnt

    def info(self):
        out = super().info()
        out.update(losetup_argv=self.losetup_argv)
        return out


# Registry, in report order: each group's subject, peer, limit.
TARGETS = {cls.name: cls for cls in (EnclavefsBasic, Sshfs, TmpfsDir,
                                     EnclavefsBlock, NbdExt4, Ext4Loop)}
