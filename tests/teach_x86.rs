//! The teaching lab's x86 workloads (guests/x86/lab-*.S) on this host's real KVM: each runs
//! with `--stats-json` and the extra arguments `vmm_x86::teach::run_args` gives, and the counts
//! between its marks must be what the workload causes, in both layers: the exits vmm handles
//! (its rows) and what KVM handled itself (its binary statistics, the marks' `host` counters).
//!
//! This host's KVM may be kvm-pvm, where KVM runs unmodified guest code in its instruction
//! emulator: an event there is either an exit or an emulated instruction, so the KVM-side
//! checks accept either where VMX/SVM would count an exit. Each test prints what it measured.
#![cfg(target_arch = "x86_64")]
mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;
use support::*;
use vmm_x86::teach;

/// One phase: from mark `id` to the next. Counter differences by name.
#[derive(Debug)]
struct Phase {
    id: u64,
    vmm: BTreeMap<String, u64>,
    kvm: BTreeMap<String, u64>,
}

impl Phase {
    /// Every exit vmm handled in the phase, less the one mark that ends it.
    fn vmm_events(&self) -> u64 {
        self.vmm.values().sum::<u64>() - self.vmm.get(teach_mark_row()).copied().unwrap_or(0).min(1)
    }
    fn vmm_row(&self, row: &str) -> u64 {
        self.vmm.get(row).copied().unwrap_or(0)
    }
    fn kvm(&self, name: &str) -> u64 {
        self.kvm.get(name).copied().unwrap_or(0)
    }
}

fn teach_mark_row() -> &'static str {
    "io-out lab-mark-0xf2"
}

/// The image of `workload`, with N patched into its parameter block when given.
fn image(workload: &str, n: Option<u64>) -> String {
    let path = artifact(&format!("guests/x86/lab-{workload}.bin"));
    let Some(n) = n else { return path_str(&path).to_string() };
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(8).position(|w| w == b"VMMLABN\0").expect("parameter block") + 8;
    bytes[at..at + 8].copy_from_slice(&n.to_le_bytes());
    let p = scratch_file(&format!("{workload}-{n}"), &format!("lab-{workload}.bin"), &bytes);
    path_str(&p).to_string()
}

/// The `--stats-json` line of a run.
fn stats_json(out: &Output) -> Value {
    let line = stderr(out)
        .lines()
        .find(|l| l.starts_with("{\"vmm_stats\""))
        .unwrap_or_else(|| panic!("no --stats-json line: {}", describe(out)))
        .to_string();
    serde_json::from_str::<Value>(&line).unwrap()["vmm_stats"].clone()
}

/// The phases between consecutive marks, which must be 0, 1, 2, ... in order.
fn phases(stats: &Value) -> Vec<Phase> {
    let marks = stats["marks"].as_array().expect("marks");
    assert_eq!(stats["marks_dropped"], 0);
    for (i, m) in marks.iter().enumerate() {
        assert_eq!(m["id"].as_u64(), Some(i as u64), "marks in order: {stats}");
    }
    let delta = |a: &Value, b: &Value| -> BTreeMap<String, u64> {
        let b = b.as_object().unwrap();
        b.iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() - a.get(k).and_then(Value::as_u64).unwrap_or(0)))
            .filter(|(_, d)| *d != 0)
            .collect()
    };
    marks
        .windows(2)
        .map(|w| Phase {
            id: w[0]["id"].as_u64().unwrap(),
            vmm: delta(&w[0]["counts"], &w[1]["counts"]),
            kvm: delta(&w[0]["host"], &w[1]["host"]),
        })
        .collect()
}

/// Runs `workload` (N patched if given) and returns its output and phases, after checking
/// that it ended well: status 0, its done line, one phase per named phase plus the baseline.
fn run_workload(workload: &str, n: Option<u64>, extra: &[&str]) -> (Output, Vec<Phase>) {
    require_kvm();
    let image = image(workload, n);
    let mut args = vec!["run", "--stats-json", "--timeout", "120"];
    let run_args = teach::run_args(workload);
    args.extend(run_args.iter().map(String::as_str));
    args.extend(extra);
    args.push(&image);
    let out = run_vmm(&args, 180);
    assert_exit(&out, 0);
    let so = stdout(&out);
    let done = format!("lab {workload} done N=");
    assert!(so.contains(&done), "{}", describe(&out));
    if let Some(n) = n {
        assert!(so.contains(&format!("{done}{n}\n")), "{}", describe(&out));
    }
    let phases = phases(&stats_json(&out));
    let named = teach::WORKLOADS.iter().find(|(w, _)| *w == workload).unwrap().1;
    assert_eq!(phases.len(), 1 + named.len(), "baseline + {named:?}: {phases:?}");
    for p in &phases {
        eprintln!("{workload} phase {} (N={n:?}): vmm {:?}\n  KVM {:?}", p.id, p.vmm, p.kvm);
    }
    (out, phases)
}

/// The host counters are there: KVM's binary statistics (this kernel has them) and the vCPU
/// thread's faults.
fn assert_host_counters(stats: &Value) {
    let m = &stats["marks"][0]["host"];
    for name in ["exits", "io_exits", "mmio_exits", "insn_emulation", "irq_injections", teach::HOST_MINFLT] {
        assert!(m.get(name).is_some(), "no host counter {name}: {m}");
    }
}

#[test]
fn console_out_is_one_vmm_exit_per_byte_and_n_comes_from_the_parameter_block() {
    for n in [100, 200] {
        let (out, p) = run_workload("console-out", Some(n), &[]);
        assert_host_counters(&stats_json(&out));
        assert_eq!(stdout(&out).matches('.').count() as u64, n, "{}", describe(&out));
        assert_eq!(p[0].vmm_events(), 0, "the baseline leaves the guest only for its mark: {:?}", p[0]);
        assert_eq!(p[1].vmm_row("io-out debug-0xf1"), n, "{:?}", p[1]);
        assert_eq!(p[1].vmm_events(), n, "nothing but the bytes: {:?}", p[1]);
        assert_eq!(p[1].vmm_row(teach_mark_row()), 1);
        // KVM saw each of them (and the mark) as an exit before handing it to vmm: an I/O exit
        // on VMX/SVM; kvm-pvm counts them in `exits` alone.
        assert!(p[1].kvm("exits") > n, "{:?}", p[1]);
    }
}

#[test]
fn priv_reg_events_never_reach_vmm() {
    let n = 500;
    let (_, p) = run_workload("priv-reg", Some(n), &[]);
    // What KVM handled itself: an exit into KVM (VMX/SVM) or an instruction KVM emulates
    // (kvm-pvm), the baseline loop's own (kvm-pvm emulates it too) taken off. About one per
    // event; cr read+write is two instructions, which SVM intercepts both of.
    let handled = |ph: &Phase| (ph.kvm("exits") + ph.kvm("insn_emulation")) as i64;
    for (phase, (what, per_event)) in p[1..].iter().zip([("cpuid", 1), ("cr read+write", 2), ("rdmsr", 1)]) {
        assert_eq!(phase.vmm_events(), 0, "{what} is handled inside KVM: {phase:?}");
        let got = handled(phase) - handled(&p[0]);
        let want = n as i64..=(per_event * n + n / 10) as i64;
        assert!(want.contains(&got), "{what}: KVM handled {got} more than the baseline, want {want:?}: {phase:?}");
        eprintln!("{what}: KVM exits {}, emulated instructions {}", phase.kvm("exits"), phase.kvm("insn_emulation"));
    }
}

#[test]
fn page_touch_first_touches_fault_in_the_host_second_ones_do_not() {
    let n = 1000;
    let (_, p) = run_workload("page-touch", Some(n), &[]);
    // A fresh page is backed on its first write: a KVM page fault (EPT/NPT violation, or a
    // shadow page fault) or, where KVM emulates the write (kvm-pvm), a fault of the vCPU
    // thread in the host kernel. Where KVM takes the fault and backs the page, both count one,
    // so the larger of the two, baseline taken off, is about one per page.
    let faults = |ph: &Phase| ph.kvm("pf_taken").max(ph.kvm(teach::HOST_MINFLT)) as i64;
    assert_eq!(p[1].vmm_events(), 0, "{:?}", p[1]);
    assert_eq!(p[2].vmm_events(), 0, "{:?}", p[2]);
    let first = faults(&p[1]) - faults(&p[0]);
    let want = n as i64..=(n + n / 10) as i64;
    assert!(want.contains(&first), "first touch: {first} faults for {n} pages, want {want:?}: {:?}", p[1]);
    // The second write finds the page mapped: a handful at most (the host's own reasons).
    assert!(faults(&p[2]) < (n / 10) as i64, "second touch: {} faults: {:?}", faults(&p[2]), p[2]);
    assert!(faults(&p[0]) < (n / 10) as i64, "baseline: {:?}", p[0]);
}

#[test]
fn page_touch_refuses_more_pages_than_it_maps() {
    require_kvm();
    let image = image("page-touch", Some(16385));
    let mut args = vec!["run".to_string(), "--timeout".into(), "60".into()];
    args.extend(teach::run_args("page-touch"));
    args.push(image);
    let out = run_vmm(&args.iter().map(String::as_str).collect::<Vec<_>>(), 120);
    assert!(stdout(&out).contains("lab page-touch: N is more than 16384 pages"), "{}", describe(&out));
    assert_exit(&out, 65);
}

#[test]
fn timer_interrupts_are_taken_inside_kvm() {
    let n = 50;
    let (_, p) = run_workload("timer", Some(n), &[]);
    assert_eq!(p[1].vmm_events(), 0, "ticks, EOIs and hlt stay in KVM: {:?}", p[1]);
    // The guest takes exactly N ticks (its handler returns with interrupts off, so one tick
    // per `hlt`); KVM injected each one it took. Injections may exceed the ticks (SVM re-injects
    // one whose delivery an exit cut short), and a wake-up may serve two ticks, so the halts
    // are only reported.
    assert!(p[1].kvm("irq_injections") >= n, "{:?}", p[1]);
    eprintln!("timer: {} halts, {} injections for {n} ticks", p[1].kvm("halt_exits"), p[1].kvm("irq_injections"));
    assert_eq!(p[0].kvm("irq_injections"), 0, "IRQ 0 is masked in the baseline: {:?}", p[0]);
}

#[test]
fn syscall_round_trips_stay_in_the_guest_as_far_as_vmm_sees() {
    let n = 1000;
    let (_, p) = run_workload("syscall", Some(n), &[]);
    assert_eq!(p[0].vmm_events(), 0, "{:?}", p[0]);
    assert_eq!(p[1].vmm_events(), 0, "syscall and its return never reach vmm: {:?}", p[1]);
}

#[test]
fn mmio_reads_are_vmm_exits_of_the_lab_register() {
    for n in [100, 200] {
        let (_, p) = run_workload("mmio", Some(n), &[]);
        assert_eq!(p[0].vmm_events(), 0, "the baseline reads RAM: {:?}", p[0]);
        assert_eq!(p[1].vmm_row(&format!("mmio-read {}", teach::REG_DEVICE)), n, "{:?}", p[1]);
        assert_eq!(p[1].vmm_events(), n, "{:?}", p[1]);
        assert!(p[1].kvm("mmio_exits") >= n, "{:?}", p[1]);
    }
}

#[test]
fn compute_gives_the_native_kernels_result_with_the_timer_inside_kvm() {
    let n = 20_000;
    let (out, p) = run_workload("compute", Some(n), &[]);
    let x = format!("lab compute x={:#018x}\n", teach::compute_kernel(n));
    assert!(stdout(&out).contains(&x), "expected {x:?}: {}", describe(&out));
    assert_eq!(p[1].vmm_events(), 0, "the 100 Hz ticks are KVM's: {:?}", p[1]);
}

#[test]
fn stats_show_both_layers() {
    require_kvm();
    let image = image("console-out", Some(10));
    let mut args = vec!["run", "--stats"];
    let run_args = teach::run_args("console-out");
    args.extend(run_args.iter().map(String::as_str));
    args.push(&image);
    let out = run_vmm(&args, 60);
    assert_exit(&out, 0);
    let se = stderr(&out);
    assert_eq!(row_count(&se, "io-out debug-0xf1"), Some(10 + "\nlab console-out done N=10\n".len() as u64), "{se}");
    assert_eq!(row_count(&se, "io-out lab-mark-0xf2"), Some(3), "{se}");
    let kvm = se.lines().skip_while(|l| !l.starts_with("handled inside KVM")).nth(1).unwrap_or_default();
    assert!(kvm.contains("exits "), "KVM's counters: {se}");
}

#[test]
fn lab_devices_are_for_x86_flat_guests() {
    let out = run_vmm(&["run", "--arch", "riscv", "--lab-devices", "x.bin"], 30);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--lab-devices does not apply to --arch riscv"), "{}", describe(&out));
    // Without them a lab guest stops at its first lab device with a clear line.
    require_kvm();
    let image = image("mmio", Some(1));
    let out = run_vmm(&["run", "--mode", "long", &image], 30);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("unknown I/O port 0x20"), "{}", describe(&out));
}

/// The same image inside the x86 lab host (SVM emulated by QEMU TCG): there `cpuid` is an
/// intercept, so each one is a KVM exit (VMX would say the same), and still none reaches vmm.
#[test]
fn in_the_x86_lab_host_each_cpuid_is_a_kvm_exit() {
    require_x86_lab();
    let n = 200;
    let (out, p) = run_workload("priv-reg", Some(n), &["--arch", "x86", "--lab"]);
    assert!(stderr(&out).starts_with(X86_LAB_NOTICE), "{}", describe(&out));
    let cpuid = &p[1];
    assert_eq!(cpuid.vmm_events(), 0, "{cpuid:?}");
    assert!(cpuid.kvm("exits") >= n, "SVM intercepts cpuid: {cpuid:?}");
    assert!(p[0].kvm("exits") < n / 10, "the baseline loop stays in the guest: {:?}", p[0]);
}
