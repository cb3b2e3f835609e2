# lab-timer.bin (teaching lab): phase 1 takes N timer interrupts from the PIT at 1 kHz (KVM's
# in-kernel PIT and PIC, --lab-devices), halting between them: each is an interrupt injected,
# a handler run, an EOI `out` and an `iretq`, all inside KVM. Phase 0: the same loop without
# waiting. Interrupts are on only across `hlt` and the handler's return, so phase 1 takes N
# ticks, or N+1 when another is already pending as the last handler returns.
	.code64
	.set LAB_DEFAULT_N, 500
	.include "lab.inc"
lab_name:	.asciz "timer"

.macro EV_COUNT
	incq LAB_SCRATCH
.endm

main:
	mov $1193, %eax			# 1193182 Hz / 1193 = 1000.2 Hz
	call lab_pit_start
	MARK 0
	REPEAT_N EV_COUNT
	MARK 1
	movq $0, LAB_TICKS
	call lab_unmask_timer
1:	cmp %r15, LAB_TICKS
	jae 2f
	sti
	hlt
	cli
	jmp 1b
2:	MARK 2
	call lab_pit_stop
	jmp lab_done
