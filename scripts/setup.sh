#!/usr/bin/env bash
# Sets up everything vmm needs, from a fresh Debian 12 machine: packages, toolchains, guests,
# the x86 test kernel, the riscv64 lab host, and the release build. Slow results (kernels) are
# cached under ${VMM_CACHE:-$HOME/.cache/vmm}; running it again only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== setup: %s\n' "$*"; }
t0=$(date +%s)
step "packages and toolchains";  scripts/install-deps.sh
step "x86 guests";               scripts/build-x86-guests.sh
step "RISC-V guests";            scripts/build-riscv-guests.sh
step "x86 Linux kernel + initramfs"; scripts/build-x86-kernel.sh
step "riscv64 lab host (kernel + riscv64 vmm)"; scripts/build-riscv-lab.sh
step "vmm (release)";            cargo build --release --bin vmm
echo "setup: done in $(( $(date +%s) - t0 )) s"
