//! The teaching lab's RISC-V side (`vmm lab`): the workloads URVirt runs, the extra `vmm run`
//! arguments each needs, the native baseline of the compute workload, and the host layer's
//! counters a mark records.
//!
//! The workload guests are `target/guests/riscv/lab-<workload>.bin` (guests/riscv/src/bin/lab_*.rs).
//! Each makes marks 0, 1, 2, ... with the SBI call [`common::marks::RISCV_MARK_EID`]; phase 0
//! is the baseline loop, phases 1.. are the phases [`WORKLOADS`] names, each with N events.
//! page-touch runs with paging off; `lab-page-touch-sv39.bin` (not a lab workload, for
//! `vmm run --stats`) is the same loop with the guest's Sv39 on, where each first touch is a
//! SIGSEGV that fills URVirt's software TLB.
//!
//! The host layer: what the host Linux did for the guest thread without a signal reaching
//! URVirt, read with `getrusage(RUSAGE_THREAD)` inside the mark's signal handler (a plain
//! system call, async-signal-safe, allowed by the guest thread's jail). The first write to a
//! fresh page of guest RAM is such a "minor fault": Linux fills the page in and the guest
//! goes on, URVirt never hears of it (under KVM the same is an EPT/NPT fault KVM handles).
use std::time::Duration;

/// Each workload and its phases after the baseline (phase 0): (name, event key). `vmm lab`
/// compares a phase with the x86 phase of the same key (vmm_x86::teach); "" = none.
pub const WORKLOADS: &[(&str, &[(&str, &str)])] = &[
    ("console-out", &[("sbi putchar", ""), ("uart thr store", "device write")]),
    ("priv-reg", &[("csrr sscratch", "privileged register read"), ("csrw sscratch", "")]),
    ("page-touch", &[("first touch", "first touch"), ("second touch", "second touch")]),
    ("timer", &[("timer interrupt", "timer interrupt")]),
    ("syscall", &[("ecall + sret", "system call + return")]),
    ("mmio", &[("uart lsr read", "device read")]),
    ("compute", &[("compute, 100 Hz timer", "compute")]),
];

/// The host counters every mark holds, in this order ([`common::marks::Marks::host_names`]):
/// the guest thread's getrusage fields ru_minflt, ru_majflt, ru_nvcsw, ru_nivcsw.
pub const HOST_COUNTERS: [&str; 4] = ["minor_faults", "major_faults", "voluntary_switches", "involuntary_switches"];

/// Guest RAM for page-touch: the image, stack and 2 x N pages must fit (N = 8192 by default,
/// 32 MiB per phase set).
const PAGE_TOUCH_MEM: &str = "160M";

/// Extra `vmm run --arch riscv` arguments a workload needs (before the image).
pub fn run_args(workload: &str) -> Vec<String> {
    match workload {
        "page-touch" => vec!["--mem".into(), PAGE_TOUCH_MEM.into()],
        _ => Vec::new(),
    }
}

/// The one JSON line `vmm lab-native compute N` prints: `{"native_compute":{"iterations":N,"ns":T,"checksum":C}}`.
pub fn native_compute_json(iterations: u64, took: Duration, checksum: u64) -> String {
    serde_json::json!({ "native_compute": { "iterations": iterations, "ns": took.as_nanos() as u64,
                                            "checksum": checksum } })
    .to_string()
}

/// The time in the first `native_compute` JSON line of `text` (the lab host's relayed output).
pub fn parse_native_compute(text: &str) -> Option<Duration> {
    text.lines().find_map(|line| {
        let start = line.find("{\"native_compute\"")?;
        let v: serde_json::Value = serde_json::from_str(line[start..].trim()).ok()?;
        v["native_compute"]["ns"].as_u64().map(Duration::from_nanos)
    })
}

#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
mod native {
    use common::stats::Stats;
    use std::time::{Duration, Instant};

    // The compute kernel, the very file the lab-compute guest assembles.
    core::arch::global_asm!(include_str!("../../guests/riscv/src/lab/compute.S"));

    extern "C" {
        fn lab_compute_kernel(n: u64) -> u64;
    }

    /// Runs the compute kernel for `iterations` in this process; its time and checksum.
    pub fn compute(iterations: u64) -> (Duration, u64) {
        let start = Instant::now();
        // SAFETY: the kernel touches only temporaries (t0..t4, a0) and follows the C ABI.
        let checksum = unsafe { lab_compute_kernel(std::hint::black_box(iterations)) };
        (start.elapsed(), std::hint::black_box(checksum))
    }

    /// The guest thread's getrusage counters in [`super::HOST_COUNTERS`] order. Async-signal-safe.
    pub fn host_counters() -> [u64; 4] {
        // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a plain system call on a valid out-pointer.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return [0; 4];
        }
        [ru.ru_minflt, ru.ru_majflt, ru.ru_nvcsw, ru.ru_nivcsw].map(|v| v as u64)
    }

    /// Records mark `id` (called from the SBI trap's handler): no allocation, no locks.
    pub fn record_mark(stats: &mut Stats, id: u64, since_start: Duration) {
        stats.record_mark(id, since_start, &host_counters());
    }
}

#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
pub(crate) use native::{host_counters, record_mark};

/// A run's statistics with the host counters' names set (before the guest runs).
pub fn new_stats() -> common::stats::Stats {
    let mut stats = common::stats::Stats::new();
    stats.marks.host_names = HOST_COUNTERS.iter().map(|n| n.to_string()).collect();
    stats
}

/// The `--stats` note on the host layer: what the host kernel did for the guest thread
/// between `before` and `after` (getrusage) without URVirt receiving a signal.
pub fn host_note(before: [u64; 4], after: [u64; 4]) -> String {
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a.saturating_sub(b)).collect();
    format!(
        "urvirt: host layer (Linux, no signal to URVirt; getrusage of the guest thread): {} minor page faults, {} major, {} voluntary and {} involuntary context switches",
        d[0], d[1], d[2], d[3]
    )
}

/// The compute workload's kernel run natively in this (riscv64) process for `iterations`.
#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
pub fn native_compute(iterations: u64) -> Duration {
    native::compute(iterations).0
}

/// `vmm lab-native compute N`: runs the native baseline and prints its JSON line on stdout.
/// On riscv64 Linux it runs here; elsewhere inside the riscv64 lab host, whose output is
/// relayed (read the figure back with [`parse_native_compute`]).
pub fn lab_native(workload: &str, iterations: u64) -> common::Result<i32> {
    if workload != "compute" {
        return Err(common::Error::bad_input(format!(
            "lab-native: no native baseline for workload `{workload}` (only `compute` has one)"
        )));
    }
    #[cfg(all(target_arch = "riscv64", target_os = "linux"))]
    {
        let (took, checksum) = native::compute(iterations);
        println!("{}", native_compute_json(iterations, took, checksum));
        Ok(0)
    }
    #[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
    {
        run_in_lab(iterations)
    }
}

#[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
fn run_in_lab(iterations: u64) -> common::Result<i32> {
    let config =
        crate::RiscvConfig { vm: common::vm::VmConfig::default(), ecall_trap: crate::EcallTrap::Auto, stats: false };
    let args = ["lab-native".to_string(), "compute".to_string(), iterations.to_string()];
    Ok(crate::lab::run_inner(&config, &args, &[])?.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_of_the_contract_is_here_once() {
        let names: Vec<&str> = WORKLOADS.iter().map(|(w, _)| *w).collect();
        assert_eq!(names, ["console-out", "priv-reg", "page-touch", "timer", "syscall", "mmio", "compute"]);
        assert!(WORKLOADS.iter().all(|(_, phases)| !phases.is_empty()));
        assert_eq!(run_args("page-touch"), ["--mem", PAGE_TOUCH_MEM]);
        assert!(run_args("priv-reg").is_empty());
    }

    #[test]
    fn host_note_shows_the_differences() {
        let note = host_note([10, 0, 5, 1], [4106, 0, 7, 4]);
        assert!(note.contains("4096 minor page faults, 0 major, 2 voluntary and 3 involuntary"), "{note}");
        assert_eq!(new_stats().marks.host_names, HOST_COUNTERS);
    }

    #[test]
    fn native_compute_line_round_trips_through_relayed_output() {
        let line = native_compute_json(1000, Duration::from_micros(1500), 7);
        assert_eq!(line, r#"{"native_compute":{"checksum":7,"iterations":1000,"ns":1500000}}"#);
        let relayed = format!("vmm: running the riscv64 build ...\r\n{line}\r\n");
        assert_eq!(parse_native_compute(&relayed), Some(Duration::from_micros(1500)));
        assert_eq!(parse_native_compute("nothing here"), None);
    }
}
