#!/usr/bin/env bash
# Builds the x86 flat-binary guests from guests/x86/*.S (which may .include guests/x86/*.inc)
# with GNU binutils into target/guests/x86/.
# Each guest is linked at 0x1000 (where vmm loads and enters flat binaries) and stripped to a
# raw binary; the linked ELF stays beside it (NAME.elf) so gdb can load its symbols
# (`gdb target/guests/x86/gdb.elf`) while vmm runs the .bin. Idempotent: a guest is rebuilt
# only when its source or an .inc is newer than its binary.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/guests/x86"
out="$root/target/guests/x86"
mkdir -p "$out"

for tool in as ld objcopy; do
    command -v "$tool" >/dev/null || { echo "build-x86-guests: '$tool' not found: apt-get install binutils" >&2; exit 1; }
done

# The .code16/.code32/.code64 directive in each source picks the instruction encoding; the
# object format only needs to hold it, so 32-bit ELF serves the 16/32-bit guests.
for s in "$src"/*.S; do
    name="$(basename "$s" .S)"
    bin="$out/$name.bin"
    fresh=1
    for dep in "$s" "${BASH_SOURCE[0]}" "$src"/*.inc; do
        [[ -f "$bin" && "$bin" -nt "$dep" ]] || fresh=0
    done
    [[ -f "$out/$name.elf" ]] || fresh=0
    ((fresh)) && continue
    if grep -q '^\s*\.code64' "$s"; then as_flags=(--64); ld_emul=elf_x86_64; else as_flags=(--32); ld_emul=elf_i386; fi
    tmp="$(mktemp -d)"
    as "${as_flags[@]}" -I "$src" -o "$tmp/$name.o" "$s"
    ld -m "$ld_emul" -Ttext=0x1000 -e _start -o "$tmp/$name.elf" "$tmp/$name.o"
    objcopy -O binary -j .text "$tmp/$name.elf" "$tmp/$name.bin"
    mv "$tmp/$name.elf" "$out/$name.elf"
    mv "$tmp/$name.bin" "$bin"
    rm -rf "$tmp"
    echo "built $bin ($(stat -c %s "$bin") bytes)"
done
