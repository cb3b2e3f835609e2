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
    /// The event key shared with the other architecture's phase of the same event ("" = none).
    pub event: String,
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
    phase_names: &[(&str, &str)],
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
        .map(|(i, (p, (name, event)))| Measure {
            workload: workload.into(),
            phase: i + 1,
            phase_name: name.to_string(),
            event: event.to_string(),
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

/// The median of several runs of one workload, phase by phase: of each phase, the run whose
/// ns per event (compute: fraction of native) is the median, with that run's counts, so every
/// figure of a row comes from one run. The upper median of an even count, as
/// `common::stats::median`.
pub fn median_run(runs: Vec<Vec<Measure>>) -> Vec<Measure> {
    let phases = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..phases)
        .map(|i| {
            let mut of_phase: Vec<&Measure> = runs.iter().map(|r| &r[i]).collect();
            let key = |m: &Measure| m.of_native().unwrap_or_else(|| m.ns_per_event());
            of_phase.sort_by(|a, b| key(a).total_cmp(&key(b)));
            of_phase[of_phase.len() / 2].clone()
        })
        .collect()
}

/// Below this an event's ns per event is within the noise of a phase's timing (and of the
/// baseline subtracted from it): a ratio to it would say nothing.
pub const RATIO_FLOOR_NS: f64 = 20.0;

/// How many times the reference's cost this one's is; `None` when either is below
/// [`RATIO_FLOOR_NS`].
pub fn ratio(ns: f64, reference_ns: f64) -> Option<f64> {
    (ns >= RATIO_FLOOR_NS && reference_ns >= RATIO_FLOOR_NS).then(|| ns / reference_ns)
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
        let m = measure("priv-reg", "x86-kvm", &[("cpuid", ""), ("cr read+write", "")], &phases, 10_000, None);
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
        let m = measure(COMPUTE, "riscv", &[("compute", "compute")], &phases, 1000, Some(1_960_000));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].ns_per_event(), 2000.0);
        assert_eq!(m[0].baseline_ns, 1_960_000);
        assert_eq!(m[0].of_native(), Some(0.98));
        assert_eq!(m[0].exits_per_event(), 0.02, "the ticks stay in");
    }

    #[test]
    fn the_median_run_of_each_phase() {
        let run = |a: u64, b: u64| {
            let phases = [phase(0, &[], &[]), phase(a, &[("x", a as i64)], &[]), phase(b, &[], &[])];
            measure("mmio", "riscv", &[("read", ""), ("write", "")], &phases, 1, None)
        };
        let m = median_run(vec![run(30, 1), run(10, 3), run(20, 2)]);
        assert_eq!((m[0].phase_ns, m[0].exits["x"]), (20, 20), "phase 1: its median run, with its counts");
        assert_eq!(m[1].phase_ns, 2);
        assert_eq!(median_run(vec![run(5, 6)]), run(5, 6));
        assert!(median_run(Vec::new()).is_empty());
        // Compute: by the fraction of native.
        let c = |guest: u64, native: u64| {
            measure(
                COMPUTE,
                "x86-kvm",
                &[("compute", "compute")],
                &[phase(0, &[], &[]), phase(guest, &[], &[])],
                1,
                Some(native),
            )
        };
        let m = median_run(vec![c(100, 90), c(100, 99), c(100, 50)]);
        assert_eq!(m[0].of_native(), Some(0.9));
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(3000.0, 1500.0), Some(2.0));
        assert_eq!(ratio(-5.0, 1500.0), None);
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(50_000.0, 1.0), None, "a reference within the noise");
    }

    #[test]
    fn missing_phases_give_no_rows() {
        assert!(measure("mmio", "x86-kvm", &[("read", "")], &[], 10, None).is_empty());
        let only_baseline = [phase(5, &[], &[])];
        assert!(measure("mmio", "x86-kvm", &[("read", "")], &only_baseline, 10, None).is_empty());
    }
}
