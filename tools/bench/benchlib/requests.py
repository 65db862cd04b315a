"""FUSE requests per operation: what the kernel asks a target's FUSE server for each step.

With `run --count-requests`, every measured step of a workload (Context.step) is bracketed
by the kernel's fuse:fuse_request_send tracepoint, filtered to the one FUSE connection that
serves the target (its directory, or the file under its loop device), and the report gives
the requests per operation (per file, transaction, I/O or MiB) by opcode. Each request is a
trip from the application's kernel to the FUSE server and back, whatever the server then
does; the count is what no faster transport can take away (docs/performance.md).

Tracing slows every request down, so the rates measured meanwhile are not reported.
"""

import collections
import errno
import glob
import os
import re
import statistics
import time

from .system import BenchError, run

TRACEFS = "/sys/kernel/tracing"
EVENT = "events/fuse/fuse_request_send"
BUFFER_KIB_PER_CPU = 65536
_OPCODE = re.compile(r"\(FUSE_(\w+)\)")


def _attempt(argv):
    """Runs argv; whether it worked shows in what it was to make."""
    try:
        run(argv, check=False, timeout=30)
    except (OSError, BenchError):
        pass


def fuse_connection(path):
    """The number of the FUSE connection that serves path, or None if no FUSE server does.

    A FUSE mount (file system type fuse or fuse.*) has an anonymous device (major 0), and
    the kernel numbers its connection, in the tracepoint, by that device's minor.
    """
    dev = os.stat(path).st_dev
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fields[2] == wanted and (fstype == "fuse" or fstype.startswith("fuse.")):
                return os.minor(dev) if os.major(dev) == 0 else None
    return None


class RequestCounter:
    def __init__(self):
        # Mounted by systemd on Debian, and the fuse module loaded with the first mount; on a
        # machine where either is not done yet, it is done here.
        if not os.path.isdir(os.path.join(TRACEFS, "events")):
            _attempt(["mount", "-t", "tracefs", "tracefs", TRACEFS])
        if not os.path.isdir(os.path.join(TRACEFS, EVENT)):
            _attempt(["modprobe", "fuse"])
        if not os.path.isfile(os.path.join(TRACEFS, EVENT, "enable")):
            raise BenchError(f"--count-requests needs the tracepoint {EVENT} under {TRACEFS}, "
                             "which this kernel does not offer (tracefs, the fuse module)")
        self._found = {name: self._read(name) for name in ("tracing_on", "buffer_size_kb")}
        self._write("tracing_on", "0")
        self._write("buffer_size_kb", str(BUFFER_KIB_PER_CPU))
        # metric key -> target name -> {"ops": n, "per": unit, "requests": {opcode: count}}
        self.counts = {}
        # target name -> {"median_us": t, "calls": n, "requests": {opcode: count}}
        self.answered_in_mount = {}

    @staticmethod
    def _read(name):
        """The setting's value; for a buffer not yet allocated, buffer_size_kb says
        "7 (expanded: 1408)", and the size it will have is the second number."""
        with open(os.path.join(TRACEFS, name)) as f:
            text = f.read()
        expanded = re.search(r"expanded: (\d+)", text)
        return expanded.group(1) if expanded else text.split()[0]

    def _write(self, name, value):
        try:
            with open(os.path.join(TRACEFS, name), "w") as f:
                f.write(value)
        except OSError as e:
            raise BenchError(f"cannot write {value!r} to {TRACEFS}/{name}: {e}") from e

    def start(self, connection):
        self._write(f"{EVENT}/filter", f"connection == {connection}")
        self._write("trace", "")   # empties every CPU's buffer
        self._write(f"{EVENT}/enable", "1")
        self._write("tracing_on", "1")

    def stop(self):
        """{opcode: count} since start(); fails if the buffer could not hold them all."""
        self._write("tracing_on", "0")
        self._write(f"{EVENT}/enable", "0")
        self._write(f"{EVENT}/filter", "0")
        lost = 0
        for stats in glob.glob(os.path.join(TRACEFS, "per_cpu", "cpu*", "stats")):
            with open(stats) as f:
                lost += sum(int(line.split(":")[1]) for line in f if line.startswith("overrun:"))
        if lost:
            raise BenchError(f"the trace buffer ({BUFFER_KIB_PER_CPU} KiB per CPU) lost {lost} "
                             "requests: count with --quick")
        with open(os.path.join(TRACEFS, "trace")) as f:
            return collections.Counter(_OPCODE.findall(f.read()))

    def record(self, key, target, ops, per, requests):
        self.counts.setdefault(key, {})[target] = {"ops": ops, "per": per,
                                                   "requests": dict(requests)}

    def time_answered_in_mount(self, target, directory, connection, calls=3000):
        """Times a FUSE request that enclavefs-mount answers itself, with no host in the
        loop: getxattr of security.capability (a basic mount is nosuid, so the mount answers
        "none", fs_xattr.cpp). It is the floor under a request of any kind."""
        path = os.path.join(directory, "answered-in-mount")
        with open(path, "w"):
            pass
        took = []
        self.start(connection)
        try:
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                try:
                    os.getxattr(path, "security.capability")
                except OSError as e:
                    if e.errno != errno.ENODATA:
                        raise BenchError(f"getxattr {path}: {e}") from e
                took.append(time.perf_counter_ns() - t0)
        finally:
            requests = self.stop()
            os.unlink(path)
        self.answered_in_mount[target] = {"median_us": statistics.median(took) / 1000,
                                          "calls": calls, "requests": dict(requests)}

    def close(self):
        """Leaves tracing as it was found, the tracepoint off and the buffer emptied."""
        for name, value in ((f"{EVENT}/enable", "0"), (f"{EVENT}/filter", "0"), ("trace", ""),
                            ("buffer_size_kb", self._found["buffer_size_kb"]),
                            ("tracing_on", self._found["tracing_on"])):
            try:
                self._write(name, value)
            except BenchError:
                pass


class Step:
    """One measured step of a workload; `ops` may be set inside the `with` block."""

    def __init__(self, ctx, key, ops, per):
        self.ctx, self.key, self.ops, self.per = ctx, key, ops, per
        self.connection = None

    def __enter__(self):
        counter = self.ctx.requests
        if counter is not None and self.ctx.fuse_connection is not None:
            self.connection = self.ctx.fuse_connection
            counter.start(self.connection)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.connection is None:
            return False
        counter = self.ctx.requests
        requests = counter.stop()
        if exc_type is None:
            if not self.ops:
                raise BenchError(f"{self.key}: no operations to count requests per")
            counter.record(self.key, self.ctx.target, self.ops, self.per, requests)
        return False


def table(counter, metrics, targets):
    """Requests per operation, one block per metric: each target's total and its opcodes;
    then the time of a request answered in the mount, if measured."""
    lines = ["FUSE requests per operation (kernel tracepoint fuse:fuse_request_send; "
             "rates are not reported in this mode):"]
    width = max([10] + [len(t) for t in targets])
    for m in metrics:
        per_target = counter.counts.get(m.key, {})
        if not per_target:
            continue
        per = next(iter(per_target.values()))["per"]
        lines.append(f"{m.label} (per {per}):")
        for t in targets:
            c = per_target.get(t)
            if c is None:
                continue
            ops = c["ops"]
            by_op = sorted(c["requests"].items(), key=lambda kv: (-kv[1], kv[0]))
            total = sum(n for _, n in by_op) / ops
            detail = "  ".join(f"{op} {n / ops:.2f}" for op, n in by_op if n / ops >= 0.005)
            lines.append(f"  {t:<{width}} {total:7.2f}   {detail or '(none)'}")
    for target, f in counter.answered_in_mount.items():
        per_call = "  ".join(f"{op} {n / f['calls']:.2f}" for op, n in sorted(f["requests"].items())
                             if n / f["calls"] >= 0.005)
        lines.append(f"a request {target}-mount answers itself (getxattr security.capability, "
                     f"{f['calls']:,} calls): median {f['median_us']:.1f} us; per call: {per_call}")
    return "\n".join(lines)
