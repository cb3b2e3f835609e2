//! Running one workload on one backend: `vmm run --stats-json` as a child process (this very
//! binary, `std::env::current_exe()`), and the per-phase differences of what it printed.
//!
//! The child prints its statistics at exit as one stderr line `{"vmm_stats":{...}}` with every
//! mark the guest made and the counters there. Phase i runs from mark i to mark i+1, so its
//! events are the counters' differences between those two marks.
use common::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// One mark as `--stats-json` prints it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarkRecord {
    pub id: u64,
    pub at_ns: u64,
    /// The statistics table's rows (what reached vmm: exits or signals) at this mark.
    pub counts: BTreeMap<String, u64>,
    /// The host layer's counters at this mark (KVM's binary statistics; the host kernel's).
    pub host: BTreeMap<String, u64>,
}

/// What one run's `--stats-json` line holds that the lab uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    pub marks: Vec<MarkRecord>,
    pub marks_dropped: u64,
    pub notes: Vec<String>,
}

/// One phase: what happened between two consecutive marks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phase {
    pub ns: u64,
    /// Per row; the one mark exit inside the phase is taken off.
    pub counts: BTreeMap<String, i64>,
    pub host: BTreeMap<String, i64>,
}

/// Whether a statistics row counts the marks themselves: x86 "io-out lab-mark-0xf2", the
/// RISC-V mark SBI call's row. Both name the mark.
pub fn is_mark_row(name: &str) -> bool {
    name.contains("mark")
}

/// URVirt's rows that count every signal again by the mode it came from: a sum of the other
/// rows, so counting them too would double the signals.
pub const AGGREGATE_ROWS: [&str; 2] = ["trap from u-mode", "trap from s-mode"];

/// Finds and parses the `{"vmm_stats":...}` line in a run's stderr.
pub fn parse_stats_json(stderr: &str) -> std::result::Result<RunStats, String> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.find("{\"vmm_stats\"").map(|at| &l[at..]))
        .ok_or("the run printed no --stats-json line")?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("cannot parse its --stats-json line: {e}"))?;
    let stats = &v["vmm_stats"];
    let counters = |m: &Value, key: &str| -> BTreeMap<String, u64> {
        m[key]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default()
    };
    let marks = stats["marks"]
        .as_array()
        .ok_or("its --stats-json line has no marks list")?
        .iter()
        .map(|m| {
            Ok(MarkRecord {
                id: m["id"].as_u64().ok_or("a mark without an id")?,
                at_ns: m["at_ns"].as_u64().ok_or("a mark without at_ns")?,
                counts: counters(m, "counts"),
                host: counters(m, "host"),
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let notes = stats["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default();
    Ok(RunStats { marks, marks_dropped: stats["marks_dropped"].as_u64().unwrap_or(0), notes })
}

/// The differences of every counter from `a` to `b` (a counter missing at a mark was 0 there).
fn delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, i64> {
    a.keys()
        .chain(b.keys())
        .map(|k| {
            let at = |m: &BTreeMap<String, u64>| m.get(k).copied().unwrap_or(0) as i64;
            (k.clone(), at(b) - at(a))
        })
        .collect()
}

/// Phases 0..`phases` from marks 0..=`phases`, which must all be there, in order.
pub fn phases(stats: &RunStats, phases: usize) -> std::result::Result<Vec<Phase>, String> {
    if stats.marks_dropped > 0 {
        return Err(format!("{} marks were dropped (the guest made too many)", stats.marks_dropped));
    }
    let ids: Vec<u64> = stats.marks.iter().map(|m| m.id).collect();
    let want: Vec<u64> = (0..=phases as u64).collect();
    if ids.len() < want.len() || ids[..want.len()] != want[..] {
        return Err(format!("the guest made marks {ids:?}; a workload with {phases} phases makes marks {want:?}"));
    }
    Ok(stats.marks[..=phases]
        .windows(2)
        .map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            let mut counts = delta(&a.counts, &b.counts);
            // The mark that opened the phase was counted inside it.
            if let Some((_, n)) = counts.iter_mut().find(|(k, n)| is_mark_row(k) && **n > 0) {
                *n -= 1;
            }
            counts.retain(|k, n| *n != 0 && !AGGREGATE_ROWS.contains(&k.as_str()));
            Phase { ns: b.at_ns.saturating_sub(a.at_ns), counts, host: delta(&a.host, &b.host) }
        })
        .collect())
}

/// What a child vmm printed and how it ended.
#[derive(Debug, Clone)]
pub struct ChildOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ChildOutput {
    /// The child's last stderr line that is neither its JSON nor a lab host's notice
    /// ("vmm: running the ... build inside ..."): usually its one-line error.
    pub fn last_error(&self) -> String {
        let said =
            |l: &&str| !l.contains("{\"vmm_stats\"") && !l.trim().is_empty() && !l.starts_with("vmm: running the ");
        match self.stderr.lines().rev().find(said) {
            Some(line) => line.trim().to_string(),
            None => format!("(nothing on stderr; stdout ends: {:?})", tail(&self.stdout, 200)),
        }
    }
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> &str {
    let start = text.char_indices().rev().nth(max).map_or(0, |(i, _)| i);
    &text[start..]
}

/// Runs this vmm binary with `args`, stdin closed, capturing both outputs.
pub fn run_child(args: &[String]) -> Result<ChildOutput> {
    let exe = std::env::current_exe().map_err(|e| Error::bad_input(format!("cannot find the vmm binary: {e}")))?;
    run_program(&exe, args)
}

pub fn run_program(exe: &Path, args: &[String]) -> Result<ChildOutput> {
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::bad_input(format!("cannot run {}: {e}", exe.display())))?;
    Ok(ChildOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The N in the guest's closing line `lab <workload> done N=<n>`, if it printed one.
pub fn done_line_n(stdout: &str, workload: &str) -> Option<u64> {
    let prefix = format!("lab {workload} done N=");
    stdout.lines().find_map(|l| l.trim().strip_prefix(&prefix)?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: &str = concat!(
        "vmm: running the riscv64 build inside riscv64 Linux under qemu-system-riscv64 (this host is x86_64)\n",
        r#"{"vmm_stats":{"rows":[{"kind":"io-out lab-mark-0xf2","count":4,"total_ns":1,"max_ns":1}],"notes":["flavor"],"#,
        r#""marks":[{"id":0,"at_ns":1000,"counts":{"io-out lab-mark-0xf2":0,"cpuid":0},"host":{"exits":10,"pf_taken":3}},"#,
        r#"{"id":1,"at_ns":2000,"counts":{"io-out lab-mark-0xf2":1,"cpuid":0},"host":{"exits":12,"pf_taken":3}},"#,
        r#"{"id":2,"at_ns":9000,"counts":{"io-out lab-mark-0xf2":2,"cpuid":100,"trap from s-mode":101},"host":{"exits":114,"pf_taken":4}},"#,
        r#"{"id":3,"at_ns":9500,"counts":{"io-out lab-mark-0xf2":3,"cpuid":100,"hlt":0},"host":{"exits":115,"pf_taken":4}}],"#,
        r#""marks_dropped":0}}"#,
        "\n"
    );

    #[test]
    fn parses_the_stats_line_among_others() {
        let s = parse_stats_json(STDERR).unwrap();
        assert_eq!(s.marks.len(), 4);
        assert_eq!(s.marks[2].counts["cpuid"], 100);
        assert_eq!(s.marks[1].host["exits"], 12);
        assert_eq!(s.notes, ["flavor"]);
        assert_eq!(parse_stats_json("vmm: guest failed\n").unwrap_err(), "the run printed no --stats-json line");
        assert!(parse_stats_json("{\"vmm_stats\":{").unwrap_err().starts_with("cannot parse"));
    }

    #[test]
    fn phase_deltas_take_the_mark_off() {
        let s = parse_stats_json(STDERR).unwrap();
        let p = phases(&s, 2).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].ns, 1000);
        assert!(p[0].counts.is_empty(), "the baseline saw only its mark: {:?}", p[0].counts);
        assert_eq!(p[0].host["exits"], 2);
        assert_eq!(p[1].ns, 7000);
        assert_eq!(p[1].counts, BTreeMap::from([("cpuid".to_string(), 100)]), "no aggregate row");
        assert_eq!(p[1].host["exits"], 102);
        assert_eq!(p[1].host["pf_taken"], 1);
        // Three phases need marks 0..=3, which are there; four are not.
        assert_eq!(phases(&s, 3).unwrap()[2].ns, 500);
        assert!(phases(&s, 4).unwrap_err().contains("marks [0, 1, 2, 3]"));
    }

    #[test]
    fn marks_out_of_order_or_dropped_are_refused() {
        let mut s = parse_stats_json(STDERR).unwrap();
        s.marks.swap(1, 2);
        assert!(phases(&s, 2).unwrap_err().contains("[0, 2, 1, 3]"));
        let mut s = parse_stats_json(STDERR).unwrap();
        s.marks_dropped = 2;
        assert!(phases(&s, 2).unwrap_err().contains("dropped"));
    }

    #[test]
    fn last_error_skips_json_and_lab_notices() {
        let out =
            |stderr: &str, stdout: &str| ChildOutput { code: Some(1), stdout: stdout.into(), stderr: stderr.into() };
        assert_eq!(
            out("vmm: guest failed: triple fault\n{\"vmm_stats\":{}}\n", "").last_error(),
            "vmm: guest failed: triple fault"
        );
        assert_eq!(
            out("vmm: running the riscv64 build inside riscv64 Linux\n", "lab x ok\n").last_error(),
            "(nothing on stderr; stdout ends: \"lab x ok\\n\")"
        );
    }

    #[test]
    fn done_line() {
        assert_eq!(done_line_n("....\nlab timer done N=250\n", "timer"), Some(250));
        assert_eq!(done_line_n("lab timer done N=x\n", "timer"), None);
        assert_eq!(done_line_n("lab mmio done N=3\n", "timer"), None);
    }
}
