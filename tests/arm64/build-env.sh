#!/usr/bin/env bash
# Build (or refresh) the arm64 device environment: a Debian bookworm arm64 root filesystem run under
# qemu-user-static, with the distribution's Python, python3-opencv (built with GStreamer, against
# Debian's numpy 1.24) and GStreamer base/good/tools -- the layout of a JetPack system -- and edgeseg
# installed into it exactly as docs/jetson.md tells a Jetson user (docs/jetson.md, "The arm64 device environment").
#
#   sudo bash tests/arm64/build-env.sh            # build what is missing, reinstall edgeseg from this tree
#   sudo bash tests/arm64/build-env.sh --rebuild  # throw the root away and build it from nothing
#
# The root lives in $EDGESEG_ARM64_ROOT (default /var/cache/edgeseg/arm64-bookworm). Each finished step
# leaves a stamp there, so a rerun only redoes the edgeseg install. Everything comes from Debian's
# packages and PyPI. Needs root (debootstrap, chroot, binfmt_misc).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROOT="${EDGESEG_ARM64_ROOT:-/var/cache/edgeseg/arm64-bookworm}"
SUITE=bookworm
export QEMU_CPU="${EDGESEG_ARM64_CPU:-cortex-a76}"  # a Jetson Orin's instruction set (tests/arm64/in-root.sh)
MIRROR="${EDGESEG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The device side of a JetPack system: the distribution's Python and OpenCV, GStreamer with its tools.
DEVICE_PACKAGES="python3 python3-venv python3-pip python3-numpy python3-opencv ca-certificates
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good libgstreamer1.0-0 openssh-server rsync"

[ "$(id -u)" = 0 ] || { echo "build-env.sh: needs root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }
if [ "${1:-}" = "--rebuild" ]; then
  echo "== removing $ROOT"; rm -rf "$ROOT"
elif [ -n "${1:-}" ]; then
  echo "usage: build-env.sh [--rebuild]" >&2; exit 2
fi

step() {  # step NAME COMMAND...: run once, timed; the stamp records the seconds it took
  local name=$1; shift
  if [ -f "$ROOT/.edgeseg-stamps/$name" ]; then
    echo "== $name: done before ($(cat "$ROOT/.edgeseg-stamps/$name") s), kept"; return
  fi
  echo "== $name"; local t0=$SECONDS
  "$@"
  mkdir -p "$ROOT/.edgeseg-stamps"; echo $((SECONDS - t0)) > "$ROOT/.edgeseg-stamps/$name"
  echo "== $name: $((SECONDS - t0)) s"
}

host_tools() {
  if ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/qemu-aarch64-static ] || ! command -v update-binfmts >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap binfmt-support >/dev/null
  fi
}

binfmt() {  # every run: the kernel's binfmt_misc registration does not survive a reboot
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { echo "build-env.sh: qemu-aarch64 is registered without the F flag; chroot cannot find it" >&2; exit 1; }
}

# in_root CMD...: run inside the root with /proc and /dev mounted in a private mount namespace (the mounts
# vanish with the command, nothing is left mounted on the host); not /sys (tests/arm64/in-root.sh says why).
in_root() {
  unshare --mount --fork bash -c '
    root=$1; shift
    mount -t proc proc "$root/proc"; mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"' _ "$ROOT" "$@"
}

bootstrap() {
  rm -rf "$ROOT"; mkdir -p "$(dirname "$ROOT")"
  debootstrap --arch=arm64 --variant=minbase "$SUITE" "$ROOT" "$MIRROR"
}

network() {  # every run: the host's resolver and CA bundle (pip and apt reach the registries through them)
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/usr/local/share/ca-certificates/host-bundle.crt"
}

device_packages() {
  in_root apt-get update -qq
  # shellcheck disable=SC2086
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $DEVICE_PACKAGES >/dev/null
  in_root update-ca-certificates >/dev/null
  in_root apt-get clean
}

# The CPU list a board's /sys has, without the host's /sys (whose x86 topology crashes the engines' cpuinfo
# in an arm64 process): onnxruntime 1.23.2 aborts when it finds no CPU list at all.
cpu_list() {
  mkdir -p "$ROOT/sys/devices/system/cpu"
  printf '0-1\n' > "$ROOT/sys/devices/system/cpu/possible"
  printf '0-1\n' > "$ROOT/sys/devices/system/cpu/present"
}

SECONDS=0
step host-tools host_tools
binfmt
step bootstrap bootstrap
network
step device-packages device_packages
cpu_list
network  # update-ca-certificates rebuilt the bundle; keep the host's roots in it
cat "$ROOT/usr/local/share/ca-certificates/host-bundle.crt" >> "$ROOT/etc/ssl/certs/ca-certificates.crt"
source "$HERE/install-edgeseg.sh"
echo "== arm64 environment ready in $ROOT ($SECONDS s this run)"
