# loop.bin (real mode): a runaway guest that never halts; only --timeout stops it.
	.code16
	.text
	.globl _start
_start:
	jmp _start
