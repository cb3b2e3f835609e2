//! What happens inside the signal handlers while a guest runs.
//!
//! One [`RunState`] per run, reachable from the handlers through a static pointer. A handler
//! copies the guest registers out of the ucontext, asks the pure code in [`crate::hart`] what
//! to do, writes the result back and returns: the kernel then resumes the guest at the edited
//! pc. When the guest ends, the handler writes the saved monitor registers instead, so the
//! kernel resumes the monitor inside [`super::signals::enter_guest`].
//!
//! Allocation in a handler: a handler does real work only while `in_guest` is set, so the
//! code it interrupted on this thread is guest code, never the monitor's allocator, and the
//! other threads (console input) take the allocator's own locks as usual. Still, the common
//! paths do not allocate: SBI console I/O moves bytes straight between guest RAM and the
//! console. What does allocate: a statistics kind seen for the first time, and the one-line
//! message of a run that ends in failure.
//!
//! Console input is started by [`start_input`] before the guest is entered, never from a
//! handler (it spawns a thread and may put the terminal in raw mode).
use super::context::{self, SavedRegs};
use super::input::{take_input, QUIT};
use super::paging::Paging;
use super::signals;
use super::sud;
use super::timer::{self, HostTimer};
use crate::guest_timer::{self, Rearm};
use crate::hart::{self, Access, Action, Handled, Hart, Mode};
use crate::mmu::Regime;
use crate::platform::{GuestRam, Platform};
use crate::stuck::StuckDetector;
use common::bus::Bus;
use common::console::Console;
use common::stats::Stats;
use common::vm::GuestExit;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::{Duration, Instant};

const SYS_SECCOMP: i32 = 1;
const SYS_USER_DISPATCH: i32 = 2;
/// The statistics kind of a SIGTRAP at one of the debugger's breakpoints.
pub(crate) const GDB_TRAP: &str = "sigtrap gdb breakpoint";
/// The longest a `wfi` sleeps before letting the guest look around again.
const WFI_MAX_SLEEP: Duration = Duration::from_millis(10);

pub struct RunState {
    pub hart: Hart,
    pub ram_base: u64,
    pub ram_size: u64,
    /// Where the monitor sees guest RAM (not a guest address).
    pub ram_view: u64,
    /// Sv39: the software TLB and the interpreter for what cannot run natively.
    pub paging: Paging,
    /// The instruction a SIGILL emulated (for sfence.vma), 0 otherwise.
    pub last_raw: u32,
    pub console: Console,
    pub stats: Stats,
    /// The monitor's registers at the moment it entered the guest.
    pub monitor: SavedRegs,
    pub in_guest: bool,
    pub exit: Option<GuestExit>,
    /// When `--timeout` runs out, and the value the user gave (for the message).
    pub timeout: Option<(Instant, Duration)>,
    pub guest_timer: HostTimer,
    pub armed_deadline: u64,
    pub timebase: u64,
    /// Counts a fault the guest retries without progress.
    pub stuck: StuckDetector,
    /// The device bus and the PLIC's output for this hart ([`super::devices`]).
    pub devices: super::devices::Devices,
    /// `--gdb`: breakpoints, steps and stops for the debugger ([`crate::gdb::engine`]).
    pub debug: crate::gdb::engine::Debug,
    /// `--trace`: None when off (then a trap pays one branch for it).
    pub trace: Option<common::trace::Tracer>,
    /// When the guest was first entered: marks are timed from here.
    pub started: Instant,
}

static STATE: AtomicPtr<RunState> = AtomicPtr::new(std::ptr::null_mut());
/// Test hook ([`crate::lab::JAIL_PROBE_FILE`]): the next SBI call's handler makes a call
/// outside the jail.
pub static JAIL_PROBE: AtomicBool = AtomicBool::new(false);

/// Makes `st` the state the handlers use (null: none).
pub fn set_state(st: *mut RunState) {
    STATE.store(st, Ordering::SeqCst);
}

/// The host side of the guest's world inside a handler.
pub(super) struct EnginePlatform<'a> {
    ram: GuestRam<'a>,
    console: &'a Console,
    devices: &'a Bus,
}

impl Platform for EnginePlatform<'_> {
    fn time(&mut self) -> u64 {
        timer::rdtime()
    }
    // U-mode may not read cycle/instret on Linux (scounteren); the guest gets the time
    // counter for both, which is monotonic and has the documented frequency.
    fn cycle(&mut self) -> u64 {
        timer::rdtime()
    }
    fn instret(&mut self) -> u64 {
        timer::rdtime()
    }
    fn console_write(&mut self, bytes: &[u8]) {
        self.console.write(bytes);
    }
    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        take_input(buf)
    }
    fn console_write_from_guest(&mut self, gpa: u64, len: usize) -> bool {
        match self.ram.slice_mut(gpa, len) {
            Some(bytes) => {
                self.console.write(bytes);
                true
            }
            None => false,
        }
    }
    fn console_read_into_guest(&mut self, gpa: u64, len: usize) -> Option<usize> {
        self.ram.slice_mut(gpa, len).map(take_input)
    }
    fn guest_ram(&mut self) -> GuestRam<'_> {
        GuestRam { base: self.ram.base, bytes: &mut *self.ram.bytes }
    }
    fn guest_phys(&mut self) -> (GuestRam<'_>, Option<&Bus>) {
        (GuestRam { base: self.ram.base, bytes: &mut *self.ram.bytes }, Some(self.devices))
    }
}

/// The platform over the monitor's view of RAM.
fn engine_platform<'a>(base: u64, view: u64, size: u64, console: &'a Console, devices: &'a Bus) -> EnginePlatform<'a> {
    // SAFETY: the guest is stopped in a handler, and the caller makes this the only view of
    // RAM for as long as the platform lives.
    let bytes = unsafe { std::slice::from_raw_parts_mut(view as *mut u8, size as usize) };
    EnginePlatform { ram: GuestRam { base, bytes }, console, devices }
}

impl RunState {
    /// Counts a trap of `kind` that began at `start`, and traces it when `--trace` is on
    /// (`traced` is Some exactly then).
    fn record(&mut self, kind: &'static str, start: Instant, traced: Option<crate::trace::Before>) {
        let spent = start.elapsed();
        self.stats.record(kind, spent);
        if let (Some(t), Some(b)) = (self.trace.as_mut(), traced) {
            crate::trace::after(t, &self.hart, kind, start, spent, b);
        }
    }

    /// What `--trace` needs to see of a trap before it is handled.
    fn trace_before(&mut self, sig: libc::c_int, info: *const libc::siginfo_t) -> crate::trace::Before {
        let raw = if sig == libc::SIGILL { self.fetch(self.hart.pc).unwrap_or(0) } else { 0 };
        // SAFETY: the kernel's siginfo for this signal; si_addr is read only for faults.
        let addr = if matches!(sig, libc::SIGSEGV | libc::SIGBUS) { (unsafe { (*info).si_addr() }) as u64 } else { 0 };
        crate::trace::before(sig, &self.hart, raw, addr)
    }

    fn in_ram(&self, addr: u64) -> bool {
        addr.wrapping_sub(self.ram_base) < self.ram_size
    }

    /// The instruction bytes at `pc` (4, or 2 for a compressed one at the very end of RAM).
    /// With Sv39 on, through the guest's translation and the monitor's view of RAM.
    fn fetch(&mut self, pc: u64) -> Option<u32> {
        if self.paging_on() {
            let regime = Regime::of(&self.hart);
            let (_, p) = self.platform();
            let mut bus = crate::vmem::Virt { ram: p.ram, devices: None, regime };
            return crate::interp::fetch(&Hart { pc, ..Hart::new(pc) }, &mut bus).ok().map(|(raw, _)| raw);
        }
        if !self.in_ram(pc) || !self.in_ram(pc + 1) {
            return None;
        }
        // SAFETY: pc and pc+1 are inside the RAM mapping (checked above).
        let low = unsafe { std::ptr::read_unaligned(pc as *const u16) } as u32;
        if crate::decode::insn_len(low as u16) == 2 || !self.in_ram(pc + 3) {
            return Some(low);
        }
        // SAFETY: pc..pc+4 is inside the RAM mapping (checked above).
        Some(unsafe { std::ptr::read_unaligned(pc as *const u32) })
    }

    fn paging_on(&self) -> bool {
        Regime::of(&self.hart).paging()
    }

    pub(super) fn platform(&mut self) -> (&mut Hart, EnginePlatform<'_>) {
        let p = engine_platform(self.ram_base, self.ram_view, self.ram_size, &self.console, &self.devices.bus);
        (&mut self.hart, p)
    }

    fn fail(&mut self, kind: &'static str, why: String) -> Handled {
        Handled { kind, action: Action::Fail(why) }
    }

    /// `wfi`: sleep until the timer deadline, the timeout or a short while, whichever is first.
    fn wait_for_interrupt(&mut self) {
        // Read before looking at SEIP, so an interrupt raised in between ends the wait at once.
        let seen = super::devices::wake_count();
        self.refresh_external();
        if crate::trap::wfi_should_wake(&self.hart) {
            return;
        }
        let mut nap = WFI_MAX_SLEEP;
        let deadline = self.hart.csrs.timer_deadline;
        if deadline != u64::MAX {
            nap = nap.min(timer::ticks_to_duration(deadline.saturating_sub(timer::rdtime()), self.timebase));
        }
        if let Some((at, _)) = self.timeout {
            nap = nap.min(at.saturating_duration_since(Instant::now()));
        }
        super::devices::wait(seen, nap);
    }

    /// Points the host timer at the guest's SBI deadline ([`crate::guest_timer::plan`]);
    /// `fired`: this trap is a SIGALRM, so the one-shot timer may have gone off early.
    fn rearm_guest_timer(&mut self, fired: bool) {
        let deadline = self.hart.csrs.timer_deadline;
        match guest_timer::plan(deadline, self.armed_deadline, timer::rdtime(), fired, self.timebase) {
            Rearm::Keep => return,
            Rearm::Disarm => self.guest_timer.arm(None),
            Rearm::After(d) => self.guest_timer.arm(Some(d)),
        }
        self.armed_deadline = deadline;
    }

    /// Why the run must end now although the guest did not ask: Ctrl-A x, or `--timeout`
    /// ran out. Checked at entry and after every trap, so a SIGALRM that came too early or
    /// too late to be seen still ends the run.
    fn forced_end(&self) -> Option<GuestExit> {
        if QUIT.load(Ordering::SeqCst) {
            return Some(GuestExit::UserQuit);
        }
        let (at, limit) = self.timeout?;
        (Instant::now() >= at).then(|| GuestExit::Failed(crate::config::timeout_message(limit)))
    }

    /// Feeds the stuck-guest detector: exceptions delivered to the guest (faults, illegal
    /// instructions, breakpoints) and where each `sret` goes. Returns the diagnostic if the
    /// guest keeps retrying the same fault.
    fn watch_progress(&mut self, sig: libc::c_int, pc: u64, handled: &Handled) -> Option<String> {
        if handled.action != Action::Resume {
            return None;
        }
        // A TLB fill or an interpreted access is not an exception the guest sees.
        let native_fault =
            matches!(handled.kind, "sigsegv tlb fill" | "sigsegv interpreted") || handled.kind.starts_with("mmio ");
        let exception =
            matches!(sig, libc::SIGSEGV | libc::SIGBUS | libc::SIGTRAP) && !native_fault && handled.kind != GDB_TRAP
                || handled.kind == "sigill illegal";
        if exception {
            return self.stuck.exception(pc, self.hart.csrs.scause, self.hart.csrs.stval);
        }
        if handled.kind == "sigill sret" {
            self.stuck.returned_to(self.hart.pc);
        }
        None
    }

    /// Handles one trap of the running guest; `hart` already holds its registers.
    fn handle(&mut self, sig: libc::c_int, info: *const libc::siginfo_t) -> Handled {
        let pc = self.hart.pc;
        match sig {
            libc::SIGILL => match self.fetch(pc) {
                Some(raw) => {
                    self.last_raw = raw;
                    let (hart, mut p) = self.platform();
                    hart::on_illegal(hart, raw, &mut p)
                }
                None => self
                    .fail("sigill", format!("guest executed an illegal instruction at pc {pc:#x}, outside guest RAM")),
            },
            libc::SIGSYS => {
                // SAFETY: the kernel passed a valid siginfo for this signal.
                let code = unsafe { (*info).si_code };
                if code != SYS_SECCOMP && code != SYS_USER_DISPATCH {
                    return Handled { kind: "sigsys foreign", action: Action::Resume };
                }
                let from = pc.wrapping_sub(4);
                if !(self.in_ram(from) || self.paging_on() && self.paging.native(from)) {
                    return self.fail("sigsys", format!("guest made a system call outside guest RAM at pc {pc:#x}"));
                }
                if JAIL_PROBE.swap(false, Ordering::SeqCst) {
                    common::console::jail_probe();
                }
                let (hart, mut p) = self.platform();
                hart::on_ecall(hart, &mut p)
            }
            libc::SIGSEGV | libc::SIGBUS => {
                // SAFETY: SIGSEGV/SIGBUS siginfo carries the faulting address.
                let addr = unsafe { (*info).si_addr() } as u64;
                // SAFETY: as above.
                let misaligned = sig == libc::SIGBUS && unsafe { (*info).si_code } == libc::BUS_ADRALN;
                if self.paging_on() && !misaligned {
                    return self.paged_fault(addr);
                }
                let fetch = addr == pc || !self.in_ram(pc);
                if !fetch && !misaligned && crate::layout::mmio_kind(addr) != "mmio unmapped" {
                    return self.mmio(addr);
                }
                let raw = if fetch { 0 } else { self.fetch(pc).unwrap_or(0) };
                hart::on_fault(&mut self.hart, addr, raw, fetch, misaligned)
            }
            libc::SIGTRAP if crate::gdb::engine::our_breakpoint(self, pc) => {
                Handled { kind: GDB_TRAP, action: Action::Resume }
            }
            libc::SIGTRAP => hart::on_breakpoint(&mut self.hart),
            _ => {
                // SIGALRM: the guest timer, the timeout, or Ctrl-A x (the last two are seen by
                // `forced_end` after this trap).
                Handled { kind: "sigalrm", action: Action::Resume }
            }
        }
    }
}

/// A seccomp SIGSYS that is not a guest ecall (made from guest RAM while the guest runs) is
/// the jail refusing a call made from monitor code.
///
/// # Safety
/// As for [`on_signal`]; `st` is STATE.
unsafe fn is_jail_violation(st: *const RunState, info: *const libc::siginfo_t, uc: *const libc::ucontext_t) -> bool {
    // SAFETY: the kernel's siginfo and ucontext for this SIGSYS.
    let (code, pc) = unsafe { ((*info).si_code, (*uc).uc_mcontext.__gregs[0]) };
    if code != SYS_SECCOMP {
        return false;
    }
    // SAFETY: the monitor keeps the RunState alive while the pointer is set.
    match unsafe { st.as_ref() } {
        Some(st) => !(st.in_guest && st.in_ram(pc.wrapping_sub(4))),
        None => true,
    }
}

impl RunState {
    /// A native access faulted with Sv39 on: fill the TLB, deliver the guest's page fault, or
    /// interpret what cannot run natively.
    fn paged_fault(&mut self, addr: u64) -> Handled {
        let pc = self.hart.pc;
        // A fetch faults at pc, or at the second half of an instruction that crosses a page.
        let access = if addr == pc || addr == pc.wrapping_add(2) && addr.is_multiple_of(crate::mmu::PAGE_SIZE) {
            Access::Fetch
        } else {
            match self.fetch(pc).map(crate::decode::access_of) {
                Some(crate::decode::MemAccess::Store) => Access::Store,
                _ => Access::Load,
            }
        };
        let mut p = engine_platform(self.ram_base, self.ram_view, self.ram_size, &self.console, &self.devices.bus);
        if let Some(h) = self.paging.on_fault(&mut self.hart, &mut p.guest_ram(), addr, access) {
            return h;
        }
        // Not mappable natively (or not with the rights this access needs): interpret the
        // faulting instruction, then whatever cannot run natively after it.
        if !self.paging.native(addr) || !self.paging.native(pc) {
            return self.interpret().unwrap_or(Handled { kind: "sigsegv interpreted", action: Action::Resume });
        }
        self.paging
            .step_one(&mut self.hart, &mut p)
            .unwrap_or(Handled { kind: "sigsegv interpreted", action: Action::Resume })
    }

    /// Runs the interpreter from the current pc if the guest cannot continue natively there.
    /// The guest never resumes at a pc that is not its own on this host: between interpreter
    /// budgets the timer, Ctrl-A x and --timeout are polled, as their signals would be.
    fn interpret(&mut self) -> Option<Handled> {
        if self.debug.stepping {
            // A debugger's single-step: at most one instruction, then the stop.
            if !self.paging_on() || self.paging.native(self.hart.pc) {
                return None;
            }
            let mut p = engine_platform(self.ram_base, self.ram_view, self.ram_size, &self.console, &self.devices.bus);
            let h = self.paging.step_one(&mut self.hart, &mut p).map(|h| self.gdb_ebreak(h));
            return Some(h.unwrap_or(Handled { kind: "sigsegv interpreted", action: Action::Resume }));
        }
        let mut last = None;
        loop {
            let mut p = engine_platform(self.ram_base, self.ram_view, self.ram_size, &self.console, &self.devices.bus);
            if let Some(h) = self.paging.interpret(&mut self.hart, &mut p) {
                let h = self.gdb_ebreak(h);
                if self.debug.stop.is_some() {
                    return Some(h);
                }
                match h.action {
                    Action::Resume => {}
                    Action::WaitForInterrupt => self.wait_for_interrupt(),
                    _ => return Some(h),
                }
                last = Some(Handled { kind: h.kind, action: Action::Resume });
            }
            if !self.paging_on() || self.paging.native(self.hart.pc) {
                return last;
            }
            if self.exit.is_none() {
                self.exit = self.forced_end();
            }
            if self.exit.is_some() {
                return last;
            }
            let before = Regime::of(&self.hart);
            if self.check_interrupts() {
                self.paging.sync(&before, 0, &self.hart);
            }
            self.rearm_guest_timer(false);
        }
    }

    /// An interpreted `ebreak` with gdb attached goes to gdb::engine, which knows its own.
    fn gdb_ebreak(&mut self, h: Handled) -> Handled {
        if h.kind == crate::interp::DEBUGGER_EBREAK {
            crate::gdb::engine::interpreted_ebreak(self)
        } else {
            h
        }
    }
}

/// The Rust side of every handler.
///
/// # Safety
/// Only for the signal entry stub: `info` and `uc` must be the kernel's pointers for the
/// signal being handled, on this thread.
pub unsafe fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::ucontext_t) {
    sud::allow();
    let p = STATE.load(Ordering::SeqCst);
    if sig == libc::SIGSYS && is_jail_violation(p, info, uc) {
        // SAFETY: a SIGSYS siginfo, from the kernel.
        common::jail::report_blocked(unsafe { common::jail::blocked_syscall(info) });
    }
    if p.is_null() {
        if sig != libc::SIGALRM && sig != signals::ENTER_SIGNAL {
            signals::reset_to_default(sig);
        }
        return;
    }
    // SAFETY: the monitor keeps the RunState alive while the pointer is set, and does not
    // touch it while the guest runs; handlers do not nest (they block each other).
    let st = unsafe { &mut *p };
    let start = Instant::now();
    if sig == signals::ENTER_SIGNAL {
        // The timeout timer is armed (and Ctrl-A x may be typed) before this signal: a SIGALRM
        // that found no guest to stop was dropped, so check instead of entering.
        if st.exit.is_none() {
            st.exit = st.forced_end();
        }
        if !st.in_guest && st.exit.is_none() {
            // SAFETY: `uc` is this handler's live ucontext.
            unsafe {
                st.monitor = context::save(uc);
                let mut fresh = st.monitor;
                // Zeroed FP registers at boot; the guest's own after a debugger stop.
                let guest_fp = st.debug.guest_fp.take().unwrap_or(context::SavedRegs::zeroed());
                fresh.fregs = guest_fp.fregs;
                fresh.fcsr = guest_fp.fcsr;
                context::restore(&fresh, uc);
                context::store(&st.hart, uc);
            }
            st.in_guest = true;
        }
        // Also for a stray enter signal (kill -USR1) while the guest runs: the guest goes on,
        // and its ecalls must keep trapping.
        if st.in_guest {
            sud::block();
        }
        return;
    }
    if !st.in_guest {
        // A fault in the monitor itself: let it kill us the ordinary way.
        if sig != libc::SIGALRM {
            signals::reset_to_default(sig);
        }
        return;
    }
    // SAFETY: `uc` is this handler's live ucontext.
    unsafe { context::load(&mut st.hart, uc) };
    st.refresh_external();
    let pc = st.hart.pc;
    let before = Regime::of(&st.hart);
    st.stats.record(if st.hart.mode == Mode::User { "trap from u-mode" } else { "trap from s-mode" }, Duration::ZERO);
    let traced = if st.trace.is_some() { Some(st.trace_before(sig, info)) } else { None };
    let mark_id = st.hart.x[10];
    let handled = st.handle(sig, info);
    if handled.kind == crate::sbi::MARK_KIND {
        crate::teach::record_mark(&mut st.stats, mark_id, st.started.elapsed());
    }
    if let Some(why) = st.watch_progress(sig, pc, &handled) {
        st.exit = Some(GuestExit::Failed(why));
    }
    match handled.action {
        Action::Resume => {}
        Action::WaitForInterrupt => st.wait_for_interrupt(),
        Action::Shutdown(status) => st.exit = Some(GuestExit::PowerOff(status)),
        Action::Fail(why) => st.exit = Some(GuestExit::Failed(why)),
    }
    if st.exit.is_none() {
        st.exit = st.forced_end();
    }
    if st.exit.is_some() {
        st.in_guest = false;
        // SAFETY: `uc` is this handler's live ucontext; the saved registers are the
        // monitor's from the enter signal.
        unsafe { context::restore(&st.monitor, uc) };
        st.record(handled.kind, start, traced);
        return;
    }
    if crate::gdb::engine::stop_now(st, pc) {
        // SAFETY: `uc` is this handler's live ucontext.
        unsafe { stop_for_debugger(st, uc) };
        st.record(handled.kind, start, traced);
        return;
    }
    st.check_interrupts();
    if before.paging() || st.paging_on() {
        let raw = std::mem::take(&mut st.last_raw);
        st.paging.sync(&before, raw, &st.hart);
        if st.paging_on() {
            if let Some(h) = st.interpret() {
                match h.action {
                    Action::Shutdown(status) => st.exit = Some(GuestExit::PowerOff(status)),
                    Action::Fail(why) => st.exit = Some(GuestExit::Failed(why)),
                    Action::Resume | Action::WaitForInterrupt => {}
                }
            }
        }
        if st.exit.is_none() && st.debug.stop.is_some() {
            // The interpreter reached a gdb breakpoint.
            // SAFETY: `uc` is this handler's live ucontext.
            unsafe { stop_for_debugger(st, uc) };
            st.record(handled.kind, start, traced);
            return;
        }
        if st.exit.is_some() {
            st.in_guest = false;
            // SAFETY: as above.
            unsafe { context::restore(&st.monitor, uc) };
            st.record(handled.kind, start, traced);
            return;
        }
    }
    st.rearm_guest_timer(sig == libc::SIGALRM);
    // SAFETY: `uc` is this handler's live ucontext.
    unsafe { context::store(&st.hart, uc) };
    st.record(handled.kind, start, traced);
    sud::block();
}

/// Stopped for the debugger: leaves the guest and returns to the monitor, which serves gdb
/// outside any handler.
///
/// # Safety
/// `uc` must be the running handler's live ucontext.
unsafe fn stop_for_debugger(st: &mut RunState, uc: *mut libc::ucontext_t) {
    st.in_guest = false;
    // SAFETY: the saved registers are the monitor's from the enter signal; the guest's FP
    // registers are kept for re-entry.
    unsafe {
        st.debug.guest_fp = Some(context::save(uc));
        context::restore(&st.monitor, uc);
    }
}
