#!/usr/bin/env bash
# Sets up everything vmm needs, from a fresh Debian 12 machine: packages, toolchains, guests,
# the x86 test kernel, the x86 and riscv64 lab hosts, and the release build. Slow results (kernels) are
# cached under ${VMM_CACHE:-$HOME/.cache/vmm}; running it again only redoes what changed.
# Every step prints one line per long build with its time and log file; a failure names the
# step and the command (scripts/lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VMM_ROOT"

t0=$(date +%s)
step "packages and toolchains";             scripts/install-deps.sh
step "x86 guests";                          scripts/build-x86-guests.sh
step "RISC-V guests";                       scripts/build-riscv-guests.sh
step "x86 Linux kernel + initramfs";        scripts/build-x86-kernel.sh
step "x86 lab host (SVM kernel + static x86_64 vmm)"; scripts/build-x86-lab.sh
step "riscv64 lab host (kernels + riscv64 vmm)"; scripts/build-riscv-lab.sh
# Static (musl, .cargo/config.toml): target/x86_64-unknown-linux-musl/release/vmm.
step "vmm (release)";                       quietly "cargo build --release" cargo build --release --bin vmm
echo "setup: done in $(( $(date +%s) - t0 )) s"
