# virtio.bin: entered at 0x1000 in 32-bit protected mode (flat, paging off). A minimal modern
# virtio-mmio block driver for the disk vmm puts at 0xd0000000 (`--disk`): it sets the device
# up in Linux's order, reads sector 0 and prints its first line, writes sector 1, flushes, and
# prints each request's status byte. It polls the used ring (a flat guest has no interrupts).
	.code32
	.text
	.globl _start

_start:
	jmp main                    # the driver's code comes first in the image; enter past it
	.include "virtio-driver.inc"

main:
	call virtio_init
	# The chain: header (readable) -> data -> status (writable).
	movl $HDR, DESC
	movl $16, DESC + 8
	movl $0x00010001, DESC + 12 # flags NEXT, next 1
	movl $DATA, DESC + 16
	movl $512, DESC + 24
	movl $STATUS, DESC + 32
	movl $1, DESC + 40
	movw $2, DESC + 44          # flags WRITE

	# 1. Read sector 0 and print its first line.
	movl $0, HDR                # VIRTIO_BLK_T_IN
	movl $0, HDR + 8            # sector 0
	movl $0x00020003, DESC + 28 # data: NEXT | WRITE, next 2
	call submit
	mov $msg_read, %esi
	call print
	mov $DATA, %esi
1:	movb (%esi), %al
	out %al, $0xf1
	inc %esi
	cmp $0x0a, %al
	jne 1b

	# 2. Write the message into sector 1.
	mov $msg_disk, %esi
	mov $DATA, %edi
2:	movb (%esi), %al
	movb %al, (%edi)
	inc %esi
	inc %edi
	test %al, %al
	jnz 2b
	movl $1, HDR                # VIRTIO_BLK_T_OUT
	movl $1, HDR + 8
	movl $0x00020001, DESC + 28 # data: NEXT (device-readable), next 2
	call submit
	mov $msg_write, %esi
	call print

	# 3. Flush: header -> status.
	movl $4, HDR                # VIRTIO_BLK_T_FLUSH
	movl $0x00020001, DESC + 12 # header: NEXT, next 2
	call submit
	mov $msg_flush, %esi
	call print
	hlt

# Prints the string at %esi, then "status N" and a newline.
print:
	movb (%esi), %al
	test %al, %al
	jz 4f
	out %al, $0xf1
	inc %esi
	jmp print
4:	movb STATUS, %al
	add $'0', %al
	out %al, $0xf1
	movb $0x0a, %al
	out %al, $0xf1
	ret

no_device:
	mov $msg_none, %esi
5:	movb (%esi), %al
	test %al, %al
	jz 6f
	out %al, $0xf1
	inc %esi
	jmp 5b
6:	hlt

msg_read:	.asciz "virtio-blk read status "
msg_write:	.asciz "virtio-blk write status "
msg_flush:	.asciz "virtio-blk flush status "
msg_none:	.asciz "no virtio-blk device at 0xd0000000\n"
msg_disk:	.asciz "written by the flat x86 guest\n"
