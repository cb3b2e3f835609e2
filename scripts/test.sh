#!/usr/bin/env bash
# The README's test command: set up (cached, so fast the second time), then every check:
# formatting, clippy with warnings as errors, unit tests, and the integration tests that run
# the real vmm on the real /dev/kvm and inside real riscv64 Linux under qemu-system-riscv64.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo; echo "== test: cargo fmt --check"
cargo fmt --all -- --check
echo "== test: cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== test: cargo clippy (riscv64 engine)"
cargo clippy -p urvirt-riscv --target riscv64gc-unknown-linux-gnu -- -D warnings

echo "== test: cargo test"
# Integration tests boot real kernels; two at a time fit this machine's two cores.
cargo test --workspace -- --test-threads=2
