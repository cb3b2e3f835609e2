#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for SECONDS each (default 60), one after another on
# one core: all targets, or the ones named.
#
#   scripts/fuzz.sh [--merge] SECONDS [TARGET...]
#
# The corpus kept in the repo (fuzz/corpus/<target>/) is read, never written: what a run
# finds goes to fuzz/target/corpus/<target>/. With --merge, the inputs of that run which add
# coverage are then merged into fuzz/corpus/<target>/ (libFuzzer -merge=1), so the committed
# corpus only grows by what matters. Crash inputs go to fuzz/artifacts/<target>/.
#
# Prints per target: seconds, executions (libFuzzer's final stats), crashes (with the input).
# Exits 1 if any target crashed, 2 on bad usage; a failing step (install, build) is named by
# lib.sh's ERR trap.
source "$(dirname "$0")/lib.sh"
cd "$VMM_ROOT"
FUZZ=$VMM_ROOT/fuzz
LOGS=$FUZZ/target/logs
ALL=(x86_linux_loader x86_exits riscv_loader riscv_decode riscv_sbi lab_frame)

merge=0
if [[ "${1:-}" == "--merge" ]]; then
    merge=1
    shift
fi
seconds=${1:-60}
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [--merge] SECONDS [TARGET...]   (targets: ${ALL[*]})" >&2
    exit 2
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    if [[ ! " ${ALL[*]} " == *" $t "* ]]; then
        echo "fuzz: unknown target '$t' (targets: ${ALL[*]})" >&2
        exit 2
    fi
done
mkdir -p "$LOGS"

step "fuzz: tools"
# cargo-fuzz needs a nightly toolchain (-Zsanitizer); a machine without one gets it here.
cargo +nightly --version >/dev/null 2>&1 ||
    quietly "rustup toolchain install nightly" rustup toolchain install nightly --profile minimal
# From $HOME: the project's .cargo/config.toml would build the tool for musl.
cargo fuzz --version >/dev/null 2>&1 ||
    (cd "$HOME" && quietly "cargo install cargo-fuzz" cargo install --locked cargo-fuzz)
(cd "$FUZZ" && quietly "build the fuzz targets" cargo +nightly fuzz build)

BIN=$FUZZ/target/x86_64-unknown-linux-gnu/release
crashed=0
step "fuzz: ${targets[*]} for $seconds s each"
printf '%-18s %8s %14s  %s\n' target seconds executions crashes
for t in "${targets[@]}"; do
    found=$FUZZ/target/corpus/$t
    artifacts=$FUZZ/artifacts/$t
    mkdir -p "$found" "$artifacts" "$FUZZ/corpus/$t"
    log=$LOGS/$t.log
    start=$(date +%s)
    # The first corpus directory is the one libFuzzer writes to: the scratch one.
    status=0
    "$BIN/$t" "$found" "$FUZZ/corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    took=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [[ $status -eq 0 ]]; then
        result=0
    else
        crashed=$((crashed + 1))
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        result="1 (exit $status; input ${input:-none written}; log $log)"
    fi
    printf '%-18s %8s %14s  %s\n' "$t" "$took" "${execs:-?}" "$result"
    if [[ $merge -eq 1 && $status -eq 0 ]]; then
        # Keep the named seeds and crash reproducers; add the fewest found inputs that cover
        # the edges they miss (set cover on edges, not hit counts: tens of files, not hundreds).
        merged=$FUZZ/target/merged/$t
        rm -rf "$merged" && mkdir -p "$merged"
        find "$FUZZ/corpus/$t" -type f ! -regex '.*/[0-9a-f]\{40\}' -exec cp {} "$merged/" \;
        "$BIN/$t" -set_cover_merge=1 -use_counters=0 "$merged" "$FUZZ/corpus/$t" "$found" >"$LOGS/$t.merge.log" 2>&1
        rm -rf "$FUZZ/corpus/$t" && mv "$merged" "$FUZZ/corpus/$t"
        echo "fuzz: $t corpus now $(find "$FUZZ/corpus/$t" -type f | wc -l) files"
    fi
done
if ((crashed > 0)); then
    echo "fuzz: $crashed of ${#targets[@]} target(s) crashed; reproduce with $BIN/TARGET INPUT" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s), no crashes"
