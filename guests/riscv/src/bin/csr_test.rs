//! Checks the guest's own view of the supervisor CSRs and privileged instructions that URVirt
//! emulates: CSR read/write/set/clear in register and immediate forms, the counters, satp
//! (Bare), sret into a label, wfi and sfence.vma. One PASS/FAIL line each, then a summary and
//! SRST shutdown (system failure if anything failed). Every check can fail: each compares
//! against a value a broken emulation would not produce.
#![no_std]
#![no_main]

use core::arch::asm;
use riscv_guests::{print, sbi, Checks};

const SSTATUS_SIE: usize = 1 << 1;
const SSTATUS_SPIE: usize = 1 << 5;
const SSTATUS_SPP: usize = 1 << 8;
const SSTATUS_FS: usize = 0b11 << 13;
const SSTATUS_FS_INITIAL: usize = 1 << 13;
const SSTATUS_SUM: usize = 1 << 18;
const SSTATUS_SD: usize = 1 << 63;
const SIP_STIP: usize = 1 << 5;
const INTERRUPT_TIMER: usize = (1 << 63) | 5;
const SIE_SSIE: usize = 1 << 1;
const SIE_STIE: usize = 1 << 5;
const SIE_SEIE: usize = 1 << 9;

macro_rules! csr_read {
    ($csr:literal) => {{
        let v: usize;
        // SAFETY: reading a supervisor CSR changes nothing (the counters just tick).
        unsafe { asm!(concat!("csrr {0}, ", $csr), out(reg) v) };
        v
    }};
}

macro_rules! csr_write {
    ($csr:literal, $v:expr) => {{
        let v: usize = $v;
        // SAFETY: the CSRs written here do not move the stack or change memory translation.
        unsafe { asm!(concat!("csrw ", $csr, ", {0}"), in(reg) v) };
    }};
}

/// Runs one CSR instruction with a register operand and returns (old value from rd, value after).
macro_rules! csr_op {
    ($op:literal, $csr:literal, $v:expr) => {{
        let old: usize;
        // SAFETY: as for csr_write.
        unsafe { asm!(concat!($op, " {0}, ", $csr, ", {1}"), out(reg) old, in(reg) $v) };
        (old, csr_read!($csr))
    }};
}

/// Same with a 5-bit immediate operand.
macro_rules! csr_op_imm {
    ($op:literal, $csr:literal, $imm:literal) => {{
        let old: usize;
        // SAFETY: as for csr_write.
        unsafe { asm!(concat!($op, " {0}, ", $csr, ", ", $imm), out(reg) old) };
        (old, csr_read!($csr))
    }};
}

fn plain_registers(c: &mut Checks) {
    for (name, value) in [
        ("sscratch", 0x1234_5678_9abc_def0usize),
        ("sepc", 0x8020_1234),
        ("scause", 0x8000_0000_0000_0005),
        ("stval", 0xdead_beef_cafe_f00d),
    ] {
        match name {
            "sscratch" => csr_write!("sscratch", value),
            "sepc" => csr_write!("sepc", value),
            "scause" => csr_write!("scause", value),
            _ => csr_write!("stval", value),
        }
        let got = match name {
            "sscratch" => csr_read!("sscratch"),
            "sepc" => csr_read!("sepc"),
            "scause" => csr_read!("scause"),
            _ => csr_read!("stval"),
        };
        let mut label = [0u8; 32];
        c.eq(join(&mut label, name, ".write_read"), got as u64, value as u64);
    }
    // stvec, Direct mode, 4-byte aligned.
    let handler = 0x8020_0100usize;
    csr_write!("stvec", handler);
    c.eq("stvec.write_read", csr_read!("stvec") as u64, handler as u64);
    csr_write!("stvec", 0);
}

fn read_modify_write(c: &mut Checks) {
    csr_write!("sscratch", 0xff00);
    let (old, now) = csr_op!("csrrw", "sscratch", 0x1111usize);
    c.eq("csrrw.old", old as u64, 0xff00);
    c.eq("csrrw.new", now as u64, 0x1111);
    let (old, now) = csr_op!("csrrs", "sscratch", 0x00f0usize);
    c.eq("csrrs.old", old as u64, 0x1111);
    c.eq("csrrs.new", now as u64, 0x11f1);
    let (old, now) = csr_op!("csrrc", "sscratch", 0x0101usize);
    c.eq("csrrc.old", old as u64, 0x11f1);
    c.eq("csrrc.new", now as u64, 0x10f0);
    let (old, now) = csr_op_imm!("csrrwi", "sscratch", "21");
    c.eq("csrrwi.old", old as u64, 0x10f0);
    c.eq("csrrwi.new", now as u64, 21);
    let (old, now) = csr_op_imm!("csrrsi", "sscratch", "10");
    c.eq("csrrsi.old", old as u64, 21);
    c.eq("csrrsi.new", now as u64, 31);
    let (old, now) = csr_op_imm!("csrrci", "sscratch", "3");
    c.eq("csrrci.old", old as u64, 31);
    c.eq("csrrci.new", now as u64, 28);
    // rs1 = x0 must not write (csrrs/csrrc with x0 are pure reads).
    let v: usize;
    // SAFETY: a pure read of sscratch.
    unsafe { asm!("csrrs {0}, sscratch, x0", out(reg) v) };
    c.eq("csrrs.x0_reads", v as u64, 28);
    c.eq("csrrs.x0_keeps", csr_read!("sscratch") as u64, 28);
}

fn interrupt_enables(c: &mut Checks) {
    let all = SIE_SSIE | SIE_STIE | SIE_SEIE;
    csr_write!("sie", all);
    c.eq("sie.write_read", csr_read!("sie") as u64, all as u64);
    csr_write!("sie", 0);
    c.eq("sie.clear", csr_read!("sie") as u64, 0);
    // A deadline already past raises STIP (not taken: sie = 0); cancelling it clears STIP.
    sbi::call(sbi::EXT_TIME, 0, 0, 0, 0);
    let pending = csr_read!("sip");
    sbi::call(sbi::EXT_TIME, 0, usize::MAX, 0, 0);
    let cleared = csr_read!("sip");
    c.check("sip.timer_pending", pending & SIP_STIP != 0, format_args!("sip {pending:#x} after a past deadline"));
    c.check("sip.timer_cleared", cleared & SIP_STIP == 0, format_args!("sip {cleared:#x} after cancelling it"));
}

fn sstatus_bits(c: &mut Checks) {
    for (name, bit) in [("SIE", SSTATUS_SIE), ("SPIE", SSTATUS_SPIE), ("SPP", SSTATUS_SPP), ("SUM", SSTATUS_SUM)] {
        let (_, after_set) = csr_op!("csrrs", "sstatus", bit);
        let (_, after_clear) = csr_op!("csrrc", "sstatus", bit);
        let mut label = [0u8; 32];
        c.check(
            join(&mut label, "sstatus.", name),
            after_set & bit != 0 && after_clear & bit == 0,
            format_args!("after set {after_set:#x}, after clear {after_clear:#x}"),
        );
    }
    let (_, after_set) = csr_op_imm!("csrrsi", "sstatus", "2");
    let (_, after_clear) = csr_op_imm!("csrrci", "sstatus", "2");
    // The FPU is always on: any FS but Off must read Dirty, with SD, or a kernel would skip
    // saving FP registers.
    let (_, fs) = csr_op!("csrrs", "sstatus", SSTATUS_FS_INITIAL);
    c.check(
        "sstatus.FS.dirty",
        fs & SSTATUS_FS == SSTATUS_FS && fs & SSTATUS_SD != 0,
        format_args!("sstatus {fs:#x} after setting FS = Initial: want FS = Dirty and SD"),
    );
    c.check(
        "sstatus.SIE.immediate",
        after_set & SSTATUS_SIE != 0 && after_clear & SSTATUS_SIE == 0,
        format_args!("after set {after_set:#x}, after clear {after_clear:#x}"),
    );
}

fn counters(c: &mut Checks) {
    let (t1, cy1, in1) = (csr_read!("time"), csr_read!("cycle"), csr_read!("instret"));
    for i in 0..200_000usize {
        core::hint::black_box(i);
    }
    let (t2, cy2, in2) = (csr_read!("time"), csr_read!("cycle"), csr_read!("instret"));
    c.check("time.monotonic", t2 > t1, format_args!("{t1:#x} then {t2:#x}"));
    // Strictly: a frozen counter must fail.
    c.check("cycle.monotonic", cy2 > cy1, format_args!("{cy1:#x} then {cy2:#x}"));
    c.check("instret.monotonic", in2 > in1, format_args!("{in1:#x} then {in2:#x}"));
}

fn satp_bare(c: &mut Checks) {
    c.eq("satp.bare", csr_read!("satp") as u64, 0);
    csr_write!("satp", 0);
    c.eq("satp.write_bare", csr_read!("satp") as u64, 0);
}

fn sret_to_label(c: &mut Checks) {
    // sepc = the label, SPP = 1 (return to S), SPIE = 1: after sret SIE = 1, SPIE = 1, SPP = 0.
    csr_write!("sie", 0);
    let landed: usize;
    let after: usize;
    // SAFETY: sret resumes at the local label 2 with the same stack and registers; with sie = 0
    // the SIE bit it sets cannot deliver an interrupt.
    unsafe {
        asm!(
            "li {tmp}, 0x120",          // SPP | SPIE
            "csrs sstatus, {tmp}",
            "la {tmp}, 2f",
            "csrw sepc, {tmp}",
            "li {landed}, 0",
            "sret",
            "j 3f",                     // must not run
            "2:",
            "li {landed}, 1",
            "3:",
            "csrr {after}, sstatus",
            "csrci sstatus, 2",
            tmp = out(reg) _,
            landed = out(reg) landed,
            after = out(reg) after,
        );
    }
    c.eq("sret.lands", landed as u64, 1);
    c.check(
        "sret.sstatus",
        after & SSTATUS_SIE != 0 && after & SSTATUS_SPIE != 0 && after & SSTATUS_SPP == 0,
        format_args!("sstatus {after:#x}: want SIE=1 SPIE=1 SPP=0"),
    );
}

fn fences(c: &mut Checks) {
    // Each form must resume at the very next instruction with the registers untouched.
    let (steps, addr): (usize, usize);
    // SAFETY: with satp Bare there is no translation to flush; only t-registers are used.
    unsafe {
        asm!(
            "li {steps}, 0",
            "sfence.vma",
            "addi {steps}, {steps}, 1",
            "sfence.vma zero, zero",
            "addi {steps}, {steps}, 1",
            "sfence.vma {addr}, zero",
            "addi {steps}, {steps}, 1",
            steps = out(reg) steps,
            addr = inout(reg) 0x8020_0000usize => addr,
        )
    };
    c.check(
        "sfence.vma",
        steps == 3 && addr == 0x8020_0000,
        format_args!("{steps} of 3 following instructions ran, rs1 {addr:#x}"),
    );
}

// The timer handler for `wfi`: turns the timer interrupt off (so sret does not take it again)
// and returns; scause keeps what was taken. Preserves every register (t0 through sscratch).
core::arch::global_asm!(
    ".section .text",
    ".p2align 2",
    "wfi_timer_handler:",
    "    csrw sscratch, t0",
    "    li t0, 0x20",
    "    csrc sie, t0",
    "    csrr t0, sscratch",
    "    sret",
);

extern "C" {
    fn wfi_timer_handler();
}

fn wfi(c: &mut Checks) {
    // wfi with the timer armed just ahead and interrupts on: the interrupt must be taken.
    csr_write!("scause", 0);
    csr_write!("stvec", wfi_timer_handler as *const () as usize);
    csr_write!("sie", SIE_STIE);
    sbi::call(sbi::EXT_TIME, 0, csr_read!("time") + 10_000, 0, 0);
    let mut waits = 0;
    // SAFETY: sets sstatus.SIE; the handler above preserves all registers.
    unsafe { asm!("csrsi sstatus, 2") };
    // wfi may return early (the spec allows it): wait again until something was taken.
    while csr_read!("scause") == 0 && waits < 1000 {
        // SAFETY: wfi only waits.
        unsafe { asm!("wfi") };
        waits += 1;
    }
    // SAFETY: clears sstatus.SIE again.
    unsafe { asm!("csrci sstatus, 2") };
    let taken = csr_read!("scause");
    sbi::call(sbi::EXT_TIME, 0, usize::MAX, 0, 0);
    csr_write!("sie", 0);
    csr_write!("stvec", 0);
    c.check(
        "wfi.timer_taken",
        taken == INTERRUPT_TIMER,
        format_args!("scause {taken:#x} after {waits} wfi: want the timer interrupt"),
    );
}

/// "a" + "b" in a stack buffer, for check names built from parts.
fn join<'a>(buf: &'a mut [u8; 32], a: &str, b: &str) -> &'a str {
    let n = a.len() + b.len();
    buf[..a.len()].copy_from_slice(a.as_bytes());
    buf[a.len()..n].copy_from_slice(b.as_bytes());
    core::str::from_utf8(&buf[..n]).unwrap_or("?")
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    print("csr-test\n");
    let mut c = Checks::new();
    plain_registers(&mut c);
    read_modify_write(&mut c);
    interrupt_enables(&mut c);
    sstatus_bits(&mut c);
    counters(&mut c);
    satp_bare(&mut c);
    sret_to_label(&mut c);
    fences(&mut c);
    wfi(&mut c);
    c.finish("csr-test")
}
