# lab-console-out.bin (teaching lab): phase 1 writes N '.' bytes to the debug port 0xf1, one
# `out` each: N KVM_EXIT_IO exits that vmm handles. Phase 0: the same loop without the `out`.
	.code64
	.set LAB_DEFAULT_N, 10000
	.include "lab.inc"
lab_name:	.asciz "console-out"

.macro EV_DOT
	mov $'.', %al
	out %al, $LAB_DEBUG_PORT
.endm
.macro EV_NODOT
	mov $'.', %al
	nop
.endm

main:
	MARK 0
	REPEAT_N EV_NODOT
	MARK 1
	REPEAT_N EV_DOT
	MARK 2
	mov $'\n', %al
	out %al, $LAB_DEBUG_PORT
	jmp lab_done
