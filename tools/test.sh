#!/usr/bin/env bash
# Sets up, builds and runs every test: the optimised build, then the same suite built with
# AddressSanitizer and UndefinedBehaviorSanitizer. Integration tests need root and /dev/fuse.
# Prints one closing line "N passed, N failed, N skipped" over both builds.
set -uo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh || exit 1
BUILD_DIR=build-asan MESON_ARGS="-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug" \
  tools/setup.sh || exit 1

# Daemons (a background enclavefs-mount) have no stderr: sanitizer reports go to files, and
# any report fails the run.
reports=$(mktemp -d /tmp/enclavefs-sanitizers.XXXXXX)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$reports/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan

status=0
for dir in build build-asan; do
  echo "== meson test -C $dir"
  meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
done

sanitizer_reports=0
if compgen -G "$reports/*" >/dev/null; then
  echo "== sanitizer reports:"
  cat "$reports"/*
  sanitizer_reports=$(ls "$reports" | wc -l)
  status=1
fi
rm -rf "$reports"

# One summary over both runs, from meson's own JSON log.
SANITIZER_REPORTS=$sanitizer_reports python3 - build build-asan <<'PY'
import json, os, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0, "ERROR": 0}
for d in sys.argv[1:]:
    with open(f"{d}/meson-logs/testlog.json") as f:
        for line in f:
            r = json.loads(line).get("result", "ERROR")
            counts[r] = counts.get(r, 0) + 1
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["ERROR"] + counts["UNEXPECTEDPASS"]
failed += int(os.environ.get("SANITIZER_REPORTS", "0"))  # each report is a failure
print(f"{counts['OK'] + counts['EXPECTEDFAIL']} passed, {failed} failed, {counts['SKIP']} skipped")
PY
exit $status
