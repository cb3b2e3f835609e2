//! Lab workload syscall: N system call round trips from (virtual) U-mode into this kernel and
//! back: the user loop is `ecall` in a loop; the kernel's trap handler steps sepc past it and
//! `sret`s. Paging stays off. Under URVirt the user's ecall is a SIGSYS the monitor delivers
//! to the guest's stvec (cause 8, ecall from U-mode), and the kernel's csrr/csrw of sepc and
//! its sret are SIGILLs. Phase 0, the baseline: the same count of nops, in S-mode.
//!
//! The handler counts the round trips in s11 (the user loop leaves it alone); the N-th ecall
//! does not go back to U-mode but returns to the kernel's caller, so phase 1 holds exactly N
//! ecalls and N srets (the first one enters U-mode).
#![no_std]
#![no_main]

use riscv_guests::{lab, lab_params};

lab_params!(10_000);
const NAME: &str = "syscall";

core::arch::global_asm!(
    ".section .text",
    ".balign 4",
    "lab_user_loop:",
    "1:  ecall",
    "    j 1b",
    ".balign 4",
    "lab_sys_trap:",
    "    addi s11, s11, -1",
    "    beqz s11, 2f",
    "    csrr t6, sepc",
    "    addi t6, t6, 4",
    "    csrw sepc, t6",
    "    sret",
    // The N-th: back in the kernel, with its stack, return address and s11.
    "2:  la t6, lab_sys_saved",
    "    ld sp, 0(t6)",
    "    ld ra, 8(t6)",
    "    ld s11, 16(t6)",
    "    ret",
    // lab_user_setup(): stvec, sstatus.SPP and sepc for lab_run_user, before the marks (so
    // neither the baseline nor the round trips hold these CSR writes; marks leave them alone).
    ".globl lab_user_setup",
    "lab_user_setup:",
    "    la t6, lab_sys_trap",
    "    csrw stvec, t6",
    "    li t6, 0x100",
    "    csrc sstatus, t6", // SPP = 0: sret goes to U-mode
    "    la t6, lab_user_loop",
    "    csrw sepc, t6",
    "    ret",
    // lab_run_user(n): makes mark 1, then n round trips from U-mode.
    ".globl lab_run_user",
    "lab_run_user:",
    "    la t6, lab_sys_saved",
    "    sd sp, 0(t6)",
    "    sd ra, 8(t6)",
    "    sd s11, 16(t6)",
    "    mv s11, a0",
    "    li a0, 1",
    "    li a6, 0",
    "    li a7, {mark}",
    "    ecall", // mark 1, as late as it can be
    "    sret",
    // lab_baseline(n): n nops in a loop of the same length.
    ".globl lab_baseline",
    "lab_baseline:",
    "1:  nop",
    "    addi a0, a0, -1",
    "    bnez a0, 1b",
    "    ret",
    ".section .data",
    ".balign 8",
    "lab_sys_saved: .zero 24",
    ".text",
    mark = const lab::MARK_EID,
);

extern "C" {
    fn lab_user_setup();
    fn lab_run_user(n: u64);
    fn lab_baseline(n: u64);
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    let n = lab::iterations(&LAB_PARAMS, NAME, 1 << 24);
    // SAFETY: points the kernel's traps at the round-trip handler; nothing traps before
    // lab_run_user but the marks, which the SBI handles without a guest trap.
    unsafe { lab_user_setup() };
    lab::mark(0);
    // SAFETY: a loop of nops.
    unsafe { lab_baseline(n) };
    // SAFETY: the round trips come back here with every callee-saved register restored; the
    // user loop touches no memory.
    unsafe { lab_run_user(n) };
    lab::mark(2);
    lab::done(NAME, n)
}
