#!/usr/bin/env bash
# The RISC-V lab host: everything `vmm run --arch riscv` needs on a machine that is not riscv64.
#   1. a small riscv64 Linux kernel (tinyconfig + scripts/riscv64-host.fragment.config), cached
#      under ${VMM_CACHE:-$HOME/.cache/vmm}/riscv-host-<hash>/Image, copied to target/riscv-lab/Image;
#   2. a second lab host with Linux 6.1 (same fragment), whose riscv64 entry code predates syscall
#      user dispatch: target/riscv-lab-6.1/{Image,vmm}, for tests/riscv_lab_61.rs (VMM_RISCV_LAB);
#   3. a check of qemu-system-riscv64 (>= 10 wanted: 7.2 makes every host signal ~8x slower);
#   4. the riscv64 build of vmm (a dynamically linked PIE, placed above 2^38 by the lab kernels),
#      target/riscv64gc-unknown-linux-gnu/release/vmm.
# Usage: scripts/build-riscv-lab.sh [kernel|kernel-6.1|qemu|vmm]...   (no argument: all four, in order)
# Idempotent: a cached kernel is reused; cargo rebuilds only what changed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VMM_CACHE:-$HOME/.cache/vmm}"
FRAGMENT="$ROOT/scripts/riscv64-host.fragment.config"
LAB="$ROOT/target/riscv-lab"
LAB_61="$ROOT/target/riscv-lab-6.1"
SOURCE_612=/usr/src/linux-source-6.12.tar.xz
SOURCE_61=/usr/src/linux-source-6.1.tar.xz
JOBS="${VMM_JOBS:-2}"
# Bump when the recipe below changes in a way that changes the kernel.
RECIPE=1

log() { echo "[riscv-lab] $*" >&2; }
die() { echo "[riscv-lab] ERROR: $*" >&2; exit 1; }

# --- 1. kernel -------------------------------------------------------------------------------


# Builds Image from one tarball into $2 (a cache dir). Fails if a required option did not stick.
build_kernel_from() {
    local tarball="$1" out="$2" src build
    src="$(unpack_source "$tarball")"
    build="$out.build"
    rm -rf "$build"
    mkdir -p "$build"
    cat "$src/kernel/configs/tiny-base.config" "$src/kernel/configs/tiny.config" "$FRAGMENT" >"$build/allno.config"
    local kmake=(make -C "$src" O="$build" ARCH=riscv CROSS_COMPILE=riscv64-linux-gnu- -j"$JOBS")
    quietly "riscv64 kernel: configure $(basename "$tarball" .tar.xz)" \
        "${kmake[@]}" KCONFIG_ALLCONFIG="$build/allno.config" allnoconfig
    # URVirt needs these: memfd for guest RAM, seccomp and (6.9+) syscall user dispatch for ecall.
    local want=(CONFIG_SECCOMP CONFIG_SECCOMP_FILTER CONFIG_MEMFD_CREATE CONFIG_BLK_DEV_INITRD
        CONFIG_SERIAL_8250_CONSOLE CONFIG_POWER_RESET_SYSCON_POWEROFF CONFIG_FPU CONFIG_PROC_SYSCTL
        CONFIG_PROC_PAGE_MONITOR CONFIG_VIRTIO_MMIO CONFIG_VIRTIO_BLK)
    # 6.1 calls the QEMU virt platform SOC_VIRT and has no generic entry (so no SUD) on riscv.
    if [[ "$tarball" == *6.1.tar.xz ]]; then want+=(CONFIG_SOC_VIRT); else want+=(CONFIG_GENERIC_ENTRY); fi
    local opt
    for opt in "${want[@]}"; do
        grep -qx "$opt=y" "$build/.config" || die "$opt did not end up =y in $build/.config"
    done
    quietly "riscv64 kernel: make -j$JOBS Image from $(basename "$tarball" .tar.xz) (minutes)" "${kmake[@]}" Image
    mkdir -p "$out"
    cp "$build/arch/riscv/boot/Image" "$out/Image.tmp"
    cp "$build/.config" "$out/config"
    cp "$build/System.map" "$out/System.map" # to read addresses in a boot log (no kallsyms)
    mv "$out/Image.tmp" "$out/Image"
    rm -rf "$build"
}

# Boots the kernel once with a tiny static init that checks what URVirt relies on: syscall user
# dispatch (6.4+ on riscv) and a seccomp filter both turn a syscall into SIGSYS with si_syscall
# set, and memfd_create works. On 6.1 it checks instead that SUD is absent (prctl refuses it):
# that lab exists to test the fallback. Remembered per kernel by a marker file in its cache dir.
verify_kernel() {
    local out="$1" source="$2" work
    [[ -f "$out/selftest.ok" ]] && return 0
    work="$(mktemp -d)"
    cat >"$work/selftest.c" <<'CEOF'
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile char selector;
static volatile int trapped;

static void on_sigsys(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    trapped = si->si_syscall;
    selector = 0; /* SYSCALL_DISPATCH_FILTER_ALLOW: let rt_sigreturn through */
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);

    int memfd = memfd_create("selftest", 0);
    printf("SELFTEST memfd %s\n", memfd >= 0 ? "ok" : "FAIL");

    /* 59 = PR_SET_SYSCALL_USER_DISPATCH, 1 = ON; no always-allowed range. */
    if (prctl(59, 1, 0, 0, &selector) != 0) {
        printf("SELFTEST sud absent (prctl refused)\n");
    } else {
        selector = 1; /* SYSCALL_DISPATCH_FILTER_BLOCK */
        syscall(SYS_getppid);
        prctl(59, 0, 0, 0, 0);
        printf("SELFTEST sud %s\n", trapped == SYS_getppid ? "ok" : "FAIL");
    }

    trapped = 0;
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        printf("SELFTEST seccomp FAIL (prctl)\n");
    } else {
        syscall(SYS_getppid);
        printf("SELFTEST seccomp %s\n", trapped == SYS_getppid ? "ok" : "FAIL");
    }
    fflush(stdout);
    reboot(RB_POWER_OFF);
    return 0;
}
CEOF
    quietly "riscv64 kernel: self-test init" riscv64-linux-gnu-gcc -static -O2 -o "$work/init" "$work/selftest.c"
    (cd "$work" && mkdir dev && echo init | cpio -o -H newc --quiet >initramfs.cpio)
    local log="$work/console.log" want=(memfd seccomp) check
    if [[ "$source" == linux-source-6.1 ]]; then want+=(sud_absent); else want+=(sud); fi
    timeout 120 qemu-system-riscv64 -M virt -smp 1 -m 256M -nodefaults -display none -monitor none \
        -serial "file:$log" -no-reboot -bios /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin \
        -kernel "$out/Image" -initrd "$work/initramfs.cpio" -append "console=ttyS0 panic=-1" ||
        die "the self-test boot of $out/Image failed; console: $(tail -5 "$log" 2>/dev/null)"
    for check in "${want[@]}"; do
        if [[ "$check" == sud_absent ]]; then
            grep -q "SELFTEST sud absent" "$log" ||
                die "kernel self-test: $source was expected to refuse syscall user dispatch; console tail:
$(tail -15 "$log")"
            log "kernel self-test: sud absent, as expected on $source"
            continue
        fi
        grep -q "SELFTEST $check ok" "$log" ||
            die "kernel self-test: $check does not work; console tail:
$(tail -15 "$log")"
        log "kernel self-test: $check ok"
    done
    rm -rf "$work"
    touch "$out/selftest.ok"
}

# Sets KERNEL_OUT to the cache dir of the kernel built from tarball $1, building it if it is not
# there yet. Keyed by the recipe, the fragment and which source (name + size) it is built from.
# Returns non-zero if the build fails.
kernel_from() {
    local tarball="$1" key
    key="$( (echo "recipe $RECIPE"; basename "$tarball"; stat -c %s "$tarball"; cat "$FRAGMENT") |
        sha256sum | cut -c1-16)"
    KERNEL_OUT="$CACHE/riscv-host-$key"
    if [[ -f "$KERNEL_OUT/Image" ]]; then
        log "kernel cached: $KERNEL_OUT/Image ($(basename "$tarball"))"
        return 0
    fi
    # A separate process, so that `set -e` still holds inside the build (it does not in a condition).
    bash "$ROOT/scripts/build-riscv-lab.sh" _build_one "$tarball" "$KERNEL_OUT"
}

# Copies Image from cache dir $1 into lab dir $2, atomically: a test may be booting the old one.
install_image() {
    local out="$1" lab="$2"
    mkdir -p "$lab"
    if ! cmp -s "$out/Image" "$lab/Image" 2>/dev/null; then
        cp "$out/Image" "$lab/Image.tmp"
        mv "$lab/Image.tmp" "$lab/Image"
    fi
}

build_kernel() {
    local tarball
    for tarball in "$SOURCE_612" "$SOURCE_61"; do
        [[ -f "$tarball" ]] || { log "no $tarball"; continue; }
        if ! kernel_from "$tarball"; then
            log "building from $(basename "$tarball") failed; trying the next source"
            continue
        fi
        verify_kernel "$KERNEL_OUT" "$(basename "$tarball" .tar.xz)"
        install_image "$KERNEL_OUT" "$LAB"
        basename "$tarball" .tar.xz >"$LAB/kernel-source"
        log "kernel ready: $LAB/Image"
        return 0
    done
    die "could not build a riscv64 kernel (install linux-source-6.12 from bookworm-backports, or linux-source-6.1)"
}

# The Linux 6.1 lab (same fragment, cached the same way): there `--ecall auto` must fall back to
# seccomp and `--ecall sud` must be refused. Its vmm is a symlink to the one the main lab uses,
# so a rebuilt riscv64 vmm is tested on both kernels (Lab::locate reads $VMM_RISCV_LAB/vmm).
build_kernel_61() {
    [[ -f "$SOURCE_61" ]] || die "$SOURCE_61 is missing (apt-get install linux-source-6.1)"
    kernel_from "$SOURCE_61" || die "building the Linux 6.1 lab kernel failed"
    verify_kernel "$KERNEL_OUT" linux-source-6.1
    install_image "$KERNEL_OUT" "$LAB_61"
    echo linux-source-6.1 >"$LAB_61/kernel-source"
    ln -sfn ../riscv64gc-unknown-linux-gnu/release/vmm "$LAB_61/vmm"
    log "Linux 6.1 lab ready: $LAB_61/Image (vmm -> the riscv64 build)"
}

# --- 3. qemu ---------------------------------------------------------------------------------

check_qemu() {
    command -v qemu-system-riscv64 >/dev/null ||
        die "qemu-system-riscv64 is not installed (scripts/install-deps.sh installs it)"
    local firmware=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin
    [[ -f "$firmware" ]] || die "OpenSBI firmware $firmware is missing (apt-get install opensbi)"
    local version major
    version="$(qemu-system-riscv64 --version | head -1 | sed -E 's/^QEMU emulator version ([0-9.]+).*/\1/')"
    major="${version%%.*}"
    if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 10)); then
        log "qemu-system-riscv64 $version"
    else
        log "################################################################################"
        log "WARNING: qemu-system-riscv64 is $version, older than 10: every host signal (every"
        log "URVirt trap) is about 8x slower. Install 10.x from bookworm-backports."
        log "################################################################################"
    fi
}

# --- 4. the riscv64 vmm ----------------------------------------------------------------------

build_vmm() {
    command -v riscv64-linux-gnu-gcc >/dev/null ||
        die "riscv64-linux-gnu-gcc is missing (apt-get install gcc-riscv64-linux-gnu)"
    rustup target list --installed 2>/dev/null | grep -qx riscv64gc-unknown-linux-gnu ||
        rustup target add riscv64gc-unknown-linux-gnu
    quietly "cargo build --release --target riscv64gc-unknown-linux-gnu (riscv64 vmm, PIE)" \
        bash -c "cd '$ROOT' && cargo build -j$JOBS --release --target riscv64gc-unknown-linux-gnu --bin vmm"
    log "riscv64 vmm ready: $ROOT/target/riscv64gc-unknown-linux-gnu/release/vmm"
}

steps=("$@")
((${#steps[@]})) || steps=(kernel kernel-6.1 qemu vmm)
for step in "${steps[@]}"; do
    case "$step" in
    kernel) build_kernel ;;
    kernel-6.1) build_kernel_61 ;;
    qemu) check_qemu ;;
    vmm) build_vmm ;;
    _build_one) build_kernel_from "$2" "$3"; exit 0 ;;
    *) die "unknown step '$step' (kernel, kernel-6.1, qemu or vmm)" ;;
    esac
done
