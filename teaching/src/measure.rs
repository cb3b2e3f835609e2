//! From phases to figures: events, exits (or signals) per event, the host layer's counters per
//! event, and ns per event against the baseline.
//!
//! Phase 0 of every workload is its baseline: the same loop with the event replaced by a no-op
//! of the same shape. An event phase's cost is (its time - the baseline's time) / N, and what it
//! caused is (its counters - the baseline's) / N, so the loop itself and the marks cancel out.
//! `compute` is the exception: its baseline is the same kernel run natively by `vmm lab`.
use crate::runner::Phase;
use std::collections::BTreeMap;

/// The workload whose baseline is native code.
pub const COMPUTE: &str = "compute";

/// One event phase of one workload on one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub workload: String,
    /// 1.. (phase 0 is the baseline).
    pub phase: usize,
    pub phase_name: String,
    pub backend: String,
    /// N: the events the phase made.
    pub events: u64,
    /// What reached vmm (exits on x86, signals on RISC-V) by statistics row, baseline taken off.
    pub exits: BTreeMap<String, i64>,
    /// The host layer's counters, baseline taken off.
    pub host: BTreeMap<String, i64>,
    pub phase_ns: u64,
    /// The baseline phase's time, or for compute the native run's.
    pub baseline_ns: u64,
}

impl Measure {
    fn per_event(&self, n: i64) -> f64 {
        n as f64 / self.events.max(1) as f64
    }

    pub fn exits_per_event(&self) -> f64 {
        self.per_event(self.exits.values().sum())
    }

    /// What the event costs in ns. For compute, a whole iteration's time in the guest.
    pub fn ns_per_event(&self) -> f64 {
        if self.workload == COMPUTE {
            self.phase_ns as f64 / self.events.max(1) as f64
        } else {
            (self.phase_ns as f64 - self.baseline_ns as f64) / self.events.max(1) as f64
        }
    }

    /// Host counters that moved, per event, largest first.
    pub fn host_per_event(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> =
            self.host.iter().filter(|(_, n)| **n != 0).map(|(k, n)| (k.clone(), self.per_event(*n))).collect();
        v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        v
    }

    /// Rows that reached vmm, per event, largest first.
    pub fn exits_by_row(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> =
            self.exits.iter().filter(|(_, n)| **n != 0).map(|(k, n)| (k.clone(), self.per_event(*n))).collect();
        v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        v
    }

    /// For compute: the guest's speed as a fraction of native (1.0 = as fast).
    pub fn of_native(&self) -> Option<f64> {
        (self.workload == COMPUTE && self.phase_ns > 0).then(|| self.baseline_ns as f64 / self.phase_ns as f64)
    }
}

/// `a - b` per key, keeping keys of both.
fn minus(a: &BTreeMap<String, i64>, b: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut out = a.clone();
    for (k, n) in b {
        *out.entry(k.clone()).or_insert(0) -= n;
    }
    out.retain(|_, n| *n != 0);
    out
}

/// The event phases of one run. `phases` holds phase 0 (the baseline) and then one phase per
/// name in `phase_names`; `native_ns` is the native baseline for compute.
pub fn measure(
    workload: &str,
    backend: &str,
    phase_names: &[&str],
    phases: &[Phase],
    events: u64,
    native_ns: Option<u64>,
) -> Vec<Measure> {
    let Some((baseline, event_phases)) = phases.split_first() else { return Vec::new() };
    let compute = workload == COMPUTE;
    event_phases
        .iter()
        .zip(phase_names)
        .enumerate()
        .map(|(i, (p, name))| Measure {
            workload: workload.into(),
            phase: i + 1,
            phase_name: name.to_string(),
            backend: backend.into(),
            events,
            // Native code makes no exits: compute's counts are all the guest's (its ticks).
            exits: if compute { minus(&p.counts, &BTreeMap::new()) } else { minus(&p.counts, &baseline.counts) },
            host: if compute { minus(&p.host, &BTreeMap::new()) } else { minus(&p.host, &baseline.host) },
            phase_ns: p.ns,
            baseline_ns: if compute { native_ns.unwrap_or(0) } else { baseline.ns },
        })
        .collect()
}

/// How many times the reference's cost this one's is (`None` when either is not positive:
/// an event cheaper than the noise has no meaningful ratio).
pub fn ratio(ns: f64, reference_ns: f64) -> Option<f64> {
    (ns > 0.0 && reference_ns > 0.0).then(|| ns / reference_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(ns: u64, counts: &[(&str, i64)], host: &[(&str, i64)]) -> Phase {
        let map = |v: &[(&str, i64)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        Phase { ns, counts: map(counts), host: map(host) }
    }

    #[test]
    fn event_phases_minus_the_baseline() {
        let phases = [
            phase(1_000_000, &[("hlt", 1)], &[("exits", 3)]),
            phase(51_000_000, &[("cpuid", 10_000), ("hlt", 1)], &[("exits", 10_003), ("insn_emulation", 10_000)]),
            phase(2_000_000, &[], &[("exits", 3), ("pf_taken", 5)]),
        ];
        let m = measure("priv-reg", "x86-kvm", &["cpuid", "cr read+write"], &phases, 10_000, None);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].phase, m[0].phase_name.as_str()), (1, "cpuid"));
        assert_eq!(m[0].exits, BTreeMap::from([("cpuid".into(), 10_000)]));
        assert_eq!(m[0].exits_per_event(), 1.0);
        assert_eq!(m[0].ns_per_event(), 5_000.0);
        assert_eq!(m[0].host_per_event(), vec![("exits".into(), 1.0), ("insn_emulation".into(), 1.0)]);
        assert_eq!(m[0].exits_by_row(), vec![("cpuid".into(), 1.0)]);
        assert_eq!(m[0].of_native(), None);
        // Fewer exits than the baseline show as negative, not hidden.
        assert_eq!(m[1].exits_per_event(), -0.0001);
        assert_eq!(m[1].ns_per_event(), 100.0);
        assert_eq!(m[1].host_per_event(), vec![("pf_taken".into(), 0.0005)]);
    }

    #[test]
    fn compute_is_measured_against_native() {
        let phases = [phase(10, &[], &[]), phase(2_000_000, &[("timer", 20)], &[("exits", 25)])];
        let m = measure(COMPUTE, "riscv", &["compute"], &phases, 1000, Some(1_960_000));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].ns_per_event(), 2000.0);
        assert_eq!(m[0].baseline_ns, 1_960_000);
        assert_eq!(m[0].of_native(), Some(0.98));
        assert_eq!(m[0].exits_per_event(), 0.02, "the ticks stay in");
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(3000.0, 1500.0), Some(2.0));
        assert_eq!(ratio(-5.0, 1500.0), None);
        assert_eq!(ratio(5.0, 0.0), None);
    }

    #[test]
    fn missing_phases_give_no_rows() {
        assert!(measure("mmio", "x86-kvm", &["read"], &[], 10, None).is_empty());
        let only_baseline = [phase(5, &[], &[])];
        assert!(measure("mmio", "x86-kvm", &["read"], &only_baseline, 10, None).is_empty());
    }
}
