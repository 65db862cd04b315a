#!/usr/bin/env python3
"""tools/bench/run --count-requests counts what the kernel really sends.

Runs the benchmark's small-file and SQLite workloads in quick mode on enclavefs and sshfs,
counting FUSE requests, and checks the counts against what the kernel must send for them:
one UNLINK per unlinked file, one CREATE per created file, one OPEN per opened file on
both; on enclavefs, also the permission check's GETATTR of the directory before each unlink
(default_permissions, security.md) and the host-held locks' SETLK, which sshfs leaves to the
enclave's kernel; an answer time for every kind of request counted; and one GETXATTR per
timed call of the request the mount answers itself, answered within the call's time.

Usage: bench_count_requests_test.py BUILD_DIR. Exit 0 passed, 1 failed, 77 skipped (the
benchmark's own skip: not root, no /dev/fuse).
"""

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SKIP = 77


def main():
    build = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="enclavefs-count-requests.") as tmp:
        out = os.path.join(tmp, "counts.json")
        p = subprocess.run([os.path.join(REPO, "tools", "bench", "run"), "--quick",
                            "--count-requests", "--targets", "enclavefs,sshfs",
                            "--workloads", "smallfiles,sqlite", "--build", build, "--json", out],
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600)
        print(p.stdout)
        if p.returncode == SKIP:
            return SKIP
        if "needs the tracepoint" in p.stdout:
            print("SKIPPED: bench_count_requests: this kernel has no FUSE tracepoint to count "
                  "requests with (see above)")
            return SKIP
        if p.returncode != 0:
            print(f"FAILED: the benchmark exited {p.returncode}")
            return 1
        with open(out) as f:
            result = json.load(f)

    counts = result["requests_per_operation"]
    failures = []

    def per_op(metric, target, opcode):
        c = counts.get(metric, {}).get(target)
        if c is None:
            failures.append(f"no counts for {metric} on {target}")
            return None
        return c["requests"].get(opcode, 0) / c["ops"]

    def expect(metric, target, opcode, low, high):
        v = per_op(metric, target, opcode)
        if v is not None and not low <= v <= high:
            failures.append(f"{metric} on {target}: {opcode} {v:.3f} per operation, "
                            f"expected {low}..{high}")

    for target in ("enclavefs", "sshfs"):
        expect("small_create", target, "CREATE", 1.0, 1.0)
        expect("small_read", target, "OPEN", 1.0, 1.0)
        expect("small_unlink", target, "UNLINK", 1.0, 1.0)
    expect("small_unlink", "enclavefs", "GETATTR", 0.9, 1.0)
    expect("small_unlink", "sshfs", "GETATTR", 0.0, 0.0)
    expect("sqlite_tx", "enclavefs", "SETLK", 1.0, 100.0)
    expect("sqlite_tx", "sshfs", "SETLK", 0.0, 0.0)

    # Every counted request was also timed to its answer: a request sent is answered
    # within the step (none of these waits past it).
    for metric in ("small_create", "small_read", "small_unlink", "sqlite_tx"):
        for target in ("enclavefs", "sshfs"):
            c = counts.get(metric, {}).get(target, {})
            untimed = sorted(set(c.get("requests", {})) - set(c.get("median_us", {})))
            if untimed:
                failures.append(f"{metric} on {target}: no answer time for {', '.join(untimed)}")

    floor = result["answered_in_mount"].get("enclavefs")
    if floor is None:
        failures.append("no time for a request answered in the mount")
    else:
        getxattr = floor["requests"].get("GETXATTR", 0) / floor["calls"]
        answered = floor["request_median_us"].get("GETXATTR", 0)
        if not 0.99 <= getxattr <= 1.01 or not 0 < answered < floor["median_us"]:
            failures.append(f"request answered in the mount: {getxattr:.3f} GETXATTR per call, "
                            f"answered in {answered} us of the call's {floor['median_us']} us")

    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
