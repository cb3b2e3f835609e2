//! The gdb remote stub on KVM (`vmm run --gdb ADDR:PORT [--gdb-wait]`). The protocol, the
//! socket and the Ctrl-C watcher are common::gdb's; here are the x86 target (target.rs:
//! registers, memory, breakpoints), and [`Debugger`], which the run loop (vm.rs) calls at four
//! points: before each KVM_RUN, on KVM_EXIT_DEBUG, when KVM_RUN was interrupted, and at the end.
//!
//! Stepping and breakpoints go through KVM_SET_GUEST_DEBUG: single-step (KVM_GUESTDBG_SINGLESTEP),
//! `int3` patched into guest RAM (KVM_GUESTDBG_USE_SW_BP makes KVM exit on #BP instead of
//! giving it to the guest) and DR0-DR3 (KVM_GUESTDBG_USE_HW_BP). Ctrl-C: the watcher kicks the
//! vCPU out of KVM_RUN with the same [`Kicker`] as --timeout.
//!
//! The vCPU thread stays in its seccomp jail: with --gdb its allowlist also has the socket
//! calls (common::gdb::SESSION_SYSCALLS) and the ioctls gdb needs ([`crate::jail::GDB_IOCTLS`]).
//! Serving gdb on the vCPU thread itself keeps the vCPU state (KVM allows vCPU ioctls only
//! from the thread that runs it, in practice) and avoids handing the vCPU between threads.
mod breakpoints;
mod regs;
mod target;

use crate::watchdog::Kicker;
use breakpoints::{cause, DebugCause, Slot};
use common::console::say;
use common::gdb::session::KILLED_MESSAGE;
use common::gdb::{Connection, GdbConfig, Served, Session, Stop, Watcher};
use common::vm::GuestExit;
use common::Result;
use kvm_ioctls::VcpuFd;
use target::{Exec, X86Target};
use vm_memory::GuestMemoryMmap;

/// What the vCPU thread takes along: the watcher thread (already running) and the connection
/// accepted before the start (--gdb-wait).
pub struct GdbLink {
    watcher: Watcher,
    conn: Option<Connection>,
    mem: GuestMemoryMmap,
    pvm: bool,
}

/// Listens (and with --gdb-wait waits for gdb), then starts the watcher, which kicks the vCPU
/// when gdb connects later or sends Ctrl-C. Runs on the main thread, before any jail.
pub fn start(config: &GdbConfig, mem: &GuestMemoryMmap, kicker: &Kicker, jail: bool) -> Result<GdbLink> {
    let link = common::gdb::listen(config)?;
    let kicker = kicker.clone();
    let (watcher, conn) = link.start(move || _ = kicker.kick(), jail)?;
    // Looked up here: the jailed vCPU thread may not look at /sys.
    let pvm = crate::info::is_pvm_host();
    Ok(GdbLink { watcher, conn, mem: mem.clone(), pvm })
}

/// The vCPU thread's syscall and ioctl lists, with what serving gdb adds when `gdb` and what
/// reading counters at marks adds when `counting` (--stats, --stats-json).
pub fn jail_lists(gdb: bool, counting: bool, queued_uart: bool) -> (Vec<i64>, Vec<u64>) {
    let (mut calls, mut ioctls) = (crate::jail::VCPU.to_vec(), crate::jail::VCPU_IOCTLS.to_vec());
    if queued_uart {
        ioctls.extend_from_slice(crate::jail::QUEUE_IOCTLS);
    }
    if counting {
        calls.extend_from_slice(crate::jail::COUNTING);
    }
    if gdb {
        calls.extend_from_slice(common::gdb::SESSION_SYSCALLS);
        ioctls.extend_from_slice(crate::jail::GDB_IOCTLS);
    }
    (calls, ioctls)
}

/// The debugger side of one run, on the vCPU thread.
pub struct Debugger {
    watcher: Watcher,
    /// A connection not yet made a session (taken before the next KVM_RUN).
    conn: Option<Connection>,
    session: Option<Session<X86Target>>,
    target: X86Target,
    /// The guest debug request KVM has now, so it is set only when it changes.
    applied: Option<(u32, [u64; 8])>,
    /// A line already said that KVM refused KVM_SET_GUEST_DEBUG.
    refused: bool,
}

impl Debugger {
    pub fn new(link: GdbLink) -> Debugger {
        Debugger {
            watcher: link.watcher,
            conn: link.conn,
            session: None,
            target: X86Target::new(link.mem, link.pvm),
            applied: None,
            refused: false,
        }
    }

    /// Before each KVM_RUN: a new gdb starts a session (the guest stops for it); while the
    /// guest is stopped, gdb is served until it resumes it. Then KVM gets the debug request
    /// for the run (step, breakpoints). `Some(exit)` ends the run (gdb killed it).
    pub fn before_run(&mut self, vcpu: &VcpuFd) -> Option<GuestExit> {
        if let Some(conn) = self.conn.take().or_else(|| self.watcher.take_connection()) {
            // A session that cannot start (gdb went away at once) is said, and the guest runs
            // on without it, as on URVirt.
            if self.session.is_none() {
                match self.target.with_vcpu(vcpu, |t| Session::new(conn, t)) {
                    Ok(session) => self.session = Some(session),
                    Err(e) => say(&format!("vmm: {}; the guest runs on without it", e.message)),
                }
            }
        }
        while let Some(session) = self.session.as_mut() {
            if !session.is_running() {
                self.watcher.pause();
                let served = self.target.with_vcpu(vcpu, |t| session.serve(t));
                if let Some(exit) = self.ended(served) {
                    return Some(exit);
                }
                continue;
            }
            // A Ctrl-C right behind the resume may already be read (into the connection's
            // buffer, where the watcher cannot see it): take it before the guest runs.
            let end = self.target.with_vcpu(vcpu, |t| session.take_interrupt(t));
            if let Some(served) = end {
                if let Some(exit) = self.ended(served) {
                    return Some(exit);
                }
            }
            if self.session.as_ref().is_some_and(|s| s.is_running()) {
                break;
            }
        }
        self.apply_guest_debug(vcpu);
        if self.session.is_some() {
            self.watcher.watch();
        }
        None
    }

    /// KVM_EXIT_DEBUG: a breakpoint or the step. Tells gdb; the next `before_run` serves it.
    pub fn on_debug_exit(&mut self, vcpu: &VcpuFd, exception: u32, dr6: u64) -> Option<GuestExit> {
        let stop = match cause(exception, dr6) {
            DebugCause::SwBreak => Stop::SwBreak,
            DebugCause::HwBreak if self.target.breakpoints.matched(dr6) == Slot::Sw => Stop::SwBreak,
            DebugCause::HwBreak => Stop::HwBreak,
            DebugCause::Step => Stop::Step,
        };
        self.watcher.pause();
        let session = self.session.as_mut()?;
        let end = self.target.with_vcpu(vcpu, |t| session.report(t, stop));
        end.and_then(|served| self.ended(served))
    }

    /// KVM_RUN was interrupted (a kick): perhaps gdb connected or sent Ctrl-C. A kick leaves
    /// `immediate_exit` set; it is cleared first, so a kick that comes later (the --timeout
    /// watchdog, Ctrl-A x: both set their flag before kicking) still ends the next KVM_RUN.
    pub fn on_kick(&mut self, vcpu: &mut VcpuFd) -> Option<GuestExit> {
        vcpu.set_kvm_immediate_exit(0);
        let session = self.session.as_mut()?;
        let end = self.target.with_vcpu(vcpu, |t| session.take_interrupt(t));
        end.and_then(|served| self.ended(served))
    }

    /// The run ends: gdb hears the exit code (vmm's, see common::gdb::Stop::Exited).
    pub fn finish(&mut self, vcpu: &VcpuFd, exit: &GuestExit) {
        self.watcher.pause();
        if let Some(mut session) = self.session.take() {
            self.target.with_vcpu(vcpu, |t| session.finish(t, exit));
        }
    }

    /// What a session's end means for the run: kill ends it, anything else lets the guest run on.
    fn ended(&mut self, served: Served) -> Option<GuestExit> {
        match served {
            Served::Resumed => return None,
            Served::Killed => {
                self.session = None;
                return Some(GuestExit::Failed(KILLED_MESSAGE.into()));
            }
            Served::Lost(why) => say(&format!("vmm: gdb: {why}; the guest runs on without it")),
            Served::Detached | Served::Ended => {}
        }
        self.session = None;
        self.watcher.pause();
        self.target.clear_breakpoints();
        None
    }

    /// Sets KVM's guest debug request when it changed. A KVM that refuses it (no guest debug
    /// support) is said once; the guest then runs without breakpoints or steps.
    fn apply_guest_debug(&mut self, vcpu: &VcpuFd) {
        let debug = self.target.breakpoints.guest_debug(self.target.exec == Exec::Step);
        let key = (debug.control, debug.arch.debugreg);
        if self.applied == Some(key) {
            return;
        }
        match vcpu.set_guest_debug(&debug) {
            Ok(()) => self.applied = Some(key),
            Err(e) if !self.refused => {
                self.refused = true;
                say(&format!(
                    "vmm: gdb: this KVM refuses KVM_SET_GUEST_DEBUG ({}): no breakpoints or single steps",
                    common::image::io_reason(&std::io::Error::from_raw_os_error(e.errno()))
                ));
            }
            Err(_) => {}
        }
    }
}
