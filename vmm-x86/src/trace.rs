//! `--trace` on x86: what one KVM exit touched, read from the vCPU's kvm_run after it was
//! handled (the data area still holds what the guest wrote, or what a device answered to a
//! read, until the next KVM_RUN).
use common::stats::Stats;
use common::trace::{le_value, Target, Tracer};
use kvm_bindings::{kvm_run, KVM_EXIT_IO, KVM_EXIT_MMIO};
use std::time::{Duration, Instant};

/// The run loop's bookkeeping for one handled exit: counts it in `stats` and, with
/// `--trace`, writes its line. With tracing off this costs one predictable branch.
pub fn note(
    stats: &mut Stats,
    trace: &mut Option<Tracer>,
    run: *const kvm_run,
    kind: &'static str,
    device: &'static str,
    returned: Instant,
) {
    let spent = returned.elapsed();
    stats.record_device(kind, device, spent);
    if let Some(t) = trace.as_mut() {
        record(t, run, kind, device, returned, spent);
    }
}

/// What [`note`] costs per exit, in nanoseconds, for `vmm bench`: `n` calls on a kvm_run made
/// up as an `out` of one byte to port 0xf1, with `trace` as given (Some(None): tracing off),
/// or, for `trace` None, the bookkeeping as it was before tracing existed (Stats alone, no
/// hook), to compare "off" with.
pub fn note_cost_ns(n: u64, trace: Option<&mut Option<Tracer>>) -> f64 {
    // 8 KiB, 8-byte aligned: the kvm_run header and, at 4 KiB, the I/O data area.
    let mut page = vec![0u64; 1024];
    let run = page.as_mut_ptr() as *mut kvm_run;
    // SAFETY: `page` is zeroed, large and aligned enough for a kvm_run (all plain integers),
    // and outlives every use of `run` below.
    unsafe {
        (*run).exit_reason = KVM_EXIT_IO;
        (*run).__bindgen_anon_1.io.size = 1;
        (*run).__bindgen_anon_1.io.port = 0xf1;
        (*run).__bindgen_anon_1.io.data_offset = 4096;
    }
    page[512] = u64::from(b'H');
    let mut stats = Stats::new();
    let start = Instant::now();
    match trace {
        Some(trace) => {
            for _ in 0..n {
                note(&mut stats, trace, std::hint::black_box(run), "io-out", "debug-0xf1", Instant::now());
            }
            if let Some(t) = trace.as_mut() {
                t.flush();
            }
        }
        None => {
            for _ in 0..n {
                let (kind, device) = std::hint::black_box(("io-out", "debug-0xf1"));
                stats.record_device(kind, device, Instant::now().elapsed());
            }
        }
    }
    let took = start.elapsed();
    took.as_nanos() as f64 / n.max(1) as f64
}

/// Records the exit that KVM_RUN returned at `returned` and took `spent` to handle.
fn record(
    tracer: &mut Tracer,
    run: *const kvm_run,
    kind: &'static str,
    device: &'static str,
    returned: Instant,
    spent: Duration,
) {
    let (target, value) = describe(run);
    tracer.record(returned, kind, device, target, value, spent);
}

/// The port or address of an I/O or MMIO exit and its value (the first access of a string
/// I/O exit); nothing for other exits.
fn describe(run: *const kvm_run) -> (Target, Option<u64>) {
    // SAFETY: `run` is the vCPU's live kvm_run mapping (the caller holds the vCPU, and KVM_RUN
    // is not running); the union member read is the one the exit reason says KVM filled.
    unsafe {
        match (*run).exit_reason {
            KVM_EXIT_IO => {
                let io = (*run).__bindgen_anon_1.io;
                let len = usize::from(io.size).min(8);
                let data = std::slice::from_raw_parts((run as *const u8).add(io.data_offset as usize), len);
                (Target::Port(io.port), Some(le_value(data)))
            }
            KVM_EXIT_MMIO => {
                let mmio = (*run).__bindgen_anon_1.mmio;
                let len = (mmio.len as usize).min(8);
                (Target::Addr(mmio.phys_addr), Some(le_value(&mmio.data[..len])))
            }
            _ => (Target::None, None),
        }
    }
}
