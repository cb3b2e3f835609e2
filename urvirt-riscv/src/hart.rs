//! One virtual hart and the pure handlers the engine's signal handlers call.
//!
//! The engine copies the guest's registers out of the signal's ucontext into a [`Hart`],
//! calls one of `on_illegal` / `on_ecall` / `on_fault` / `on_interrupt_check`, and copies the
//! registers (and the new pc) back. Nothing here touches signals or the host, so every path
//! is unit-tested with made-up traps.
use crate::csr::{self, WriteEffect};
use crate::decode::{access_of, decode, CsrOp, CsrSrc, Insn, MemAccess};
use crate::platform::Platform;
use crate::sbi;
use crate::trap;

/// The virtual privilege mode the guest is in. Both really run in host U-mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Supervisor,
    User,
}

/// What the engine does after a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Continue the guest at `hart.pc`.
    Resume,
    /// `wfi`: sleep until an interrupt may be pending (or briefly), then continue at `hart.pc`.
    WaitForInterrupt,
    /// The guest asked to power off with this exit status.
    Shutdown(i32),
    /// The guest did something we cannot continue from; a one-line diagnostic.
    Fail(String),
}

/// Registers and CSRs of the virtual hart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hart {
    /// x0..x31; `x[0]` is kept zero.
    pub x: [u64; 32],
    pub pc: u64,
    pub mode: Mode,
    pub csrs: csr::Csrs,
}

/// A handler's result: the statistics kind and the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub kind: &'static str,
    pub action: Action,
}

impl Handled {
    fn resume(kind: &'static str) -> Self {
        Handled { kind, action: Action::Resume }
    }
}

impl Hart {
    /// A hart about to enter the guest kernel at `pc` in S-mode with interrupts off.
    pub fn new(pc: u64) -> Self {
        Hart { x: [0; 32], pc, mode: Mode::Supervisor, csrs: csr::Csrs::default() }
    }

    fn set_reg(&mut self, rd: usize, value: u64) {
        if rd != 0 {
            self.x[rd] = value;
        }
    }
}

/// The statistics kind for an emulated instruction.
fn sigill_kind(insn: &Insn) -> &'static str {
    match insn.mnemonic() {
        "csrrw" => "sigill csrrw",
        "csrrs" => "sigill csrrs",
        "csrrc" => "sigill csrrc",
        "csrrwi" => "sigill csrrwi",
        "csrrsi" => "sigill csrrsi",
        "csrrci" => "sigill csrrci",
        "sret" => "sigill sret",
        "wfi" => "sigill wfi",
        "sfence.vma" => "sigill sfence.vma",
        _ => "sigill illegal",
    }
}

/// Formats the instruction's bytes in memory order, e.g. `73 00 50 10`.
pub fn insn_bytes(raw: u32, len: u64) -> String {
    raw.to_le_bytes()[..len as usize].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Raises a synchronous exception in the guest, or fails the run if it has no trap handler.
fn raise(hart: &mut Hart, cause: u64, tval: u64, kind: &'static str, why: impl FnOnce() -> String) -> Handled {
    if !trap::has_handler(hart) {
        return Handled { kind, action: Action::Fail(why()) };
    }
    trap::deliver(hart, cause, tval);
    Handled::resume(kind)
}

fn illegal(hart: &mut Hart, raw: u32, len: u64) -> Handled {
    let pc = hart.pc;
    raise(hart, trap::ILLEGAL_INSTRUCTION, raw as u64, "sigill illegal", || {
        format!(
            "guest executed an illegal instruction at pc {pc:#x} (bytes {}) and has no trap handler (stvec = 0)",
            insn_bytes(raw, len)
        )
    })
}

/// SIGILL: the guest ran the instruction `raw` at `hart.pc` that U-mode may not run.
/// `raw` holds the 4 bytes at pc (or 2 if only those were readable).
pub fn on_illegal(hart: &mut Hart, raw: u32, platform: &mut dyn Platform) -> Handled {
    let d = decode(raw);
    let kind = sigill_kind(&d.insn);
    let in_s = hart.mode == Mode::Supervisor;
    match d.insn {
        Insn::Csr { op, rd, src, csr } => {
            // S-level CSRs (bits 9:8 = 01) are not accessible from virtual U-mode, nor are the
            // counters the guest kernel did not enable in scounteren.
            if !in_s && ((csr >> 8) & 0b11 == 1 || !csr::counter_enabled_for_user(csr, hart.csrs.scounteren)) {
                return illegal(hart, d.raw, d.len);
            }
            match emulate_csr(hart, op, rd, src, csr, platform) {
                Ok(effect) => {
                    hart.pc += d.len;
                    match effect {
                        WriteEffect::SatpModeIgnored { .. } => Handled::resume("sigill satp paging-mode ignored"),
                        WriteEffect::Stored => Handled::resume(kind),
                    }
                }
                Err(_) => illegal(hart, d.raw, d.len),
            }
        }
        Insn::Sret if in_s => {
            trap::sret(hart);
            Handled::resume(kind)
        }
        Insn::Wfi if in_s => {
            hart.pc += d.len;
            Handled { kind, action: Action::WaitForInterrupt }
        }
        // Bare translation: there is no TLB to flush.
        Insn::SfenceVma { .. } if in_s => {
            hart.pc += d.len;
            Handled::resume(kind)
        }
        _ => illegal(hart, d.raw, d.len),
    }
}

/// csrrw/csrrs/csrrc and their immediate forms, with the spec's rules on which of them read
/// and which write.
fn emulate_csr(
    hart: &mut Hart,
    op: CsrOp,
    rd: usize,
    src: CsrSrc,
    csr: u16,
    platform: &mut dyn Platform,
) -> Result<WriteEffect, csr::IllegalCsr> {
    let operand = match src {
        CsrSrc::Reg(r) => hart.x[r],
        CsrSrc::Imm(v) => v,
    };
    // csrrw with rd = x0 does not read in the spec; our reads have no side effects, so always
    // reading is a simple way to reject unknown CSRs for every form.
    let old = hart.csrs.read(csr, platform)?;
    let new = match op {
        CsrOp::Rw => Some(operand),
        _ if src.is_zero_operand() => None,
        CsrOp::Rs => Some(old | operand),
        CsrOp::Rc => Some(old & !operand),
    };
    let effect = match new {
        Some(v) => hart.csrs.write(csr, v)?,
        None => WriteEffect::Stored,
    };
    hart.set_reg(rd, old);
    Ok(effect)
}

/// SIGSYS: the guest ran `ecall`; `hart.pc` is already past it (the kernel advanced it).
/// From virtual S-mode it is an SBI call; from virtual U-mode it goes to the guest kernel.
pub fn on_ecall(hart: &mut Hart, platform: &mut dyn Platform) -> Handled {
    if hart.mode == Mode::User {
        hart.pc -= 4;
        let pc = hart.pc;
        return raise(hart, trap::ECALL_FROM_U, 0, "sigsys ecall from u-mode", || {
            format!("guest user-mode ecall at pc {pc:#x} with no trap handler")
        });
    }
    let r = sbi::handle(hart, platform);
    Handled { kind: r.kind, action: r.action }
}

/// SIGTRAP: the guest ran `ebreak` (or `c.ebreak`) at `hart.pc`.
pub fn on_breakpoint(hart: &mut Hart) -> Handled {
    let pc = hart.pc;
    raise(hart, trap::BREAKPOINT, pc, "sigtrap ebreak", || {
        format!("guest hit a breakpoint (ebreak) at pc {pc:#x} with no trap handler (stvec = 0)")
    })
}

/// What kind of access faulted, as far as the engine can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Fetch,
    Load,
    Store,
}

/// SIGSEGV/SIGBUS: the guest touched `addr`, which is not guest RAM (or not accessible).
/// `raw` is the instruction at pc (ignored for fetches). `misaligned` is SIGBUS's BUS_ADRALN.
pub fn on_fault(hart: &mut Hart, addr: u64, raw: u32, fetch: bool, misaligned: bool) -> Handled {
    let access = if fetch {
        Access::Fetch
    } else {
        match access_of(raw) {
            MemAccess::Store => Access::Store,
            MemAccess::Load => Access::Load,
        }
    };
    let cause = match (access, misaligned) {
        (Access::Fetch, _) => trap::INSTRUCTION_ACCESS_FAULT,
        (Access::Load, false) => trap::LOAD_ACCESS_FAULT,
        (Access::Load, true) => trap::LOAD_MISALIGNED,
        (Access::Store, false) => trap::STORE_ACCESS_FAULT,
        (Access::Store, true) => trap::STORE_MISALIGNED,
    };
    let pc = hart.pc;
    let what = match access {
        Access::Fetch => "jumped to",
        Access::Load => "read from",
        Access::Store => "wrote to",
    };
    let kind = if misaligned { "sigbus" } else { "sigsegv" };
    raise(hart, cause, addr, kind, || {
        format!(
            "guest {what} {addr:#x} (not guest RAM) at pc {pc:#x}: {} with no trap handler (stvec = 0)",
            trap::cause_name(cause)
        )
    })
}

/// After every trap and on every host timer tick: raise sip.STIP if the deadline passed and
/// take an enabled pending interrupt. Returns the interrupt taken, if any.
pub fn on_interrupt_check(hart: &mut Hart, now: u64) -> Option<u64> {
    trap::update_timer(hart, now);
    let cause = trap::pending_interrupt(hart)?;
    trap::deliver(hart, cause, 0);
    Some(cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::*;
    use crate::platform::fake::FakePlatform;

    const BASE: u64 = 0x8020_0000;

    #[test]
    fn csrrw_sscratch_swaps() {
        let (mut h, mut p) = (Hart::new(BASE), FakePlatform::new());
        h.csrs.sscratch = 7;
        h.x[5] = 0x1234;
        // csrrw t0, sscratch, t0 (0x140292f3): rd == rs1, the old value must land in t0.
        let r = on_illegal(&mut h, 0x1402_92f3, &mut p);
        assert_eq!(r, Handled { kind: "sigill csrrw", action: Action::Resume });
        assert_eq!((h.csrs.sscratch, h.x[5], h.pc), (0x1234, 7, BASE + 4));
    }

    #[test]
    fn csrrsi_sstatus_and_x0_rules() {
        let (mut h, mut p) = (Hart::new(BASE), FakePlatform::new());
        // csrsi sstatus, 2 sets SIE.
        assert_eq!(on_illegal(&mut h, 0x1001_6073, &mut p).kind, "sigill csrrsi");
        assert_ne!(h.csrs.sstatus & SSTATUS_SIE, 0);
        // rdtime a0 (csrrs a0, time, x0) reads a read-only CSR without writing: allowed.
        p.now = 99;
        on_illegal(&mut h, 0xc010_2573, &mut p);
        assert_eq!(h.x[10], 99);
        // csrw time, a0 (csrrw x0, time, a0 = 0xc0151073) is illegal; with no stvec the run fails.
        let r = on_illegal(&mut h, 0xc015_1073, &mut p);
        assert!(matches!(&r.action, Action::Fail(m) if m.contains("73 10 15 c0")), "{r:?}");
        // csrrc a1, sie, a2 clears only a2's bits and returns the old value.
        h.csrs.sie = 0x222;
        h.x[12] = 0x20;
        on_illegal(&mut h, 0x1046_35f3, &mut p);
        assert_eq!((h.x[11], h.csrs.sie), (0x222, 0x202));
    }

    #[test]
    fn sret_with_spp_and_spie() {
        let (mut h, mut p) = (Hart::new(BASE), FakePlatform::new());
        h.csrs.sepc = 0x8040_0000;
        h.csrs.sstatus |= SSTATUS_SPP | SSTATUS_SPIE;
        assert_eq!(on_illegal(&mut h, 0x1020_0073, &mut p).kind, "sigill sret");
        assert_eq!((h.pc, h.mode), (0x8040_0000, Mode::Supervisor));
        assert_ne!(h.csrs.sstatus & SSTATUS_SIE, 0);
        assert_eq!(h.csrs.sstatus & SSTATUS_SPP, 0);
        // Now in U-mode: sret and S-CSRs are illegal and go to the guest's handler.
        h.csrs.stvec = 0x8020_0100;
        h.csrs.sepc = 0x8050_0000;
        on_illegal(&mut h, 0x1020_0073, &mut p);
        assert_eq!((h.pc, h.mode), (0x8050_0000, Mode::User));
        on_illegal(&mut h, 0x1000_2573, &mut p); // csrr a0, sstatus
        assert_eq!((h.pc, h.csrs.scause, h.csrs.stval), (0x8020_0100, 2, 0x1000_2573));
        assert_eq!(h.mode, Mode::Supervisor);
    }

    #[test]
    fn wfi_sfence_and_garbage() {
        let (mut h, mut p) = (Hart::new(BASE), FakePlatform::new());
        assert_eq!(on_illegal(&mut h, 0x1050_0073, &mut p).action, Action::WaitForInterrupt);
        assert_eq!(h.pc, BASE + 4);
        assert_eq!(on_illegal(&mut h, 0x1200_0073, &mut p).kind, "sigill sfence.vma");
        assert_eq!(h.pc, BASE + 8);
        let r = on_illegal(&mut h, 0, &mut p);
        match r.action {
            Action::Fail(m) => assert!(m.contains("pc 0x80200008") && m.contains("bytes 00 00"), "{m}"),
            other => panic!("{other:?}"),
        }
        // With a handler, an unknown CSR is an illegal-instruction exception for the guest.
        h.csrs.stvec = 0x8020_0200;
        on_illegal(&mut h, 0x3000_2573, &mut p); // csrr a0, mstatus
        assert_eq!((h.pc, h.csrs.scause, h.csrs.sepc), (0x8020_0200, 2, BASE + 8));
    }

    #[test]
    fn ecall_putchar_reaches_console() {
        let (mut h, mut p) = (Hart::new(BASE), FakePlatform::new());
        h.x[17] = 1;
        h.x[10] = b'x' as u64;
        h.pc = BASE + 4;
        assert_eq!(on_ecall(&mut h, &mut p).kind, "sigsys sbi legacy-putchar");
        assert_eq!(p.output, b"x");
        assert_eq!(h.pc, BASE + 4);
        // From virtual U-mode the ecall goes to the guest kernel with sepc at the ecall.
        h.mode = Mode::User;
        h.csrs.stvec = 0x8020_0300;
        on_ecall(&mut h, &mut p);
        assert_eq!((h.pc, h.csrs.sepc, h.csrs.scause), (0x8020_0300, BASE, 8));
        assert_eq!(p.output, b"x", "no SBI call from U-mode");
    }

    #[test]
    fn satp_sv48_is_reported_and_ignored() {
        let (mut h, mut p) = (Hart::new(BASE), FakePlatform::new());
        // Sv39 (8) is implemented; Sv48 (9) is not.
        h.x[10] = 9 << 60;
        // csrw satp, a0 (0x18051073)
        let r = on_illegal(&mut h, 0x1805_1073, &mut p);
        assert_eq!(r.kind, "sigill satp paging-mode ignored");
        assert_eq!((h.csrs.satp, h.pc), (0, BASE + 4));
    }

    #[test]
    fn breakpoint() {
        let mut h = Hart::new(BASE);
        assert!(matches!(on_breakpoint(&mut h).action, Action::Fail(m) if m.contains("ebreak")));
        h.csrs.stvec = 0x8020_0600;
        on_breakpoint(&mut h);
        assert_eq!((h.pc, h.csrs.scause, h.csrs.stval), (0x8020_0600, 3, BASE));
    }

    #[test]
    fn faults() {
        let mut h = Hart::new(BASE);
        // sw a1, -4(a0) to 0x1000 with no handler: a failure naming the address and pc.
        let r = on_fault(&mut h, 0x1000, 0xfeb5_2e23, false, false);
        assert!(matches!(&r.action, Action::Fail(m) if m.contains("wrote to 0x1000") && m.contains("store access")));
        h.csrs.stvec = 0x8020_0400;
        let r = on_fault(&mut h, 0x1000, 0xff81_3503, false, false);
        assert_eq!(r, Handled { kind: "sigsegv", action: Action::Resume });
        assert_eq!((h.csrs.scause, h.csrs.stval, h.csrs.sepc), (5, 0x1000, BASE));
        h.pc = 0x10;
        on_fault(&mut h, 0x10, 0, true, false);
        assert_eq!((h.csrs.scause, h.pc), (1, 0x8020_0400));
    }

    #[test]
    fn fp_stores_amos_and_compressed_stores_are_store_faults() {
        // fsd f10, 0(a0); amoadd.d zero, a1, (a0); sc.d; c.sdsp a0, 0(sp); c.fsd; c.swsp
        for raw in [0x00a5_3027, 0x00b5_302f, 0x18b5_352f, 0xe02a, 0xa188, 0xc02a] {
            let mut h = Hart::new(BASE);
            h.csrs.stvec = 0x8020_0400;
            on_fault(&mut h, 0x1000, raw, false, false);
            assert_eq!(h.csrs.scause, trap::STORE_ACCESS_FAULT, "{raw:#x}");
            let mut h = Hart::new(BASE);
            h.csrs.stvec = 0x8020_0400;
            on_fault(&mut h, 0x1001, raw, false, true);
            assert_eq!(h.csrs.scause, trap::STORE_MISALIGNED, "{raw:#x} misaligned");
        }
        // lr.d and c.ldsp are loads.
        for raw in [0x1005_352f, 0x6502] {
            let mut h = Hart::new(BASE);
            h.csrs.stvec = 0x8020_0400;
            on_fault(&mut h, 0x1000, raw, false, false);
            assert_eq!(h.csrs.scause, trap::LOAD_ACCESS_FAULT, "{raw:#x}");
        }
        let mut h = Hart::new(BASE);
        let r = on_fault(&mut h, 0x1000, 0x00a5_3027, false, false);
        assert!(matches!(&r.action, Action::Fail(m) if m.contains("wrote to 0x1000")), "{r:?}");
    }

    #[test]
    fn user_counters_follow_scounteren() {
        let (mut h, mut p) = (Hart::new(BASE), FakePlatform::new());
        h.mode = Mode::User;
        h.csrs.stvec = 0x8020_0700;
        p.now = 7;
        // rdcycle a0 (csrrs a0, cycle, x0 = 0xc0002573) with scounteren = 0: illegal.
        on_illegal(&mut h, 0xc000_2573, &mut p);
        assert_eq!((h.pc, h.csrs.scause, h.mode), (0x8020_0700, trap::ILLEGAL_INSTRUCTION, Mode::Supervisor));
        // With CY and IR enabled, U-mode reads them; TM stays off, so rdtime is illegal.
        let mut h = Hart::new(BASE);
        h.mode = Mode::User;
        h.csrs.stvec = 0x8020_0700;
        h.csrs.scounteren = 0b101;
        on_illegal(&mut h, 0xc000_2573, &mut p);
        assert_eq!((h.x[10], h.pc), (70, BASE + 4));
        on_illegal(&mut h, 0xc020_2573, &mut p); // rdinstret a0
        assert_eq!((h.x[10], h.pc), (35, BASE + 8));
        on_illegal(&mut h, 0xc010_2573, &mut p); // rdtime a0
        assert_eq!((h.pc, h.csrs.scause), (0x8020_0700, trap::ILLEGAL_INSTRUCTION));
        // Virtual S-mode ignores scounteren.
        let mut h = Hart::new(BASE);
        on_illegal(&mut h, 0xc000_2573, &mut p);
        assert_eq!((h.x[10], h.pc), (70, BASE + 4));
    }

    #[test]
    fn timer_interrupt_delivery() {
        let mut h = Hart::new(BASE);
        h.csrs.stvec = 0x8020_0500;
        h.csrs.timer_deadline = 100;
        h.csrs.sie = SIP_STIP;
        assert_eq!(on_interrupt_check(&mut h, 150), None, "SIE off");
        h.csrs.sstatus |= SSTATUS_SIE;
        assert_eq!(on_interrupt_check(&mut h, 150), Some(trap::SUPERVISOR_TIMER_INTERRUPT));
        assert_eq!((h.pc, h.csrs.sepc), (0x8020_0500, BASE));
        assert_eq!(on_interrupt_check(&mut h, 151), None, "SIE now off in the handler");
    }
}
