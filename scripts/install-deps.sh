#!/usr/bin/env bash
# Installs every Debian bookworm package Ferry's build, tests and benchmarks need.
# Idempotent and quiet when everything is already present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  g++ clang-14 libclang-rt-14-dev          # clang + libFuzzer/ASan/UBSan/TSan runtimes
  libgtest-dev libgmock-dev libbenchmark-dev
  libisal-dev                              # crc32c
  liburing-dev                             # block I/O (io_uring)
  nlohmann-json3-dev libfmt-dev libcli11-dev
  libprotobuf-dev protobuf-compiler        # benchmark baseline only
  libcereal-dev                            # benchmark baseline only
  qemu-system-x86                          # reference VM for side-by-side tests
  tmux                                     # the demo seen on a terminal (demo_terminal_test)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
