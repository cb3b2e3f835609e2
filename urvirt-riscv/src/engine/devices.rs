//! The guest's devices in the engine, and where their work runs.
//!
//! - The bus ([`common::bus::Bus`]) holds the PLIC, the 16550 UART and one virtio-mmio
//!   transport per `--disk` at QEMU virt's addresses ([`crate::layout`]). Their windows stay
//!   PROT_NONE, so a guest access faults; the SIGSEGV handler performs it ([`crate::mmio`]) on
//!   the guest thread. Register accesses are quick; a virtio QueueNotify only writes the
//!   worker's eventfd, and the disk I/O runs on that device's worker thread
//!   ([`common::virtio`]), which reads and writes guest RAM through its own shared mapping of
//!   the memfd ([`common::memory::from_fd`]) and raises the device's PLIC line.
//! - The PLIC's S-mode output is an atomic flag: the guest thread copies it into `sip.SEIP`
//!   at every trap and before every interrupt check, so the supervisor external interrupt is
//!   delivered exactly as the timer's is ([`crate::trap::pending_interrupt`]).
//! - An interrupt raised on another thread (the console reader filling the UART, a virtio
//!   worker) must reach a guest that runs natively or sleeps in `wfi`. [`wake_guest`] does
//!   both: it sends the guest thread SIGALRM (the signal the timer and Ctrl-A x already use;
//!   its handler then sees SEIP and delivers the interrupt), and bumps a futex word that
//!   `wfi`'s sleep waits on ([`wait`]), since signals are blocked inside handlers. Raised on
//!   the guest thread itself (inside a handler) it needs neither: the check after the trap
//!   sees it.
use super::input::{self, ConsoleUart};
use super::run::RunState;
use super::signals;
use crate::hart::{self, Handled};
use crate::layout;
use crate::loader::RAM_BASE;
use common::bus::Bus;
use common::console::Console;
use common::devices::plic::{Plic, PlicLine, S_CONTEXT};
use common::devices::serial::Serial;
use common::virtio::block::Block;
use common::virtio::{MmioTransport, Version, MMIO_SIZE};
use common::vm::DiskConfig;
use common::{Error, Result};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bumped each time the PLIC's S-mode output rises, for a `wfi` sleeping on it.
static WAKE: AtomicU32 = AtomicU32::new(0);

/// What one VM's guest thread needs of its devices.
#[derive(Clone)]
pub struct Devices {
    pub bus: Bus,
    pub uart: Arc<Mutex<ConsoleUart>>,
    pub plic: Arc<Mutex<Plic>>,
    /// The PLIC's output for hart 0 in S-mode: sip.SEIP.
    pub seip: Arc<AtomicBool>,
}

fn bus_err(e: common::bus::BusError) -> Error {
    Error::bad_input(format!("cannot place a device: {e}"))
}

impl Devices {
    /// The PLIC and the UART (on the console) at QEMU virt's addresses.
    pub fn new(console: &Console) -> Result<Self> {
        let seip = Arc::new(AtomicBool::new(false));
        let out = seip.clone();
        let plic = Arc::new(Mutex::new(Plic::new(
            layout::PLIC_NDEV,
            Box::new(move |context, high| {
                if context == S_CONTEXT {
                    out.store(high, Ordering::SeqCst);
                    if high {
                        wake_guest();
                    }
                }
            }),
        )));
        let uart_line = Arc::new(PlicLine { plic: plic.clone(), source: layout::UART_IRQ });
        let uart = Arc::new(Mutex::new(ConsoleUart::new(Serial::with_line(uart_line, console.clone()))));
        let mut bus = Bus::new();
        bus.insert(layout::PLIC_BASE, layout::PLIC_SIZE, "plic", plic.clone()).map_err(bus_err)?;
        bus.insert(layout::UART_BASE, layout::UART_SIZE, "uart", uart.clone()).map_err(bus_err)?;
        Ok(Devices { bus, uart, plic, seip })
    }

    /// One legacy (version 1) virtio-blk transport per disk, in slot order: the interface
    /// teaching kernels and their drivers speak (Linux speaks it too). `ram` is the memfd
    /// behind guest RAM; `jail`: the workers run under their seccomp allowlist.
    pub fn add_disks(&mut self, disks: &[DiskConfig], ram: (BorrowedFd<'_>, u64), jail: bool) -> Result<()> {
        if disks.len() > layout::VIRTIO_SLOTS {
            return Err(Error::bad_input(format!(
                "{} disks given; RISC-V has {} virtio-mmio slots (QEMU virt's)",
                disks.len(),
                layout::VIRTIO_SLOTS
            )));
        }
        if disks.is_empty() {
            return Ok(());
        }
        let mem = common::memory::from_fd(ram.0, 0, RAM_BASE, ram.1)?;
        for (i, disk) in disks.iter().enumerate() {
            let block = Block::open(disk)?;
            let line = Arc::new(PlicLine { plic: self.plic.clone(), source: layout::VIRTIO_IRQ_BASE + i as u32 });
            // The worker starts with our signals blocked: they stay on the guest thread.
            let transport = signals::with_handled_blocked(|| {
                if jail {
                    MmioTransport::jailed(block, mem.clone(), line, Version::Legacy, WORKER_LINE_SYSCALLS)
                } else {
                    MmioTransport::new(block, mem.clone(), line, Version::Legacy)
                }
            });
            let slot = Arc::new(Mutex::new(transport?));
            self.bus.insert(layout::virtio_slot(i), MMIO_SIZE, "virtio-blk", slot).map_err(bus_err)?;
        }
        Ok(())
    }
}

/// What a virtio worker's PLIC line needs beyond [`common::virtio::WORKER_SYSCALLS`]: the
/// PLIC's lock and [`wake_guest`] (futex, and SIGALRM to the guest thread).
const WORKER_LINE_SYSCALLS: &[i64] = &[libc::SYS_futex, libc::SYS_tgkill, libc::SYS_getpid, libc::SYS_gettid];

/// Makes an interrupt raised now reach the guest thread promptly (see the module docs).
pub fn wake_guest() {
    WAKE.fetch_add(1, Ordering::SeqCst);
    // SAFETY: FUTEX_WAKE on a static word; no pointer is kept.
    unsafe {
        libc::syscall(libc::SYS_futex, WAKE.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX);
    }
    let tid = input::guest_tid();
    // SAFETY: gettid has no preconditions.
    if tid != 0 && tid != unsafe { libc::gettid() } {
        signals::poke(tid);
    }
}

/// The wake count now: read it before looking at SEIP, then [`wait`] on it.
pub fn wake_count() -> u32 {
    WAKE.load(Ordering::SeqCst)
}

/// `wfi`'s sleep: at most `d`, less if [`wake_guest`] runs after the count `seen` was read.
pub fn wait(seen: u32, d: Duration) {
    let ts = libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long };
    // SAFETY: FUTEX_WAIT on a static word with a valid relative timeout; it returns at once
    // if the word is no longer `seen`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &ts as *const libc::timespec,
        );
    }
}

impl RunState {
    /// sip.SEIP from the PLIC's output.
    pub(super) fn refresh_external(&mut self) {
        crate::trap::set_external(&mut self.hart, self.devices.seip.load(Ordering::SeqCst));
    }

    /// After a trap or between interpreter budgets: raise STIP and SEIP as due and take an
    /// enabled pending interrupt. Returns whether one was delivered.
    pub(super) fn check_interrupts(&mut self) -> bool {
        self.refresh_external();
        let taken = hart::on_interrupt_check(&mut self.hart, super::timer::rdtime()).is_some();
        if taken {
            self.stats.record("interrupt delivered", Duration::ZERO);
        }
        taken
    }

    /// A Bare-mode access to a device window at physical `addr`: performed on the bus.
    pub(super) fn mmio(&mut self, addr: u64) -> Handled {
        let kind = layout::mmio_kind(addr);
        let (hart, mut p) = self.platform();
        crate::mmio::perform(hart, &mut p, addr, kind)
    }
}
