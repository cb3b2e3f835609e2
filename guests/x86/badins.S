# badins.bin (real mode): `rep insb` of four bytes from port 0x99, which no device claims.
# KVM reads ahead for string input: one exit carries all four 1-byte accesses (count 4), and
# vmm must report the access as what it is, a 1-byte read, not one 4-byte read.
	.code16
	.text
	.globl _start
_start:
	cld
	mov $0x99, %dx
	mov $0x2000, %di
	mov $4, %cx
	rep insb
	hlt
