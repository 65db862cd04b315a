"""Workloads: each runs in a fresh directory on one target and returns its figures.

Every figure is "higher is better" (rates), so a ratio above 1 means the subject is faster.
A Metric can say higher_is_better=False (e.g. a latency); the report then inverts its ratio.
"""

import json
import os
import sqlite3
import time
from dataclasses import dataclass

from .requests import Step
from .system import BenchError, drop_caches, run

MiB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    runs: int               # repetitions per (workload, target); the median is reported
    fio_size_mib: int       # size of the fio file
    fio_runtime_s: int      # runtime of each time-based (random) fio job
    small_files: int        # files in the small-file workload
    tree_max_files: int     # regular files taken from /usr/include (0 = all)
    sqlite_txns: int        # SQLite transactions ...
    sqlite_rows: int        # ... of this many inserts each
    tmpfs_size: str         # size= of the tmpfs: a cap; it holds the basic targets' data and the
                            # block targets' sparse images (which only grow: nothing discards)
    volume_size: str        # size of each block target's image (enclavefs-volume create --size)
    workload_timeout_s: int # watchdog for one workload on one target


FULL = Sizes(runs=3, fio_size_mib=512, fio_runtime_s=10, small_files=3000, tree_max_files=0,
             sqlite_txns=200, sqlite_rows=100, tmpfs_size="8G", volume_size="2G",
             workload_timeout_s=1200)
QUICK = Sizes(runs=1, fio_size_mib=64, fio_runtime_s=2, small_files=300, tree_max_files=800,
              sqlite_txns=30, sqlite_rows=100, tmpfs_size="2G", volume_size="2G",
              workload_timeout_s=150)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    per: str                # one operation of this metric (--count-requests counts per it)
    higher_is_better: bool = True


class Context:
    """What a workload may use besides its directory."""

    def __init__(self, env, sizes, requests=None):
        self.env = env
        self.sizes = sizes
        self.tag = ""       # "<target>-<rep>", for log file names
        self.requests = requests        # a RequestCounter with --count-requests
        self.target = None              # the target's name, and its FUSE connection (if it
        self.fuse_connection = None     # is served by one), while a workload runs on it

    def step(self, key, ops=None):
        """Brackets the measured step of metric `key` (`with ctx.step(...) as s:`): with
        --count-requests, the FUSE requests it makes are counted per operation, of which
        there are `ops` (or s.ops, set inside the block)."""
        return Step(self, key, ops, _METRICS[key].per)

    def timed(self, key, ops, fn):
        """Runs fn as the measured step of metric `key`; answers the seconds it took."""
        with self.step(key, ops):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0


class Workload:
    name = ""
    description = ""
    metrics = ()
    packages = ()

    def prepare(self, ctx):
        """Once per benchmark run, before any target (outside the targets)."""

    def run(self, d, ctx):
        """Runs in the empty directory d; returns ({metric key: value}, {detail: value})."""
        raise NotImplementedError


# --- fio --------------------------------------------------------------------------------------

class Fio(Workload):
    name = "fio"
    description = "fio, psync engine, buffered (--direct=0)"
    packages = ("fio",)
    metrics = (
        Metric("fio_seq_write", "fio seq write 1M (+end fsync)", "MiB/s", "MiB"),
        Metric("fio_seq_read", "fio seq read 1M, cold cache", "MiB/s", "MiB"),
        Metric("fio_rand_read_1j", "fio rand read 4k, 1 job", "IOPS", "I/O"),
        Metric("fio_rand_read_4j", "fio rand read 4k, 4 jobs", "IOPS", "I/O"),
        Metric("fio_rand_write_fsync", "fio rand write 4k, fsync/64", "IOPS", "I/O"),
    )

    def _fio(self, ctx, d, job, args):
        out = os.path.join(ctx.env.logs, f"fio-{ctx.tag}-{job}.json")
        argv = ["fio", f"--name={job}", f"--filename={os.path.join(d, 'fio.dat')}",
                f"--size={ctx.sizes.fio_size_mib}M", "--ioengine=psync", "--direct=0",
                "--fallocate=none", "--output-format=json", f"--output={out}"] + args
        run(argv, timeout=ctx.sizes.workload_timeout_s)
        with open(out) as f:
            text = f.read()
        try:
            data = json.loads(text[text.index("{"):])
            result = data["jobs"][0]
        except (ValueError, KeyError, IndexError) as e:
            raise BenchError(f"fio {job}: cannot parse its JSON output {out}: {e}") from e
        if result.get("error"):
            raise BenchError(f"fio {job}: error {result['error']}")
        return result

    def run(self, d, ctx):
        rt = [f"--runtime={ctx.sizes.fio_runtime_s}", "--time_based"]
        v = {}
        with ctx.step("fio_seq_write", ops=ctx.sizes.fio_size_mib):
            j = self._fio(ctx, d, "seq_write", ["--rw=write", "--bs=1M", "--end_fsync=1"])
        v["fio_seq_write"] = j["write"]["bw_bytes"] / MiB
        drop_caches()
        with ctx.step("fio_seq_read", ops=ctx.sizes.fio_size_mib):
            j = self._fio(ctx, d, "seq_read", ["--rw=read", "--bs=1M"])
        v["fio_seq_read"] = j["read"]["bw_bytes"] / MiB
        drop_caches()
        with ctx.step("fio_rand_read_1j") as step:
            j = self._fio(ctx, d, "rand_read_1j", ["--rw=randread", "--bs=4k", "--iodepth=1"] + rt)
            step.ops = j["read"]["total_ios"]
        v["fio_rand_read_1j"] = j["read"]["iops"]
        drop_caches()
        with ctx.step("fio_rand_read_4j") as step:
            j = self._fio(ctx, d, "rand_read_4j", ["--rw=randread", "--bs=4k", "--iodepth=1",
                                                   "--numjobs=4", "--group_reporting"] + rt)
            step.ops = j["read"]["total_ios"]
        v["fio_rand_read_4j"] = j["read"]["iops"]
        with ctx.step("fio_rand_write_fsync") as step:
            j = self._fio(ctx, d, "rand_write_fsync",
                          ["--rw=randwrite", "--bs=4k", "--fsync=64"] + rt)
            step.ops = j["write"]["total_ios"]
        v["fio_rand_write_fsync"] = j["write"]["iops"]
        os.unlink(os.path.join(d, "fio.dat"))
        return v, {}


# --- small files ------------------------------------------------------------------------------

class SmallFiles(Workload):
    name = "smallfiles"
    description = "N files of 4 KiB in one directory: create, (drop caches) stat, read, unlink"
    metrics = (
        Metric("small_create", "small files: create 4 KiB", "files/s", "file"),
        Metric("small_stat", "small files: stat, cold", "files/s", "file"),
        Metric("small_read", "small files: read", "files/s", "file"),
        Metric("small_unlink", "small files: unlink", "files/s", "file"),
    )

    def run(self, d, ctx):
        n = ctx.sizes.small_files
        data = os.urandom(4096)
        sub = os.path.join(d, "small")
        os.mkdir(sub)
        names = [os.path.join(sub, f"f{i:06d}") for i in range(n)]

        def create():
            for p in names:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                try:
                    if os.write(fd, data) != len(data):
                        raise BenchError(f"short write to {p}")
                finally:
                    os.close(fd)

        def stat():
            for p in names:
                if os.stat(p).st_size != len(data):
                    raise BenchError(f"{p}: wrong size")

        def read():
            for p in names:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if os.read(fd, 2 * len(data)) != data:
                        raise BenchError(f"{p}: wrong content")
                finally:
                    os.close(fd)

        def unlink():
            for p in names:
                os.unlink(p)

        t = {"create": ctx.timed("small_create", n, create)}
        drop_caches()
        t["stat"] = ctx.timed("small_stat", n, stat)
        t["read"] = ctx.timed("small_read", n, read)
        t["unlink"] = ctx.timed("small_unlink", n, unlink)
        os.rmdir(sub)
        v = {f"small_{k}": n / s for k, s in t.items()}
        return v, {f"{k}_seconds": s for k, s in t.items()}


# --- a real tree ------------------------------------------------------------------------------

class Tree(Workload):
    name = "tree"
    description = "a tarball of /usr/include: untar, (drop caches) grep -r, rm -r"
    packages = ("tar", "grep")
    metrics = (
        Metric("tree_untar", "tree: untar /usr/include", "files/s", "file"),
        Metric("tree_grep", "tree: grep -r, cold cache", "files/s", "file"),
        Metric("tree_rm", "tree: rm -r", "files/s", "file"),
    )
    SOURCE = "/usr/include"
    NEEDLE = "enclavefs-bench: a string no header contains"

    def prepare(self, ctx):
        """Makes the tarball once, in the work directory (not on any target).

        Symbolic links are left out: the few in /usr/include point outside the tree (into
        /usr/lib), which enclavefs refuses by default, and grep -r does not follow them anyway.
        """
        parent = os.path.dirname(self.SOURCE)
        entries, files, total = [], 0, 0
        limit = ctx.sizes.tree_max_files
        for root, dirs, names in os.walk(self.SOURCE):
            dirs.sort()
            rel = os.path.relpath(root, parent)
            entries.append(rel)
            for name in sorted(names):
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if limit and files >= limit:
                    continue
                entries.append(os.path.join(rel, name))
                files += 1
                total += os.path.getsize(path)
        if files == 0:
            raise BenchError(f"{self.SOURCE} has no files to make a tree from")
        listing = os.path.join(ctx.env.work, "tree.list")
        with open(listing, "w") as f:
            f.write("\n".join(entries) + "\n")
        self.tarball = os.path.join(ctx.env.work, "tree.tar")
        run(["tar", "cf", self.tarball, "--no-recursion", "-C", parent, "-T", listing],
            timeout=600)
        self.files = files
        self.bytes = total

    def run(self, d, ctx):
        tree = os.path.join(d, "tree")
        os.mkdir(tree)
        limit = ctx.sizes.workload_timeout_s
        t = {"untar": ctx.timed("tree_untar", self.files,
                                lambda: run(["tar", "xf", self.tarball, "--no-same-owner", "-C",
                                             tree], timeout=limit))}
        drop_caches()

        def grep():
            p = run(["grep", "-r", "-F", "-l", self.NEEDLE, tree], check=False, timeout=limit)
            if p.returncode not in (0, 1):   # 1: nothing found (expected); 2: an error
                raise BenchError(f"grep -r exited {p.returncode}: {p.stdout.strip()[-1000:]}")

        t["grep"] = ctx.timed("tree_grep", self.files, grep)
        t["rm"] = ctx.timed("tree_rm", self.files, lambda: run(["rm", "-rf", tree], timeout=limit))
        v = {f"tree_{k}": self.files / s for k, s in t.items()}
        details = {f"{k}_seconds": s for k, s in t.items()}
        details.update(files=self.files, bytes=self.bytes)
        return v, details


# --- SQLite -----------------------------------------------------------------------------------

class Sqlite(Workload):
    name = "sqlite"
    description = "SQLite, default rollback journal and synchronous=FULL: T transactions of R inserts"
    metrics = (Metric("sqlite_tx", "sqlite: txns of 100 inserts", "tx/s", "txn"),)

    def run(self, d, ctx):
        txns, rows = ctx.sizes.sqlite_txns, ctx.sizes.sqlite_rows
        path = os.path.join(d, "bench.db")
        con = sqlite3.connect(path, isolation_level=None)   # we issue BEGIN/COMMIT ourselves
        try:
            con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
            payload = "x" * 100

            def transactions():
                for i in range(txns):
                    con.execute("BEGIN")
                    con.executemany("INSERT INTO t (k, v) VALUES (?, ?)",
                                    ((i * rows + j, payload) for j in range(rows)))
                    con.execute("COMMIT")

            seconds = ctx.timed("sqlite_tx", txns, transactions)
            (count,) = con.execute("SELECT count(*) FROM t").fetchone()
            if count != txns * rows:
                raise BenchError(f"sqlite: {count} rows, expected {txns * rows}")
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            con.close()
        return {"sqlite_tx": txns / seconds}, {"seconds": seconds, "journal_mode": mode}


WORKLOADS = {cls.name: cls for cls in (Fio, SmallFiles, Tree, Sqlite)}
_METRICS = {m.key: m for cls in WORKLOADS.values() for m in cls.metrics}
