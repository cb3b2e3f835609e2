#!/usr/bin/env bash
# Installs what vmm needs on a fresh Debian 12 machine: Debian packages, QEMU 10 from
# bookworm-backports (through a private apt list, /etc/apt untouched), rustup targets and
# components (scripts/fuzz.sh installs cargo-fuzz when it first runs). Safe to run twice: it only calls apt when something is missing.
#   scripts/install-deps.sh [packages|rust]...    (no argument: both)
# Environment: VMM_APT_MIRROR (default http://deb.debian.org) picks the Debian mirror.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian 12's QEMU 7.2 makes every guest signal ~8x slower than QEMU 10 from bookworm-backports
# (it flushes its TLB on each SUM toggle), and this image's qemu-utils is already 10.x, which
# conflicts with 7.2's qemu-system-common. So QEMU comes from backports.
BACKPORTS_PKGS=(qemu-system-misc qemu-system-x86)
# lz4: the x86 guest kernel is LZ4-compressed. debootstrap: the fresh-machine set-up test.
# chromium: tests/teach_lab.rs opens the `vmm lab --report` page in headless Chromium.
MAIN_PKGS=(qemu-user gcc-riscv64-linux-gnu libc6-dev-riscv64-cross binutils opensbi linux-source-6.1 linux-source-6.12
  linux-image-amd64 busybox-static flex bison bc libelf-dev libssl-dev cpio make gcc xz-utils lz4 debootstrap
  gdb-multiarch ca-certificates seabios chromium
  bindfs)  # bindfs: a real FUSE file system for tests/mem_file.rs (-o direct_io cannot map shared+writable)
MIRROR="${VMM_APT_MIRROR:-http://deb.debian.org}"

APT_DIR=/var/cache/vmm-apt
APT_OPTS=(-o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$APT_DIR/lists")

# The major version of the installed qemu-system-riscv64, or 0 when there is none yet.
qemu_major() {
    local v
    v=$(qemu-system-riscv64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1) || true
    echo "${v:-0}"
}

install_packages() {
    local missing=() p SUDO=""
    for p in "${BACKPORTS_PKGS[@]}" "${MAIN_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [[ "${#missing[@]}" -eq 0 && "$(qemu_major)" -ge 10 ]]; then
        echo "install-deps: all ${#BACKPORTS_PKGS[@]}+${#MAIN_PKGS[@]} packages present"
        return 0
    fi
    [[ "$(id -u)" -eq 0 ]] || SUDO=sudo
    echo "install-deps: installing ${missing[*]:-QEMU 10} (from $MIRROR)"
    $SUDO mkdir -p "$APT_DIR/lists/partial"
    $SUDO tee "$APT_DIR/sources.list" >/dev/null <<LIST
deb $MIRROR/debian bookworm main
deb $MIRROR/debian bookworm-updates main
deb $MIRROR/debian-security bookworm-security main
deb $MIRROR/debian bookworm-backports main
LIST
    # --error-on=any: a mirror that cannot be reached is an error, not a warning.
    quietly "apt-get update" $SUDO apt-get "${APT_OPTS[@]}" update --error-on=any
    # Bookworm's own packages first: installed the other way round, QEMU's dependencies come
    # from backports too (libelf1 0.192) and bookworm's libelf-dev can no longer be installed.
    quietly "apt-get install (${#MAIN_PKGS[@]} packages)" $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get "${APT_OPTS[@]}" install -y "${MAIN_PKGS[@]}"
    quietly "apt-get install (bookworm-backports: ${BACKPORTS_PKGS[*]})" $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get "${APT_OPTS[@]}" install -y -t bookworm-backports "${BACKPORTS_PKGS[@]}"
    [[ "$(qemu_major)" -ge 10 ]] || { echo "install-deps: qemu-system-riscv64 is still older than 10" >&2; false; }
    echo "install-deps: packages ok ($(qemu-system-riscv64 --version | head -1))"
}

install_rust() {
    local installed t c
    installed=$(rustup target list --installed)
    # musl: vmm's own x86_64 build (.cargo/config.toml); riscv64: the lab's vmm and the guests.
    for t in x86_64-unknown-linux-musl riscv64gc-unknown-linux-gnu riscv64gc-unknown-none-elf; do
        grep -qx "$t" <<<"$installed" || quietly "rustup target add $t" rustup target add "$t"
    done
    installed=$(rustup component list --installed)
    for c in rust-src llvm-tools clippy rustfmt; do
        grep -q "^$c" <<<"$installed" || quietly "rustup component add $c" rustup component add "$c"
    done
    echo "install-deps: rust ok ($(rustc --version))"
}

parts=("$@")
((${#parts[@]})) || parts=(packages rust)
for part in "${parts[@]}"; do
    case "$part" in
    packages) install_packages ;;
    rust) install_rust ;;
    *) echo "install-deps: unknown part '$part' (packages or rust)" >&2; exit 2 ;;
    esac
done
