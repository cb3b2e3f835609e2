# hello.bin: the classic 25-byte real-mode demo. Entered at 0x1000 in 16-bit real mode
# (CS base 0). Each character is `mov al, c` + `out 0xf1, al` (4 bytes); 6 of them and a
# `hlt` make 25 bytes.
	.code16
	.text
	.globl _start
_start:
	mov $'H', %al
	out %al, $0xf1
	mov $'e', %al
	out %al, $0xf1
	mov $'l', %al
	out %al, $0xf1
	mov $'l', %al
	out %al, $0xf1
	mov $'o', %al
	out %al, $0xf1
	mov $'\n', %al
	out %al, $0xf1
	hlt
