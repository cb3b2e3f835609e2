#!/usr/bin/env bash
# Installs what vmm needs on a fresh Debian 12 machine: Debian packages, QEMU 10 from
# bookworm-backports (through a private apt list, /etc/apt untouched), rustup targets.
# Safe to run twice: it only calls apt when something is missing.
set -euo pipefail

# Debian 12's QEMU 7.2 makes every guest signal ~8x slower than QEMU 10 from bookworm-backports
# (it flushes its TLB on each SUM toggle), and this image's qemu-utils is already 10.x, which
# conflicts with 7.2's qemu-system-common. So QEMU comes from backports.
BACKPORTS_PKGS=(qemu-system-misc qemu-system-x86)
MAIN_PKGS=(qemu-user gcc-riscv64-linux-gnu libc6-dev-riscv64-cross binutils opensbi linux-source-6.1 linux-source-6.12
  linux-image-amd64 busybox-static flex bison bc libelf-dev libssl-dev cpio make gcc xz-utils)

APT_DIR=/var/cache/vmm-apt
APT_OPTS=(-o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$APT_DIR/lists")

missing=()
for p in "${BACKPORTS_PKGS[@]}" "${MAIN_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
qemu_major=$(qemu-system-riscv64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
if [ "${#missing[@]}" -gt 0 ] || [ "${qemu_major:-0}" -lt 10 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "install-deps: installing ${missing[*]:-QEMU 10}"
  $SUDO mkdir -p "$APT_DIR/lists/partial"
  $SUDO tee "$APT_DIR/sources.list" >/dev/null <<'LIST'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
LIST
  $SUDO apt-get "${APT_OPTS[@]}" update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -q -t bookworm-backports "${BACKPORTS_PKGS[@]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -q "${MAIN_PKGS[@]}"
fi

installed_targets=$(rustup target list --installed)
for t in riscv64gc-unknown-linux-gnu riscv64gc-unknown-none-elf; do
  grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done
installed_components=$(rustup component list --installed)
for c in rust-src llvm-tools clippy rustfmt; do
  grep -q "^$c" <<<"$installed_components" || rustup component add "$c"
done
echo "install-deps: ok ($(qemu-system-riscv64 --version | head -1))"
