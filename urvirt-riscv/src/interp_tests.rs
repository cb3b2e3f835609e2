//! Unit tests of the interpreter: programs assembled by GNU as (the bytes are below with
//! their source), run through [`Virt`] over page tables built in a test RAM.
use super::*;
use crate::hart::{Action, Mode};
use crate::mmu::tests::{TestRam, RAM};
use crate::mmu::{Regime, PTE_A, PTE_D, PTE_R, PTE_V, PTE_W, PTE_X};
use crate::platform::fake::FakePlatform;
use crate::vmem::Virt;

/// Loops to sum 10..1, then mul/div/rem/divw, loads of every width, amoadd, LR/SC twice, a
/// call with c.addi/ret, sraiw, mulhu, and the legacy SBI shutdown. Linked at 0x80200000:
/// ```text
///   li a0, 10; li a1, 0
/// 1: add a1, a1, a0; addi a0, a0, -1; bnez a0, 1b
///   li t0, 7; mul t1, a1, t0; li t2, 0; div t3, t1, t2; rem t4, t1, t0; divw t5, t1, t0
///   lla s0, data; sd t1, 0(s0); lw s1, 0(s0); lb s2, 8(s0); lbu s3, 8(s0)
///   amoadd.d s4, t0, (s0); ld s5, 0(s0); lr.d s6, (s0); sc.d s7, a1, (s0); sc.d s8, a1, (s0)
///   ld s9, 0(s0); jal ra, f; sraiw s10, t3, 4; mulhu s11, t3, t3; li a7, 8; ecall
/// f: c.addi a1, 1; ret
/// data: .dword 0, 0xff
/// ```
const PROGRAM: [u8; 120] = [
    0x29, 0x45, 0x81, 0x45, 0xaa, 0x95, 0x7d, 0x15, 0x75, 0xfd, 0x9d, 0x42, 0x33, 0x83, 0x55, 0x02, 0x81, 0x43, 0x33,
    0x4e, 0x73, 0x02, 0xb3, 0x6e, 0x53, 0x02, 0x3b, 0x4f, 0x53, 0x02, 0x17, 0x04, 0x00, 0x00, 0x13, 0x04, 0xa4, 0x04,
    0x23, 0x30, 0x64, 0x00, 0x04, 0x40, 0x03, 0x09, 0x84, 0x00, 0x83, 0x49, 0x84, 0x00, 0x2f, 0x3a, 0x54, 0x00, 0x83,
    0x3a, 0x04, 0x00, 0x2f, 0x3b, 0x04, 0x10, 0xaf, 0x3b, 0xb4, 0x18, 0x2f, 0x3c, 0xb4, 0x18, 0x83, 0x3c, 0x04, 0x00,
    0xef, 0x00, 0x20, 0x01, 0x1b, 0x5d, 0x4e, 0x40, 0xb3, 0x3d, 0xce, 0x03, 0xa1, 0x48, 0x73, 0x00, 0x00, 0x00, 0x85,
    0x05, 0x82, 0x80, 0x01, 0x00, 0x13, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// `csrrw sp, sscratch, sp; c.sdsp ra, 8(sp); c.sdsp t0, 16(sp); c.ldsp t1, 24(sp);
/// fadd.d ft0, ft1, ft2`: the start of a trampoline, then floating point.
const TRAMPOLINE_START: [u8; 14] = [0x73, 0x11, 0x01, 0x14, 0x06, 0xe4, 0x16, 0xe8, 0x62, 0x63, 0x53, 0xf0, 0x20, 0x02];

fn put(t: &mut TestRam, pa: u64, bytes: &[u8]) {
    let off = (pa - RAM) as usize;
    t.bytes[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Runs `f` on a platform whose RAM is `t`'s, then gives the RAM back to `t`.
fn with_machine<R>(t: &mut TestRam, p: &mut FakePlatform, f: impl FnOnce(&mut FakePlatform) -> R) -> R {
    p.ram = std::mem::take(&mut t.bytes);
    let r = f(p);
    t.bytes = std::mem::take(&mut p.ram);
    r
}

fn step_once(h: &mut Hart, t: &mut TestRam, p: &mut FakePlatform, st: &mut Interp) -> Step {
    with_machine(t, p, |p| step(h, p, st))
}

/// Steps until something other than Done, at most `limit` instructions.
fn run(h: &mut Hart, t: &mut TestRam, p: &mut FakePlatform, limit: usize) -> (Step, usize) {
    let mut st = Interp::default();
    for n in 1..=limit {
        match step_once(h, t, p, &mut st) {
            Step::Done => continue,
            other => return (other, n),
        }
    }
    panic!("still running after {limit} instructions at pc {:#x}", h.pc)
}

#[test]
fn integer_program_runs_to_the_shutdown_call() {
    let mut t = TestRam::new();
    put(&mut t, 0x8020_0000, &PROGRAM);
    let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
    let (last, n) = run(&mut h, &mut t, &mut p, 200);
    assert!(matches!(last, Step::Handled(Handled { action: Action::Shutdown(_), .. })), "{last:?}");
    assert_eq!(n, 2 + 3 * 10 + 25, "instructions executed");
    let x = |name: usize| h.x[name];
    assert_eq!((x(10), x(11)), (0, 56), "a0, a1");
    assert_eq!((x(6), x(28), x(29), x(30)), (385, u64::MAX, 0, 55), "mul, div by 0, rem, divw");
    assert_eq!((x(9), x(18), x(19)), (385, u64::MAX, 255), "lw, lb sign-extends, lbu");
    assert_eq!((x(20), x(21), x(22)), (385, 392, 392), "amoadd old value, memory after, lr");
    assert_eq!((x(23), x(24), x(25)), (0, 1, 55), "sc succeeds once, then has no reservation");
    assert_eq!((x(26), x(27)), (u64::MAX, u64::MAX - 1), "sraiw, mulhu");
    assert_eq!(x(1), 0x8020_0050, "jal links");
}

/// A paged hart in S-mode whose trampoline page sits at the top of the address space.
fn trampoline_hart(t: &mut TestRam) -> Hart {
    const TOP: u64 = 0xffff_ffff_ffff_f000;
    t.map(TOP, RAM + 0x10_0000, 0, PTE_V | PTE_R | PTE_X);
    t.map(TOP - 0x1000, RAM + 0x11_0000, 0, PTE_V | PTE_R | PTE_W);
    put(t, RAM + 0x10_0000, &TRAMPOLINE_START);
    put(t, RAM + 0x11_0000 + 24, &0x1234u64.to_le_bytes());
    let mut h = Hart::new(TOP);
    h.csrs.satp = t.satp();
    h.csrs.stvec = TOP;
    h.csrs.sscratch = TOP - 0x1000;
    (h.x[1], h.x[2], h.x[5]) = (0xaaaa, 0x10_0000, 0xbbbb);
    h
}

#[test]
fn trampoline_code_runs_in_the_upper_half() {
    let mut t = TestRam::new();
    let (mut h, mut p) = (trampoline_hart(&mut t), FakePlatform::new());
    let mut st = Interp::default();
    let csrrw = step_once(&mut h, &mut t, &mut p, &mut st);
    assert!(matches!(&csrrw, Step::Handled(Handled { kind: "sigill csrrw", action: Action::Resume })), "{csrrw:?}");
    assert_eq!((h.x[2], h.csrs.sscratch), (0xffff_ffff_ffff_e000, 0x10_0000));
    for _ in 0..3 {
        assert_eq!(step_once(&mut h, &mut t, &mut p, &mut st), Step::Done);
    }
    let ctx = 0x11_0000;
    assert_eq!(&t.bytes[ctx + 8..ctx + 16], &0xaaaau64.to_le_bytes());
    assert_eq!(&t.bytes[ctx + 16..ctx + 24], &0xbbbbu64.to_le_bytes());
    assert_eq!(h.x[6], 0x1234);
    assert_eq!(h.pc, 0xffff_ffff_ffff_f00a);
    assert_eq!(step_once(&mut h, &mut t, &mut p, &mut st), Step::Native, "floating point is the hardware's");
    assert_eq!(h.pc, 0xffff_ffff_ffff_f00a, "and pc stays on it");
}

#[test]
fn faults_are_delivered_with_cause_stval_and_sepc() {
    let mut t = TestRam::new();
    let (mut h, mut p) = (trampoline_hart(&mut t), FakePlatform::new());
    h.csrs.stvec = 0x8020_0000;
    h.x[2] = 0x7000; // unmapped
    let mut st = Interp::default();
    // csrrw swaps sp with sscratch (the context page), so swap back first: sp = unmapped.
    h.csrs.sscratch = 0x7000;
    step_once(&mut h, &mut t, &mut p, &mut st);
    let s = step_once(&mut h, &mut t, &mut p, &mut st);
    assert!(matches!(&s, Step::Handled(Handled { kind: "interp page fault", action: Action::Resume })), "{s:?}");
    assert_eq!((h.csrs.scause, h.csrs.stval, h.csrs.sepc), (15, 0x7008, 0xffff_ffff_ffff_f004));
    assert_eq!((h.pc, h.mode), (0x8020_0000, Mode::Supervisor));
    // Without a handler the run fails with a one-line reason.
    h.csrs.stvec = 0;
    h.pc = 0xffff_ffff_ffff_f004;
    let s = step_once(&mut h, &mut t, &mut p, &mut st);
    assert!(
        matches!(&s, Step::Handled(Handled { action: Action::Fail(m), .. }) if m.contains("store page fault at 0x7008")),
        "{s:?}"
    );
}

#[test]
fn a_fetch_crossing_into_an_unmapped_page_faults_on_the_second_half() {
    let mut t = TestRam::new();
    t.map(0x10000, RAM + 0x10_0000, 0, PTE_V | PTE_R | PTE_X | PTE_A | PTE_D);
    put(&mut t, RAM + 0x10_0ffe, &[0x13, 0x00]); // the low half of a 4-byte nop
    let mut h = Hart::new(0x10ffe);
    h.csrs.satp = t.satp();
    let mut v = Virt { ram: t.ram(), devices: None, regime: Regime::of(&h) };
    assert_eq!(fetch(&h, &mut v), Err(Fault { cause: 12, tval: 0x11000 }));
}

#[test]
fn user_ecall_goes_to_the_guest_kernel() {
    let mut t = TestRam::new();
    t.map(0x10000, RAM + 0x10_0000, 0, PTE_V | PTE_R | PTE_X | crate::mmu::PTE_U);
    put(&mut t, RAM + 0x10_0000, &0x0000_0073u32.to_le_bytes());
    let (mut h, mut p) = (Hart::new(0x10000), FakePlatform::new());
    (h.mode, h.csrs.satp, h.csrs.stvec) = (Mode::User, t.satp(), 0xffff_ffff_ffff_f000);
    let s = step_once(&mut h, &mut t, &mut p, &mut Interp::default());
    assert!(matches!(&s, Step::Handled(Handled { kind: "sigsys ecall from u-mode", .. })), "{s:?}");
    assert_eq!((h.csrs.scause, h.csrs.sepc, h.pc, h.mode), (8, 0x10000, 0xffff_ffff_ffff_f000, Mode::Supervisor));
}

#[test]
fn what_the_next_instruction_needs() {
    let mut h = Hart::new(0);
    h.x[2] = 0x1000;
    assert_eq!(next_needs_interpreter(&h, 0x1401_1173, 4), (true, None), "csrrw");
    assert_eq!(next_needs_interpreter(&h, 0xe406, 2), (false, Some(0x1008)), "c.sdsp ra, 8(sp)");
    assert_eq!(next_needs_interpreter(&h, 0x6362, 2), (false, Some(0x1018)), "c.ldsp t1, 24(sp)");
    assert_eq!(next_needs_interpreter(&h, 0x95aa, 2), (false, None), "c.add");
}

#[test]
fn run_until_native_stops_after_traps_and_at_native_code() {
    let mut t = TestRam::new();
    let (mut h, mut p) = (trampoline_hart(&mut t), FakePlatform::new());
    let mut st = Interp::default();
    let lower_half = |va: u64| va < 1 << 38;
    let (stop, n) = with_machine(&mut t, &mut p, |p| run_until_native(&mut h, p, &mut st, 100, lower_half));
    assert!(matches!(&stop, Stop::Handled(Handled { kind: "sigill csrrw", .. }, 0x1401_1173)), "{stop:?}");
    assert_eq!(n, 1);
    let (stop, n) = with_machine(&mut t, &mut p, |p| run_until_native(&mut h, p, &mut st, 100, lower_half));
    assert_eq!((stop, n), (Stop::Native, 3), "three stack accesses in the upper half, then floating point");
    // A budget bounds the interpretation; code that may run natively is left alone.
    h.pc = 0xffff_ffff_ffff_f004;
    h.x[2] = 0xffff_ffff_ffff_e000;
    let (stop, n) = with_machine(&mut t, &mut p, |p| run_until_native(&mut h, p, &mut st, 1, lower_half));
    assert_eq!((stop, n), (Stop::Budget, 1));
    let (stop, n) = with_machine(&mut t, &mut p, |p| run_until_native(&mut h, p, &mut st, 100, |_| true));
    assert_eq!((stop, n), (Stop::Native, 0));
}

#[test]
fn ebreak_under_gdb_is_left_to_the_engine() {
    let mut t = TestRam::new();
    t.map(0x10000, RAM + 0x10_0000, 0, PTE_V | PTE_R | PTE_X);
    // ebreak, then c.ebreak.
    put(&mut t, RAM + 0x10_0000, &[0x73, 0x00, 0x10, 0x00, 0x02, 0x90]);
    let (mut h, mut p) = (Hart::new(0x10000), FakePlatform::new());
    (h.csrs.satp, h.csrs.stvec) = (t.satp(), 0x8000_0000);
    let mut st = Interp { debugger: true, ..Interp::default() };
    let s = step_once(&mut h, &mut t, &mut p, &mut st);
    assert!(matches!(&s, Step::Handled(Handled { kind: DEBUGGER_EBREAK, action: Action::Resume })), "{s:?}");
    assert_eq!((h.pc, h.csrs.scause), (0x10000, 0), "not executed, nothing delivered");
    h.pc = 0x10004;
    let s = step_once(&mut h, &mut t, &mut p, &mut st);
    assert!(matches!(&s, Step::Handled(Handled { kind: DEBUGGER_EBREAK, .. })), "c.ebreak: {s:?}");
    // Without gdb the guest takes its breakpoint exception.
    st.debugger = false;
    let s = step_once(&mut h, &mut t, &mut p, &mut st);
    assert!(matches!(&s, Step::Handled(Handled { kind: "sigtrap ebreak", .. })), "{s:?}");
    assert_eq!((h.csrs.scause, h.csrs.sepc, h.pc), (3, 0x10004, 0x8000_0000));
}
