# The teaching lab's compute kernel, shared word for word by the lab-compute guest and
# `urvirt_riscv::teach::native_compute` (which includes this file), so the guest and the
# native baseline run the same instructions.
#
# u64 lab_compute_kernel(u64 n): n steps of a 64-bit linear congruential generator, folding
# the high bits of each state into a checksum (returned, so nothing can be optimized away).
    .section .text
    # Module-level assembly does not see the target's extensions: name M (for mul) here.
    .option push
    .option arch, +m
    .balign 4
    .globl lab_compute_kernel
lab_compute_kernel:
    li t0, 6364136223846793005
    li t1, 1442695040888963407
    li t2, 0
    li t3, 0
1:  beqz a0, 2f
    mul t2, t2, t0
    add t2, t2, t1
    srli t4, t2, 29
    xor t3, t3, t4
    addi a0, a0, -1
    j 1b
2:  mv a0, t3
    ret
    .option pop
