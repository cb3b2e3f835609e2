# emufail.bin (long mode): an instruction KVM's x86 emulator does not implement (xrstor).
# On kvm-pvm, where guest instructions go through that emulator, this ends in
# KVM_EXIT_INTERNAL_ERROR (emulation failure); on VMX/SVM the CPU runs it and, with no
# valid XSAVE area and no IDT, it faults all the way to a triple fault.
	.code64
	.text
	.globl _start
_start:
	xor %eax, %eax
	xor %edx, %edx
	xrstor 0x2000
	hlt
