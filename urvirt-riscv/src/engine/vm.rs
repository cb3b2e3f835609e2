//! [`UrvirtVm`]: the URVirt engine behind the common `VirtualMachine` trait.
use super::input;
use super::memory::{self, GuestMemory};
use super::run::{self, RunState};
use super::signals::{self, AltStack, Handlers};
use super::timer::HostTimer;
use super::{seccomp, sud};
use crate::config::{self, EcallTrap, RiscvConfig};
use crate::fdt;
use crate::hart::Hart;
use crate::loader::{self, RAM_BASE};
use common::image::Image;
use common::stats::Stats;
use common::vm::{GuestExit, Outcome, VirtualMachine};
use common::{Error, Result};
use std::sync::atomic::{compiler_fence, Ordering};
use std::time::{Duration, Instant};

/// The command line in the device tree: the console is the SBI console.
const BOOTARGS: &str = "console=hvc0 earlycon=sbi";

pub struct UrvirtVm {
    config: RiscvConfig,
    mem: GuestMemory,
    /// The boot hart, ready to enter the guest (set by `load`).
    boot: Option<Hart>,
    timebase: u64,
    devices: super::devices::Devices,
    /// `--trace`, opened here (outside the jail); the guest thread borrows it for a run.
    trace: Option<common::trace::Tracer>,
    /// `--mem-file`: the file behind guest RAM.
    mem_file: Option<common::mem_file::MemFile>,
}

/// The ecall-trap mechanism that is actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Sud,
    Seccomp,
}

impl UrvirtVm {
    pub fn new(config: RiscvConfig) -> Result<Self> {
        let mem_file =
            config.vm.mem_file.as_ref().map(|m| common::mem_file::open(m, config.vm.mem_size)).transpose()?;
        let mem = GuestMemory::with_file(config.vm.mem_size, mem_file.as_ref())?;
        let trace = config.vm.trace.as_ref().map(common::trace::Tracer::create).transpose()?;
        memory::check_device_windows(&mem, &crate::layout::device_windows(crate::layout::VIRTIO_SLOTS))?;
        let mut devices = super::devices::Devices::new(&config.vm.console)?;
        devices.add_disks(&config.vm.disks, (mem.memfd_fd(), mem.size), config.vm.jail)?;
        let timebase = fdt::host_timebase_frequency() as u64;
        Ok(UrvirtVm { config, mem, boot: None, timebase, devices, trace, mem_file })
    }

    /// Guest RAM, for the benchmarks, while the guest is not running.
    pub(crate) fn ram(&mut self) -> &mut [u8] {
        // SAFETY: the guest is not running and `&mut self` makes this the only view.
        unsafe { self.mem.bytes() }
    }

    /// Swaps the tracer for the next runs (the benchmark's trace on/off rounds on one VM).
    pub(crate) fn swap_trace(&mut self, trace: Option<common::trace::Tracer>) -> Option<common::trace::Tracer> {
        std::mem::replace(&mut self.trace, trace)
    }

    pub(crate) fn flush_icache(&self) {
        self.mem.flush_icache();
    }

    /// Makes every guest ecall trap, as the configuration asks.
    pub(crate) fn trap_ecalls(&self) -> Result<Mechanism> {
        let ram = (self.mem.base, self.mem.base + self.mem.size);
        let code = memory::code_range_of(signals::entry_address())
            .ok_or_else(|| Error::bad_input("cannot find the monitor's code in /proc/self/maps"))?;
        match self.config.ecall_trap {
            EcallTrap::Sud => sud::enable(code.0, code.1).map(|_| Mechanism::Sud).map_err(|e| sud::unavailable(&e)),
            EcallTrap::Seccomp => seccomp::install(ram.0, ram.1).map(|_| Mechanism::Seccomp),
            EcallTrap::Auto => match sud::enable(code.0, code.1) {
                Ok(()) => Ok(Mechanism::Sud),
                Err(_) => seccomp::install(ram.0, ram.1).map(|_| Mechanism::Seccomp),
            },
        }
    }
}

fn host_err(what: &str, e: std::io::Error) -> Error {
    Error::bad_input(format!("{what}: {e}"))
}

impl VirtualMachine for UrvirtVm {
    fn load(&mut self, image: &Image) -> Result<()> {
        let fdt_addr = fdt::fdt_address(self.mem.base, self.mem.size);
        let kernel = loader::parse(image, fdt_addr, self.mem.size)?;
        let blob = fdt::build(&fdt::FdtParams {
            mem_base: RAM_BASE,
            mem_size: self.mem.size,
            timebase_frequency: self.timebase as u32,
            bootargs: BOOTARGS.into(),
            virtio_slots: self.config.vm.disks.len(),
        })?;
        self.mem.load(&kernel, fdt_addr, &blob);
        let mut hart = Hart::new(kernel.entry);
        hart.x[10] = 0; // hart id
        hart.x[11] = fdt_addr;
        if std::path::Path::new(crate::lab::MONITOR_ECALL_FILE).exists() {
            // Test hook: monitor code just before an `ecall` (our signal-return stub), for the
            // jail test's guest; the dynamically linked monitor lies wherever the kernel put it.
            hart.x[12] = super::signals::entry_address();
        }
        self.boot = Some(hart);
        Ok(())
    }

    fn run(&mut self) -> Result<Outcome> {
        let hart = self.boot.take().ok_or_else(|| Error::bad_input("URVirt: run() before load()"))?;
        // The calling thread never runs guest code: a SIGALRM for it (a process-directed one,
        // Ctrl-A x after the run) stays pending instead of meeting the default "Alarm clock".
        signals::mask(libc::SIG_BLOCK, &[libc::SIGALRM, signals::ENTER_SIGNAL]);
        // The guest runs on a thread of its own, made for this run: the seccomp filters it
        // takes on (the ecall trap, the jail) end with it, and the caller stays free of them.
        let trace = self.trace.take();
        let ran = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("urvirt-guest".into())
                .spawn_scoped(s, || self.run_on_guest_thread(hart, trace))
                .map_err(|e| host_err("cannot start the guest thread", e))?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        let (exit, mut stats, mechanism, wall, trace) = ran;
        // Back on this thread, outside the jail (closing a file is not in it), kept for
        // another run (the benchmark's).
        self.trace = trace;
        if let Some(t) = self.trace.as_mut() {
            t.finish_or_warn();
        }
        if let Some(m) = &self.mem_file {
            m.sync();
        }
        if !self.config.stats {
            // The notes below read /proc/self/maps and smaps: only when --stats asked for them.
            return Ok(Outcome { exit, stats });
        }
        stats.notes.push(format!(
            "urvirt: ecall trap {}, timebase {} Hz, {:.3} s in the guest",
            match mechanism {
                Mechanism::Sud => "syscall user dispatch",
                Mechanism::Seccomp => "seccomp filter",
            },
            self.timebase,
            wall.as_secs_f64()
        ));
        let visible = memory::host_mappings_in_window(&self.mem);
        if !visible.is_empty() {
            stats.notes.push(format!(
                "urvirt: host mappings the guest can reach below 4 GiB (not in its device tree): {}",
                visible.join(", ")
            ));
        }
        if let Some(rss) = common::stats::rss_excluding(&[self.mem.base, self.mem.view]) {
            stats.notes.push(format!("urvirt: monitor resident memory {} KiB", rss / 1024));
        }
        Ok(Outcome { exit, stats })
    }
}

/// What a guest thread hands back: how the guest ended, its trap statistics, the ecall trap
/// used, the time spent in the guest and the tracer (handed back to be closed outside the jail).
type GuestRun = (GuestExit, Stats, Mechanism, Duration, Option<common::trace::Tracer>);

impl UrvirtVm {
    /// One run, on the thread that runs the guest (see [`VirtualMachine::run`]).
    fn run_on_guest_thread(&self, hart: Hart, trace: Option<common::trace::Tracer>) -> Result<GuestRun> {
        let guest_timer = HostTimer::for_this_thread()?;
        let timeout_timer = HostTimer::for_this_thread()?;
        let mut st = Box::new(RunState {
            hart,
            ram_base: self.mem.base,
            ram_size: self.mem.size,
            ram_view: self.mem.view,
            paging: super::paging::Paging::new(
                self.mem.memfd(),
                self.mem.base,
                self.mem.size,
                self.mem.reserved_ranges(),
            ),
            last_raw: 0,
            console: self.config.vm.console.clone(),
            stats: crate::teach::new_stats(),
            monitor: super::context::SavedRegs::zeroed(),
            in_guest: false,
            exit: None,
            timeout: None,
            guest_timer,
            armed_deadline: u64::MAX,
            timebase: self.timebase,
            stuck: Default::default(),
            devices: self.devices.clone(),
            debug: Default::default(),
            trace,
            started: Instant::now(),
        });
        let _alt = AltStack::install().map_err(|e| host_err("cannot set up the signal stack", e))?;
        let handlers = Handlers::install().map_err(|e| host_err("cannot install signal handlers", e))?;
        signals::capture_monitor_registers();
        // Console input starts here, outside any handler. Before the ecall trap, so the reader
        // thread inherits no seccomp filter (both mechanisms only catch guest-RAM ecalls anyway).
        input::QUIT.store(false, Ordering::SeqCst);
        // The reader thread inherits this thread's mask: with our signals blocked there, a
        // process-directed SIGALRM can only land on this thread.
        signals::block_handled();
        input::start_input(&self.config.vm.console, &self.devices.uart);
        signals::mask(libc::SIG_UNBLOCK, &signals::HANDLED);
        // This thread is about to run guest code: the console's terminal-restoring handlers
        // must run on the reader thread instead, never on the guest's stack and registers.
        common::console::keep_fatal_signals_off_this_thread();
        // --gdb: listen (and with --gdb-wait accept) and start the watcher, before the jail.
        let mut gdb = match &self.config.vm.gdb {
            Some(config) => Some(crate::gdb::engine::prepare(config, self.config.vm.jail)?),
            None => None,
        };
        let mechanism = self.trap_ecalls()?;
        st.paging.exec_outside_ram = mechanism == Mechanism::Sud;
        let started = Instant::now();
        st.started = started;
        let host_before = crate::teach::host_counters();
        // A --timeout too large to add to the clock means no timeout (never a panic).
        st.timeout = self.config.vm.timeout.and_then(|t| Some((config::deadline(started, t)?, t)));
        if let Some(t) = st.trace.as_mut() {
            t.restart_clock();
        }
        run::set_state(&mut *st);
        timeout_timer.arm(st.timeout.map(|(_, t)| t));
        // Test hook, read here because a handler may not look at files.
        run::JAIL_PROBE.store(std::path::Path::new(crate::lab::JAIL_PROBE_FILE).exists(), Ordering::SeqCst);
        if self.config.vm.jail {
            // From here on this thread may make only the monitor's own calls (see jail.rs).
            super::jail::apply(gdb.is_some())?;
        }
        compiler_fence(Ordering::SeqCst);
        // The guest runs inside this call, until a handler puts the monitor back.
        match gdb.as_mut() {
            Some(gdb) => crate::gdb::engine::run(gdb, &mut st),
            None => signals::enter_guest(),
        }
        compiler_fence(Ordering::SeqCst);
        run::set_state(std::ptr::null_mut());
        input::stop_input();
        st.paging.finish();
        timeout_timer.arm(None);
        st.guest_timer.arm(None);
        // A SIGALRM still on its way stays pending once our handlers are gone.
        signals::mask(libc::SIG_BLOCK, &[libc::SIGALRM]);
        if mechanism == Mechanism::Sud {
            sud::disable();
        }
        drop(handlers);
        let wall = started.elapsed();
        let exit =
            st.exit.take().unwrap_or_else(|| GuestExit::Failed("URVirt: the guest ended without a reason".into()));
        if self.config.stats {
            paging_notes(&st.paging, &mut st.stats);
            st.stats.notes.push(crate::teach::host_note(host_before, crate::teach::host_counters()));
        }
        if let Some(t) = st.trace.as_mut() {
            t.flush();
        }
        Ok((exit, std::mem::take(&mut st.stats), mechanism, wall, st.trace.take()))
    }
}

/// The Sv39 lines of `--stats`: the software TLB's work and what was interpreted.
fn paging_notes(paging: &super::paging::Paging, stats: &mut Stats) {
    let c = paging.tlb.counts;
    if c.fills > 0 || paging.interpreted > 0 {
        stats.notes.push(format!(
            "urvirt: sv39 tlb fills {}, flushes {}, pages dropped {}, mode/SUM/MXR switches {}; instructions interpreted {}, traps among them {} from u-mode and {} from s-mode; host mapping errors {}",
            c.fills,
            c.flushes,
            c.dropped,
            c.reprotected,
            paging.interpreted,
            paging.interpreted_traps[1],
            paging.interpreted_traps[0],
            paging.host_errors()
        ));
    }
    if paging.foreign_lower_half > 0 {
        stats.notes.push(format!(
            "urvirt: the guest used lower-half pages this host keeps for the monitor {} times (interpreted, never mapped; a native access there would reach monitor memory): build the riscv64 vmm as a PIE and run on an Sv48/Sv57 host",
            paging.foreign_lower_half
        ));
    }
}
