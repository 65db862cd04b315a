"""FUSE requests per operation: what the kernel asks a target's FUSE server for each step.

With `run --count-requests`, every measured step of a workload (Context.step) is bracketed
by the kernel's fuse:fuse_request_send tracepoint, filtered to the one FUSE connection that
serves the target (its directory, or the file under its loop device), and the report gives
the requests per operation (per file, transaction, I/O or MiB) by opcode, each with the
median time from the kernel's sending it to its answer (fuse:fuse_request_end). Each request
is a trip from the application's kernel to the FUSE server and back, whatever the server
then does; the count is what no faster transport can take away (docs/performance.md).

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
EVENTS = ("events/fuse/fuse_request_send", "events/fuse/fuse_request_end")
BUFFER_KIB_PER_CPU = 65536
# " 1234.567890: fuse_request_send: connection 40 req 8 opcode 1 (FUSE_LOOKUP) len 57"
# " 1234.567901: fuse_request_end: connection 40 req 8 len 16 error 0"
_EVENT_LINE = re.compile(r" (\d+\.\d+): fuse_request_(send|end): connection \d+ req (\d+)"
                         r"(?: opcode \d+ \(FUSE_(\w+)\))?")


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
        if not os.path.isdir(os.path.join(TRACEFS, EVENTS[0])):
            _attempt(["modprobe", "fuse"])
        for event in EVENTS:
            if not os.path.isfile(os.path.join(TRACEFS, event, "enable")):
                raise BenchError(f"--count-requests needs the tracepoint {event} under "
                                 f"{TRACEFS}, which this kernel does not offer (tracefs, the "
                                 "fuse module)")
        self._found = {name: self._read(name) for name in ("tracing_on", "buffer_size_kb")}
        self._write("tracing_on", "0")
        self._write("buffer_size_kb", str(BUFFER_KIB_PER_CPU))
        # metric key -> target name -> {"ops": n, "per": unit, "requests": {opcode: count},
        #                                "median_us": {opcode: median time to its answer}}
        self.counts = {}
        # target name -> {"median_us": t of the system call, "calls": n,
        #                 "requests": {opcode: count}, "request_median_us": {opcode: t}}
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
        for event in EVENTS:
            self._write(f"{event}/filter", f"connection == {connection}")
        self._write("trace", "")   # empties every CPU's buffer
        for event in EVENTS:
            self._write(f"{event}/enable", "1")
        self._write("tracing_on", "1")

    def stop(self):
        """({opcode: count}, {opcode: median µs from sending to answer}) since start();
        fails if the buffer could not hold every event."""
        self._write("tracing_on", "0")
        for event in EVENTS:
            self._write(f"{event}/enable", "0")
            self._write(f"{event}/filter", "0")
        lost = 0
        for stats in glob.glob(os.path.join(TRACEFS, "per_cpu", "cpu*", "stats")):
            with open(stats) as f:
                lost += sum(int(line.split(":")[1]) for line in f if line.startswith("overrun:"))
        if lost:
            raise BenchError(f"the trace buffer ({BUFFER_KIB_PER_CPU} KiB per CPU) lost {lost} "
                             "requests: count with --quick")
        counts = collections.Counter()
        sent = {}                                   # request id -> (opcode, time)
        took = collections.defaultdict(list)        # opcode -> [µs]
        with open(os.path.join(TRACEFS, "trace")) as f:
            for line in f:
                m = _EVENT_LINE.search(line)
                if m is None:
                    continue
                at, kind, unique, opcode = float(m[1]), m[2], m[3], m[4]
                if kind == "send":
                    counts[opcode] += 1
                    sent[unique] = (opcode, at)
                elif unique in sent:
                    opcode, since = sent.pop(unique)
                    took[opcode].append((at - since) * 1e6)
        return counts, {op: statistics.median(t) for op, t in took.items()}

    def record(self, key, target, ops, per, measured):
        counts, median_us = measured
        self.counts.setdefault(key, {})[target] = {"ops": ops, "per": per,
                                                   "requests": dict(counts),
                                                   "median_us": median_us}

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
            counts, median_us = self.stop()
            os.unlink(path)
        self.answered_in_mount[target] = {"median_us": statistics.median(took) / 1000,
                                          "calls": calls, "requests": dict(counts),
                                          "request_median_us": median_us}

    def close(self):
        """Leaves tracing as it was found, the tracepoint off and the buffer emptied."""
        settings = [(f"{event}/{name}", "0") for event in EVENTS for name in ("enable", "filter")]
        settings += [("trace", ""), ("buffer_size_kb", self._found["buffer_size_kb"]),
                     ("tracing_on", self._found["tracing_on"])]
        for name, value in settings:
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
        measured = counter.stop()
        if exc_type is None:
            if not self.ops:
                raise BenchError(f"{self.key}: no operations to count requests per")
            counter.record(self.key, self.ctx.target, self.ops, self.per, measured)
        return False


def _opcodes(counts, median_us, ops):
    """"OPEN 1.00 (31 us)  READ 1.00 (8 us)": requests per operation and the median time to
    each one's answer, most frequent first, leaving out those under 0.005 per operation."""
    by_op = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "  ".join(f"{op} {n / ops:.2f} ({median_us[op]:.0f} us)" if op in median_us
                     else f"{op} {n / ops:.2f}" for op, n in by_op if n / ops >= 0.005)


def table(counter, metrics, targets):
    """Requests per operation, one block per metric: each target's total and its opcodes;
    then the time of a request answered in the mount, if measured."""
    lines = ["FUSE requests per operation (kernel tracepoints fuse:fuse_request_send and _end; "
             "in parentheses the median time from sending each to its answer; rates are not "
             "reported in this mode):"]
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
            total = sum(c["requests"].values()) / c["ops"]
            detail = _opcodes(c["requests"], c["median_us"], c["ops"])
            lines.append(f"  {t:<{width}} {total:7.2f}   {detail or '(none)'}")
    for target, f in counter.answered_in_mount.items():
        per_call = _opcodes(f["requests"], f["request_median_us"], f["calls"])
        lines.append(f"a request {target}-mount answers itself (getxattr security.capability, "
                     f"{f['calls']:,} calls): median {f['median_us']:.1f} us per call; "
                     f"per call: {per_call}")
    return "\n".join(lines)
