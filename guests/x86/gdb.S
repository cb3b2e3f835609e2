# gdb.bin (and gdb.elf, with its symbols, for gdb): entered at 0x1000 in 64-bit long mode.
# Calls `bump` five times, each adding 1 to `counter` (a named variable gdb can print), then
# prints a line on the debug port and halts. tests/gdb_x86.rs breaks at `bump`.
	.code64
	.text
	.globl _start, bump, counter
_start:
	mov $5, %ecx
1:	call bump
	dec %ecx
	jnz 1b
	lea msg(%rip), %rsi
2:	movb (%rsi), %al
	test %al, %al
	jz 3f
	out %al, $0xf1
	inc %rsi
	jmp 2b
3:	mov counter(%rip), %eax
	hlt

bump:
	mov $0x1234, %edx
	incl counter(%rip)
	ret

	.balign 4
counter: .long 0
msg:	.asciz "gdb guest done\n"
