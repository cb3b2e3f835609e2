# outs.bin (long mode): the exit benchmark. 100,000 `out` instructions to the debug port,
# then hlt; each `out` is one KVM_EXIT_IO.
	.code64
	.text
	.globl _start
_start:
	mov $100000, %ecx
	mov $'.', %al
1:	out %al, $0xf1
	dec %ecx
	jnz 1b
	hlt
