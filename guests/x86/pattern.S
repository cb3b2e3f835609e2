# pattern.bin: writes a known pattern at a known guest-physical address, for --mem-file
# tests (the file must hold it after the run): bytes 0, 1, ..., 255 at 0x8000, then the
# word "PATTERN!" at 0x8100. Prints "ok\n" and halts. Real mode, entered at 0x1000.
	.code16
	.text
	.globl _start
_start:
	xor %ax, %ax
	mov %ax, %es
	mov $0x8000, %di
	mov $256, %cx
	cld
1:	stosb
	inc %al
	loop 1b
	movl $0x54544150, %es:0x8100	# "PATT"
	movl $0x214e5245, %es:0x8104	# "ERN!"
	mov $'o', %al
	out %al, $0xf1
	mov $'k', %al
	out %al, $0xf1
	mov $'\n', %al
	out %al, $0xf1
	hlt
