# triple.bin (long mode): a guest that triple-faults. With an empty IDT, the invalid opcode
# cannot be delivered, nor can the #GP and #DF that follow: the CPU shuts down.
# (Long mode, because some KVM flavors, e.g. PVM, emulate real mode without IDT limit checks.)
	.code64
	.text
	.globl _start
_start:
	lidt idt_empty(%rip)
	ud2
	hlt
idt_empty:
	.word 0
	.quad 0
