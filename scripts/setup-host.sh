#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) for imagecomposer: host tools from apt, a
# virtual environment in ./.venv with nox, and imagecomposer itself with libsolv built
# from source with Debian support (the PyPI wheel lacks it).
#
# Usage: scripts/setup-host.sh            # from the checkout's top directory
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # building libsolv's Python module
  gcc python3-dev python3-venv libxml2-dev zlib1g-dev liblzma-dev libzstd-dev libbz2-dev
  # repository metadata and package verification
  gpgv gnupg debian-archive-keyring apt dpkg-dev rpm createrepo-c
  # disk assembly without loop devices or mounts
  fdisk dosfstools mtools e2fsprogs xfsprogs squashfs-tools erofs-utils cryptsetup-bin
  util-linux eatmydata
  # security.selinux: the tree is labelled at build time with the host's setfiles
  policycoreutils
  # lvm2's pvck/lvs/vgck check the LVM2 metadata imagecomposer writes (tests only)
  lvm2
  # rootless builds: newuidmap/newgidmap (only a Recommends of mmdebstrap, which this
  # script does not install; without it the rootless tests would skip)
  uidmap
  # boot, signing (osslsigncode signs EFI binaries, sbverify checks them), export
  qemu-system-x86 qemu-utils ovmf osslsigncode sbsigntool openssl zstd pigz xz-utils
  # reference tools the tests and benchmarks compare against
  mmdebstrap busybox-static cpio dnf
  # distributed builds: the broker (docs/distributed.md); the cluster tests start their own
  redis-server
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q nox
# libsolv with Debian support, built once into a wheelhouse that nox sessions reuse.
scripts/build-solv-wheel.sh .wheelhouse .venv/bin/pip
# --no-index: PyPI's solv wheel (no Debian support) must never win over ours.
.venv/bin/pip install -q --no-index --find-links .wheelhouse solv==0.7.39.post1
.venv/bin/pip install -q -e '.[boot]'
echo "imagecomposer is installed in .venv: .venv/bin/imagecomposer --help"
