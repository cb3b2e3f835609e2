#!/usr/bin/env bash
# The README's test command: set up (cached, so fast the second time), then every check:
# the set-up test on a fresh Debian root, formatting, clippy with warnings as errors, unit
# tests, the integration tests that run the real vmm on the real /dev/kvm and inside real
# riscv64 Linux under qemu-system-riscv64, and a short run of every fuzz target.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VMM_ROOT"
t0=$(date +%s)

scripts/setup.sh

step "test: install step on a fresh Debian 12 root (debootstrap)"
scripts/test-fresh-install.sh
step "test: cargo fmt --check"
cargo fmt --all -- --check
step "test: cargo clippy -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings
step "test: cargo clippy (riscv64 engine)"
cargo clippy --quiet -p urvirt-riscv --target riscv64gc-unknown-linux-gnu -- -D warnings
step "test: cargo test"
# Integration tests boot real kernels; two at a time fit this machine's two cores.
cargo test --workspace -- --test-threads=2
step "test: fuzz every target briefly (corpus in fuzz/corpus)"
scripts/fuzz.sh "${VMM_FUZZ_SECONDS:-20}"
echo "test: all passed in $(( $(date +%s) - t0 )) s"
