#!/usr/bin/env bash
# The x86 lab host: what `vmm run --arch x86 --lab` needs to run vmm's full-boot (SVM) path on
# any x86_64 machine, also one whose /dev/kvm is kvm-pvm or that has no /dev/kvm at all.
#   1. a small x86_64 Linux 6.12 (tinyconfig + scripts/x86_64-guest.config +
#      scripts/x86_64-lab-host.config) that QEMU runs in software on an emulated AMD CPU with SVM
#      and nested paging; its KVM_AMD then offers a /dev/kvm. Cached under
#      ${VMM_CACHE:-$HOME/.cache/vmm}/x86-lab-host-<hash>/bzImage, copied to target/x86-lab/bzImage;
#   2. a check of qemu-system-x86_64;
#   3. vmm's release build, static (musl, .cargo/config.toml), which is /init in the lab host's
#      initramfs, which has no libc: target/x86_64-unknown-linux-musl/release/vmm.
# Usage: scripts/build-x86-lab.sh [kernel|qemu|vmm]...   (no argument: all three, in order)
# Idempotent: a cached kernel is reused; cargo rebuilds only what changed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$VMM_ROOT"
CACHE="${VMM_CACHE:-$HOME/.cache/vmm}"
GUEST_FRAGMENT="$ROOT/scripts/x86_64-guest.config"
LAB_FRAGMENT="$ROOT/scripts/x86_64-lab-host.config"
LAB="$ROOT/target/x86-lab"
SOURCE=/usr/src/linux-source-6.12.tar.xz
JOBS="${VMM_JOBS:-2}"
# Bump when the recipe below changes in a way that changes the kernel.
RECIPE=1

log() { echo "[x86-lab] $*" >&2; }
die() { echo "[x86-lab] ERROR: $*" >&2; exit 1; }

# --- 1. kernel -------------------------------------------------------------------------------


# Builds bzImage into cache dir $1. Fails if an option of either fragment did not survive
# olddefconfig (a typo or a missing dependency would silently drop it).
build_kernel_into() {
    local out="$1" src build
    src="$(unpack_source "$SOURCE")"
    build="$out.build"
    rm -rf "$build"
    mkdir -p "$build"
    local kmake=(make -C "$src" O="$build" ARCH=x86_64 -j"$JOBS")
    quietly "x86 lab kernel: configure" bash -c "$(printf '%q ' "${kmake[@]}") -s tinyconfig &&
        '$src/scripts/kconfig/merge_config.sh' -m -O '$build' '$build/.config' '$GUEST_FRAGMENT' '$LAB_FRAGMENT' &&
        $(printf '%q ' "${kmake[@]}") -s olddefconfig"
    local line
    while IFS= read -r line; do
        [[ "$line" =~ ^CONFIG_ ]] || continue
        grep -qx "$line" "$build/.config" || die "kernel config lost '$line' (see $build/.config)"
    done < <(cat "$GUEST_FRAGMENT" "$LAB_FRAGMENT")
    quietly "x86 lab kernel: make -j$JOBS bzImage from $(basename "$SOURCE" .tar.xz) (about 6 min)" "${kmake[@]}" bzImage
    mkdir -p "$out"
    cp "$build/.config" "$out/config"
    cp "$build/System.map" "$out/System.map" # to read addresses in a boot log (no kallsyms)
    cp "$build/arch/x86/boot/bzImage" "$out/bzImage.tmp"
    mv "$out/bzImage.tmp" "$out/bzImage"
    rm -rf "$build"
}

build_kernel() {
    [[ -f "$SOURCE" ]] || die "$SOURCE is missing (scripts/install-deps.sh installs linux-source-6.12 from bookworm-backports)"
    local key out
    key="$( (echo "recipe $RECIPE"; basename "$SOURCE"; stat -c %s "$SOURCE"; cat "$GUEST_FRAGMENT" "$LAB_FRAGMENT") |
        sha256sum | cut -c1-16)"
    out="$CACHE/x86-lab-host-$key"
    if [[ -f "$out/bzImage" ]]; then
        log "kernel cached: $out/bzImage"
    else
        build_kernel_into "$out"
    fi
    mkdir -p "$LAB"
    # Atomically: a test may be booting the old one.
    if ! cmp -s "$out/bzImage" "$LAB/bzImage" 2>/dev/null; then
        cp "$out/bzImage" "$LAB/bzImage.tmp"
        mv "$LAB/bzImage.tmp" "$LAB/bzImage"
    fi
    log "kernel ready: $LAB/bzImage"
}

# --- 2. qemu ---------------------------------------------------------------------------------

check_qemu() {
    command -v qemu-system-x86_64 >/dev/null ||
        die "qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)"
    log "$(qemu-system-x86_64 --version | head -1)"
}

# --- 3. the static x86_64 vmm ----------------------------------------------------------------

build_vmm() {
    # The normal release build: .cargo/config.toml makes it static (musl).
    # --target as well: cargo reads .cargo/config.toml from the current directory only.
    quietly "cargo build --release (static x86_64 vmm)" \
        cargo build -j"$JOBS" --release --target x86_64-unknown-linux-musl --bin vmm \
        --manifest-path "$ROOT/Cargo.toml"
    local vmm="$ROOT/target/x86_64-unknown-linux-musl/release/vmm"
    [[ -x "$vmm" ]] || die "cargo left no $vmm"
    # The lab host has no dynamic loader or libc: a dynamic vmm would fail there as "not found".
    # (ldd is no test: it prints "statically linked" and exits 0 for a static-pie binary.)
    if readelf -lW "$vmm" | grep -q 'program interpreter'; then
        die "$vmm asks for a dynamic loader ($(readelf -lW "$vmm" | grep -o 'interpreter: [^]]*')); the lab host needs it static"
    fi
    log "static x86_64 vmm ready: $vmm"
}

steps=("$@")
((${#steps[@]})) || steps=(kernel qemu vmm)
for step in "${steps[@]}"; do
    case "$step" in
    kernel) build_kernel ;;
    qemu) check_qemu ;;
    vmm) build_vmm ;;
    *) die "unknown step '$step' (kernel, qemu or vmm)" ;;
    esac
done
