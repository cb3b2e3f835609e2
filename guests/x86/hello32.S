# hello32.bin: entered at 0x1000 in 32-bit protected mode with flat segments, paging off.
# Prints a line on the debug port, then leaves 42 in EAX and at 0x400 (like kvm-hello-world).
	.code32
	.text
	.globl _start
_start:
	mov $msg, %esi
1:	movb (%esi), %al
	test %al, %al
	jz 2f
	out %al, $0xf1
	inc %esi
	jmp 1b
2:	movl $42, 0x400
	mov $42, %eax
	hlt
msg:	.asciz "Hello from 32-bit protected mode\n"
