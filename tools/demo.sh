#!/usr/bin/env bash
# Sets up enclavefs and runs a demo on this machine: enclavefs-hostd exports a demo directory
# and serves a demo volume over a unix socket, and enclavefs-mount mounts both, as an enclave
# would over vsock (a basic mount of the directory, a block mount of the volume).
#   sudo tools/demo.sh          start the demo and print commands to try
#   sudo tools/demo.sh stop     unmount and stop the server
set -euo pipefail
cd "$(dirname "$0")/.."
demo=/tmp/enclavefs-demo

stop() {
  if mountpoint -q "$demo/volume" 2>/dev/null; then
    build/enclave-fs/enclavefs-mount --unmount "$demo/volume" || umount -l "$demo/volume"
  fi
  if mountpoint -q "$demo/mnt" 2>/dev/null; then umount "$demo/mnt" || umount -l "$demo/mnt"; fi
  rmdir "$demo/mnt" "$demo/volume" 2>/dev/null || true
  if [ -f "$demo/hostd.pid" ]; then
    kill "$(cat "$demo/hostd.pid")" 2>/dev/null || true
    rm -f "$demo/hostd.pid"
  fi
}

if [ "${1:-}" = stop ]; then
  stop
  echo "demo stopped; $demo/export and the volume $demo/db.img keep the files"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: error: mounting needs root (run with sudo)" >&2
  exit 1
fi

tools/setup.sh
stop
mkdir -p "$demo/export"
[ -f "$demo/export/welcome.txt" ] || echo "Hello from the host: this file lives on the parent instance." >"$demo/export/welcome.txt"
[ -f "$demo/db.img" ] || build/tools/enclavefs-volume create --size 1G --volume "$demo/db.img"

build/host-server/enclavefs-hostd --listen "unix:$demo/hostd.sock" --export "demo=$demo/export" \
  --volume "db=$demo/db.img" 2>"$demo/hostd.log" &
echo $! >"$demo/hostd.pid"
for _ in $(seq 100); do [ -S "$demo/hostd.sock" ] && break; sleep 0.05; done
# The mount points do not exist yet: enclavefs-mount makes them (forceMount, docs/operations.md).
build/enclave-fs/enclavefs-mount --host "unix:$demo/hostd.sock" --export demo "$demo/mnt"
build/enclave-fs/enclavefs-mount --host "unix:$demo/hostd.sock" --volume db "$demo/volume" \
  --log-file "$demo/volume.log"

cat <<EOT

enclavefs demo is running.
  host side (the parent's directory):   $demo/export
  enclave side (the FUSE mount):        $demo/mnt
  block volume (sparse image, host):    $demo/db.img
  its ext4, mounted in the "enclave":   $demo/volume
  server log:                           $demo/hostd.log

Try:
  cat $demo/mnt/welcome.txt
  echo "result from the enclave" > $demo/mnt/result.txt && cat $demo/export/result.txt
  mkdir $demo/mnt/dir && ls -la $demo/mnt $demo/export
  df -h $demo/mnt; mount | grep enclavefs
  cp -r /usr/include/linux $demo/volume/ && sync && build/tools/enclavefs-volume info $demo/db.img
  build/tools/enclavefs-volume resize --size 2G --volume $demo/db.img    # refused: in use
Stop it with: sudo tools/demo.sh stop
EOT
