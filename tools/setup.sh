#!/usr/bin/env bash
# Installs the Debian 12 packages enclavefs needs (idempotent) and builds into build/.
#   tools/setup.sh            packages + release build in build/
#   BUILD_DIR=... MESON_ARGS=... tools/setup.sh   another build directory / configuration
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential pkg-config meson ninja-build
  libfuse3-dev fuse3 capnproto libcapnp-dev liburing-dev libxxhash-dev
  libspdlog-dev libfmt-dev doctest-dev libcli11-dev
  libyaml-cpp-dev nlohmann-json3-dev libsodium-dev libext2fs-dev
  e2fsprogs util-linux attr python3
  fio sshfs openssh-sftp-server sqlite3 nbdkit libnbd-bin
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: error: packages are missing and installing them needs root (run with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${BUILD_DIR:-build}
if [ ! -f "$build_dir/build.ninja" ]; then
  # shellcheck disable=SC2086
  meson setup "$build_dir" ${MESON_ARGS:-}
fi
ninja -C "$build_dir"
