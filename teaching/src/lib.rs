//! The teaching lab: `vmm lab` runs the same small workloads on a hardware-assisted backend
//! (x86 on KVM) and on a trap-and-emulate one (RISC-V under URVirt), and shows for each one
//! which events leave the guest, how often, and what each costs. (Not to be confused with the
//! `lab` crate, which is the lab HOST plumbing: booting a Linux under QEMU to run a build of
//! vmm inside it. The teaching lab uses lab hosts, through `vmm run`, as one more backend.)
//!
//! - [`workload`]: the workload images and their `VMMLABN` parameter block (`--iterations`);
//! - [`backend`]: the backends compared, how each runs a workload, and where it measures;
//! - [`runner`]: one `vmm run --stats-json` child per workload and backend, and its phases;
//! - [`measure`]: per event: exits or signals, host-layer counters, ns against the baseline;
//! - [`table`]: the terminal table; [`report`]: `--report DIR` (HTML with SVG charts, CSV, JSON);
//! - [`native`]: the hidden `vmm lab-native`, the compute workload's native baseline.
//!
//! The guide for students is docs/lab.md.
pub mod backend;
pub mod measure;
pub mod native;
pub mod report;
pub mod runner;
pub mod table;
pub mod workload;

use backend::{Backend, Kind};
use clap::{Args, ValueEnum};
use common::{Error, Result};
use measure::Measure;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum ArchChoice {
    X86,
    Riscv,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum X86Host {
    /// This host's /dev/kvm, and the x86 lab host too when it is set up
    Auto,
    /// This host's /dev/kvm only
    Kvm,
    /// The x86 lab host only (KVM on SVM emulated by QEMU TCG)
    Lab,
    /// Both
    Both,
}

const LAB_HELP: &str = "\
Each workload makes N events of one kind between two marks, after a baseline phase that runs
the same loop without the event. The table shows, per workload, phase and backend: events,
what reached vmm per event (x86: exits; RISC-V: signals), ns per event minus the baseline, the
ratio to the first backend, and what the host kernel handled itself (KVM's statistics; the host
Linux's page faults). Every figure names where it was measured.

Workloads: console-out priv-reg page-touch timer syscall mmio compute (docs/lab.md explains
each one, what to predict, and how to read the report).

Backends: x86-kvm (this host's /dev/kvm), x86-lab (KVM inside the x86 lab host, on SVM that
QEMU emulates), riscv (URVirt; on a non-riscv64 host inside the riscv lab host under QEMU).
Each run in a lab host boots it (a few seconds); all workloads on all three take about a
minute, times --runs.

On a busy machine, --runs 3 shows the median of three runs of each phase.

Exit codes: 0 every run measured; 1 a workload run failed (its row says why); 2 bad usage or a
missing prerequisite (no /dev/kvm, lab host or workload image not built: run scripts/setup.sh).";

#[derive(Args, Debug)]
#[command(after_help = LAB_HELP)]
pub struct LabArgs {
    /// Run only these workloads (repeat, or separate with commas)
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Events per phase (default: the N built into each image, e.g. 10000; fewer for slow events)
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Which backends: x86, riscv, or both
    #[arg(long, value_enum, default_value = "both")]
    pub arch: ArchChoice,
    /// Where x86 runs: auto = this host's KVM, plus the x86 lab host when it is set up
    #[arg(long, value_enum, default_value = "auto")]
    pub x86_host: X86Host,
    /// Also write DIR/index.html (SVG charts), DIR/lab.csv and DIR/lab.json
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Run each workload this many times and show the median run of each phase (a busy
    /// machine's noise; with compute, the native baseline is measured again for each run)
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub runs: u32,
    /// Stop a workload run after this many seconds (it then counts as failed)
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Where the workload images are (x86/lab-*.bin, riscv/lab-*.bin) [default: target/guests]
    #[arg(long, value_name = "DIR")]
    pub guests: Option<PathBuf>,
}

/// A workload run that produced no figures, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub workload: String,
    pub backend: String,
    pub reason: String,
}

/// "compute reaches X of native" on one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeFigure {
    pub backend: String,
    pub of_native: f64,
    pub guest_ns_per_iteration: f64,
    pub native_ns_per_iteration: f64,
}

/// Everything one `vmm lab` measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// The first is the reference the ratios are to.
    pub backends: Vec<Backend>,
    pub measures: Vec<Measure>,
    pub failures: Vec<Failure>,
    /// (workload, backend, note) from the runs' statistics notes.
    pub notes: Vec<(String, String, String)>,
    /// Each figure is of the median of this many runs (`--runs`; 0 reads as 1).
    pub runs: u32,
}

impl Results {
    pub fn compute_figures(&self) -> Vec<ComputeFigure> {
        self.measures
            .iter()
            .filter_map(|m| {
                Some(ComputeFigure {
                    backend: m.backend.clone(),
                    of_native: m.of_native()?,
                    guest_ns_per_iteration: m.ns_per_event(),
                    native_ns_per_iteration: m.baseline_ns as f64 / m.events.max(1) as f64,
                })
            })
            .collect()
    }
}

/// The backends these options ask for, in table order (x86 first: the ratios are to it).
pub fn choose_backends(arch: ArchChoice, x86_host: X86Host) -> Result<Vec<Backend>> {
    let mut kinds = Vec::new();
    // `both` on a host that cannot run x86 (the riscv64 build) means what it can run.
    let arch = if arch == ArchChoice::Both && !cfg!(target_arch = "x86_64") {
        progress("this host runs no x86 guests, so only riscv is measured");
        ArchChoice::Riscv
    } else {
        arch
    };
    if arch != ArchChoice::Riscv {
        match x86_host {
            X86Host::Kvm => kinds.push(Kind::X86Kvm),
            X86Host::Lab => kinds.push(Kind::X86Lab),
            X86Host::Both => kinds.extend([Kind::X86Kvm, Kind::X86Lab]),
            X86Host::Auto => {
                kinds.push(Kind::X86Kvm);
                if backend::x86_lab_ready().is_ok() {
                    kinds.push(Kind::X86Lab);
                } else {
                    progress("the x86 lab host is not set up, so x86 runs on this host's KVM only (scripts/build-x86-lab.sh adds it)");
                }
            }
        }
    }
    if arch != ArchChoice::X86 {
        kinds.push(Kind::Riscv);
    }
    let backends: Vec<Backend> = kinds.into_iter().map(Backend::new).collect();
    for b in &backends {
        backend::check_available(b)?;
    }
    Ok(backends)
}

/// The workloads to run: all, or those `--only` names (each must be a workload).
pub fn choose_workloads(only: &[String]) -> Result<Vec<&'static str>> {
    if let Some(bad) = only.iter().find(|n| !workload::NAMES.contains(&n.as_str())) {
        return Err(Error::bad_input(format!(
            "--only: no workload '{bad}' (workloads: {})",
            workload::NAMES.join(", ")
        )));
    }
    Ok(workload::NAMES.iter().copied().filter(|n| only.is_empty() || only.iter().any(|o| o == n)).collect())
}

fn progress(text: &str) {
    eprintln!("vmm lab: {text}");
}

/// target/guests beside the running vmm.
fn default_guests() -> Result<PathBuf> {
    Ok(common::layout::target_dir()?.join("guests"))
}

/// One planned run.
struct Job {
    workload: &'static str,
    backend: Backend,
    phases: backend::Phases,
    image: PathBuf,
}

/// `vmm lab`.
pub fn main(args: &LabArgs) -> Result<i32> {
    if args.iterations == Some(0) {
        return Err(Error::bad_input("--iterations must be at least 1"));
    }
    if args.runs == 0 {
        return Err(Error::bad_input("--runs must be at least 1"));
    }
    if args.timeout == 0 {
        return Err(Error::bad_input("--timeout must be at least 1 second"));
    }
    let workloads = choose_workloads(&args.only)?;
    // A report that cannot be written is found out before minutes of runs, not after.
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::bad_input(format!("--report: cannot make {}: {e}", dir.display())))?;
    }
    let backends = choose_backends(args.arch, args.x86_host)?;
    let guests = match &args.guests {
        Some(g) => g.clone(),
        None => default_guests()?,
    };
    let mut jobs = Vec::new();
    for w in &workloads {
        for b in &backends {
            if let Some(phases) = b.phases(w) {
                let image = workload::image_path(&guests, b.arch_dir(), w);
                if !image.is_file() {
                    return Err(Error::bad_input(format!(
                        "the lab workload image {} is missing; run `scripts/setup.sh` (it builds the guests)",
                        image.display()
                    )));
                }
                jobs.push(Job { workload: w, backend: b.clone(), phases, image });
            }
        }
    }
    if jobs.is_empty() {
        return Err(Error::bad_input("no selected backend has the selected workloads"));
    }
    let scratch = std::env::temp_dir().join(format!("vmm-lab-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Error::bad_input(format!("cannot make {}: {e}", scratch.display())))?;
    let results = run_jobs(&jobs, backends, args, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let results = results?;
    print!("{}", table::render(&results));
    if let Some(dir) = &args.report {
        report::write(dir, &results)?;
        progress(&format!("report written to {}", dir.join("index.html").display()));
    }
    Ok(if results.failures.is_empty() { common::error::EXIT_OK } else { common::error::EXIT_GUEST_FAILURE })
}

fn run_jobs(jobs: &[Job], backends: Vec<Backend>, args: &LabArgs, scratch: &Path) -> Result<Results> {
    let mut results = Results { backends, runs: args.runs, ..Results::default() };
    let started = Instant::now();
    for (i, job) in jobs.iter().enumerate() {
        let copy = format!("lab-{}-{}.bin", job.workload, job.backend.name);
        let (image, n) = workload::prepare(&job.image, args.iterations, scratch, &copy)?;
        eprint!("vmm lab: [{:>2}/{}] {} on {} (N={n}) ... ", i + 1, jobs.len(), job.workload, job.backend.name);
        let t = Instant::now();
        let mut runs = Vec::new();
        let mut failed = None;
        for r in 0..args.runs {
            if args.runs > 1 {
                eprint!("run {}/{} ", r + 1, args.runs);
            }
            match run_one(job, &image, n, args.timeout) {
                Ok(run) => runs.push(run),
                Err(reason) => {
                    failed = Some(reason);
                    break;
                }
            }
        }
        match failed {
            None => {
                eprintln!("{:.1} s", t.elapsed().as_secs_f64());
                let notes = runs.first().map(|(_, notes)| notes.clone()).unwrap_or_default();
                results.measures.extend(measure::median_run(runs.into_iter().map(|(m, _)| m).collect()));
                results.notes.extend(notes.into_iter().map(|n| (job.workload.into(), job.backend.name.into(), n)));
            }
            Some(reason) => {
                eprintln!("FAILED: {reason}");
                results.failures.push(Failure {
                    workload: job.workload.into(),
                    backend: job.backend.name.into(),
                    reason,
                });
            }
        }
    }
    progress(&format!("{} runs in {:.0} s", jobs.len(), started.elapsed().as_secs_f64()));
    Ok(results)
}

/// One workload on one backend: its measures and the run's notes, or why there are none.
fn run_one(job: &Job, image: &Path, n: u64, timeout: u64) -> std::result::Result<(Vec<Measure>, Vec<String>), String> {
    let out = runner::run_child(&job.backend.run_args(job.workload, image, timeout)).map_err(|e| e.message)?;
    if out.code != Some(0) {
        return Err(format!("vmm run ended with {:?}: {}", out.code, out.last_error()));
    }
    match runner::done_line_n(&out.stdout, job.workload) {
        Some(got) if got == n => {}
        Some(got) => return Err(format!("the guest says N={got}, the image was given N={n}")),
        None => return Err(format!("the guest never printed `lab {} done N=...`", job.workload)),
    }
    let stats = runner::parse_stats_json(&out.stderr)?;
    let phases = runner::phases(&stats, job.phases.len() + 1)?;
    let native = if job.workload == measure::COMPUTE { Some(native::native_ns(&job.backend, n)?) } else { None };
    let measures = measure::measure(job.workload, job.backend.name, job.phases, &phases, n, native);
    Ok((measures, stats.notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_workloads() {
        assert_eq!(choose_workloads(&[]).unwrap().len(), 7);
        assert_eq!(choose_workloads(&["timer".into(), "console-out".into()]).unwrap(), ["console-out", "timer"]);
        let e = choose_workloads(&["cpuid".into()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.starts_with("--only: no workload 'cpuid' (workloads: console-out, "), "{}", e.message);
    }
}
