"""Targets: the file systems the workloads run in.

A target is an object with setup() / teardown() and, once set up, a directory `dir` in which
workloads run. Targets come in groups; within a group one target is the `subject` (what we
build), and the others are a `peer` (the nearest existing alternative) and a `limit` (what the
storage underneath can do with no transport at all). The report prints the subject's ratio to
each peer and limit of its group.

Group "basic" (implemented):  enclavefs (subject), sshfs (peer), tmpfs (limit).
Group "block" (to add once block mounts exist), as three more Target subclasses registered in
TARGETS, with no change elsewhere:
    enclavefs-block  subject  enclavefs-volume image on the tmpfs, enclavefs-mount of the volume
    ext4-loop        limit    ext4 image on the tmpfs, losetup + mount
    nbd-ext4         peer     nbdkit --unix SOCK file IMG + nbdfuse + losetup + mkfs.ext4 + mount
Each creates its image under env.tmpfs, its mount point under env.work, and pushes its undo
actions (umount, losetup -d, stop nbdkit) onto self.cleanup as it goes.
"""

import os
import subprocess
import time

from .system import (BenchError, CleanupStack, cmdline, find_pids, memory_kib,
                     stop_process, unmount, wait_mounted, run)


class Env:
    """What targets share: the work directory, the tmpfs under it, binaries, options."""

    def __init__(self, work, tmpfs, build, args):
        self.work = work        # temporary directory (not on the tmpfs); mount points live here
        self.tmpfs = tmpfs      # the tmpfs all targets store their data on
        self.build = build      # meson build directory with the enclavefs binaries
        self.logs = os.path.join(work, "logs")
        self.args = args
        os.makedirs(self.logs, exist_ok=True)

    @property
    def hostd_bin(self):
        return os.path.join(self.build, "host-server", "enclavefs-hostd")

    @property
    def mount_bin(self):
        return os.path.join(self.build, "enclave-fs", "enclavefs-mount")


class Target:
    name = ""
    group = "basic"
    role = ""               # "subject", "peer" or "limit"
    description = ""
    packages = ()           # Debian packages needed for setup

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
        """Extra facts for the JSON report (versions, options)."""
        return {}

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


class HostServer:
    """An enclavefs-hostd child serving on a unix socket."""

    def __init__(self, env, name, args):
        self.env = env
        self.socket = os.path.join(env.work, f"{name}.sock")
        self.log_path = os.path.join(env.logs, f"{name}-hostd.log")
        self.argv = [env.hostd_bin, "--listen", "unix:" + self.socket] + list(args)
        self.proc = None

    def start(self):
        if not os.access(self.env.hostd_bin, os.X_OK):
            raise BenchError(f"{self.env.hostd_bin} not found: build first (ninja -C build)")
        logf = open(self.log_path, "ab")
        try:
            # Own session: a ^C on the terminal reaches us, and we stop hostd in order.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + 10
        while not _listening(self.socket):
            if self.proc.poll() is not None:
                raise BenchError(f"enclavefs-hostd exited at start ({self.proc.returncode}): "
                                 f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"enclavefs-hostd does not listen: {self.log_tail()}")
            time.sleep(0.01)

    def stop(self):
        stop_process(self.proc, "enclavefs-hostd")

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:].strip()
        except OSError:
            return ""


class EnclavefsBasic(Target):
    name = "enclavefs"
    group = "basic"
    role = "subject"
    description = "enclavefs basic mount: enclavefs-mount -> unix socket -> enclavefs-hostd -> tmpfs"

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
                "--log-file", self.mount_log]
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

    def _mount_pid(self):
        mnt = self.mountpoint
        pids = find_pids(lambda argv: os.path.basename(argv[0]) == "enclavefs-mount"
                         and mnt in argv)
        return pids[0] if pids else None

    def processes(self):
        out = {}
        pid = self._mount_pid()
        if pid:
            out["enclavefs-mount"] = pid
        if self.hostd.pid:
            out["enclavefs-hostd"] = self.hostd.pid
        return out

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


# Registry, in report order. Future block targets are appended here.
TARGETS = {cls.name: cls for cls in (EnclavefsBasic, Sshfs, TmpfsDir)}
