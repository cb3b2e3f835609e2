# lab-page-touch.bin (teaching lab): phase 1 writes once to each of N fresh 4 KiB pages from
# 16 MiB up (mapped by the guest's own page tables from the start, so the guest takes no page
# fault: any fault is the host's, backing guest RAM on first use); phase 2 writes to the same
# N pages again. Phase 0: the same walk without the writes. N is at most 16384 (64 MiB).
	.code64
	.set LAB_DEFAULT_N, 4096
	.include "lab.inc"
lab_name:	.asciz "page-touch"

.macro EV_TOUCH
	mov %r14, (%rdi)
	add $4096, %rdi
.endm
.macro EV_WALK
	mov %r14, %rax
	add $4096, %rdi
.endm

main:
	cmp $TOUCH_MAX, %r15
	ja too_many
	MARK 0
	mov $TOUCH_BASE, %rdi
	REPEAT_N EV_WALK
	MARK 1
	mov $TOUCH_BASE, %rdi
	REPEAT_N EV_TOUCH
	MARK 2
	mov $TOUCH_BASE, %rdi
	REPEAT_N EV_TOUCH
	MARK 3
	jmp lab_done
too_many:
	lea msg_too_many(%rip), %rsi
	call lab_print
	mov $1, %al
	jmp lab_exit
msg_too_many:	.asciz "lab page-touch: N is more than 16384 pages\n"
