//! One KVM virtual machine with one vCPU: set-up, loading, and the run loop that turns
//! KVM_RUN exits into device accesses (through exits.rs) and, at the end, an Outcome.
//!
//! The run loop runs on a vCPU thread of its own, under its seccomp jail (jail.rs), with the
//! console input thread beside it; the main thread waits, then reads the diagnostics and
//! --stats notes (registers, guest memory, /proc) outside the jail.
use crate::config::{EntryMode, X86Config};
use crate::diag::{self, CodeView};
use crate::exits::{self, Action, Applied, Devices, Exit, Failure};
use crate::watchdog::{self, Kicker, Watchdog};
use crate::{disks, info, jail, kvm, linux, memory, modes, teach};
use common::bus::{Bus, DeviceRequest};
use common::devices::debug_port::{BOCHS_PORT, HELLO_PORT};
use common::devices::DebugPort;
use common::image::Image;
use common::stats::{rss_excluding, Stats};
use common::vm::{GuestExit, Outcome, VirtualMachine};
use common::{Error, Result};
use kvm_bindings::kvm_run;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where hello32/hello64 leave their result, as kvm-hello-world does.
pub const RESULT_ADDR: u64 = 0x400;
/// KVM needs three pages of guest-physical space for the real-mode TSS on Intel without
/// unrestricted guest; put them just below 4 GiB, where no RAM is.
const TSS_ADDR: usize = 0xfffb_d000;
/// The bus name of the debug port 0xf1 the hello guests print through (--stats shows its rows).
pub const HELLO_DEVICE: &str = "debug-0xf1";

/// How the run loop ended when the guest failed: a finished line, or a failure whose line
/// needs the vCPU state (read once the loop no longer borrows the vCPU).
enum Pending {
    Message(String),
    Failure(Failure),
}

/// What was loaded, which decides how the end of a run is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loaded {
    Flat(EntryMode),
    Linux,
}

pub struct X86Vm {
    // Field order is drop order: the vCPU and VM go before the memory KVM maps.
    vcpu: Option<VcpuFd>,
    vm: VmFd,
    kvm: Kvm,
    mem: GuestMemoryMmap,
    devices: Devices,
    config: X86Config,
    loaded: Option<Loaded>,
    /// Where console input goes (the Linux UART); None for flat guests.
    input: Option<linux::InputSink>,
    /// `--trace`: opened here, outside the jail; None when off.
    trace: Option<common::trace::Tracer>,
    /// `--mem-file`: the file behind guest RAM (kept open while the RAM is mapped).
    mem_file: Option<common::mem_file::MemFile>,
    /// Linux's UART THR writes queued by KVM while they cannot be seen (coalesced.rs); None for
    /// flat guests and where KVM cannot queue port writes.
    queued_thr: Option<crate::coalesced::QueuedThr>,
    /// The mark port's ids (teach.rs); the port is on flat guests' buses only (Linux never
    /// writes it, and the strict bus should not hide a stray access to port 0xf2).
    marks: teach::MarkHandle,
}

impl X86Vm {
    /// Opens KVM, creates the VM and its RAM and puts the debug console on the PIO bus. The
    /// vCPU is created in `load`, once we know whether a Linux irqchip must come first.
    pub fn new(config: X86Config) -> Result<X86Vm> {
        let kvm = kvm::open()?;
        let vm = kvm.create_vm().map_err(|e| kvm::setup_error("KVM_CREATE_VM", e))?;
        vm.set_tss_address(TSS_ADDR).map_err(|e| kvm::setup_error("KVM_SET_TSS_ADDR", e))?;
        let mem_file =
            config.vm.mem_file.as_ref().map(|m| common::mem_file::open(m, config.vm.mem_size)).transpose()?;
        let mem = memory::create_backed(&vm, config.vm.mem_size, mem_file.as_ref())?;
        let trace = config.vm.trace.as_ref().map(common::trace::Tracer::create).transpose()?;
        let mut pio = Bus::new();
        for (port, name) in [(HELLO_PORT, HELLO_DEVICE), (BOCHS_PORT, "debug-0xe9")] {
            let dev = Arc::new(Mutex::new(DebugPort::new(config.vm.console.clone())));
            pio.insert(port, 1, name, dev).map_err(|e| Error::bad_input(format!("PIO bus: {e}")))?;
        }
        let devices = Devices { pio, mmio: Bus::new(), strict: true };
        Ok(X86Vm {
            vcpu: None,
            vm,
            kvm,
            mem,
            devices,
            config,
            loaded: None,
            input: None,
            trace,
            mem_file,
            queued_thr: None,
            marks: teach::MarkHandle::default(),
        })
    }

    fn create_vcpu(&self) -> Result<VcpuFd> {
        self.vm.create_vcpu(0).map_err(|e| kvm::setup_error("KVM_CREATE_VCPU", e))
    }

    /// Guest RAM, e.g. for a benchmark guest's results after the run.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The CPU state for diagnostics; a failed ioctl gives an empty view rather than hiding the
    /// real error behind it.
    fn code_view(vcpu: &VcpuFd) -> CodeView {
        match (vcpu.get_regs(), vcpu.get_sregs()) {
            (Ok(r), Ok(s)) => CodeView::new(&r, &s),
            _ => CodeView::default(),
        }
    }

    /// The instruction bytes at CS:RIP and their guest physical address.
    fn code_at(&self, view: &CodeView) -> (Option<u64>, Vec<u8>) {
        let read_u64 = |a: u64| self.mem.read_obj::<u64>(GuestAddress(a)).ok();
        let read_u8 = |a: u64| self.mem.read_obj::<u8>(GuestAddress(a)).ok();
        (view.code_address(&read_u64), view.read_bytes(&read_u64, &read_u8))
    }

    /// The one line for a guest that cannot go on.
    fn failure_message(&mut self, failure: Failure) -> String {
        let Some(vcpu) = self.vcpu.as_mut() else { return "no vCPU".into() };
        let view = Self::code_view(vcpu);
        match failure {
            // On SVM the vCPU is already reset by then; diag tells that state from a fault site.
            Failure::TripleFault => diag::triple_fault_message(&view, |v| self.code_at(v)),
            Failure::InternalError => {
                // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                // union member the kernel filled in.
                let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                let (phys, bytes) = self.code_at(&view);
                let message = diag::internal_error_message(suberror, &view, phys, &bytes);
                if suberror == diag::EMULATION_FAILURE && self.loaded == Some(Loaded::Linux) && info::is_pvm_host() {
                    format!("{message}; {}", diag::LAB_HINT)
                } else {
                    message
                }
            }
            Failure::FailEntry { reason, cpu } => diag::fail_entry_message(reason, cpu, &view),
            Failure::Unhandled(kind) => format!("unhandled KVM exit '{kind}' at RIP={:#x}", view.rip),
        }
    }

    /// Starts console input: Linux gets keys on its UART; a flat guest takes none (keys are
    /// dropped), but on a terminal Ctrl-A x still ends its run. Ctrl-A x sets `quit` and
    /// kicks the vCPU, so the run ends through the normal path. A capture console (tests,
    /// benchmarks) reads nothing.
    fn start_console(&mut self, quit: &Arc<AtomicBool>, kicker: &Kicker) -> Result<()> {
        let console = &self.config.vm.console;
        if console.is_capture() {
            return Ok(());
        }
        let in_lab = std::env::var_os(lab::keys::ENV).is_some();
        let sink = self.input.take().unwrap_or_else(|| Box::new(|_: &[u8]| {}));
        let (quit, kicker) = (quit.clone(), kicker.clone());
        let on_quit = move || {
            quit.store(true, Ordering::SeqCst);
            kicker.kick();
        };
        let jail = self.config.vm.jail.then_some(("console", jail::CONSOLE));
        if !in_lab {
            return console.start_input_jailed(sink, on_quit, jail);
        }
        // Inside the x86 lab host: the outer vmm sends the user's keys escaped and Ctrl-A x
        // in band, so that this vmm ends the run itself and reports its exit.
        let (mut sink, mut on_quit, mut keys) = (sink, Some(on_quit), common::console::EscapeState::default());
        let unescaping = move |bytes: &[u8]| {
            let (bytes, quit) = keys.feed(bytes);
            sink(&bytes);
            if quit {
                if let Some(q) = on_quit.take() {
                    q();
                }
            }
        };
        console.start_input_jailed(unescaping, || {}, jail)
    }

    /// Runs the guest on a thread of its own (the vCPU thread, which the jail confines), so
    /// this thread can report afterwards without the jail: registers, memory, RSS.
    fn run_vcpu(&mut self, stats: &mut Stats) -> Result<GuestExit> {
        if self.vcpu.is_none() {
            return Err(Error::bad_input("no image loaded"));
        }
        let quit = Arc::new(AtomicBool::new(false));
        let kicker = Kicker::default();
        // The reporter goes first: the console thread is jailed as it starts.
        if self.config.vm.jail {
            common::jail::install_reporter()?;
        }
        self.start_console(&quit, &kicker)?;
        let gdb =
            self.config.vm.gdb.map(|g| crate::gdb::start(&g, &self.mem, &kicker, self.config.vm.jail)).transpose()?;
        let cx = RunContext {
            vm: &self.vm,
            devices: &self.devices,
            timeout: self.config.vm.timeout,
            kicker: &kicker,
            quit: &quit,
            jail: self.config.vm.jail,
        };
        let vcpu = self.vcpu.as_mut().ok_or_else(|| Error::bad_input("no image loaded"))?;
        let trace = &mut self.trace;
        let queued_thr = &mut self.queued_thr;
        let mut marks = teach::MarkRecorder::start(self.marks.clone(), &self.kvm, vcpu, stats, self.config.stats)?;
        let ending = std::thread::scope(|s| {
            let thread = std::thread::Builder::new()
                .name("vcpu".into())
                .spawn_scoped(s, || run_loop(vcpu, &cx, stats, gdb, trace, queued_thr, &mut marks))
                .map_err(|e| {
                    Error::bad_input(format!("cannot start the vCPU thread: {}", common::image::io_reason(&e)))
                })?;
            // A panic on the vCPU thread stays a panic (the hook has restored the terminal).
            thread.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?;
        if self.config.stats {
            stats.notes.extend(marks.notes());
            stats.notes.extend(self.queued_thr.as_ref().map(|q| q.note()));
        }
        Ok(match ending {
            Ok(exit) => exit,
            Err(Pending::Message(m)) => GuestExit::Failed(m),
            Err(Pending::Failure(f)) => GuestExit::Failed(self.failure_message(f)),
        })
    }

    /// Notes for --stats: the final registers and result word of a flat guest, and what the
    /// monitor itself costs in memory.
    fn notes(&self, stats: &mut Stats) {
        if !self.config.stats {
            return;
        }
        if let (Some(Loaded::Flat(_)), Some(vcpu)) = (self.loaded, self.vcpu.as_ref()) {
            if Self::code_view(vcpu).is_reset_state() {
                stats.notes.push("final state: lost (KVM reset the vCPU on shutdown)".into());
            } else if let Ok(regs) = vcpu.get_regs() {
                let result = self.mem.read_obj::<u32>(GuestAddress(RESULT_ADDR)).unwrap_or(0);
                stats.notes.push(format!(
                    "final state: RIP={:#x} RAX={:#x} mem[{RESULT_ADDR:#x}]={result}",
                    regs.rip, regs.rax
                ));
            }
        }
        let guest_ram = memory::host_address(&self.mem);
        if let Some(rss) = rss_excluding(&[guest_ram]) {
            stats.notes.push(format!("monitor RSS (excluding guest RAM): {} KiB", rss / 1024));
        }
    }
}

/// What the run loop needs besides the vCPU; shared with the vCPU thread.
struct RunContext<'a> {
    /// For the UART's queued writes' (un)registering.
    vm: &'a VmFd,
    devices: &'a Devices,
    timeout: Option<Duration>,
    kicker: &'a Kicker,
    /// Set by Ctrl-A x (before it kicks).
    quit: &'a AtomicBool,
    jail: bool,
}

/// The vCPU thread: puts itself in reach of kicks and under its jail, then runs KVM_RUN until
/// the guest stops; every exit is counted in `stats` with its handling time, from KVM_RUN's
/// return to the next KVM_RUN. Errors are set-up failures (watchdog, jail).
fn run_loop(
    vcpu: &mut VcpuFd,
    cx: &RunContext<'_>,
    stats: &mut Stats,
    gdb: Option<crate::gdb::GdbLink>,
    trace: &mut Option<common::trace::Tracer>,
    queued_thr: &mut Option<crate::coalesced::QueuedThr>,
    marks: &mut teach::MarkRecorder,
) -> Result<std::result::Result<GuestExit, Pending>> {
    let run: *mut kvm_run = vcpu.get_kvm_run();
    let _armed = cx.kicker.arm(run);
    // SIGTERM and friends restore the terminal in a handler: let it run on the main thread.
    common::console::keep_fatal_signals_off_this_thread();
    let watchdog = cx.timeout.map(|t| Watchdog::start(t, cx.kicker.clone())).transpose()?;
    let probe = common::console::jail_probe_requested("vcpu");
    if cx.jail {
        let (calls, ioctls) = crate::gdb::jail_lists(gdb.is_some(), marks.counting(), queued_thr.is_some());
        common::jail::apply_with_ioctls("vcpu", &calls, &ioctls)?;
    }
    let mut gdb = gdb.map(crate::gdb::Debugger::new);
    if probe {
        common::console::jail_probe();
    }
    // The exit being handled: its kind, the device that handled it ("" if none), when KVM_RUN returned.
    let mut pending: Option<(&'static str, &'static str, Instant)> = None;
    if let Some(t) = trace.as_mut() {
        t.restart_clock();
    }
    marks.restart_clock();
    // Counts (and with --trace, traces) the exit being handled; when off, one branch.
    let mut note =
        |stats: &mut Stats, kind, device, returned| crate::trace::note(stats, trace, run, kind, device, returned);
    let ending = loop {
        if let Some((kind, device, returned)) = pending.take() {
            note(stats, kind, device, returned);
        }
        // Ctrl-A x before this thread was armed could not kick it: look before entering.
        if cx.quit.load(Ordering::SeqCst) {
            break Ok(GuestExit::UserQuit);
        }
        // gdb: a stopped guest waits here until gdb resumes it (or kills it).
        if let Some(exit) = gdb.as_mut().and_then(|g| g.before_run(vcpu)) {
            break Ok(exit);
        }
        let result = vcpu.run();
        let returned = Instant::now();
        // The UART writes KVM queued come before this exit, whatever it is.
        if let Some(q) = queued_thr.as_mut() {
            q.replay(cx.devices);
        }
        let (mut kind, action) = match result {
            Ok(exit) => {
                // SAFETY: `run` is this vCPU's kvm_run mapping, alive as long as `vcpu`;
                // `io` is plain bytes (meaningful only for an I/O exit, the only one that
                // uses it) in the header, apart from the data area the exit borrows.
                let io_size = unsafe { std::ptr::addr_of!((*run).__bindgen_anon_1.io.size).read_volatile() };
                exits::dispatch(exits::from_kvm(exit, io_size))
            }
            Err(e) if e.errno() == libc::EINTR => exits::dispatch(Exit::Interrupted),
            Err(e) => {
                stats.record("run-error", returned.elapsed());
                let why = common::image::io_reason(&std::io::Error::from_raw_os_error(e.errno()));
                break Err(Pending::Message(format!("KVM_RUN failed: {why}")));
            }
        };
        let mut device = "";
        let step = match action {
            Action::Resume => Ok(None),
            // A kick may come from gdb's watcher (Ctrl-C, a new connection): gdb looks first.
            Action::CheckTimeout => match (gdb.as_mut().and_then(|g| g.on_kick(vcpu)), &watchdog) {
                (Some(exit), _) => Ok(Some(exit)),
                (None, Some(w)) if w.fired() => {
                    Ok(Some(GuestExit::Failed(watchdog::timeout_message(cx.timeout.unwrap_or_default()))))
                }
                _ => Ok(None),
            },
            Action::Stop(exit) => Ok(Some(exit)),
            Action::Debug { exception, dr6 } => match gdb.as_mut() {
                Some(g) => Ok(g.on_debug_exit(vcpu, exception, dr6)),
                None => Err(Failure::Unhandled("debug")),
            },
            Action::Fail(f) => Err(f),
            io => match (io.pio_write_port(), exits::apply(io, cx.devices)) {
                (port, Applied::Done { device: d }) => {
                    device = d;
                    marks.after_exit(d, stats);
                    // An IER or MCR write may start or stop the UART's queue.
                    let mut step = Ok(None);
                    if let (Some(port), Some(q)) = (port, queued_thr.as_mut()) {
                        if let Err(e) = q.follow(cx.vm, port) {
                            step = Ok(Some(GuestExit::Failed(e.message)));
                        }
                    }
                    step
                }
                (_, Applied::Request { device: d, request: DeviceRequest::PowerOff(code) }) => {
                    device = d;
                    Ok(Some(GuestExit::PowerOff(code)))
                }
                (_, Applied::Ignored(k)) => {
                    kind = k;
                    Ok(None)
                }
                (_, Applied::Unknown(u)) => {
                    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    Ok(Some(GuestExit::Failed(exits::unknown_access_message(&u, rip))))
                }
            },
        };
        // Ctrl-A x sets the flag, then kicks: the exit the kick causes (or any other) ends here.
        let step = match step {
            Ok(None) if cx.quit.load(Ordering::SeqCst) => Ok(Some(GuestExit::UserQuit)),
            other => other,
        };
        match step {
            Ok(None) => pending = Some((kind, device, returned)),
            Ok(Some(exit)) => {
                note(stats, kind, device, returned);
                break Ok(exit);
            }
            Err(f) => {
                note(stats, kind, device, returned);
                break Err(Pending::Failure(f));
            }
        }
    };
    if let Some(g) = gdb.as_mut() {
        g.finish(vcpu, ending.as_ref().unwrap_or(&GuestExit::Failed(String::new())));
    }
    // The watchdog goes before the guard disarms the kicker it holds.
    drop(watchdog);
    Ok(ending)
}

impl VirtualMachine for X86Vm {
    fn load(&mut self, image: &Image) -> Result<()> {
        if self.vcpu.is_some() {
            return Err(Error::bad_input("this VM already has an image loaded"));
        }
        if linux::is_linux_kernel(&image.bytes) {
            if self.config.mode.is_some() || self.config.lab_devices {
                let flag = if self.config.lab_devices { "--lab-devices" } else { "--mode" };
                return Err(Error::bad_input(format!(
                    "{flag} applies to flat binaries; {} is a Linux kernel, which picks its own entry and devices",
                    image.path.display()
                )));
            }
            // The in-kernel irqchip must exist before the vCPU, so Linux set-up comes first.
            let linux_devices = linux::setup_vm(&self.vm, &mut self.devices.pio, &self.config.vm.console)?;
            self.input = Some(linux_devices.input);
            let announce = disks::attach(Some(&self.vm), &mut self.devices.mmio, &self.mem, &self.config.vm)?;
            let vcpu = self.create_vcpu()?;
            self.queued_thr = crate::coalesced::QueuedThr::new(&self.kvm, &self.vm, &vcpu, linux_devices.serial)?;
            linux::load(&self.vm, &vcpu, &self.kvm, &self.mem, image, &self.config.linux, &announce)?;
            self.vcpu = Some(vcpu);
            // Linux probes ports that do not exist: count those, do not fail.
            self.devices.strict = false;
            self.loaded = Some(Loaded::Linux);
            return Ok(());
        }
        // Linux options on a flat binary would be silently ignored: refuse them instead.
        let linux_opts = &self.config.linux;
        if linux_opts.initrd.is_some() || linux_opts.cmdline.is_some() {
            return Err(Error::bad_input(format!(
                "--initrd and --kernel-cmdline apply to Linux kernels (bzImage or ELF vmlinux); {} is a flat binary",
                image.path.display()
            )));
        }
        disks::attach(None, &mut self.devices.mmio, &self.mem, &self.config.vm)?;
        self.marks = teach::attach_mark_port(&mut self.devices)?;
        if self.config.lab_devices {
            // The irqchip must exist before the vCPU.
            teach::attach_lab_devices(&self.vm, &mut self.devices)?;
        }
        let vcpu = self.create_vcpu()?;
        let mut sregs = vcpu.get_sregs().map_err(|e| kvm::setup_error("KVM_GET_SREGS", e))?;
        let mode = self.config.mode.unwrap_or_default();
        let regs = modes::load_flat(&self.mem, image, mode, self.config.vm.mem_size, &mut sregs)?;
        modes::set_flat_cpuid(&self.kvm, &vcpu, mode)?;
        vcpu.set_sregs(&sregs).map_err(|e| kvm::setup_error("KVM_SET_SREGS", e))?;
        vcpu.set_regs(&regs).map_err(|e| kvm::setup_error("KVM_SET_REGS", e))?;
        self.vcpu = Some(vcpu);
        self.loaded = Some(Loaded::Flat(mode));
        Ok(())
    }

    fn run(&mut self) -> Result<Outcome> {
        let mut stats = Stats::new();
        let exit = self.run_vcpu(&mut stats)?;
        if let Some(t) = self.trace.as_mut() {
            t.finish_or_warn();
        }
        // Inside a lab host the file is a block device: its page cache must reach the disk.
        if let Some(m) = &self.mem_file {
            m.sync();
        }
        self.notes(&mut stats);
        Ok(Outcome { exit, stats })
    }
}
