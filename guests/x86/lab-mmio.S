# lab-mmio.bin (teaching lab): phase 1 reads the lab register (--lab-devices, 0xd0100000,
# reads "LAB!") N times: each read is an MMIO exit that vmm handles. Phase 0: the same loop
# reading a word of RAM instead.
	.code64
	.set LAB_DEFAULT_N, 10000
	.include "lab.inc"
lab_name:	.asciz "mmio"

.macro EV_READ_REG
	mov (%rsi), %eax
.endm
.macro EV_READ_RAM
	mov (%rdi), %eax
.endm

main:
	mov $LAB_REG_ADDR, %esi
	mov $LAB_SCRATCH, %edi
	mov (%rsi), %eax
	cmp $LAB_REG_VALUE, %eax
	jne no_register
	MARK 0
	REPEAT_N EV_READ_RAM
	MARK 1
	REPEAT_N EV_READ_REG
	MARK 2
	jmp lab_done
no_register:
	lea msg_no_register(%rip), %rsi
	call lab_print
	mov $1, %al
	jmp lab_exit
msg_no_register:	.asciz "lab mmio: the lab register does not read LAB!\n"
