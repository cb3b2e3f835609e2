# badport.bin (real mode): writes to port 0x99, where no device is: a flat guest must fail.
	.code16
	.text
	.globl _start
_start:
	mov $1, %al
	out %al, $0x99
	hlt
