# hello64.bin: entered at 0x1000 in 64-bit long mode, identity-mapped 2 MiB pages.
# Prints a line on the debug port, then leaves 42 in RAX and at 0x400 (like kvm-hello-world).
	.code64
	.text
	.globl _start
_start:
	lea msg(%rip), %rsi
1:	movb (%rsi), %al
	test %al, %al
	jz 2f
	out %al, $0xf1
	inc %rsi
	jmp 1b
2:	movl $42, 0x400
	mov $42, %rax
	hlt
msg:	.asciz "Hello from 64-bit long mode\n"
