#!/usr/bin/env bash
# The set-up test on a machine state without the packages: a minimal Debian 12 root made by
# debootstrap (no QEMU, no cross compiler, no kernel sources), with this project bind-mounted
# read-only at /project. Inside it:
#   1. install-deps with an unreachable mirror must fail, naming its step and the command;
#   2. install-deps must install every package, and afterwards the tools work (QEMU >= 10,
#      the riscv64 cross compiler builds a static binary, lz4, OpenSBI, kernel sources);
#   3. a second install-deps run must find everything present and install nothing.
# Passing is remembered by the hash of the install scripts (VMM_CACHE), so an unchanged
# install step is not re-run on this machine; a fresh machine (empty cache) runs it for real.
# Needs root (debootstrap, chroot, mount namespaces).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE="${VMM_CACHE:-$HOME/.cache/vmm}"
# The week is part of the key: what the mirror serves changes (this test once found a package
# conflict that only appeared on a fresh install), so a pass is trusted for a week at most.
key="$( (cat "$VMM_ROOT/scripts/install-deps.sh" "$VMM_ROOT/scripts/lib.sh" "$0"; date -u +%G-W%V) | sha256sum | cut -c1-16)"
marker="$CACHE/fresh-install-$key.ok"
if [[ -f "$marker" && "${VMM_FRESH_INSTALL_FORCE:-}" != 1 ]]; then
    echo "fresh-install test: passed before with these install scripts ($marker; VMM_FRESH_INSTALL_FORCE=1 re-runs it)"
    exit 0
fi
[[ "$(id -u)" -eq 0 ]] || { echo "fresh-install test: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh-install test: debootstrap missing (scripts/install-deps.sh installs it)" >&2; exit 1; }

work="$(mktemp -d /var/tmp/vmm-fresh.XXXXXX)"
# The logs written inside the root survive it, beside set-up's own.
trap 'mkdir -p "$VMM_LOG_DIR/fresh-root" && cp -r "$work/root/tmp/setup-logs/." "$VMM_LOG_DIR/fresh-root/" 2>/dev/null; rm -rf "$work"' EXIT
root="$work/root"
t0=$(date +%s)

# The base system is cached as a tarball (it only depends on Debian 12 itself); the root made
# from it has none of vmm's packages.
base="$CACHE/debootstrap-bookworm-minbase.tar.gz"
mkdir -p "$CACHE"
if [[ ! -f "$base" ]]; then
    quietly "debootstrap: download the bookworm minbase set" \
        debootstrap --variant=minbase --make-tarball="$base.tmp" bookworm "$work/tarball-root" http://deb.debian.org/debian
    mv "$base.tmp" "$base"
    rm -rf "$work/tarball-root"
fi
quietly "debootstrap: a fresh Debian 12 root" \
    debootstrap --variant=minbase --unpack-tarball="$base" bookworm "$root" http://deb.debian.org/debian
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" # no services start in a chroot
chmod +x "$root/usr/sbin/policy-rc.d"
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/vmm-test-unsafe-io" # a throwaway root needs no fsync
mkdir -p "$root/project"

# Runs a command in the root, in a private mount namespace (every mount goes away with it).
in_root() {
    unshare --mount --propagation private bash -c '
        root="$1"; shift
        mount --bind "$PROJECT" "$root/project" && mount -o remount,bind,ro "$root/project"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
            VMM_LOG_DIR=/tmp/setup-logs "$@"' in_root "$root" "$@"
}
export PROJECT="$VMM_ROOT"

# Nothing of vmm's is there yet.
if in_root sh -c 'command -v qemu-system-riscv64 || command -v riscv64-linux-gnu-gcc || command -v lz4' >/dev/null; then
    echo "fresh-install test: the fresh root already has vmm's packages" >&2
    exit 1
fi

# 1. A forced failure names the step and the command.
out="$work/forced.out"
if in_root env VMM_STEP="packages and toolchains" VMM_APT_MIRROR=http://127.0.0.1:9 \
    /project/scripts/install-deps.sh packages >"$out" 2>&1; then
    echo "fresh-install test: install-deps succeeded with an unreachable mirror:" >&2
    cat "$out" >&2
    exit 1
fi
grep -q "setup: step 'packages and toolchains' failed: .*apt-get.*update" "$out" || {
    echo "fresh-install test: the forced failure did not name its step and command:" >&2
    cat "$out" >&2
    exit 1
}
echo "  forced failure reported: $(grep "setup: step" "$out" | head -1)"

# 2. The real install, then the tools it promises.
in_root /project/scripts/install-deps.sh packages
in_root bash -euo pipefail -c '
    v=$(qemu-system-riscv64 --version | sed -n "s/.*version \([0-9]*\)\..*/\1/p" | head -1)
    [ "$v" -ge 10 ] || { echo "qemu-system-riscv64 is $v, not >= 10"; exit 1; }
    qemu-system-x86_64 --version | head -1
    test -f /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin
    test -f /usr/src/linux-source-6.1.tar.xz && test -f /usr/src/linux-source-6.12.tar.xz
    printf "int main(void){return 0;}\n" >/tmp/t.c
    riscv64-linux-gnu-gcc -static -o /tmp/t /tmp/t.c && gcc -o /tmp/t86 /tmp/t.c && /tmp/t86
    echo vmm | lz4 -q | lz4 -dq | grep -qx vmm
    command -v debootstrap busybox flex bison bc cpio make >/dev/null
    echo "  tools in the fresh root: ok (qemu $v)"'

# 3. Idempotent: nothing left to install.
out="$work/again.out"
in_root /project/scripts/install-deps.sh packages >"$out" 2>&1
grep -q "all .* packages present" "$out" && ! grep -q "installing" "$out" || {
    echo "fresh-install test: a second install-deps run was not a no-op:" >&2
    cat "$out" >&2
    exit 1
}
touch "$marker"
echo "fresh-install test: passed in $(($(date +%s) - t0)) s"
