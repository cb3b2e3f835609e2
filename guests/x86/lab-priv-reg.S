# lab-priv-reg.bin (teaching lab): privileged register access. Phase 1: N `cpuid` (leaf 0);
# phase 2: N reads and writes back of CR0; phase 3: N `rdmsr` of IA32_APIC_BASE (0x1b), an MSR
# KVM answers itself. None of these reach vmm; KVM's statistics show what they cost there.
	.code64
	.set LAB_DEFAULT_N, 10000
	.include "lab.inc"
lab_name:	.asciz "priv-reg"

.macro EV_CPUID
	xor %eax, %eax
	cpuid
.endm
.macro EV_CR
	mov %cr0, %rax
	mov %rax, %cr0
.endm
.macro EV_MSR
	mov $0x1b, %ecx
	rdmsr
.endm

main:
	MARK 0
	REPEAT_N nop
	MARK 1
	REPEAT_N EV_CPUID
	MARK 2
	REPEAT_N EV_CR
	MARK 3
	REPEAT_N EV_MSR
	MARK 4
	jmp lab_done
