# Sourced by every set-up script: fail loudly, name the step, keep long builds quiet.
#
#   step "NAME"            names what runs next (exported, so child scripts report it too)
#   quietly LABEL CMD...   runs CMD with its output in a log file and prints a start line and
#                          "  LABEL: ok in 12 s (log: PATH)", or on failure the log's tail
#   unpack_source TARBALL  unpacks a linux-source tarball once into the cache; prints its dir
#
# Any failing command (outside a condition) ends the script through the ERR trap with
#   setup: step 'NAME' failed: `COMMAND` exited with STATUS (SCRIPT line N)
# and that status, so set-up never stops without saying where.
set -Eeuo pipefail

VMM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VMM_LOG_DIR="${VMM_LOG_DIR:-$VMM_ROOT/target/setup-logs}"
export VMM_STEP="${VMM_STEP:-$(basename "$0")}"

step() {
    export VMM_STEP="$*"
    printf '\n== setup: %s\n' "$*"
}

on_error() {
    local status=$? command="$BASH_COMMAND" line="${BASH_LINENO[0]}" script="${BASH_SOURCE[1]:-$0}"
    printf "setup: step '%s' failed: \`%s\` exited with %s (%s line %s)\n" \
        "$VMM_STEP" "$command" "$status" "${script#"$VMM_ROOT"/}" "$line" >&2
    exit "$status"
}
trap on_error ERR

quietly() {
    local label="$1" log start status=0
    shift
    mkdir -p "$VMM_LOG_DIR"
    log="$VMM_LOG_DIR/$(printf '%s' "$label" | tr -c 'A-Za-z0-9._-' '-').log"
    start=$(date +%s)
    printf '  %s ...\n' "$label"
    "$@" >"$log" 2>&1 || status=$?
    if ((status != 0)); then
        printf '  %s: FAILED after %s s (exit %s); last lines of %s:\n' "$label" "$(($(date +%s) - start))" "$status" "$log" >&2
        tail -n 25 "$log" | sed 's/^/    | /' >&2
        printf "setup: step '%s' failed: \`%s\` exited with %s\n" "$VMM_STEP" "$*" "$status" >&2
        exit "$status"
    fi
    printf '  %s: ok in %s s (log: %s)\n' "$label" "$(($(date +%s) - start))" "$log"
}

# Unpacks a linux-source tarball once into ${VMM_CACHE:-~/.cache/vmm}/src (under a lock: the
# kernel builds may run at the same time and share one tree) and prints the source dir.
unpack_source() {
    local tarball="$1" name cache="${VMM_CACHE:-$HOME/.cache/vmm}"
    name="$(basename "$tarball" .tar.xz)"
    mkdir -p "$cache/src"
    (
        flock 9
        if [[ ! -f "$cache/src/$name/.unpacked" ]]; then
            rm -rf "$cache/src/$name.tmp" "$cache/src/$name"
            mkdir -p "$cache/src/$name.tmp"
            quietly "unpack $name (once)" tar -xJf "$tarball" -C "$cache/src/$name.tmp" >&2
            mv "$cache/src/$name.tmp/$name" "$cache/src/$name"
            rmdir "$cache/src/$name.tmp"
            touch "$cache/src/$name/.unpacked"
        fi
    ) 9>"$cache/src/$name.lock"
    echo "$cache/src/$name"
}
