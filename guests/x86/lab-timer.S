# lab-timer.bin (teaching lab): phase 1 takes N timer interrupts from the PIT at 1 kHz (KVM's
# in-kernel PIT and PIC, --lab-devices), halting between them: each is an interrupt injected,
# a handler run, an EOI `out` and an `iretq`, all inside KVM. Phase 0: the same loop without
# waiting. Interrupts are on only across `sti; hlt`: this workload's handler returns with them
# off, so each `hlt` takes exactly one tick and phase 1 exactly N.
	.code64
	.set LAB_DEFAULT_N, 500
	.include "lab.inc"
lab_name:	.asciz "timer"

.macro EV_COUNT
	incq LAB_SCRATCH
.endm

main:
	# IDT vector 0x20 (IRQ 0) -> timer_tick, in place of lab.inc's lab_tick.
	lea timer_tick(%rip), %rax
	mov $IDT_ADDR + 0x20 * 16, %rdi
	mov %ax, (%rdi)			# offset 15:0
	shr $16, %rax
	mov %ax, 6(%rdi)		# offset 31:16
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

# lab_tick, but returning with interrupts off (IF cleared in the saved RFLAGS): a tick already
# pending as it returns waits for the next `sti; hlt` instead of making an N+1st.
timer_tick:
	push %rax
	incq LAB_TICKS
	mov $0x20, %al
	out %al, $0x20
	pop %rax
	andq $~0x200, 16(%rsp)		# the frame: RIP, CS, RFLAGS, RSP, SS
	iretq
