//! Marks: points a guest names in its own run, where the monitor notes the time and its
//! counters. The teaching lab (`vmm lab`) measures a workload between two marks: the events
//! it caused are the counters' differences, its cost the time between them.
//!
//! A guest makes mark `id` with
//! - x86: a 32-bit `out` of `id` to port [`X86_MARK_PORT`];
//! - RISC-V: an SBI call with EID [`RISCV_MARK_EID`] (the vendor range), a0 = `id`.
//!
//! The mark itself is an exit (x86) or a trap (RISC-V) like any other and is counted as one;
//! a measurement between two marks includes exactly one of them, which `vmm lab` subtracts.
//!
//! Recording never allocates: marks live in arrays reserved when the statistics are made, so
//! URVirt can record one inside its signal handler.
use crate::stats::Stats;
use std::time::Duration;

/// x86: the port a lab guest writes a mark id to (next to the debug port 0xf1).
pub const X86_MARK_PORT: u16 = 0xf2;
/// RISC-V: the SBI extension a lab guest calls to make a mark; in the spec's vendor range
/// 0x0900_0000..=0x09FF_FFFF, "VMM" in the low bytes.
pub const RISCV_MARK_EID: u64 = 0x0956_4d4d;
/// Marks kept per run; later ones are counted in [`Marks::dropped`] and not kept.
pub const MAX_MARKS: usize = 32;
/// Counter rows a mark can hold: the statistics table's kinds, and the host layer's counters.
pub const MAX_COUNTERS: usize = 64;

/// One mark: when it happened and every counter at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub id: u64,
    /// Since the monitor started running the guest.
    pub at: Duration,
    /// The statistics table's counts, in the table's first-seen order ([`Stats::kind_names`]).
    /// A kind first seen after this mark has count 0 here.
    pub counts: [u64; MAX_COUNTERS],
    /// The host layer's counters ([`Marks::host_names`]): under KVM the vCPU's binary
    /// statistics, under URVirt what the host kernel did without a signal (minor faults, ...).
    pub host: [u64; MAX_COUNTERS],
}

/// The marks of one run and the names of the host counters they hold.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    pub list: Vec<Mark>,
    /// Names of the host counters, set once by the backend before the guest runs.
    pub host_names: Vec<String>,
    /// Marks made after [`MAX_MARKS`] were kept.
    pub dropped: u64,
}

impl Marks {
    pub fn new() -> Self {
        Marks { list: Vec::with_capacity(MAX_MARKS), host_names: Vec::new(), dropped: 0 }
    }
}

impl Stats {
    /// Records mark `id` at `at` with the host counters `host` (in `marks.host_names` order).
    /// Never allocates: safe in a signal handler.
    pub fn record_mark(&mut self, id: u64, at: Duration, host: &[u64]) {
        if self.marks.list.len() >= MAX_MARKS || self.marks.list.capacity() == self.marks.list.len() {
            self.marks.dropped += 1;
            return;
        }
        let mut mark = Mark { id, at, counts: [0; MAX_COUNTERS], host: [0; MAX_COUNTERS] };
        for (slot, count) in mark.counts.iter_mut().zip(self.counts_in_order()) {
            *slot = count;
        }
        for (slot, value) in mark.host.iter_mut().zip(host) {
            *slot = *value;
        }
        self.marks.list.push(mark);
    }

    /// The whole run as one line of JSON (`--stats=json`): the table's rows, the notes, and
    /// every mark with its counters by name. `vmm lab` reads this, also through a lab host.
    pub fn to_json(&self) -> String {
        use serde_json::{json, Map, Value};
        let names = self.kind_names();
        let rows: Vec<Value> = self
            .rows()
            .map(|(name, e)| {
                json!({ "kind": name, "count": e.count, "total_ns": e.total.as_nanos() as u64,
                        "max_ns": e.max.as_nanos() as u64 })
            })
            .collect();
        let marks: Vec<Value> = self
            .marks
            .list
            .iter()
            .map(|m| {
                let counts: Map<String, Value> =
                    names.iter().zip(m.counts.iter()).map(|(n, c)| (n.clone(), json!(c))).collect();
                let host: Map<String, Value> =
                    self.marks.host_names.iter().zip(m.host.iter()).map(|(n, c)| (n.clone(), json!(c))).collect();
                json!({ "id": m.id, "at_ns": m.at.as_nanos() as u64, "counts": counts, "host": host })
            })
            .collect();
        json!({ "vmm_stats": { "rows": rows, "notes": self.notes, "marks": marks,
                               "marks_dropped": self.marks.dropped } })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_snapshot_counts_and_host_counters() {
        let mut s = Stats::new();
        s.marks.host_names = vec!["exits".into(), "pf_taken".into()];
        s.record("io-out", Duration::from_micros(1));
        s.record_mark(1, Duration::from_millis(1), &[10, 2]);
        s.record("io-out", Duration::from_micros(1));
        s.record("cpuid", Duration::from_micros(1));
        s.record_mark(2, Duration::from_millis(3), &[15, 2]);
        assert_eq!(s.marks.list.len(), 2);
        assert_eq!(&s.marks.list[0].counts[..2], &[1, 0], "cpuid was not seen yet at mark 1");
        assert_eq!(&s.marks.list[1].counts[..2], &[2, 1]);
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        let m = &v["vmm_stats"]["marks"][1];
        assert_eq!(m["id"], 2);
        assert_eq!(m["at_ns"], 3_000_000);
        assert_eq!(m["counts"]["cpuid"], 1);
        assert_eq!(m["host"]["exits"], 15);
        assert_eq!(v["vmm_stats"]["rows"][0]["kind"], "io-out");
    }

    #[test]
    fn marks_past_the_limit_are_counted_not_kept() {
        let mut s = Stats::new();
        for i in 0..(MAX_MARKS as u64 + 3) {
            s.record_mark(i, Duration::ZERO, &[]);
        }
        assert_eq!(s.marks.list.len(), MAX_MARKS);
        assert_eq!(s.marks.dropped, 3);
        assert_eq!(s.marks.list.capacity(), MAX_MARKS, "recording never grew the list");
    }
}
