//! The terminal table: one row per workload, event phase and backend.
use crate::backend::Backend;
use crate::measure::{ratio, Measure};
use crate::Results;
use std::fmt::Write as _;

/// A per-event count: "1.00", "0.0001", "0", "12345".
pub fn per_event(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else if a >= 0.0001 {
        format!("{v:.4}")
    } else {
        format!("{v:.1e}")
    }
}

/// ns with thousands separators; a fraction only below 10 ns.
pub fn ns(v: f64) -> String {
    if v.abs() < 10.0 {
        return format!("{v:.1}");
    }
    let whole = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

pub fn ratio_text(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("{r:.0}x"),
        Some(r) if r < 0.005 => "<0.01x".into(),
        Some(r) => format!("{r:.2}x"),
        None => "-".into(),
    }
}

/// The host counters shown first when they moved: the ones that tell which layer handled an
/// event (KVM's statistics; the vCPU or guest thread's page faults).
const HOST_FIRST: &[&str] = &[
    "exits",
    "io_exits",
    "mmio_exits",
    "halt_exits",
    "irq_exits",
    "insn_emulation",
    "pf_taken",
    "pf_guest",
    "irq_injections",
    "host_minflt",
    "minor_faults",
    "major_faults",
];

/// The host counters that moved by at least 0.01 per event, "exits 1.00, io_exits 1.00": the
/// telling ones first, then the largest. Times (`*_ns`) are left to the raw data.
pub fn host_text(m: &Measure, most: usize) -> String {
    let rank = |k: &str| HOST_FIRST.iter().position(|f| *f == k).unwrap_or(HOST_FIRST.len());
    let mut moved: Vec<(String, f64)> =
        m.host_per_event().into_iter().filter(|(k, v)| !k.ends_with("_ns") && v.abs() >= 0.01).collect();
    moved.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(b.1.abs().total_cmp(&a.1.abs())));
    if moved.is_empty() {
        return "-".into();
    }
    moved.iter().take(most).map(|(k, v)| format!("{k} {}", per_event(*v))).collect::<Vec<_>>().join(", ")
}

/// A fraction such as "compute reaches 0.981 of native"; small ones keep 3 digits.
pub fn fraction(v: f64) -> String {
    if v >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.3e}")
    }
}

/// The reference backend's measure of the same event: the same phase (same architecture,
/// x86-lab against x86-kvm) or the same event key (across architectures; none for "").
pub fn reference<'a>(results: &'a Results, m: &Measure) -> Option<&'a Measure> {
    let name = results.backends.first()?.name;
    let same_event = |r: &Measure| r.phase_name == m.phase_name || (!m.event.is_empty() && r.event == m.event);
    results.measures.iter().find(|r| r.backend == name && r.workload == m.workload && same_event(r))
}

/// Whether ns/ev is the event's cost. Not for the x86 timer: its baseline does not wait, so
/// (phase - baseline) / N is the PIT's period, not what an interrupt costs.
pub fn is_cost(m: &Measure, x86: bool) -> bool {
    !(x86 && m.workload == TIMER)
}

/// ns per event where it is a cost.
pub fn cost_ns(results: &Results, m: &Measure) -> Option<f64> {
    let x86 = results.backends.iter().find(|b| b.name == m.backend).is_some_and(Backend::is_x86);
    is_cost(m, x86).then(|| m.ns_per_event())
}

const TIMER: &str = "timer";

/// The "vs" column: this cost over the reference backend's for the same event.
pub fn ratio_to_reference(results: &Results, m: &Measure) -> Option<f64> {
    let r = reference(results, m)?;
    ratio(cost_ns(results, m)?, cost_ns(results, r)?)
}

/// The whole table, with the legend and where each backend's figures were measured.
pub fn render(results: &Results) -> String {
    let reference_name = results.backends.first().map_or("-", |b| b.name);
    let header = [
        "workload".to_string(),
        "phase".into(),
        "backend".into(),
        "events".into(),
        "exits|signals/ev".into(),
        "ns/ev".into(),
        format!("vs {reference_name}"),
        "host layer per event".into(),
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    let mut last_workload = "";
    for m in &results.measures {
        let backend = results.backends.iter().find(|b| b.name == m.backend);
        let word = backend.map_or("", |b: &Backend| if b.is_x86() { "" } else { " sig" });
        let r = ratio_to_reference(results, m);
        let workload = if m.workload == last_workload { String::new() } else { m.workload.clone() };
        last_workload = &m.workload;
        rows.push([
            workload,
            m.phase_name.clone(),
            m.backend.clone(),
            m.events.to_string(),
            format!("{}{word}", per_event(m.exits_per_event())),
            cost_ns(results, m).map_or("-".into(), ns),
            ratio_text(r),
            host_text(m, 3),
        ]);
    }
    for f in &results.failures {
        rows.push([
            f.workload.clone(),
            "FAILED".into(),
            f.backend.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            f.reason.clone(),
        ]);
    }
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: &[String; 8]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text left, numbers right; the last column is not padded.
            match i {
                0..=2 => {
                    let _ = write!(l, "{cell:<w$}  ");
                }
                7 => l.push_str(cell),
                _ => {
                    let _ = write!(l, "{cell:>w$}  ");
                }
            }
        }
        let _ = writeln!(s, "{}", l.trim_end());
    };
    line(&mut s, &header);
    for row in &rows {
        line(&mut s, row);
    }
    s.push('\n');
    for c in results.compute_figures() {
        let _ = writeln!(
            s,
            "compute with the guest's 100 Hz timer running reaches {} of native on {} (guest {} ns, native {} ns per iteration)",
            fraction(c.of_native),
            c.backend,
            ns(c.guest_ns_per_iteration),
            ns(c.native_ns_per_iteration)
        );
    }
    let runs = match results.runs {
        0 | 1 => "in this one run".to_string(),
        r => format!("in this run, each the median of {r} runs"),
    };
    let _ = writeln!(s, "measured on (every figure above, {runs}):");
    for b in &results.backends {
        let _ = writeln!(s, "  {:<8} {}", b.name, b.measured_on);
    }
    s.push_str(LEGEND);
    s
}

const LEGEND: &str = "\
ns/ev: (event phase - baseline phase) / events; compute: ns per iteration in the guest;
  x86 timer: '-' (its baseline does not wait for the ticks, so the difference is the 1 kHz period).
vs: ns/ev over the reference backend's for the same event (the same phase, or across architectures
  the phase of the same event; '-' where the other architecture has none). The backends run on different (emulated or real)
  machines (see 'measured on' above): a ratio compares whole stacks, not one machine's costs.
exits|signals/ev: what reached vmm per event (x86: KVM exits to vmm; riscv, 'sig': signals URVirt handled).
host layer: what the host kernel counted per event (KVM's own statistics: exits it handled itself,
  page faults, emulated instructions; riscv: faults the host Linux resolved without a signal).
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ComputeFigure, Failure};
    use std::collections::BTreeMap;

    fn m(workload: &str, phase: usize, name: &str, backend: &str, exits: i64, phase_ns: u64, base: u64) -> Measure {
        Measure {
            workload: workload.into(),
            phase,
            phase_name: name.into(),
            event: "same event".into(),
            backend: backend.into(),
            events: 100,
            exits: BTreeMap::from([("cpuid".into(), exits)]),
            host: BTreeMap::from([("exits".into(), exits), ("pf_taken".into(), 0)]),
            phase_ns,
            baseline_ns: base,
        }
    }

    #[test]
    fn host_column_shows_telling_counters_first() {
        let mut x = m("mmio", 1, "mmio read", "x86-kvm", 100, 1000, 0);
        x.host = BTreeMap::from([
            ("fpu_reload".into(), 300),
            ("mmio_exits".into(), 100),
            ("exits".into(), 100),
            ("halt_wait_ns".into(), 99_000),
            ("preemption_other".into(), -1),
        ]);
        assert_eq!(host_text(&x, 3), "exits 1.00, mmio_exits 1.00, fpu_reload 3.00");
        assert_eq!(host_text(&x, 1), "exits 1.00");
        x.host = BTreeMap::from([("halt_wait_ns".into(), 99_000), ("exits".into(), 0)]);
        assert_eq!(host_text(&x, 3), "-");
        assert_eq!(fraction(0.98123), "0.981");
        assert_eq!(fraction(0.000214), "2.140e-4");
    }

    #[test]
    fn number_formats() {
        assert_eq!(per_event(1.0), "1.00");
        assert_eq!(per_event(0.0001), "0.0001");
        assert_eq!(per_event(0.0), "0");
        assert_eq!(per_event(0.000025), "2.5e-5");
        assert_eq!(per_event(4096.0), "4096");
        assert_eq!(ns(1234567.4), "1,234,567");
        assert_eq!(ns(-1234.0), "-1,234");
        assert_eq!(ns(999.0), "999");
        assert_eq!(ns(2.35), "2.4");
        assert_eq!(ratio_text(Some(15.44)), "15.44x");
        assert_eq!(ratio_text(Some(1234.4)), "1234x");
        assert_eq!(ratio_text(None), "-");
        assert_eq!(ratio_text(Some(0.004)), "<0.01x");
        assert_eq!(ratio_text(Some(0.005)), "0.01x");
    }

    #[test]
    fn ratios_pair_phases_by_event_and_skip_the_x86_timer() {
        let mut cpuid = m("priv-reg", 1, "cpuid", "x86-kvm", 100, 600_000, 100_000);
        cpuid.event = String::new();
        let rdmsr = m("priv-reg", 3, "rdmsr", "x86-kvm", 100, 600_000, 100_000);
        let mut csrw = m("priv-reg", 2, "csrw sscratch", "riscv", 100, 1_100_000, 100_000);
        csrw.event = "a write".into();
        // Phase 1 on riscv, phase 3 on x86: the same event all the same.
        let csrr = m("priv-reg", 1, "csrr sscratch", "riscv", 100, 1_100_000, 100_000);
        let timer_x86 = m("timer", 1, "timer interrupt", "x86-kvm", 100, 100_100_000, 100_000);
        let timer_rv = m("timer", 1, "timer interrupt", "riscv", 100, 2_100_000, 100_000);
        let results = Results {
            backends: vec![Backend::new(crate::backend::Kind::X86Kvm), Backend::new(crate::backend::Kind::Riscv)],
            measures: vec![cpuid, rdmsr, csrr, csrw, timer_x86, timer_rv],
            ..Results::default()
        };
        let ratios: Vec<Option<f64>> = results.measures.iter().map(|m| ratio_to_reference(&results, m)).collect();
        assert_eq!(ratios, [Some(1.0), Some(1.0), Some(2.0), None, None, None]);
        let t = render(&results);
        let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        let timer = t.lines().find(|l| l.starts_with("timer")).unwrap();
        assert_eq!(cols(timer)[..8], ["timer", "timer", "interrupt", "x86-kvm", "100", "1.00", "-", "-"], "{t}");
        let rv = t.lines().find(|l| l.contains("riscv") && l.contains("20,000")).unwrap();
        assert!(rv.contains(" - "), "{t}");
    }

    #[test]
    fn rows_ratios_and_where_measured() {
        let results = Results {
            backends: vec![Backend::new(crate::backend::Kind::X86Kvm), Backend::new(crate::backend::Kind::Riscv)],
            measures: vec![
                m("priv-reg", 1, "cpuid", "x86-kvm", 100, 600_000, 100_000),
                m("priv-reg", 1, "csrr sscratch", "riscv", 100, 10_100_000, 100_000),
                m("compute", 1, "compute", "riscv", 2, 1_000_000, 980_000),
            ],
            failures: vec![Failure { workload: "mmio".into(), backend: "riscv".into(), reason: "exit code 1".into() }],
            ..Results::default()
        };
        let t = render(&results);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("workload") && lines[0].contains("vs x86-kvm"), "{t}");
        let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(cols(lines[1]), ["priv-reg", "cpuid", "x86-kvm", "100", "1.00", "5,000", "1.00x", "exits", "1.00"]);
        // The same workload's next row leaves the workload cell empty.
        assert!(lines[2].starts_with(' '), "{t}");
        assert_eq!(
            cols(lines[2])[1..],
            ["sscratch", "riscv", "100", "1.00", "sig", "100,000", "20.00x", "exits", "1.00"]
        );
        assert_eq!(cols(lines[3])[..6], ["compute", "compute", "riscv", "100", "0.02", "sig"]);
        assert!(
            lines[4].starts_with("mmio") && lines[4].contains("FAILED") && lines[4].ends_with("exit code 1"),
            "{t}"
        );
        assert_eq!(
            results.compute_figures(),
            vec![ComputeFigure {
                backend: "riscv".into(),
                of_native: 0.98,
                guest_ns_per_iteration: 10_000.0,
                native_ns_per_iteration: 9_800.0
            }]
        );
        assert!(t.contains("reaches 0.980 of native on riscv"), "{t}");
        assert!(t.contains("x86-kvm  this host's /dev/kvm: "), "{t}");
        assert!(t.contains("riscv    riscv64 Linux under QEMU TCG"), "{t}");
    }
}
