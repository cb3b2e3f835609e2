# gdb.bin (and gdb.elf, with its symbols, for gdb): entered at 0x1000 in 64-bit long mode.
# First it maps the 2 MiB page at virtual ALIAS (400 MiB, beyond RAM) onto physical 0, so
# `counter` is also at virtual ALIAS + &counter, an address gdb reaches only through the page
# tables. Then it calls `bump` five times, each adding 1 to `counter` (a named variable gdb
# can print), prints a line on the debug port and halts. tests/gdb_x86.rs breaks at `bump`.
	.code64
	.text
	.globl _start, bump, counter
	.set ALIAS, 0x19000000
	.globl ALIAS
_start:
	# vmm's tables: CR3 -> PML4[0] -> PDPT[0] -> the page directory of the first GiB.
	mov %cr3, %rax
	mov (%rax), %rax
	and $-4096, %rax
	mov (%rax), %rax
	and $-4096, %rax
	movq $0x83, (ALIAS >> 21) * 8(%rax)	# present, writable, 2 MiB page at physical 0
	mov %cr3, %rax
	mov %rax, %cr3
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
