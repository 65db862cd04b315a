"""Small helpers around processes, mounts, packages and /proc."""

import os
import signal
import subprocess
import sys
import time


class BenchError(Exception):
    """A failure worth one line of explanation (no traceback)."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(argv, *, timeout=None, check=True, capture=True, env=None):
    """Runs argv in its own process group; returns CompletedProcess.

    On a timeout, a signal (raised as an exception here) or any other exception, the whole
    group is killed and reaped before the exception goes on, so nothing (fio's job processes
    included) keeps a file open on a mount we are about to take down.
    Raises BenchError on failure when check.
    """
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, text=True, env=env,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.STDOUT if capture else None,
                                start_new_session=True)
    except FileNotFoundError as e:
        raise BenchError(f"{argv[0]}: not found") from e
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException as e:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        _wait_group_gone(proc.pid)
        if isinstance(e, subprocess.TimeoutExpired):
            raise BenchError(f"{' '.join(map(str, argv))}: timed out after {timeout} s") from e
        raise
    p = subprocess.CompletedProcess(argv, proc.returncode, out, None)
    if check and p.returncode != 0:
        out = (p.stdout or "").strip()
        raise BenchError(f"{' '.join(map(str, argv))} exited {p.returncode}: {out[-2000:]}")
    return p


def _wait_group_gone(pgid, timeout=10.0):
    """Waits until no process is left in group pgid (children reparented elsewhere)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except OSError:
            return
        time.sleep(0.05)


# --- Debian packages ------------------------------------------------------------------------

def package_installed(name):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.returncode == 0 and p.stdout.strip() == "install ok installed"


def ensure_packages(names):
    """Installs the Debian packages that are missing (needs root)."""
    missing = sorted({n for n in names if not package_installed(n)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(f"packages missing and not root, cannot install: {' '.join(missing)}")
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + missing
    p = run(cmd, check=False, env=env, timeout=900)
    if p.returncode != 0:
        # The package lists may be absent or stale: refresh once and retry.
        run(["apt-get", "update"], check=False, env=env, timeout=900)
        run(cmd, env=env, timeout=900)


# --- caches -----------------------------------------------------------------------------------

def drop_caches():
    """Writes dirty data back, then empties the page, dentry and inode caches (machine-wide)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# --- mounts -----------------------------------------------------------------------------------

def _unescape(field):
    # /proc/self/mounts escapes space, tab, newline and backslash as octal.
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mounts():
    """[(source, target, fstype)] from /proc/self/mounts, in mount order."""
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                out.append((_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return out


def is_mounted(path):
    path = os.path.realpath(path)
    return any(t == path for _, t, _ in mounts())


def mounts_below(path):
    """Mount points at or below path, deepest (latest) first."""
    path = os.path.realpath(path)
    found = [t for _, t, _ in mounts() if t == path or t.startswith(path + "/")]
    return list(reversed(found))


def wait_mounted(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not is_mounted(path):
        if time.monotonic() > deadline:
            raise BenchError(f"{path} is not mounted after {timeout:.0f} s")
        time.sleep(0.02)


def unmount(path):
    """umount; if that fails (busy, dead FUSE server), detach lazily. Never raises."""
    if not is_mounted(path):
        return
    p = subprocess.run(["umount", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    if p.returncode != 0 or is_mounted(path):
        log(f"umount {path} failed ({p.stdout.strip()}); detaching with umount -l")
        subprocess.run(["umount", "-l", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


# --- loop devices -----------------------------------------------------------------------------

def loop_devices(backing):
    """/dev/loopN devices attached to the file backing, from sysfs.

    sysfs, not `losetup -j`: that stats the file, which fails once the FUSE server behind it
    is gone, and a teardown must still find the device then.
    """
    want = {backing, os.path.realpath(backing)}
    found = []
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        return found
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                path = f.read().rstrip("\n")
        except OSError:
            continue    # not attached
        if path.removesuffix(" (deleted)") in want:
            found.append("/dev/" + name)
    return found


def loop_dio(device):
    """Whether the loop device does direct I/O on its backing file (None: cannot tell)."""
    try:
        with open(f"/sys/block/{os.path.basename(device)}/loop/dio") as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def detach_loops(backing, timeout=5.0):
    """losetup -d every loop device on backing; raises BenchError if one stays attached.

    On a device still in use (a file system lazily unmounted) the kernel only marks it to
    detach itself once free, so the device is checked again afterwards.
    """
    devices = loop_devices(backing)
    for dev in devices:
        p = subprocess.run(["losetup", "-d", dev], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        if p.returncode != 0:
            log(f"losetup -d {dev} failed: {p.stdout.strip()}")
    deadline = time.monotonic() + timeout
    while devices:
        devices = loop_devices(backing)
        if not devices:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{', '.join(devices)} still attached to {backing} (in use?)")
        time.sleep(0.05)


# --- processes --------------------------------------------------------------------------------

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def find_pids(match):
    """PIDs whose argv satisfies match(argv)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = cmdline(entry)
            if argv and match(argv):
                pids.append(int(entry))
    return sorted(pids)


def proc_status(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def memory_kib(pid):
    """{'VmHWM': peak RSS KiB, 'VmRSS': current RSS KiB} or {} if the process is gone."""
    st = proc_status(pid)
    out = {}
    for key in ("VmHWM", "VmRSS"):
        if key in st:
            out[key] = int(st[key].split()[0])
    return out


def stop_process(proc, name, timeout=10.0):
    """SIGTERM a Popen child, then SIGKILL after timeout. Never raises."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} ignored SIGTERM; killing it")
        proc.kill()
        proc.wait()
    except OSError:
        pass


class CleanupStack:
    """Undo actions run in reverse order; each one runs even if an earlier one fails."""

    def __init__(self):
        self._actions = []

    def push(self, description, fn):
        self._actions.append((description, fn))

    def run(self):
        ok = True
        while self._actions:
            description, fn = self._actions.pop()
            try:
                fn()
            except Exception as e:  # cleanup must go on
                log(f"cleanup: {description} failed: {e}")
                ok = False
        return ok
