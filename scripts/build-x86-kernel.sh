#!/usr/bin/env bash
# Builds vmm's small x86_64 guest kernel (vmlinux with the PVH note, and bzImage) from Debian's
# linux-source-6.1 plus scripts/x86_64-guest.config, and a busybox initramfs whose /init prints
# VMM-INIT-OK and ends the VM (or first runs a shell when the command line has `vmm.shell`).
# The kernel is cached under
# ${VMM_CACHE:-$HOME/.cache/vmm}/x86-kernel-<hash>/ keyed by the source version, the fragment and
# RECIPE; the results are copied into target/guests/x86/linux/. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
src_tar=/usr/src/linux-source-6.1.tar.xz
fragment="$here/x86_64-guest.config"
busybox=/bin/busybox
out="$root/target/guests/x86/linux"
jobs="${VMM_JOBS:-2}"

for need in "$src_tar" "$busybox"; do
    [[ -e "$need" ]] || { echo "missing $need: apt-get install linux-source-6.1 busybox-static" >&2; exit 1; }
done
for tool in make gcc flex bison bc cpio gzip lz4; do
    command -v "$tool" >/dev/null || { echo "missing tool $tool: apt-get install build-essential flex bison bc libelf-dev libssl-dev cpio lz4" >&2; exit 1; }
done

src_version="$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c '%s-%Y' "$src_tar")"
# Bump RECIPE when the build below changes in a way that changes the kernel.
RECIPE=2
key="$( { echo "recipe $RECIPE"; echo "$src_version"; cat "$fragment"; } | sha256sum | cut -c1-16)"
cache="${VMM_CACHE:-$HOME/.cache/vmm}/x86-kernel-$key"

if [[ ! -f "$cache/vmlinux" || ! -f "$cache/bzImage" ]]; then
    echo "building the x86_64 guest kernel into $cache (about 5 min on 2 cores)"
    work="$cache.work"
    rm -rf "$work"
    mkdir -p "$work"
    quietly "x86 kernel: unpack $(basename "$src_tar")" tar -C "$work" -xf "$src_tar"
    ksrc="$(echo "$work"/linux-source-*)"
    quietly "x86 kernel: configure" bash -c "make -C '$ksrc' -s ARCH=x86_64 tinyconfig &&
        '$ksrc/scripts/kconfig/merge_config.sh' -m -O '$ksrc' '$ksrc/.config' '$fragment' &&
        make -C '$ksrc' -s ARCH=x86_64 olddefconfig"
    # Every option of the fragment must have survived olddefconfig (a typo or a missing dependency would not).
    while IFS= read -r line; do
        [[ "$line" =~ ^CONFIG_ ]] || continue
        grep -qx "$line" "$ksrc/.config" || { echo "kernel config lost '$line'" >&2; exit 1; }
    done < "$fragment"
    quietly "x86 kernel: make -j$jobs vmlinux bzImage" make -C "$ksrc" ARCH=x86_64 -j"$jobs" vmlinux bzImage
    quietly "x86 kernel: gen_init_cpio" make -C "$ksrc" ARCH=x86_64 usr/gen_init_cpio
    mkdir -p "$cache.tmp"
    cp "$ksrc/vmlinux" "$ksrc/arch/x86/boot/bzImage" "$ksrc/.config" "$cache.tmp/"
    cp "$ksrc/usr/gen_init_cpio" "$cache.tmp/"
    rm -rf "$cache"
    mv "$cache.tmp" "$cache"
    rm -rf "$work"
fi

mkdir -p "$out"
cp -f "$cache/vmlinux" "$cache/bzImage" "$out/"

# The initramfs: busybox-static and an /init that prints the marker and ends the VM. This kernel has
# no ACPI, so a power-off request would only make PID 1 exit (a panic); /init asks for a forced
# reboot instead, which with reboot=k is the i8042 reset that vmm turns into a clean exit 0.
initdir="$(mktemp -d)"
trap 'rm -rf "$initdir"' EXIT
cat > "$initdir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
# The guest's own clock at the marker (`vmm bench --linux` reports it); `read` is a shell
# builtin, so this costs no process.
read -r uptime idle < /proc/uptime
echo "VMM-INIT-OK uptime=$uptime"
if [ -n "${VMM_SHELL:-}" ] || /bin/busybox grep -qw vmm.shell /proc/cmdline; then
    /bin/busybox --install -s /bin
    /bin/busybox setsid /bin/busybox cttyhack /bin/busybox sh
fi
/bin/busybox reboot -f
INIT
touch -d @0 "$initdir/init" # a byte-identical initramfs on every run
cat > "$initdir/list" <<LIST
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /tmp 1777 0 0
file /bin/busybox $busybox 0755 0 0
slink /bin/sh /bin/busybox 0777 0 0
file /init $initdir/init 0755 0 0
LIST
"$cache/gen_init_cpio" -t 0 "$initdir/list" | gzip -9n > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
echo "x86 guest kernel ready: $out/{vmlinux,bzImage,initramfs.cpio.gz}"
