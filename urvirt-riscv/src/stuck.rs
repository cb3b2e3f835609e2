//! Noticing a guest that makes no progress: its trap handler returns to the instruction that
//! faulted, which faults again the same way, forever (a paged kernel URVirt cannot run took
//! four million identical SIGSEGVs a minute like that, silently). Pure code; the engine feeds
//! it every exception it delivers and every `sret`.
//!
//! "No progress" is: the same exception (cause) at the same pc for the same address (stval),
//! [`LIMIT`] times in a row, with every `sret` in between going back to that pc. A different
//! exception, or an `sret` to anywhere else (a handler that skips the instruction), starts
//! the count again, so a loop that faults and is skipped on purpose is not stopped. Other
//! traps (CSR accesses, SBI calls, timer ticks) neither count nor reset.
use crate::trap;

/// Identical faults in a row that end the run. A real kernel retries a fault a handful of
/// times at most; this is far above that and still stops a stuck guest within a second.
pub const LIMIT: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fault {
    pc: u64,
    cause: u64,
    addr: u64,
}

#[derive(Debug, Default)]
pub struct StuckDetector {
    last: Option<Fault>,
    count: u64,
}

impl StuckDetector {
    /// An exception `cause` delivered to the guest for the instruction at `pc` (stval `addr`).
    /// Returns the one-line diagnostic once the same one has come [`LIMIT`] times in a row.
    pub fn exception(&mut self, pc: u64, cause: u64, addr: u64) -> Option<String> {
        let fault = Fault { pc, cause, addr };
        if self.last == Some(fault) {
            self.count += 1;
        } else {
            self.last = Some(fault);
            self.count = 1;
        }
        (self.count >= LIMIT).then(|| {
            format!(
                "guest is stuck: {} at pc {pc:#x} (address {addr:#x}) {} times in a row, its trap handler \
                 returning to the same instruction each time",
                trap::cause_name(cause),
                self.count
            )
        })
    }

    /// The guest ran `sret` to `pc`: anywhere but the faulting instruction is progress.
    pub fn returned_to(&mut self, pc: u64) {
        if self.last.is_some_and(|f| f.pc != pc) {
            self.last = None;
            self.count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PC: u64 = 0x8020_0010;

    #[test]
    fn the_same_fault_retried_forever_is_stopped() {
        let mut d = StuckDetector::default();
        for _ in 1..LIMIT {
            assert_eq!(d.exception(PC, trap::STORE_ACCESS_FAULT, 0x1000), None);
            d.returned_to(PC);
        }
        let why = d.exception(PC, trap::STORE_ACCESS_FAULT, 0x1000).expect("stopped at the limit");
        assert!(why.contains("store access fault") && why.contains("pc 0x80200010"), "{why}");
        assert!(why.contains("address 0x1000") && why.contains("10000 times"), "{why}");
        assert!(!why.contains('\n'), "one line: {why}");
    }

    #[test]
    fn progress_starts_the_count_again() {
        let mut d = StuckDetector::default();
        for i in 0..3 * LIMIT {
            assert_eq!(d.exception(PC, trap::LOAD_ACCESS_FAULT, 0x1000), None, "iteration {i}");
            // The handler skips the instruction: progress, however often it happens.
            d.returned_to(PC + 4);
        }
        for i in 0..3 * LIMIT {
            // Two faults taking turns are not the same fault in a row.
            let addr = if i % 2 == 0 { 0x1000 } else { 0x2000 };
            assert_eq!(d.exception(PC, trap::LOAD_ACCESS_FAULT, addr), None);
        }
        for i in 0..3 * LIMIT {
            let cause = if i % 2 == 0 { trap::LOAD_ACCESS_FAULT } else { trap::ILLEGAL_INSTRUCTION };
            assert_eq!(d.exception(PC, cause, 0x1000), None);
        }
    }
}
