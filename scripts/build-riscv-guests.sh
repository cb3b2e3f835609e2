#!/usr/bin/env bash
# Builds the RISC-V test guests (guests/riscv, riscv64gc-unknown-none-elf) into raw binaries:
#   target/guests/riscv/{hello,sbi-probe,csr-test,echo,spin,paged,devices,blk,gdb-target,pattern}.bin (Rust S-mode kernels linked at 0x80200000)
#   target/guests/riscv/{gdb-target,spin,paged}.elf (the same, as ELF with symbols, for the gdb tests)
#   target/guests/riscv/lab-<workload>.bin                      (the teaching lab's workloads, same kind)
#   target/guests/riscv/garbage.bin                            (fixed pseudo-random bytes: not code)
# Idempotent: cargo rebuilds only what changed; unchanged .bin files are left alone.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/guests/riscv"
OUT="$ROOT/target/guests/riscv"
TARGET=riscv64gc-unknown-none-elf
JOBS="${VMM_JOBS:-2}"

log() { echo "[riscv-guests] $*" >&2; }
die() { echo "[riscv-guests] ERROR: $*" >&2; exit 1; }

rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || rustup target add "$TARGET"

# llvm-objcopy from rustup's llvm-tools, else binutils for riscv64.
objcopy="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
if [[ ! -x "$objcopy" ]]; then
    rustup component add llvm-tools >/dev/null 2>&1 || true
fi
if [[ ! -x "$objcopy" ]]; then
    objcopy="$(command -v riscv64-linux-gnu-objcopy)" ||
        die "no objcopy: rustup component add llvm-tools, or apt-get install binutils-riscv64-linux-gnu"
fi

# From inside the crate: its .cargo/config.toml picks the target and the linker script.
cd "$CRATE"
quietly "cargo build guests/riscv" cargo build -j"$JOBS" --release

mkdir -p "$OUT"
# Writes $2 only when its content changes, so later steps can trust mtimes.
install_if_changed() {
    cmp -s "$1" "$2" 2>/dev/null || cp "$1" "$2"
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for guest in hello sbi-probe csr-test echo spin paged devices blk gdb-target pattern \
    lab-console-out lab-priv-reg lab-page-touch lab-page-touch-sv39 lab-timer lab-syscall lab-mmio lab-compute; do
    "$objcopy" -O binary "$CRATE/target/$TARGET/release/$guest" "$tmp/$guest.bin"
    install_if_changed "$tmp/$guest.bin" "$OUT/$guest.bin"
done
# The gdb tests run these as ELF (vmm loads ELF kernels) and give gdb the same file for symbols.
for guest in gdb-target spin paged; do
    install_if_changed "$CRATE/target/$TARGET/release/$guest" "$OUT/$guest.elf"
done

# garbage.bin: an all-ones word (a reserved, >32-bit encoding: always an illegal instruction)
# followed by 252 fixed pseudo-random bytes. Entered with no stvec set, it must end in a clear
# diagnostic naming pc 0x80200000 and the instruction.
{
    printf '\xff\xff\xff\xff'
    hex="$(for i in $(seq 0 7); do echo "urvirt garbage $i" | sha256sum | cut -c1-64; done | tr -d '\n')"
    printf "$(echo "${hex:0:504}" | sed 's/../\\x&/g')"
} >"$tmp/garbage.bin"
install_if_changed "$tmp/garbage.bin" "$OUT/garbage.bin"

for f in "$OUT"/*.bin; do log "$(basename "$f"): $(stat -c %s "$f") bytes"; done
