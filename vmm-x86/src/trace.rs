//! `--trace` on x86: what one KVM exit touched, read from the vCPU's kvm_run after it was
//! handled (the data area still holds what the guest wrote, or what a device answered to a
//! read, until the next KVM_RUN).
use common::trace::{le_value, Target, Tracer};
use kvm_bindings::{kvm_run, KVM_EXIT_IO, KVM_EXIT_MMIO};
use std::time::{Duration, Instant};

/// Records the exit that KVM_RUN returned at `returned` and took `spent` to handle.
pub fn record(
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
