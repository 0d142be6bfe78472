#!/usr/bin/env bash
# Run one command inside the arm64 root (tests/arm64/build-env.sh made it): /proc and /dev are mounted in
# a private mount namespace, so nothing stays mounted on the host when the command ends. Not /sys: the
# host's x86 CPU topology there makes LiteRT's and ONNX Runtime's CPU detection (cpuinfo) crash an arm64
# process (docs/jetson.md).
#   bash tests/arm64/in-root.sh uname -m
set -euo pipefail
ROOT="${EDGESEG_ARM64_ROOT:-/var/cache/edgeseg/arm64-bookworm}"
# The CPU qemu emulates: a Cortex-A76 is ARMv8.2-A with dotprod and fp16, the instruction set of a Jetson
# Orin's Cortex-A78AE, so the engines pick the kernels a Jetson runs (qemu's default "max" adds SVE2/SME).
export QEMU_CPU="${EDGESEG_ARM64_CPU:-cortex-a76}"
[ -x "$ROOT/usr/bin/python3" ] || { echo "in-root.sh: no arm64 root at $ROOT: build it with sudo bash tests/arm64/build-env.sh" >&2; exit 2; }
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
exec unshare --mount --fork bash -c '
  root=$1; shift
  mount -t proc proc "$root/proc"; mount --rbind /dev "$root/dev"
  exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"' _ "$ROOT" "$@"
