# virtio-bench.bin: the guest side of `vmm bench`'s disk figures. 32-bit protected mode, flat.
# Through the virtio-blk disk at 0xd0000000 it reads 4096 sequential 4 KiB blocks, then writes
# them, one request at a time (notify, poll the used ring), and leaves the TSC ticks each phase
# took at 0x400 (reads) and 0x408 (writes). Prints "virtio-bench done" or the failing status.
	.code32
	.text
	.globl _start

	.set REQUESTS, 4096

_start:
	jmp main                    # the driver's code comes first in the image; enter past it
	.include "virtio-driver.inc"

main:
	call virtio_init
	movl $HDR, DESC
	movl $16, DESC + 8
	movl $0x00010001, DESC + 12 # header: NEXT, next 1
	movl $DATA, DESC + 16
	movl $4096, DESC + 24
	movl $STATUS, DESC + 32
	movl $1, DESC + 40
	movw $2, DESC + 44          # status: WRITE

	movl $0, HDR                # VIRTIO_BLK_T_IN into a device-writable buffer
	movl $0x00020003, DESC + 28
	call phase
	mov %eax, 0x400
	mov %edx, 0x404
	movl $1, HDR                # VIRTIO_BLK_T_OUT from a device-readable buffer
	movl $0x00020001, DESC + 28
	call phase
	mov %eax, 0x408
	mov %edx, 0x40c
	mov $msg_done, %esi
	jmp say

# REQUESTS requests of HDR's type at sectors 0, 8, 16, ...; returns the TSC ticks in edx:eax.
phase:
	rdtsc
	mov %eax, %edi
	mov %edx, %ebp
	xor %ebx, %ebx
1:	mov %ebx, %eax
	shl $3, %eax
	mov %eax, HDR + 8
	movl $0, HDR + 12
	call submit
	cmpb $0, STATUS
	jne failed
	inc %ebx
	cmp $REQUESTS, %ebx
	jb 1b
	rdtsc
	sub %edi, %eax
	sbb %ebp, %edx
	ret

failed:
	mov $msg_failed, %esi
	jmp say
no_device:
	mov $msg_none, %esi
say:	movb (%esi), %al
	test %al, %al
	jz 2f
	out %al, $0xf1
	inc %esi
	jmp say
2:	hlt

msg_done:	.asciz "virtio-bench done\n"
msg_failed:	.asciz "virtio-bench: a request failed\n"
msg_none:	.asciz "no virtio-blk device at 0xd0000000\n"
