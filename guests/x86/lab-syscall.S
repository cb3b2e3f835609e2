# lab-syscall.bin (teaching lab): phase 1 makes N system calls from ring 3: `syscall` into the
# guest kernel's entry, which returns at once (with `iretq`, see sys_entry). Under hardware virtualization
# neither leaves the guest. Phase 0: the same loop with a `nop` for the `syscall`.
# The user code runs with IOPL 3, so it can make marks and print on the debug port itself.
	.code64
	.set LAB_DEFAULT_N, 10000
	.set SYS_STACK, 0x88000		# the entry's own stack for the iretq frame
	.include "lab.inc"
lab_name:	.asciz "syscall"

main:
	lea sys_entry(%rip), %rax
	call lab_syscall_init
	lea user(%rip), %rax
	jmp lab_to_user

user:
	MARK 0
	REPEAT_N nop
	MARK 1
	REPEAT_N syscall
	MARK 2
	jmp lab_done

# The guest kernel's system call: nothing to do but go back (RCX = return RIP, R11 = RFLAGS).
# It returns with `iretq`, not `sysretq`: kvm-pvm's instruction emulator has no sysret (the
# guest triple-faulted there), and iretq is the return Linux takes when sysret will not do.
sys_entry:
	mov %rsp, %r10			# syscall does not switch stacks: the kernel does
	mov $SYS_STACK, %rsp
	pushq $USER_DS | 3
	push %r10
	push %r11
	pushq $USER_CS | 3
	push %rcx
	iretq
