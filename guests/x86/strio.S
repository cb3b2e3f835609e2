# strio.bin (real mode): string I/O. `rep outsb` writes a whole string to the debug port in
# one instruction, `rep outsw` writes words (the port prints each word's low byte), and
# `rep insb` reads four bytes from the Bochs port 0xe9 (each reads as 0xe9) into a buffer
# that `rep outsb` then prints. KVM may hand such an instruction to vmm as one exit holding
# several accesses (KVM_EXIT_IO with count > 1); each must reach the device.
	.code16
	.text
	.globl _start
_start:
	cld
	mov $0xf1, %dx
	mov $msg, %si
	mov $(msg_end - msg), %cx
	rep outsb
	mov $words, %si
	mov $((words_end - words) / 2), %cx
	rep outsw
	mov $0xe9, %dx
	mov $buf, %di
	mov $4, %cx
	rep insb
	mov $0xf1, %dx
	mov $buf, %si
	mov $5, %cx
	rep outsb
	hlt
msg:	.ascii "rep outsb: the whole string\n"
msg_end:
words:	.word 'o', 'u', 't', 's', 'w', '\n'
words_end:
buf:	.byte 0, 0, 0, 0, '\n'
