//! The teaching lab's x86 side: which workloads exist, what `vmm run` needs to run them, the
//! compute kernel run natively for its baseline, and the two small devices lab guests use.
//!
//! The guests are guests/x86/lab-<workload>.S (set-up shared in guests/x86/lab.inc). Each makes
//! marks 0, 1, 2, ... (a 32-bit `out` of the id to port 0xf2, see common::marks); phase 0 is
//! the baseline loop, phases 1.. do N events each, N read from the image's parameter block
//! (`VMMLABN\0` + little-endian u64).
//!
//! `--lab-devices` (flat guests only) gives a lab guest:
//! - KVM's in-kernel PIC, I/O APIC, local APIC and PIT (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2), as
//!   a Linux guest gets them: the timer and compute workloads program the PIT and take IRQ 0.
//!   With an in-kernel local APIC, `hlt` waits inside KVM and no longer ends the run, so
//! - an exit port at [`LAB_EXIT_PORT`] (like QEMU's isa-debug-exit): a byte written there
//!   powers the VM off with that status;
//! - a read-only MMIO register at [`LAB_REG_ADDR`] that reads as [`LAB_REG_VALUE`]: the mmio
//!   workload reads it N times (each read is a KVM_EXIT_MMIO that vmm handles).
//!
//! The mark port [`common::marks::X86_MARK_PORT`] is on every flat guest's bus ([`MarkPort`]).
//! At each mark [`MarkRecorder`] records KVM's vCPU counters (kvm_stats.rs) and, last,
//! [`HOST_MINFLT`], the vCPU thread's minor faults.
//!
//! What this host's kvm-pvm (no VMX/SVM) does with them, as the tests found (tests/teach_x86.rs):
//! guest ring 0 runs in KVM's instruction emulator (`insn_emulation` counts about every
//! instruction; a cpuid, CR or MSR access is one more emulated instruction, not an exit), guest
//! ring 3 runs natively (so the compute kernel runs in ring 3, at native speed), a first touch
//! of a page is a fault of the vCPU thread (`host_minflt`), not a KVM `pf_taken`; `syscall` and
//! the return are 2 KVM exits; `sysret` is not emulated (the syscall guest returns with `iretq`)
//! and `sti` in ring 3 is refused even with IOPL 3. In the x86 lab host (SVM under QEMU TCG) the
//! same images show the hardware picture: cpuid = 1 exit, CR read+write = 2, first touch = 1
//! `pf_taken` (NPT), second touch and syscall = 0.
use crate::exits::Devices;
use crate::kvm_stats::{self, KvmStats};
use common::bus::{BusDevice, DeviceRequest};
use common::marks::MAX_COUNTERS;
use common::stats::Stats;
use common::{Error, Result};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each workload and its event phases (phase 0, the baseline, is not named): (name, event key).
/// `vmm lab` compares a phase with the RISC-V phase of the same key (urvirt_riscv::teach); "" = none.
pub const WORKLOADS: &[(&str, &[(&str, &str)])] = &[
    ("console-out", &[("out to debug port", "device write")]),
    ("priv-reg", &[("cpuid", ""), ("cr read+write", ""), ("rdmsr", "privileged register read")]),
    ("page-touch", &[("first touch", "first touch"), ("second touch", "second touch")]),
    ("timer", &[("timer interrupt", "timer interrupt")]),
    ("syscall", &[("syscall+iretq", "system call + return")]),
    ("mmio", &[("mmio read", "device read")]),
    ("compute", &[("compute with 100 Hz timer", "compute")]),
];

/// The extra `vmm run` arguments every x86 lab guest needs: long mode (the guests set up
/// their own GDT, page tables and IDT from there) and the lab devices.
pub fn run_args(workload: &str) -> Vec<String> {
    let _ = workload; // the same for all seven
    ["--mode", "long", "--lab-devices"].map(String::from).to_vec()
}

/// The port whose byte write ends a `--lab-devices` guest with that status.
pub const LAB_EXIT_PORT: u64 = 0xf4;
/// The mmio workload's register: in the 32-bit hole, above the virtio-mmio disk windows.
pub const LAB_REG_ADDR: u64 = 0xd010_0000;
/// What the register reads as ("LAB!" in little-endian ASCII).
pub const LAB_REG_VALUE: u32 = u32::from_le_bytes(*b"LAB!");
/// The bus names, as `--stats` rows show them.
pub const MARK_DEVICE: &str = "lab-mark-0xf2";
pub const EXIT_DEVICE: &str = "lab-exit-0xf4";
pub const REG_DEVICE: &str = "lab-reg-0xd0100000";

/// The compute kernel's start value (the guest's `lab_compute` uses the same).
pub const COMPUTE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Runs the compute workload's kernel (xorshift64, `iterations` rounds, exactly the
/// instructions of guests/x86/lab-compute.S) in this process; returns the time it took.
pub fn native_compute(iterations: u64) -> Duration {
    let start = Instant::now();
    std::hint::black_box(compute_kernel(iterations));
    start.elapsed()
}

/// The kernel itself; returns the final value (the guest prints the same one).
pub fn compute_kernel(iterations: u64) -> u64 {
    let mut x = COMPUTE_SEED;
    if iterations == 0 {
        return x;
    }
    let mut n = iterations;
    // SAFETY: pure register arithmetic: no memory, no stack, flags are clobbered (the default).
    unsafe {
        core::arch::asm!(
            "2:",
            "mov {t}, {x}",
            "shl {t}, 13",
            "xor {x}, {t}",
            "mov {t}, {x}",
            "shr {t}, 7",
            "xor {x}, {t}",
            "mov {t}, {x}",
            "shl {t}, 17",
            "xor {x}, {t}",
            "dec {n}",
            "jnz 2b",
            x = inout(reg) x,
            n = inout(reg) n,
            t = out(reg) _,
            options(nomem, nostack),
        );
    }
    let _ = n;
    x
}

/// Port 0xf2: a 32-bit write is mark `id`. The device only keeps the id; the run loop, which
/// owns the statistics, records the mark right after the write (see [`MarkPort::take`]).
#[derive(Default)]
pub struct MarkPort {
    /// The id last written plus one; 0 = none pending.
    pending: Arc<AtomicU64>,
}

impl MarkPort {
    /// A handle the run loop keeps to collect mark ids.
    pub fn handle(&self) -> MarkHandle {
        MarkHandle(self.pending.clone())
    }
}

/// The run loop's side of the mark port.
#[derive(Clone, Default)]
pub struct MarkHandle(Arc<AtomicU64>);

impl MarkHandle {
    /// The mark written since the last call, if any.
    pub fn take(&self) -> Option<u64> {
        self.0.swap(0, Ordering::Relaxed).checked_sub(1)
    }
}

impl BusDevice for MarkPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        let mut id = [0u8; 8];
        let n = data.len().min(4);
        id[..n].copy_from_slice(&data[..n]);
        self.pending.store(u64::from_le_bytes(id) + 1, Ordering::Relaxed);
        None
    }
}

/// Port 0xf4: a byte written is the guest's exit status.
pub struct ExitPort;

impl BusDevice for ExitPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        Some(DeviceRequest::PowerOff(i32::from(data.first().copied().unwrap_or(0))))
    }
}

/// The read-only lab register: 4 bytes reading as [`LAB_REG_VALUE`]; writes are ignored.
pub struct LabRegister;

impl BusDevice for LabRegister {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let bytes = LAB_REG_VALUE.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> Option<DeviceRequest> {
        None
    }
}

/// `--lab-devices`, before the vCPU exists: the in-kernel irqchip and PIT, the exit port and
/// the lab register.
pub fn attach_lab_devices(vm: &VmFd, devices: &mut Devices) -> Result<()> {
    crate::linux::devices::create_irqchip_and_pit(vm)?;
    devices
        .pio
        .insert(LAB_EXIT_PORT, 1, EXIT_DEVICE, Arc::new(Mutex::new(ExitPort)))
        .map_err(|e| Error::bad_input(format!("PIO bus: {EXIT_DEVICE}: {e}")))?;
    devices
        .mmio
        .insert(LAB_REG_ADDR, 4, REG_DEVICE, Arc::new(Mutex::new(LabRegister)))
        .map_err(|e| Error::bad_input(format!("MMIO bus: {REG_DEVICE}: {e}")))
}

/// Puts the mark port on a VM's PIO bus; returns the run loop's handle to it.
pub fn attach_mark_port(devices: &mut Devices) -> Result<MarkHandle> {
    let port = MarkPort::default();
    let handle = port.handle();
    devices
        .pio
        .insert(common::marks::X86_MARK_PORT.into(), 1, MARK_DEVICE, Arc::new(Mutex::new(port)))
        .map_err(|e| Error::bad_input(format!("PIO bus: {MARK_DEVICE}: {e}")))?;
    Ok(handle)
}

/// The host counter after KVM's: minor page faults of the vCPU thread. Where KVM emulates
/// the guest's memory accesses (kvm-pvm), the host kernel's faults on guest RAM land here
/// rather than in KVM's `pf_*` counters.
pub const HOST_MINFLT: &str = "host_minflt";

/// This thread's minor page faults so far (getrusage RUSAGE_THREAD); 0 if it fails.
fn thread_minor_faults() -> u64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_minflt as u64
}

/// The run loop's mark keeper: after an exit the mark port handled, it records the mark with
/// the time since the run started and KVM's counters at that moment.
pub struct MarkRecorder {
    handle: MarkHandle,
    kvm: Option<KvmStats>,
    /// KVM's counters when the run started, for the --stats notes.
    before: Vec<u64>,
    /// Why KVM's counters could not be opened, if they could not (a --stats note).
    problem: Option<String>,
    values: [u64; MAX_COUNTERS],
    /// --stats or --stats-json: marks are recorded (nobody would see them otherwise).
    counting: bool,
    /// When the guest was entered ([`MarkRecorder::restart_clock`]): marks' times count from it.
    started: Instant,
}

impl MarkRecorder {
    /// Opens `vcpu`'s KVM statistics (if the kernel has them) and names them in `stats`.
    /// Without `counting` (no --stats or --stats-json: nobody would see them) nothing is
    /// opened, which keeps a plain run's start-up short.
    pub fn start(
        handle: MarkHandle,
        kvm: &Kvm,
        vcpu: &VcpuFd,
        stats: &mut Stats,
        counting: bool,
    ) -> Result<MarkRecorder> {
        // Without KVM's counters the run still goes on: the marks then hold only the faults.
        let (mut kvm, problem) = match counting.then(|| KvmStats::open(kvm, vcpu)) {
            None => (None, None),
            Some(Ok(k)) => (k, None),
            Some(Err(e)) => (None, Some(format!("KVM's own counters: not available ({})", e.message))),
        };
        let before = kvm.as_mut().map(|k| k.snapshot()).unwrap_or_default();
        let mut names = kvm.as_ref().map(|k| k.names()).unwrap_or_default();
        names.truncate(MAX_COUNTERS - 1);
        names.push(HOST_MINFLT.into());
        stats.marks.host_names = names;
        let values = [0; MAX_COUNTERS];
        Ok(MarkRecorder { handle, kvm, before, problem, values, counting, started: Instant::now() })
    }

    /// Whether marks read counters (the vCPU thread's jail then allows pread64 and getrusage).
    pub fn counting(&self) -> bool {
        self.counting
    }

    /// Marks' times are measured from now on: called as the guest is entered, next to the
    /// trace's clock, so a mark and a trace line of the same moment show the same time.
    pub fn restart_clock(&mut self) {
        self.started = Instant::now();
    }

    /// Called with the device that handled each exit; records a mark if it was the mark port.
    /// No allocation: one pread of KVM's counters.
    pub fn after_exit(&mut self, device: &str, stats: &mut Stats) {
        if device != MARK_DEVICE || !self.counting {
            return;
        }
        let Some(id) = self.handle.take() else { return };
        let n = match self.kvm.as_mut() {
            Some(k) => {
                k.read(&mut self.values);
                k.counters.len().min(MAX_COUNTERS - 1)
            }
            None => 0,
        };
        self.values[n] = thread_minor_faults();
        let n = n + 1;
        stats.record_mark(id, self.started.elapsed(), &self.values[..n]);
    }

    /// The --stats notes: KVM's counters that changed over the run.
    pub fn notes(&mut self) -> Vec<String> {
        match self.kvm.as_mut() {
            Some(k) => {
                let after = k.snapshot();
                kvm_stats::changed_notes(&k.counters, &self.before, &after)
            }
            None => vec![self.problem.clone().unwrap_or_else(|| kvm_stats::NO_STATS_NOTE.into())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_follow_the_contract() {
        let names: Vec<&str> = WORKLOADS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["console-out", "priv-reg", "page-touch", "timer", "syscall", "mmio", "compute"]);
        assert!(WORKLOADS.iter().all(|(_, phases)| !phases.is_empty()));
        assert_eq!(run_args("timer"), ["--mode", "long", "--lab-devices"]);
    }

    #[test]
    fn compute_kernel_is_xorshift64() {
        let mut x = COMPUTE_SEED;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        assert_eq!(compute_kernel(1000), x);
        assert_eq!(compute_kernel(0), COMPUTE_SEED);
        assert!(native_compute(1_000_000) > Duration::ZERO);
    }

    #[test]
    fn marks_exit_and_register() {
        let mut port = MarkPort::default();
        let h = port.handle();
        assert_eq!(h.take(), None);
        port.write(0, &7u32.to_le_bytes());
        assert_eq!(h.take(), Some(7));
        assert_eq!(h.take(), None);
        port.write(0, &0u32.to_le_bytes());
        assert_eq!(h.take(), Some(0));
        assert_eq!(ExitPort.write(0, &[3]), Some(DeviceRequest::PowerOff(3)));
        let mut d = [0u8; 4];
        LabRegister.read(0, &mut d);
        assert_eq!(&d, b"LAB!");
        let mut d = [0u8; 2];
        LabRegister.read(2, &mut d);
        assert_eq!(&d, b"B!");
    }
}
