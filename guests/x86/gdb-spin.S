# gdb-spin.bin (and gdb-spin.elf for gdb): entered at 0x1000 in 64-bit long mode, counts in
# RAX forever between the labels `spin` and `spin_end`, for gdb's Ctrl-C (tests/gdb_x86.rs).
	.code64
	.text
	.globl _start, spin, spin_end
_start:
	xor %eax, %eax
spin:
	inc %rax
	jmp spin
spin_end:
	hlt
