//! The teaching lab's RISC-V workloads (target/guests/riscv/lab-<workload>.bin) under URVirt,
//! through the real lab host (riscv64 Linux under qemu-system-riscv64): each workload's
//! phases, read from `--stats-json` marks, hold exactly the traps the workload must cause,
//! N patched into the image's parameter block changes them, and `vmm lab-native` measures
//! the compute kernel natively inside the lab host.
mod support;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;
use support::*;

/// Rows every trap adds (and the mark inside each phase): not the workload's events.
const BOOKKEEPING: [&str; 3] = ["trap from s-mode", "trap from u-mode", "sigsys sbi lab-mark"];

struct LabRun {
    out: Output,
    stats: Value,
}

impl LabRun {
    fn marks(&self) -> &Vec<Value> {
        self.stats["marks"].as_array().expect("marks")
    }

    /// What changed in `field` ("counts" or "host") from mark `i` to mark `i + 1`, zeros left out.
    fn delta(&self, field: &str, i: usize) -> BTreeMap<String, u64> {
        let marks = self.marks();
        assert!(marks.len() > i + 1, "no phase {i}: {}", describe(&self.out));
        let (a, b) = (&marks[i][field], &marks[i + 1][field]);
        b.as_object()
            .expect("counters")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() - a[k].as_u64().unwrap_or(0)))
            .filter(|(_, d)| *d > 0)
            .collect()
    }

    /// The workload's events in phase `i`: trap rows without the bookkeeping, after checking
    /// that the phase holds exactly one mark call.
    fn events(&self, i: usize) -> BTreeMap<String, u64> {
        let mut d = self.delta("counts", i);
        assert_eq!(d.get("sigsys sbi lab-mark"), Some(&1), "one mark call per phase {i}: {d:?}");
        d.retain(|k, _| !BOOKKEEPING.contains(&k.as_str()));
        d
    }

    fn host(&self, i: usize, counter: &str) -> u64 {
        self.delta("host", i).get(counter).copied().unwrap_or(0)
    }
}

fn rows(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The workload's image, with N patched after the `VMMLABN\0` magic if `n` is given.
fn image(workload: &str, n: Option<u64>) -> Vec<u8> {
    let mut bytes = std::fs::read(artifact(&format!("guests/riscv/lab-{workload}.bin"))).expect("read image");
    let at = bytes.windows(8).position(|w| w == b"VMMLABN\0").expect("parameter block") + 8;
    assert_eq!(bytes.windows(8).filter(|w| w == b"VMMLABN\0").count(), 1, "one parameter block");
    if let Some(n) = n {
        bytes[at..at + 8].copy_from_slice(&n.to_le_bytes());
    }
    bytes
}

/// Runs a workload with `--stats-json` and its `run_args`; the parsed statistics line.
fn run_workload(workload: &str, n: Option<u64>) -> LabRun {
    require_riscv_lab();
    let tag = format!("teach-riscv-{workload}-{}", n.map_or("default".into(), |n| n.to_string()));
    let path = scratch_file(&tag, "guest.bin", &image(workload, n));
    let extra = urvirt_riscv::teach::run_args(workload.trim_end_matches("-sv39"));
    let mut args = vec!["run", "--arch", "riscv", "--stats-json", "--timeout", "120"];
    args.extend(extra.iter().map(String::as_str));
    args.push(path_str(&path));
    let out = run_vmm(&args, 300);
    let err = stderr(&out);
    let line = err.lines().find_map(|l| l.find("{\"vmm_stats\"").map(|at| &l[at..]));
    let line = line.unwrap_or_else(|| panic!("no --stats-json line: {}", describe(&out)));
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {line}"));
    LabRun { out, stats: v["vmm_stats"].clone() }
}

/// The run ended well: status 0, the workload's last line, all marks kept, `phases` phases.
fn assert_done(run: &LabRun, workload: &str, n: u64, phases: usize) {
    assert_exit(&run.out, 0);
    let text = stdout(&run.out);
    assert!(text.contains(&format!("lab {workload} done N={n}\n")), "{}", describe(&run.out));
    assert_eq!(run.stats["marks_dropped"], 0);
    let ids: Vec<u64> = run.marks().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (0..=phases as u64).collect::<Vec<_>>(), "marks 0..={phases} in order");
    let host = run.marks()[0]["host"].as_object().unwrap();
    for name in urvirt_riscv::teach::HOST_COUNTERS {
        assert!(host.contains_key(name), "host counter {name} in every mark: {host:?}");
    }
}

#[test]
fn console_out_sbi_putchar_then_uart_stores() {
    let run = run_workload("console-out", None);
    let n = 10_000;
    assert_done(&run, "console-out", n, 3);
    assert_eq!(stdout(&run.out).matches('.').count() as u64, 2 * n, "N dots each way");
    assert_eq!(run.events(0), rows(&[]), "the baseline traps nothing");
    assert_eq!(run.events(1), rows(&[("sigsys sbi legacy-putchar", n)]));
    assert_eq!(run.events(2), rows(&[("mmio uart", n)]));
}

#[test]
fn priv_reg_each_csr_access_is_a_sigill() {
    let run = run_workload("priv-reg", None);
    let n = 10_000;
    assert_done(&run, "priv-reg", n, 3);
    assert_eq!(run.events(0), rows(&[]));
    assert_eq!(run.events(1), rows(&[("sigill csrrs", n)]), "csrr is csrrs with x0");
    assert_eq!(run.events(2), rows(&[("sigill csrrw", n)]), "csrw is csrrw to x0");
}

#[test]
fn patched_n_changes_the_counts() {
    for n in [100, 200] {
        let run = run_workload("priv-reg", Some(n));
        assert_done(&run, "priv-reg", n, 3);
        assert_eq!(run.events(1), rows(&[("sigill csrrs", n)]));
        assert_eq!(run.events(2), rows(&[("sigill csrrw", n)]));
        let run = run_workload("console-out", Some(n));
        assert_done(&run, "console-out", n, 3);
        assert_eq!(run.events(1), rows(&[("sigsys sbi legacy-putchar", n)]));
        assert_eq!(run.events(2), rows(&[("mmio uart", n)]));
        assert_eq!(stdout(&run.out).matches('.').count() as u64, 2 * n);
    }
}

#[test]
fn a_patched_n_of_zero_is_refused_by_the_guest() {
    let run = run_workload("mmio", Some(0));
    assert!(stdout(&run.out).contains("lab mmio failed: N=0 is out of range 1..="), "{}", describe(&run.out));
    // SRST with reason "system failure": guest status 1, exit code 64 + 1.
    assert_exit(&run.out, 65);
}

#[test]
fn page_touch_first_touches_are_host_faults_without_a_signal() {
    let run = run_workload("page-touch", None);
    let n = 8192;
    assert_done(&run, "page-touch", n, 3);
    for phase in 0..3 {
        assert_eq!(run.events(phase), rows(&[]), "URVirt receives no signal in phase {phase}");
    }
    let (base, first, second) = (run.host(0, "minor_faults"), run.host(1, "minor_faults"), run.host(2, "minor_faults"));
    assert!(first >= n, "each fresh page is a minor fault Linux resolves: {first} for {n} pages");
    assert!(base < 16 && second < 16, "the baseline ({base}) and the second touch ({second}) fault (almost) never");
    assert_eq!(run.host(1, "major_faults"), 0, "guest RAM is memory, not a file read from disk");
}

#[test]
fn page_touch_with_sv39_first_touches_are_software_tlb_fills() {
    // Not a `vmm lab` workload: the same loop with the guest's own paging on.
    let run = run_workload("page-touch-sv39", None);
    let n = 1024;
    assert_done(&run, "page-touch-sv39", n, 3);
    assert!(stdout(&run.out).contains("Sv39 on"), "{}", describe(&run.out));
    assert_eq!(run.events(0), rows(&[]), "the loop's code, stack and page were mapped before");
    assert_eq!(run.events(1), rows(&[("sigsegv tlb fill", n)]), "URVirt maps each fresh page");
    assert_eq!(run.events(2), rows(&[]), "and then it stays mapped");
    assert!(run.host(1, "minor_faults") >= n, "Linux still allocates each page: {}", run.host(1, "minor_faults"));
    assert!(run.host(2, "minor_faults") < 16);
}

#[test]
fn timer_n_interrupts_taken_and_returned_from() {
    let run = run_workload("timer", None);
    let n = 1000;
    assert_done(&run, "timer", n, 2);
    assert!(stdout(&run.out).contains(&format!("lab timer: {n} interrupts at 1000 Hz")), "{}", describe(&run.out));
    assert_eq!(run.events(0), rows(&[]), "the baseline spins on `time`, which does not trap");
    let mut p = run.events(1);
    for (row, want) in [("interrupt delivered", n), ("sigill sret", n), ("sigsys sbi time", n), ("sigill csrrs", n)] {
        assert_eq!(p.remove(row), Some(want), "{row}: one per tick (csrrs: the handler's scause read)");
    }
    assert_eq!(p.remove("sigill csrrc"), Some(1), "the N-th tick masks the timer (sie.STIE)");
    assert!(p.get("sigill wfi").copied().unwrap_or(0) >= 1, "the guest waits in wfi: {p:?}");
    p.retain(|k, _| !["sigill wfi", "sigill csrrsi", "sigill csrrci", "sigalrm"].contains(&k.as_str()));
    assert_eq!(p, rows(&[]), "nothing else traps while waiting");
}

#[test]
fn syscall_round_trips_from_virtual_u_mode() {
    let run = run_workload("syscall", None);
    let n = 10_000;
    assert_done(&run, "syscall", n, 2);
    assert_eq!(run.events(0), rows(&[]), "nops in S-mode");
    let want = rows(&[
        ("sigsys ecall from u-mode", n),
        ("sigill sret", n),
        // The handler steps sepc past the ecall on every round trip but the last.
        ("sigill csrrs", n - 1),
        ("sigill csrrw", n - 1),
    ]);
    assert_eq!(run.events(1), want);
    assert_eq!(run.delta("counts", 1).get("trap from u-mode"), Some(&n), "every ecall came from U-mode");
}

#[test]
fn mmio_reads_of_the_uart_lsr_each_fault() {
    let run = run_workload("mmio", None);
    let n = 10_000;
    assert_done(&run, "mmio", n, 2);
    assert_eq!(run.events(0), rows(&[]));
    assert_eq!(run.events(1), rows(&[("mmio uart", n)]));
}

#[test]
fn compute_traps_only_for_the_timer_ticks() {
    let run = run_workload("compute", None);
    assert_done(&run, "compute", 200_000_000, 2);
    let text = stdout(&run.out);
    let ticks: u64 = text
        .split(" timer ticks at 100 Hz")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no tick count: {text}"));
    assert!(ticks >= 1, "the compute phase outlasts a 10 ms tick");
    assert_eq!(run.events(0), rows(&[]), "phase 0 is empty");
    let mut p = run.events(1);
    for (row, want) in [
        ("interrupt delivered", ticks),
        ("sigill sret", ticks),
        ("sigill csrrs", ticks),
        // The first deadline is set inside the phase, then one per tick.
        ("sigsys sbi time", ticks + 1),
        ("sigill csrrsi", 1),
        ("sigill csrrci", 1),
    ] {
        assert_eq!(p.remove(row), Some(want), "{row} in {p:?}");
    }
    // A tick reaches URVirt as a SIGALRM, or, when the guest fell behind its deadlines, is
    // found pending at the next trap (the handler's own sret): not one SIGALRM per tick.
    let alarms = p.remove("sigalrm").unwrap_or(0);
    assert!(alarms >= 1, "{alarms} SIGALRMs for {ticks} ticks");
    assert_eq!(p, rows(&[]), "the compute kernel itself never traps");
}

#[test]
fn lab_native_compute_runs_in_the_lab_host() {
    require_riscv_lab();
    let n = 1_000_000;
    let out = run_vmm(&["lab-native", "compute", &n.to_string()], 300);
    assert_exit(&out, 0);
    let took = urvirt_riscv::teach::parse_native_compute(&stdout(&out));
    assert!(took.is_some_and(|d| d.as_nanos() > 0), "{}", describe(&out));
    // The same instructions as the guest's kernel: the same checksum for the same N.
    let line = stdout(&out).lines().find(|l| l.contains("native_compute")).unwrap().trim().to_string();
    let v: Value = serde_json::from_str(&line).unwrap();
    let checksum = v["native_compute"]["checksum"].as_u64().unwrap();
    let run = run_workload("compute", Some(n));
    assert_done(&run, "compute", n, 2);
    assert!(stdout(&run.out).contains(&format!("lab compute: checksum {checksum:#x}, ")), "{}", describe(&run.out));
    let out = run_vmm(&["lab-native", "timer", "10"], 60);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no native baseline for workload `timer`"), "{}", describe(&out));
}

#[test]
fn stats_shows_the_host_layer_beside_the_signals() {
    require_riscv_lab();
    let image = artifact("guests/riscv/lab-page-touch.bin");
    let out = run_vmm(&["run", "--arch", "riscv", "--stats", "--mem", "160M", path_str(&image)], 300);
    assert_exit(&out, 0);
    let err = stderr(&out);
    let note = err.lines().find(|l| l.starts_with("urvirt: host layer (Linux, no signal to URVirt"));
    let note = note.unwrap_or_else(|| panic!("no host layer note: {}", describe(&out)));
    let minor: u64 = note
        .split(": ")
        .nth(2)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no minor fault count in {note}"));
    assert!(minor >= 8192, "8192 fresh pages are as many minor faults: {note}");
    assert!(note.contains(" major, ") && note.contains("involuntary context switches"), "{note}");
    assert_eq!(row_count(&err, "sigsegv tlb fill"), None, "no signal for them: {err}");
}
