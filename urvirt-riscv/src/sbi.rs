//! The SBI (Supervisor Binary Interface) the guest kernel calls with `ecall`.
//!
//! Calling convention: a7 = extension id (EID), a6 = function id (FID), arguments in a0..a5;
//! the result comes back as a0 = error, a1 = value. Legacy (v0.1) calls return only a0.
//! Implemented: legacy set_timer, console_putchar, console_getchar, clear_ipi, send_ipi,
//! remote fences (no-ops on one hart) and shutdown; BASE; TIME; SRST; DBCN; the lab's mark.
//! Everything else answers SBI_ERR_NOT_SUPPORTED.
use crate::csr::{SIP_SSIP, SIP_STIP};
use crate::hart::{Action, Hart};
use crate::platform::Platform;

pub const SBI_SUCCESS: i64 = 0;
pub const SBI_ERR_FAILED: i64 = -1;
pub const SBI_ERR_NOT_SUPPORTED: i64 = -2;
pub const SBI_ERR_INVALID_PARAM: i64 = -3;

pub const LEGACY_SET_TIMER: u64 = 0;
pub const LEGACY_CONSOLE_PUTCHAR: u64 = 1;
pub const LEGACY_CONSOLE_GETCHAR: u64 = 2;
pub const LEGACY_CLEAR_IPI: u64 = 3;
pub const LEGACY_SEND_IPI: u64 = 4;
pub const LEGACY_REMOTE_SFENCE_VMA_ASID: u64 = 7;
pub const LEGACY_SHUTDOWN: u64 = 8;
pub const EXT_BASE: u64 = 0x10;
pub const EXT_TIME: u64 = 0x5449_4d45; // "TIME"
pub const EXT_SRST: u64 = 0x5352_5354; // "SRST"
pub const EXT_DBCN: u64 = 0x4442_434e; // "DBCN"
/// The teaching lab's mark (vendor range): a0 = mark id; the engine records it ([`crate::teach`]).
pub const EXT_LAB_MARK: u64 = common::marks::RISCV_MARK_EID;
/// The statistics row of a mark call: the engine looks for it to record the mark.
pub const MARK_KIND: &str = "sigsys sbi lab-mark";

/// SBI specification 2.0: major in bits 30:24, minor in 23:0.
pub const SPEC_VERSION: u64 = 2 << 24;
/// Implementation ids 0..=11 are registered (0 BBL, 1 OpenSBI, 3 KVM, 4 RustSBI, ...).
/// URVirt is not registered; it answers "URVT" in ASCII, far from the registered range.
pub const IMPL_ID: u64 = 0x5552_5654;
/// Our version: major.minor of the crate as (major << 16) | minor.
pub const IMPL_VERSION: u64 = 1;

/// SRST reset reasons with a defined meaning: no reason -> exit status 0, system failure -> 1.
/// The spec leaves 0xE000_0000..=0xEFFF_FFFF to the SBI implementation; URVirt defines
/// 0xE000_00nn as "end the run with exit status nn", so a test guest can report any status.
/// Every other reason in that range, the vendor/platform range 0xF000_0000..=0xFFFF_FFFF
/// and the reserved ones are not implemented here: SBI_ERR_INVALID_PARAM, as the spec's
/// SRST error table says for a reason that is "reserved or platform-specific and unimplemented".
pub const SRST_REASON_NONE: u64 = 0;
pub const SRST_REASON_SYSTEM_FAILURE: u64 = 1;
pub const SRST_REASON_URVIRT_STATUS: u64 = 0xe000_0000;

/// What one ecall did: the statistics kind and what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbiResult {
    pub kind: &'static str,
    pub action: Action,
}

fn done(kind: &'static str) -> SbiResult {
    SbiResult { kind, action: Action::Resume }
}

/// Sets the standard return pair.
fn ret(hart: &mut Hart, error: i64, value: u64) {
    hart.x[10] = error as u64;
    hart.x[11] = value;
}

/// Handles the SBI call the guest just made. `hart.pc` is already past the ecall.
pub fn handle(hart: &mut Hart, platform: &mut dyn Platform) -> SbiResult {
    let (eid, fid) = (hart.x[17], hart.x[16]);
    let a0 = hart.x[10];
    match eid {
        LEGACY_SET_TIMER => {
            set_timer(hart, a0);
            hart.x[10] = 0;
            done("sigsys sbi legacy-set-timer")
        }
        LEGACY_CONSOLE_PUTCHAR => {
            platform.console_write(&[a0 as u8]);
            hart.x[10] = 0;
            done("sigsys sbi legacy-putchar")
        }
        LEGACY_CONSOLE_GETCHAR => {
            let mut b = [0u8];
            hart.x[10] = if platform.console_read(&mut b) == 1 { b[0] as u64 } else { u64::MAX };
            done("sigsys sbi legacy-getchar")
        }
        LEGACY_CLEAR_IPI => {
            hart.csrs.sip &= !SIP_SSIP;
            hart.x[10] = 0;
            done("sigsys sbi legacy-ipi")
        }
        LEGACY_SEND_IPI => {
            // One hart: any mask that names a hart names us.
            hart.csrs.sip |= SIP_SSIP;
            hart.x[10] = 0;
            done("sigsys sbi legacy-ipi")
        }
        5..=LEGACY_REMOTE_SFENCE_VMA_ASID => {
            // Remote fences on a single hart: nothing to do (the host keeps our icache coherent
            // for our own stores after fence.i, which the guest runs natively).
            hart.x[10] = 0;
            done("sigsys sbi legacy-fence")
        }
        LEGACY_SHUTDOWN => SbiResult { kind: "sigsys sbi legacy-shutdown", action: Action::Shutdown(0) },
        EXT_BASE => {
            base(hart, fid, a0);
            done("sigsys sbi base")
        }
        EXT_TIME => {
            if fid == 0 {
                set_timer(hart, a0);
                ret(hart, SBI_SUCCESS, 0);
            } else {
                ret(hart, SBI_ERR_NOT_SUPPORTED, 0);
            }
            done("sigsys sbi time")
        }
        EXT_SRST => srst(hart, fid),
        EXT_LAB_MARK => {
            ret(hart, SBI_SUCCESS, 0);
            done(MARK_KIND)
        }
        EXT_DBCN => {
            dbcn(hart, fid, platform);
            done("sigsys sbi dbcn")
        }
        _ => {
            // Legacy calls return only a0; for them a1 is left alone, which does no harm.
            ret(hart, SBI_ERR_NOT_SUPPORTED, 0);
            done("sigsys sbi unsupported")
        }
    }
}

/// set_timer: program the next timer event and clear the pending timer interrupt.
fn set_timer(hart: &mut Hart, deadline: u64) {
    hart.csrs.timer_deadline = deadline;
    hart.csrs.sip &= !SIP_STIP;
}

/// Whether `probe_extension` reports `eid` as available.
pub fn is_supported(eid: u64) -> bool {
    matches!(eid, 0..=LEGACY_SHUTDOWN | EXT_BASE | EXT_TIME | EXT_SRST | EXT_DBCN | EXT_LAB_MARK)
}

fn base(hart: &mut Hart, fid: u64, a0: u64) {
    let value = match fid {
        0 => SPEC_VERSION,
        1 => IMPL_ID,
        2 => IMPL_VERSION,
        3 => is_supported(a0) as u64,
        // mvendorid, marchid, mimpid: U-mode cannot read the real ones; 0 means "not given".
        4..=6 => 0,
        _ => return ret(hart, SBI_ERR_NOT_SUPPORTED, 0),
    };
    ret(hart, SBI_SUCCESS, value);
}

/// The exit status an SRST reset reason stands for, or None for a reserved reason.
pub fn reason_status(reason: u64) -> Option<i32> {
    match reason {
        SRST_REASON_NONE => Some(0),
        SRST_REASON_SYSTEM_FAILURE => Some(1),
        r if (r & 0xffff_ff00) == SRST_REASON_URVIRT_STATUS && r >> 32 == 0 => Some((r & 0xff) as i32),
        _ => None,
    }
}

/// system_reset(type, reason). Shutdown and both reboots end the run: URVirt does not restart
/// a guest, so a reboot request is reported as the end of the VM with the reason's status.
/// Reserved types (3..=0xEFFF_FFFF) and vendor types (0xF000_0000..) are not implemented:
/// SBI_ERR_INVALID_PARAM. (NOT_SUPPORTED is for an implemented type the platform cannot do
/// right now, which never happens here.) An unknown function id is SBI_ERR_NOT_SUPPORTED.
fn srst(hart: &mut Hart, fid: u64) -> SbiResult {
    let kind = "sigsys sbi srst";
    let (reset_type, reason) = (hart.x[10] & 0xffff_ffff, hart.x[11] & 0xffff_ffff);
    if fid != 0 {
        ret(hart, SBI_ERR_NOT_SUPPORTED, 0);
        return done(kind);
    }
    match (reset_type, reason_status(reason)) {
        (0..=2, Some(status)) => SbiResult { kind, action: Action::Shutdown(status) },
        _ => {
            ret(hart, SBI_ERR_INVALID_PARAM, 0);
            done(kind)
        }
    }
}

/// Debug console: write/read take (num_bytes, base_addr_lo, base_addr_hi), a guest physical
/// address split into two XLEN-bit halves. On RV64 every address fits in the low half, so a
/// non-zero high half names memory that cannot exist: SBI_ERR_INVALID_PARAM. The bytes move
/// straight between guest RAM and the console (no buffer: this runs in a signal handler).
fn dbcn(hart: &mut Hart, fid: u64, platform: &mut dyn Platform) {
    let (len, lo, hi) = (hart.x[10], hart.x[11], hart.x[12]);
    // One call moves at most a page; the guest loops for more, as the spec allows.
    let n = len.min(4096) as usize;
    match fid {
        0 | 1 if hi != 0 => ret(hart, SBI_ERR_INVALID_PARAM, 0),
        0 => match platform.console_write_from_guest(lo, n) {
            true => ret(hart, SBI_SUCCESS, n as u64),
            false => ret(hart, SBI_ERR_INVALID_PARAM, 0),
        },
        1 => match platform.console_read_into_guest(lo, n) {
            Some(got) => ret(hart, SBI_SUCCESS, got as u64),
            None => ret(hart, SBI_ERR_INVALID_PARAM, 0),
        },
        2 => {
            platform.console_write(&[len as u8]);
            ret(hart, SBI_SUCCESS, 0);
        }
        _ => ret(hart, SBI_ERR_NOT_SUPPORTED, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fake::FakePlatform;

    fn call(h: &mut Hart, p: &mut FakePlatform, eid: u64, fid: u64, args: &[u64]) -> SbiResult {
        h.x[17] = eid;
        h.x[16] = fid;
        for (i, a) in args.iter().enumerate() {
            h.x[10 + i] = *a;
        }
        handle(h, p)
    }

    #[test]
    fn legacy_putchar_getchar_shutdown() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        let r = call(&mut h, &mut p, 1, 0, &[b'I' as u64]);
        assert_eq!(r, SbiResult { kind: "sigsys sbi legacy-putchar", action: Action::Resume });
        assert_eq!(p.output, b"I");
        assert_eq!(h.x[10], 0);
        call(&mut h, &mut p, 2, 0, &[]);
        assert_eq!(h.x[10] as i64, -1, "no input yet");
        p.input.push_back(b'k');
        call(&mut h, &mut p, 2, 0, &[]);
        assert_eq!(h.x[10], b'k' as u64);
        assert_eq!(call(&mut h, &mut p, 8, 0, &[]).action, Action::Shutdown(0));
    }

    #[test]
    fn set_timer_records_deadline_and_clears_stip() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        h.csrs.sip = SIP_STIP;
        call(&mut h, &mut p, EXT_TIME, 0, &[12345]);
        assert_eq!(h.csrs.timer_deadline, 12345);
        assert_eq!(h.csrs.sip & SIP_STIP, 0);
        assert_eq!(h.x[10], 0);
        h.csrs.sip = SIP_STIP;
        call(&mut h, &mut p, 0, 0, &[777]);
        assert_eq!((h.csrs.timer_deadline, h.csrs.sip), (777, 0));
    }

    #[test]
    fn base_extension() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        call(&mut h, &mut p, EXT_BASE, 0, &[]);
        assert_eq!((h.x[10], h.x[11]), (0, 0x0200_0000));
        call(&mut h, &mut p, EXT_BASE, 1, &[]);
        assert_eq!(h.x[11], IMPL_ID);
        call(&mut h, &mut p, EXT_BASE, 3, &[EXT_DBCN]);
        assert_eq!((h.x[10], h.x[11]), (0, 1));
        call(&mut h, &mut p, EXT_BASE, 3, &[0x0048_534d]); // HSM: not offered
        assert_eq!((h.x[10], h.x[11]), (0, 0));
        call(&mut h, &mut p, EXT_BASE, 4, &[]);
        assert_eq!((h.x[10], h.x[11]), (0, 0));
        call(&mut h, &mut p, EXT_BASE, 99, &[]);
        assert_eq!(h.x[10] as i64, SBI_ERR_NOT_SUPPORTED);
    }

    #[test]
    fn lab_mark_succeeds_and_is_its_own_row() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        let r = call(&mut h, &mut p, EXT_LAB_MARK, 0, &[3]);
        assert_eq!(r, SbiResult { kind: MARK_KIND, action: Action::Resume });
        assert_eq!(h.x[10], 0);
        assert!(is_supported(EXT_LAB_MARK));
    }

    #[test]
    fn unknown_extension_is_not_supported() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        let r = call(&mut h, &mut p, 0x0a00_0000, 0, &[]);
        assert_eq!(h.x[10] as i64, -2);
        assert_eq!(r.kind, "sigsys sbi unsupported");
        call(&mut h, &mut p, EXT_TIME, 1, &[]);
        assert_eq!(h.x[10] as i64, -2, "unknown function of a known extension");
    }

    #[test]
    fn srst_reasons_become_exit_status() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        assert_eq!(call(&mut h, &mut p, EXT_SRST, 0, &[0, 0]).action, Action::Shutdown(0));
        assert_eq!(call(&mut h, &mut p, EXT_SRST, 0, &[0, 1]).action, Action::Shutdown(1));
        assert_eq!(call(&mut h, &mut p, EXT_SRST, 0, &[1, 0]).action, Action::Shutdown(0), "cold reboot");
        assert_eq!(call(&mut h, &mut p, EXT_SRST, 0, &[0, 0xe000_0007]).action, Action::Shutdown(7));
        assert_eq!(call(&mut h, &mut p, EXT_SRST, 0, &[2, 0xe000_00ff]).action, Action::Shutdown(255));
        // Reserved, unimplemented implementation-specific and vendor reasons; reserved and
        // vendor types: all SBI_ERR_INVALID_PARAM, and the guest goes on.
        for (ty, reason, what) in [
            (0, 5, "reserved reason"),
            (0, 0xe000_0100, "implementation-specific reason we do not define"),
            (0, 0xf000_0000, "vendor reason"),
            (0, 0xffff_ffff, "vendor reason"),
            (3, 0, "reserved type"),
            (0xf000_0000, 0, "vendor type"),
        ] {
            h.x[10] = 0;
            let r = call(&mut h, &mut p, EXT_SRST, 0, &[ty, reason]);
            assert_eq!(r.action, Action::Resume, "{what}");
            assert_eq!(h.x[10] as i64, SBI_ERR_INVALID_PARAM, "{what}");
        }
        call(&mut h, &mut p, EXT_SRST, 1, &[0, 0]);
        assert_eq!(h.x[10] as i64, SBI_ERR_NOT_SUPPORTED, "unknown function");
    }

    #[test]
    fn dbcn_uses_guest_physical_addresses() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        p.ram[0x100..0x105].copy_from_slice(b"hello");
        call(&mut h, &mut p, EXT_DBCN, 0, &[5, 0x8000_0100, 0]);
        assert_eq!((h.x[10], h.x[11]), (0, 5));
        assert_eq!(p.output, b"hello");
        call(&mut h, &mut p, EXT_DBCN, 0, &[5, 0x100, 0]);
        assert_eq!(h.x[10] as i64, SBI_ERR_INVALID_PARAM, "not guest RAM");
        call(&mut h, &mut p, EXT_DBCN, 2, &[b'!' as u64]);
        assert_eq!(p.output, b"hello!");
        p.input.extend(b"ab");
        call(&mut h, &mut p, EXT_DBCN, 1, &[8, 0x8000_0200, 0]);
        assert_eq!((h.x[10], h.x[11]), (0, 2));
        assert_eq!(&p.ram[0x200..0x202], b"ab");
        // The last bytes of RAM are fine, one past is not.
        call(&mut h, &mut p, EXT_DBCN, 0, &[2, 0x8000_0ffe, 0]);
        assert_eq!(h.x[10], 0);
        call(&mut h, &mut p, EXT_DBCN, 0, &[2, 0x8000_0fff, 0]);
        assert_eq!(h.x[10] as i64, SBI_ERR_INVALID_PARAM);
    }

    #[test]
    fn dbcn_high_address_half_must_be_zero_on_rv64() {
        let (mut h, mut p) = (Hart::new(0x8020_0000), FakePlatform::new());
        p.ram[0x100..0x103].copy_from_slice(b"abc");
        call(&mut h, &mut p, EXT_DBCN, 0, &[3, 0x8000_0100, 1]);
        assert_eq!(h.x[10] as i64, SBI_ERR_INVALID_PARAM, "write with base_addr_hi != 0");
        // lo + (hi << 32) would wrap around to RAM here; hi is not a 32-bit half on RV64.
        call(&mut h, &mut p, EXT_DBCN, 0, &[3, 0xffff_ffff_8000_0100, 1]);
        assert_eq!(h.x[10] as i64, SBI_ERR_INVALID_PARAM, "no wrap-around alias");
        p.input.extend(b"z");
        call(&mut h, &mut p, EXT_DBCN, 1, &[1, 0x8000_0200, 1]);
        assert_eq!(h.x[10] as i64, SBI_ERR_INVALID_PARAM, "read with base_addr_hi != 0");
        assert_eq!(p.output, b"");
        assert_eq!(p.input.len(), 1, "nothing consumed");
        // With hi = 0 the address is lo.
        call(&mut h, &mut p, EXT_DBCN, 0, &[3, 0x8000_0100, 0]);
        assert_eq!((h.x[10], h.x[11], p.output.as_slice()), (0, 3, &b"abc"[..]));
    }
}
