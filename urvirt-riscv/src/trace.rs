//! `--trace` on URVirt: what one trap touched. Pure (unit-tested on any host); the engine calls
//! it inside its signal handler, so nothing
//! here allocates or locks ([`common::trace::Tracer::record`] formats into its own buffer).
//!
//! [`before`] looks at the trap before it is handled (the SBI call's EID, FID and a0, which
//! the handling overwrites; the CSR and the value written), [`after`] writes the line once the
//! handler knows the kind and its time (and the value a CSR read returned).
use crate::decode::{decode, CsrSrc, Insn};
use crate::hart::Hart;
use common::trace::{Target, Tracer};
use std::time::{Duration, Instant};

/// What [`before`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Before {
    target: Target,
    value: Option<u64>,
    /// A CSR instruction's destination register: its value after handling is what was read.
    rd: usize,
}

/// The trap `sig` about to be handled; `raw` is the instruction at pc for a SIGILL (0 otherwise)
/// and `fault_addr` the address of a SIGSEGV/SIGBUS.
pub fn before(sig: libc::c_int, hart: &Hart, raw: u32, fault_addr: u64) -> Before {
    let none = Before { target: Target::None, value: None, rd: 0 };
    match sig {
        libc::SIGSYS => {
            Before { target: Target::Sbi { eid: hart.x[17], fid: hart.x[16] }, value: Some(hart.x[10]), rd: 0 }
        }
        libc::SIGILL => match decode(raw).insn {
            Insn::Csr { rd, src, csr, .. } => {
                let written = match src {
                    CsrSrc::Reg(r) => hart.x[r],
                    CsrSrc::Imm(i) => i,
                };
                Before { target: Target::Csr(csr), value: Some(written), rd }
            }
            _ => Before { target: Target::Insn(raw), ..none },
        },
        libc::SIGSEGV | libc::SIGBUS => Before { target: Target::Addr(fault_addr), ..none },
        _ => none,
    }
}

/// Writes the line of a trap of `kind` that began at `start` and took `spent`.
pub fn after(tracer: &mut Tracer, hart: &Hart, kind: &str, start: Instant, spent: Duration, b: Before) {
    // A CSR read (rd != x0) traces the value it read; a write, the value written.
    let value = if b.rd != 0 && matches!(b.target, Target::Csr(_)) { Some(hart.x[b.rd]) } else { b.value };
    tracer.record(start, kind, "", b.target, value, spent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbi_calls_and_csrs_are_described() {
        let mut hart = Hart::new(0x8020_0000);
        hart.x[17] = 0x01;
        hart.x[16] = 0;
        hart.x[10] = b'I' as u64;
        let b = before(libc::SIGSYS, &hart, 0, 0);
        assert_eq!(b.target, Target::Sbi { eid: 1, fid: 0 });
        assert_eq!(b.value, Some(0x49));
        // csrrw x5, sscratch(0x140), x6
        hart.x[6] = 0x1234;
        let b = before(libc::SIGILL, &hart, 0x1403_12f3, 0);
        assert_eq!(b.target, Target::Csr(0x140));
        assert_eq!((b.value, b.rd), (Some(0x1234), 5));
        let b = before(libc::SIGILL, &hart, 0x1020_0073, 0);
        assert_eq!(b.target, Target::Insn(0x1020_0073));
        assert_eq!(before(libc::SIGSEGV, &hart, 0, 0x1000_0000).target, Target::Addr(0x1000_0000));
        assert_eq!(before(libc::SIGALRM, &hart, 0, 0).target, Target::None);
    }
}
