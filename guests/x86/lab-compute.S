# lab-compute.bin (teaching lab): phase 1 runs N rounds of xorshift64 (the same instructions
# as vmm_x86::teach::native_compute, which `vmm lab` runs natively for the baseline) with the
# PIT ticking at 100 Hz, so the ticks' cost is in the figure. Phase 0: the loop without its
# body. Prints the final value, which must equal teach::compute_kernel(N).
# The kernel runs in ring 3: where KVM runs guest user code natively and emulates the guest
# kernel (kvm-pvm), that is what lets it run at native speed; the ticks interrupt it into the
# guest kernel's handler (stack from the TSS) and return. A `syscall` ends phase 1.
	.code64
	.set LAB_DEFAULT_N, 100000000
	.include "lab.inc"
lab_name:	.asciz "compute"

main:
	lea sys_entry(%rip), %rax
	call lab_syscall_init
	mov $11932, %eax		# 1193182 Hz / 11932 = 100.0 Hz
	call lab_pit_start
	# To ring 3 with interrupts on (kvm-pvm refuses sti in ring 3 even with IOPL 3); IRQ 0
	# stays masked at the PIC until phase 1.
	pushq $USER_DS | 3
	pushq $USER_STACK
	pushq $0x3202
	pushq $USER_CS | 3
	lea user(%rip), %rax
	push %rax
	iretq

user:
	MARK 0
	mov %r15, %rcx
	test %rcx, %rcx
	jz 2f
1:	dec %rcx
	jnz 1b
2:	MARK 1
	call lab_unmask_timer
	mov $0x9e3779b97f4a7c15, %rax	# teach::COMPUTE_SEED
	mov %r15, %rcx
	test %rcx, %rcx
	jz 2f
1:	mov %rax, %rdx
	shl $13, %rdx
	xor %rdx, %rax
	mov %rax, %rdx
	shr $7, %rdx
	xor %rdx, %rax
	mov %rax, %rdx
	shl $17, %rdx
	xor %rdx, %rax
	dec %rcx
	jnz 1b
2:	syscall				# back to the kernel, interrupts off (SFMASK)

sys_entry:
	mov %rax, %rbx
	MARK 2
	call lab_pit_stop
	lea msg_x(%rip), %rsi
	call lab_print
	mov %rbx, %rax
	call lab_print_hex
	mov $'\n', %al
	out %al, $LAB_DEBUG_PORT
	jmp lab_done
msg_x:	.asciz "lab compute x="
