//! Trap delivery into the guest kernel, `sret` out of it, and interrupt selection.
//!
//! These follow the privileged spec's rules for entering S-mode: sepc/scause/stval record
//! the trap, sstatus.SPP the mode we came from, SPIE the old SIE, SIE is cleared, and the
//! hart continues at stvec (BASE, or BASE + 4 x cause for interrupts in vectored mode).
use crate::csr::{SIP_SEIP, SIP_SSIP, SIP_STIP, SSTATUS_SIE, SSTATUS_SPIE, SSTATUS_SPP};
use crate::hart::{Hart, Mode};

pub const INTERRUPT: u64 = 1 << 63;
pub const INSTRUCTION_ACCESS_FAULT: u64 = 1;
pub const ILLEGAL_INSTRUCTION: u64 = 2;
pub const BREAKPOINT: u64 = 3;
pub const LOAD_MISALIGNED: u64 = 4;
pub const LOAD_ACCESS_FAULT: u64 = 5;
pub const STORE_MISALIGNED: u64 = 6;
pub const STORE_ACCESS_FAULT: u64 = 7;
pub const ECALL_FROM_U: u64 = 8;
pub const SUPERVISOR_SOFTWARE_INTERRUPT: u64 = INTERRUPT | 1;
pub const SUPERVISOR_TIMER_INTERRUPT: u64 = INTERRUPT | 5;
pub const SUPERVISOR_EXTERNAL_INTERRUPT: u64 = INTERRUPT | 9;

/// A name for a cause, for diagnostics.
pub fn cause_name(cause: u64) -> &'static str {
    match cause {
        INSTRUCTION_ACCESS_FAULT => "instruction access fault",
        ILLEGAL_INSTRUCTION => "illegal instruction",
        BREAKPOINT => "breakpoint",
        LOAD_MISALIGNED => "misaligned load",
        LOAD_ACCESS_FAULT => "load access fault",
        STORE_MISALIGNED => "misaligned store",
        STORE_ACCESS_FAULT => "store access fault",
        ECALL_FROM_U => "ecall from U-mode",
        SUPERVISOR_SOFTWARE_INTERRUPT => "supervisor software interrupt",
        SUPERVISOR_TIMER_INTERRUPT => "supervisor timer interrupt",
        SUPERVISOR_EXTERNAL_INTERRUPT => "supervisor external interrupt",
        _ => "trap",
    }
}

/// Has the guest installed a trap handler? With stvec = 0 a trap has nowhere sensible to go
/// (address 0 is not RAM), so the engine reports it as a guest failure instead.
pub fn has_handler(hart: &Hart) -> bool {
    hart.csrs.stvec & !0b11 != 0
}

/// Enters the guest's trap handler. `hart.pc` must be the pc to record in sepc: the faulting
/// instruction for exceptions, the next instruction to run for interrupts.
pub fn deliver(hart: &mut Hart, cause: u64, tval: u64) {
    let c = &mut hart.csrs;
    c.sepc = hart.pc;
    c.scause = cause;
    c.stval = tval;
    let sie = c.sstatus & SSTATUS_SIE != 0;
    c.sstatus &= !(SSTATUS_SPP | SSTATUS_SPIE | SSTATUS_SIE);
    if sie {
        c.sstatus |= SSTATUS_SPIE;
    }
    if hart.mode == Mode::Supervisor {
        c.sstatus |= SSTATUS_SPP;
    }
    hart.mode = Mode::Supervisor;
    let base = c.stvec & !0b11;
    let vectored = c.stvec & 0b11 == 1;
    hart.pc = if vectored && cause & INTERRUPT != 0 { base + 4 * (cause & !INTERRUPT) } else { base };
}

/// `sret`: back to sepc in the mode SPP names, with SIE restored from SPIE.
pub fn sret(hart: &mut Hart) {
    let c = &mut hart.csrs;
    hart.mode = if c.sstatus & SSTATUS_SPP != 0 { Mode::Supervisor } else { Mode::User };
    let spie = c.sstatus & SSTATUS_SPIE != 0;
    c.sstatus &= !(SSTATUS_SIE | SSTATUS_SPP);
    if spie {
        c.sstatus |= SSTATUS_SIE;
    }
    c.sstatus |= SSTATUS_SPIE;
    hart.pc = c.sepc;
}

/// Updates sip.STIP from the SBI timer deadline.
pub fn update_timer(hart: &mut Hart, now: u64) {
    if now >= hart.csrs.timer_deadline {
        hart.csrs.sip |= SIP_STIP;
    }
}

/// Sets sip.SEIP to the interrupt controller's output for this hart's S-mode context (the
/// PLIC's): the guest cannot write SEIP, it follows the controller.
pub fn set_external(hart: &mut Hart, pending: bool) {
    if pending {
        hart.csrs.sip |= SIP_SEIP;
    } else {
        hart.csrs.sip &= !SIP_SEIP;
    }
}

/// The interrupt to take now, if any: pending and enabled in sie, and globally enabled
/// (always in U-mode; in S-mode only with sstatus.SIE). Priority: external, software, timer.
pub fn pending_interrupt(hart: &Hart) -> Option<u64> {
    let c = &hart.csrs;
    let globally = hart.mode == Mode::User || c.sstatus & SSTATUS_SIE != 0;
    let ready = c.sip & c.sie;
    if !globally || ready == 0 {
        return None;
    }
    [
        (SIP_SEIP, SUPERVISOR_EXTERNAL_INTERRUPT),
        (SIP_SSIP, SUPERVISOR_SOFTWARE_INTERRUPT),
        (SIP_STIP, SUPERVISOR_TIMER_INTERRUPT),
    ]
    .into_iter()
    .find(|(bit, _)| ready & bit != 0)
    .map(|(_, cause)| cause)
}

/// Whether `wfi` may finish at once: an interrupt is pending in sie, enabled or not.
pub fn wfi_should_wake(hart: &Hart) -> bool {
    hart.csrs.sip & hart.csrs.sie != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hart() -> Hart {
        let mut h = Hart::new(0x8020_0000);
        h.csrs.stvec = 0x8020_1000;
        h
    }

    #[test]
    fn deliver_records_and_jumps() {
        let mut h = hart();
        h.csrs.sstatus |= SSTATUS_SIE;
        h.pc = 0x8020_0010;
        deliver(&mut h, ILLEGAL_INSTRUCTION, 0x1050_0073);
        assert_eq!(h.pc, 0x8020_1000);
        assert_eq!(h.csrs.sepc, 0x8020_0010);
        assert_eq!(h.csrs.scause, 2);
        assert_eq!(h.csrs.stval, 0x1050_0073);
        assert_eq!(h.csrs.sstatus & SSTATUS_SIE, 0, "SIE cleared");
        assert_ne!(h.csrs.sstatus & SSTATUS_SPIE, 0, "old SIE saved in SPIE");
        assert_ne!(h.csrs.sstatus & SSTATUS_SPP, 0, "came from S");
    }

    #[test]
    fn vectored_interrupts_offset_by_cause() {
        let mut h = hart();
        h.csrs.stvec = 0x8020_1001;
        deliver(&mut h, SUPERVISOR_TIMER_INTERRUPT, 0);
        assert_eq!(h.pc, 0x8020_1000 + 4 * 5);
        let mut h = hart();
        h.csrs.stvec = 0x8020_1001;
        deliver(&mut h, BREAKPOINT, 0);
        assert_eq!(h.pc, 0x8020_1000, "exceptions go to BASE even when vectored");
    }

    #[test]
    fn sret_restores_mode_and_sie() {
        let mut h = hart();
        h.csrs.sepc = 0x8030_0000;
        h.csrs.sstatus |= SSTATUS_SPIE; // SPP = 0: return to U
        sret(&mut h);
        assert_eq!(h.pc, 0x8030_0000);
        assert_eq!(h.mode, Mode::User);
        assert_ne!(h.csrs.sstatus & SSTATUS_SIE, 0);
        assert_ne!(h.csrs.sstatus & SSTATUS_SPIE, 0, "SPIE set to 1");
        // A trap from U records SPP = 0 and returns to S.
        deliver(&mut h, ECALL_FROM_U, 0);
        assert_eq!(h.mode, Mode::Supervisor);
        assert_eq!(h.csrs.sstatus & SSTATUS_SPP, 0);
    }

    #[test]
    fn timer_interrupt_needs_deadline_sie_and_stie() {
        let mut h = hart();
        h.csrs.timer_deadline = 500;
        update_timer(&mut h, 499);
        assert_eq!(h.csrs.sip & SIP_STIP, 0);
        update_timer(&mut h, 500);
        assert_ne!(h.csrs.sip & SIP_STIP, 0);
        assert_eq!(pending_interrupt(&h), None, "STIE clear");
        h.csrs.sie = SIP_STIP;
        assert!(wfi_should_wake(&h), "wfi wakes even with SIE clear");
        assert_eq!(pending_interrupt(&h), None, "SIE clear in S-mode");
        h.csrs.sstatus |= SSTATUS_SIE;
        assert_eq!(pending_interrupt(&h), Some(SUPERVISOR_TIMER_INTERRUPT));
        h.csrs.sip |= SIP_SSIP;
        h.csrs.sie |= SIP_SSIP;
        assert_eq!(pending_interrupt(&h), Some(SUPERVISOR_SOFTWARE_INTERRUPT), "software before timer");
    }

    #[test]
    fn external_interrupt_follows_the_controller_and_goes_first() {
        let mut h = hart();
        h.csrs.sie = SIP_SEIP | SIP_STIP;
        h.csrs.sip = SIP_STIP;
        h.csrs.sstatus |= SSTATUS_SIE;
        set_external(&mut h, true);
        assert_eq!(pending_interrupt(&h), Some(SUPERVISOR_EXTERNAL_INTERRUPT), "external before timer");
        set_external(&mut h, false);
        assert_eq!(h.csrs.sip, SIP_STIP);
        assert_eq!(pending_interrupt(&h), Some(SUPERVISOR_TIMER_INTERRUPT));
        h.csrs.sie = SIP_SEIP;
        set_external(&mut h, true);
        h.csrs.sstatus &= !SSTATUS_SIE;
        assert!(wfi_should_wake(&h) && pending_interrupt(&h).is_none(), "wfi wakes; SIE off delivers nothing");
        h.csrs.stvec = 0x8020_1001;
        h.csrs.sstatus |= SSTATUS_SIE;
        deliver(&mut h, SUPERVISOR_EXTERNAL_INTERRUPT, 0);
        assert_eq!(h.pc, 0x8020_1000 + 4 * 9, "vectored: BASE + 4 x 9");
    }

    #[test]
    fn no_handler_when_stvec_is_zero() {
        let mut h = hart();
        assert!(has_handler(&h));
        h.csrs.stvec = 1;
        assert!(!has_handler(&h));
        assert_eq!(cause_name(SUPERVISOR_TIMER_INTERRUPT), "supervisor timer interrupt");
    }
}
