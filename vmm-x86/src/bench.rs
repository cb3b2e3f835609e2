//! `vmm bench --arch x86`: what the VMM's machinery costs, measured against bare baselines
//! in the same run (so the host's mood affects both sides alike).
//!
//! (a) Exit cost: a long-mode guest doing 100,000 `out`s (target/guests/x86/outs.bin), run
//!     through X86Vm (exits.rs dispatch, PIO Bus, DebugPort into a capture console, Stats),
//!     against a loop of bare kvm-ioctls calls on an identically set-up VM: KVM_RUN, match
//!     IoOut, continue. Set-up is outside the timed part on both sides. Rounds alternate.
//!     The same guest runs a third time per round with `--trace` on (every exit, to a file in
//!     target/bench): the tracer is compiled into every run, so "vmm" above is its cost when
//!     off (one predictable branch per exit) and "trace on / off" what tracing costs. The
//!     bookkeeping itself (Stats, and the trace line when on) is also timed alone, outside KVM.
//! (b) Process start to HLT for hello.bin: spawn `vmm run` N times against spawning a C
//!     program (benches/baseline/kvm_hello.c, compiled here with gcc) that does the least
//!     KVM needs to run the same guest. "To HLT" is spawn to the newline the guest prints
//!     just before its `hlt`; "to exit" adds VM tear-down and process exit.
//! (c) Disk: sequential 4 KiB reads and writes through virtio-blk against the host process's
//!     own pread/pwrite ([`common::virtio::bench`]).
use crate::config::{EntryMode, LinuxOptions, X86Config};
use crate::vm::{self, X86Vm};
use crate::{kvm, memory, modes};
use common::console::Console;
use common::image::Image;
use common::virtio::bench::GuestFigures;
use common::vm::{DiskConfig, GuestExit, VirtualMachine, VmConfig};
use common::{Error, Result};
use kvm_ioctls::VcpuExit;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress};

/// Calls of the run loop's bookkeeping timed per round, tracing off and on.
const NOTES: u64 = 200_000;
/// How many `out`s outs.bin does.
pub const OUTS: u64 = 100_000;
/// Guest RAM for every VM the benchmark makes (the `vmm run` default, so (b) compares like with like).
const MEM: u64 = crate::config::DEFAULT_MEM;

pub struct BenchOptions {
    /// The vmm binary to spawn for (b).
    pub vmm: PathBuf,
    /// Holds hello.bin and outs.bin (target/guests/x86).
    pub guests: PathBuf,
    /// The C baseline for (b).
    pub baseline_c: PathBuf,
    /// Where the C baseline is compiled to.
    pub build_dir: PathBuf,
    /// Only the statically linked C baseline (in the x86 lab host, which has no libc or gcc:
    /// the outer vmm builds it); elsewhere both, since vmm itself is linked statically.
    pub static_baseline_only: bool,
    /// Rounds of (a), each side.
    pub rounds: usize,
    /// Spawns of (b), each side.
    pub spawns: usize,
}

impl BenchOptions {
    /// Defaults for a run from the repository root `root` by the vmm binary itself.
    pub fn in_repo(root: &Path) -> Result<BenchOptions> {
        let vmm = std::env::current_exe().map_err(|e| Error::bad_input(format!("cannot find the vmm binary: {e}")))?;
        Ok(BenchOptions {
            vmm,
            guests: root.join("target/guests/x86"),
            baseline_c: root.join("benches/baseline/kvm_hello.c"),
            build_dir: root.join("target/bench"),
            static_baseline_only: std::env::var_os(lab::keys::ENV).is_some(),
            rounds: 5,
            spawns: 30,
        })
    }
}

/// Median and minimum: on a shared, busy host the minimum is the best estimate of the
/// intrinsic cost, the median of what a user sees.
fn summary(v: Vec<f64>) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    (common::stats::median(v), min)
}

fn read_guest(opts: &BenchOptions, name: &str) -> Result<Image> {
    let p = opts.guests.join(name);
    Image::read(&p, MEM).map_err(|e| Error::bad_input(format!("{e} (run scripts/build-x86-guests.sh)")))
}

/// One run of outs.bin through the full VMM; returns microseconds per exit, and the mean
/// time vmm itself spent handling an `out` (from KVM_RUN's return to the next KVM_RUN).
fn vmm_exit_round(image: &Image, trace: Option<&Path>) -> Result<(f64, f64)> {
    let console = Console::capture();
    let trace = trace.map(|p| common::trace::TraceConfig { path: p.to_path_buf(), kinds: Vec::new() });
    let vm =
        VmConfig { mem_size: MEM, timeout: None, console: console.clone(), jail: true, trace, ..VmConfig::default() };
    let mut x = X86Vm::new(X86Config {
        vm,
        mode: Some(EntryMode::Long),
        linux: LinuxOptions::default(),
        stats: false,
        lab_devices: false,
    })?;
    x.load(image)?;
    let start = Instant::now();
    let outcome = x.run()?;
    let took = start.elapsed();
    if outcome.exit != GuestExit::Halted || console.captured().len() as u64 != OUTS {
        return Err(Error::guest(format!("bench guest misbehaved: {:?}", outcome.exit)));
    }
    let handling =
        outcome.stats.get(&format!("io-out {}", vm::HELLO_DEVICE)).map(|e| e.mean().as_secs_f64() * 1e6).unwrap_or(0.0);
    Ok((took.as_secs_f64() * 1e6 / outcome.stats.total_count() as f64, handling))
}

/// Requests each phase of virtio-bench.bin makes (its REQUESTS).
const GUEST_DISK_REQUESTS: u64 = 4096;

/// (c) virtio-bench.bin on a 16 MiB scratch disk through X86Vm (jail on): seconds per request
/// of its reads and of its writes, from the TSC ticks it leaves at 0x400 and 0x408.
fn guest_disk_round(opts: &BenchOptions) -> Result<GuestFigures> {
    let image = read_guest(opts, "virtio-bench.bin")?;
    let path = opts.build_dir.join("guest-disk-bench.img");
    let bad = |e: std::io::Error| Error::bad_input(format!("disk benchmark: {}: {e}", path.display()));
    std::fs::create_dir_all(&opts.build_dir).map_err(bad)?;
    std::fs::write(&path, vec![0u8; (GUEST_DISK_REQUESTS * 4096) as usize]).map_err(bad)?;
    let console = Console::capture();
    let disks = vec![DiskConfig { path: path.clone(), read_only: false }];
    let vm =
        VmConfig { mem_size: MEM, timeout: None, console: console.clone(), jail: true, disks, ..VmConfig::default() };
    let mut x = X86Vm::new(X86Config {
        vm,
        mode: Some(EntryMode::Protected),
        linux: LinuxOptions::default(),
        stats: false,
        lab_devices: false,
    })?;
    x.load(&image)?;
    let outcome = x.run()?;
    if outcome.exit != GuestExit::Halted || console.captured() != b"virtio-bench done\n" {
        let said = String::from_utf8_lossy(&console.captured()).into_owned();
        return Err(Error::guest(format!("virtio-bench guest misbehaved: {:?}: {said}", outcome.exit)));
    }
    let ticks = |at: u64| x.guest_memory().read_obj::<u64>(GuestAddress(at)).unwrap_or(0) as f64;
    let (read, write) = (ticks(0x400), ticks(0x408));
    drop(x);
    let _ = std::fs::remove_file(&path);
    let per_request = (crate::lab::host_tsc_khz()? as f64 * 1e3) * GUEST_DISK_REQUESTS as f64;
    Ok(GuestFigures { label: "virtio-bench.bin, polling", read: read / per_request, write: write / per_request })
}

/// One run of outs.bin with nothing but KVM_RUN in a loop; returns microseconds per exit.
fn raw_exit_round(image: &Image) -> Result<f64> {
    // Set-up (not timed) uses the same helpers as X86Vm so both guests start identically.
    let kvm = kvm::open()?;
    let vm = kvm.create_vm().map_err(|e| kvm::setup_error("KVM_CREATE_VM", e))?;
    let mem = memory::create(&vm, MEM)?;
    let mut vcpu = vm.create_vcpu(0).map_err(|e| kvm::setup_error("KVM_CREATE_VCPU", e))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| kvm::setup_error("KVM_GET_SREGS", e))?;
    let regs = modes::load_flat(&mem, image, EntryMode::Long, MEM, &mut sregs)?;
    modes::set_flat_cpuid(&kvm, &vcpu, EntryMode::Long)?;
    vcpu.set_sregs(&sregs).map_err(|e| kvm::setup_error("KVM_SET_SREGS", e))?;
    vcpu.set_regs(&regs).map_err(|e| kvm::setup_error("KVM_SET_REGS", e))?;
    let mut exits = 0u64;
    let start = Instant::now();
    loop {
        exits += 1;
        match vcpu.run() {
            Ok(VcpuExit::IoOut(..)) => continue,
            Ok(VcpuExit::Hlt) => break,
            other => return Err(Error::guest(format!("bench guest: unexpected exit {other:?}"))),
        }
    }
    let took = start.elapsed();
    Ok(took.as_secs_f64() * 1e6 / exits as f64)
}

/// Compiles the C baseline (linked statically or as gcc links by default) if it is missing or
/// older than its source; returns its path.
pub fn build_baseline(opts: &BenchOptions, static_link: bool) -> Result<PathBuf> {
    let exe = opts.build_dir.join(if static_link { "kvm_hello-static" } else { "kvm_hello" });
    let fresh = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    if fresh(&exe).is_some() && fresh(&exe) >= fresh(&opts.baseline_c) {
        return Ok(exe);
    }
    std::fs::create_dir_all(&opts.build_dir)
        .map_err(|e| Error::bad_input(format!("cannot create {}: {e}", opts.build_dir.display())))?;
    let status = Command::new("gcc")
        .args(["-O2", "-Wall"])
        .args(static_link.then_some("-static"))
        .arg("-o")
        .arg(&exe)
        .arg(&opts.baseline_c)
        .status()
        .map_err(|e| Error::bad_input(format!("cannot run gcc for the C baseline: {e} (apt-get install gcc)")))?;
    if !status.success() {
        return Err(Error::bad_input(format!("gcc failed to build {}", opts.baseline_c.display())));
    }
    Ok(exe)
}

/// Spawns `cmd` once; checks it prints "Hello\n" and exits 0. Returns milliseconds from spawn
/// to the newline (the guest's last `out`, right before its `hlt`) and from spawn to exit.
fn spawn_once(mut cmd: Command) -> Result<(f64, f64)> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| Error::bad_input(format!("cannot spawn {what}: {e}")))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut seen = Vec::new();
    let mut to_hlt = None;
    let mut buf = [0u8; 64];
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if to_hlt.is_none() && seen.ends_with(b"\n") {
            to_hlt = Some(start.elapsed());
        }
    }
    let status = child.wait().map_err(|e| Error::bad_input(format!("cannot wait for {what}: {e}")))?;
    let to_exit = start.elapsed();
    match to_hlt {
        Some(t) if status.success() && seen == b"Hello\n" => Ok((t.as_secs_f64() * 1e3, to_exit.as_secs_f64() * 1e3)),
        _ => Err(Error::guest(format!("{what} did not print Hello and exit 0: {status}"))),
    }
}

/// Runs both measurements and returns the report to print.
pub fn run(opts: &BenchOptions) -> Result<String> {
    let outs = read_guest(opts, "outs.bin")?;
    let hello = opts.guests.join("hello.bin");
    read_guest(opts, "hello.bin")?;
    // vmm is a static executable (.cargo/config.toml): it is compared with the C program both
    // as gcc links it by default and linked statically like vmm.
    let links: &[bool] = if opts.static_baseline_only { &[true] } else { &[false, true] };
    let baselines = links.iter().map(|&s| Ok((s, build_baseline(opts, s)?))).collect::<Result<Vec<_>>>()?;

    let (mut vmm_us, mut raw_us, mut handling_us) = (Vec::new(), Vec::new(), Vec::new());
    let mut traced_us = Vec::new();
    std::fs::create_dir_all(&opts.build_dir)
        .map_err(|e| Error::bad_input(format!("cannot create {}: {e}", opts.build_dir.display())))?;
    let trace_file = opts.build_dir.join("exit-bench.trace");
    // Warm-up round on each side (page faults, caches), not counted.
    raw_exit_round(&outs)?;
    vmm_exit_round(&outs, None)?;
    vmm_exit_round(&outs, Some(&trace_file))?;
    for _ in 0..opts.rounds.max(1) {
        raw_us.push(raw_exit_round(&outs)?);
        let (per_exit, handling) = vmm_exit_round(&outs, None)?;
        vmm_us.push(per_exit);
        handling_us.push(handling);
        traced_us.push(vmm_exit_round(&outs, Some(&trace_file))?.0);
    }
    // The bookkeeping alone (crate::trace::note, the run loop's own), without KVM's noise.
    let (mut note_none, mut note_off, mut note_on) = (Vec::new(), Vec::new(), Vec::new());
    let mut tracer = Some(common::trace::Tracer::create(&common::trace::TraceConfig {
        path: trace_file.clone(),
        kinds: Vec::new(),
    })?);
    for _ in 0..opts.rounds.max(1) {
        note_none.push(crate::trace::note_cost_ns(NOTES, None));
        note_off.push(crate::trace::note_cost_ns(NOTES, Some(&mut None)));
        note_on.push(crate::trace::note_cost_ns(NOTES, Some(&mut tracer)));
    }
    drop(tracer);
    let ((note_off, note_off_min), (note_on, note_on_min)) = (summary(note_off), summary(note_on));
    let (note_none, note_none_min) = summary(note_none);
    let _ = std::fs::remove_file(&trace_file);
    let ((vmm_us, vmm_us_min), (raw_us, raw_us_min)) = (summary(vmm_us), summary(raw_us));
    let (handling_us, handling_us_min) = summary(handling_us);
    let (traced_us, traced_us_min) = summary(traced_us);

    let (mut vmm_hlt, mut vmm_exit) = (Vec::new(), Vec::new());
    // Per baseline: milliseconds to HLT, and to exit, of each spawn.
    let mut base: Vec<[Vec<f64>; 2]> = vec![Default::default(); baselines.len()];
    for _ in 0..opts.spawns.max(1) {
        // Interleaved, one of each at a time, for the same reason as above.
        for ((_, exe), [hlt, exit]) in baselines.iter().zip(base.iter_mut()) {
            let mut c = Command::new(exe);
            c.arg(&hello).arg(MEM.to_string());
            let (h, e) = spawn_once(c)?;
            hlt.push(h);
            exit.push(e);
        }
        let mut c = Command::new(&opts.vmm);
        c.args(["run", "--arch", "x86"]).arg(&hello);
        let (h, e) = spawn_once(c)?;
        vmm_hlt.push(h);
        vmm_exit.push(e);
    }
    let (vh, ve) = (summary(vmm_hlt), summary(vmm_exit));
    // One block per end point: vmm's row, then per baseline its row and vmm's ratio to it.
    let block = |title: String, vmm: (f64, f64), end: usize| {
        let mut rows = vec![title, format!("  {:<44} {:8.3} {:8.3} ms", "vmm run --arch x86 hello.bin", vmm.0, vmm.1)];
        for ((static_link, _), runs) in baselines.iter().zip(&base) {
            let (b, b_min) = summary(runs[end].clone());
            let how = if *static_link { "static" } else { "dynamic, gcc's default" };
            rows.push(format!("  {:<44} {b:8.3} {b_min:8.3} ms", format!("C baseline, {how}")));
            rows.push(format!("  {:<44} {:8.3} {:8.3}", format!("ratio vmm/C {how}"), vmm.0 / b, vmm.1 / b_min));
        }
        rows.join("\n")
    };
    let to_hlt = block(
        format!(
            "x86 process start to HLT, hello.bin; {} spawns each ({})",
            opts.spawns.max(1),
            short(&opts.baseline_c)
        ),
        vh,
        0,
    );
    let to_exit = block("x86 process start to exit (HLT + tear-down)".to_string(), ve, 1);

    let rows = [
        format!("x86 exit cost: guest doing {OUTS} `out`s; {} rounds each       median      min", opts.rounds.max(1)),
        format!("  {:<44} {vmm_us:8.3} {vmm_us_min:8.3} us/exit", "vmm (dispatch + Bus + DebugPort + Stats)"),
        format!("  {:<44} {raw_us:8.3} {raw_us_min:8.3} us/exit", "raw kvm-ioctls loop (KVM_RUN, match IoOut)"),
        format!("  {:<44} {:8.3} {:8.3}  (goal <= 1.05)", "ratio vmm/raw", vmm_us / raw_us, vmm_us_min / raw_us_min),
        format!(
            "  {:<44} {handling_us:8.3} {handling_us_min:8.3} us/exit",
            "of which vmm handling (KVM_RUN return->entry)"
        ),
        format!("  {:<44} {traced_us:8.3} {traced_us_min:8.3} us/exit", "vmm with --trace on (every exit, to a file)"),
        format!(
            "  {:<44} {:8.3} {:8.3}  (trace off = the vmm row)",
            "ratio trace on/off",
            traced_us / vmm_us,
            traced_us_min / vmm_us_min
        ),
        format!("  {:<44} {note_none:8.1} {note_none_min:8.1} ns/exit", "bookkeeping alone: Stats, no trace hook"),
        format!("  {:<44} {note_off:8.1} {note_off_min:8.1} ns/exit", "bookkeeping alone, hook in, --trace off"),
        format!(
            "  {:<44} {:8.3} {:8.3}  (off costs nothing measurable ~ 1.0)",
            "ratio hook off / no hook",
            note_off / note_none,
            note_off_min / note_none_min
        ),
        format!("  {:<44} {note_on:8.1} {note_on_min:8.1} ns/exit", "bookkeeping alone, --trace on (to a file)"),
        to_hlt,
        to_exit,
    ];
    // (c) The disk device, shared with RISC-V (common::virtio::bench), with a guest driving it.
    let guest = guest_disk_round(opts)?;
    let disk = common::virtio::bench::run(&opts.build_dir, Some(guest))?;
    Ok(format!("{}\n{disk}", rows.join("\n")))
}

fn short(p: &Path) -> String {
    let s = p.display().to_string();
    s.rsplit_once("benches/").map(|(_, t)| format!("benches/{t}")).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_median_and_minimum() {
        assert_eq!(summary(vec![4.0, 1.0, 3.0]), (3.0, 1.0));
    }
}
