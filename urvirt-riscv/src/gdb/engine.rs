//! Where the gdb stub runs relative to URVirt's signal-based engine.
//!
//! A handler never talks to gdb. It only decides that the guest must stop for the debugger
//! ([`stop_now`]): it ran into one of our `ebreak`s, a single-step is done, or gdb sent a
//! Ctrl-C (the watcher thread's [`interrupt`] set a flag and sent SIGALRM to the guest
//! thread, so the guest traps soon). Then the handler leaves the guest's registers in the
//! hart and switches to the monitor's saved context, exactly as when the guest ends, and
//! [`signals::enter_guest`] returns. [`run`], the monitor's loop on the guest thread, then
//! serves gdb (common::gdb::Session) outside any handler and enters the guest again.
//!
//! The protocol runs on the guest thread because the target is that thread's [`RunState`]
//! (the stopped hart and memory); so, with --gdb, that thread's jail also allows reading and
//! writing the already connected socket ([`JAIL_EXTRA`]). Nothing opens, accepts or connects
//! there: the watcher thread accepts and watches under its own allowlist.
use super::breakpoints::{Breakpoints, CodeMem, Owner};
use super::step;
use super::target::DebugMem;
use crate::engine::context::SavedRegs;
use crate::engine::run::RunState;
use crate::engine::{input, signals};
use crate::hart::{Action, Handled};
use common::gdb::{Connection, GdbConfig, Link, Served, Session, Stop, Watcher};
use common::vm::GuestExit;
use common::Result;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How gdb let the guest go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    Continue,
    Step,
}

/// The debugger's part of the run's state (`RunState::debug`).
#[derive(Default)]
pub struct Debug {
    /// This run serves gdb: our ebreaks, finished steps and Ctrl-C stop the guest.
    pub on: bool,
    pub breakpoints: Breakpoints,
    /// Why the guest stopped for the debugger (set in a handler).
    pub stop: Option<Stop>,
    /// A single-step is under way.
    pub stepping: bool,
    /// Set by the target's resume/step when gdb lets the guest go on.
    pub resume: Option<Resume>,
    /// `monitor phys`: gdb's memory addresses are guest-physical even with Sv39 on.
    pub physical: bool,
    /// The guest's FP registers at the stop, for the next entry (the enter handler would
    /// otherwise start the guest with zeroed ones, as at boot).
    pub guest_fp: Option<SavedRegs>,
}

/// Set by [`interrupt`]: gdb wants the guest stopped (a Ctrl-C, or it just connected).
static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// The watcher's "interrupt the guest" callback (on the watcher thread): the guest thread
/// gets SIGALRM, and its handler sees the flag ([`stop_now`]).
pub fn interrupt() {
    INTERRUPT.store(true, Ordering::SeqCst);
    signals::poke(input::guest_tid());
}

/// System calls the guest thread makes with --gdb besides its own: the session's socket
/// reads and writes and its poll, closing it at the end, and flushing the icache after a
/// breakpoint is patched.
pub fn jail_extra() -> Vec<i64> {
    /// __NR_riscv_flush_icache (see engine::memory::flush_icache_range).
    const SYS_RISCV_FLUSH_ICACHE: i64 = 259;
    let mut calls = common::gdb::SESSION_SYSCALLS.to_vec();
    calls.extend([libc::SYS_close, SYS_RISCV_FLUSH_ICACHE]);
    calls
}

/// Handler side, for SIGTRAP at `pc`: whether the ebreak there is ours. If so the stop is
/// recorded and the guest's own breakpoint handling is skipped.
pub fn our_breakpoint(st: &mut RunState, pc: u64) -> bool {
    if !st.debug.on || !st.debug.breakpoints.contains(pc) {
        return false;
    }
    st.debug.stop = Some(if st.debug.stepping { Stop::Step } else { Stop::SwBreak });
    true
}

/// Handler side, for an `ebreak` the interpreter left at pc ([`crate::interp::DEBUGGER_EBREAK`]):
/// one of ours stops the guest for gdb, as the SIGTRAP path does; any other is the guest's.
pub fn interpreted_ebreak(st: &mut RunState) -> Handled {
    if our_breakpoint(st, st.hart.pc) {
        Handled { kind: crate::engine::run::GDB_TRAP, action: Action::Resume }
    } else {
        crate::hart::on_breakpoint(&mut st.hart)
    }
}

/// Handler side, after a trap was handled: whether the guest must stop for the debugger now.
/// `pc_before` is the pc the trap came from.
pub fn stop_now(st: &mut RunState, pc_before: u64) -> bool {
    if !st.debug.on {
        return false;
    }
    if st.debug.stop.is_none() {
        if st.debug.stepping && step::step_done_in_handler(pc_before, st.hart.pc) {
            st.debug.stop = Some(Stop::Step);
        } else if INTERRUPT.swap(false, Ordering::SeqCst) {
            st.debug.stop = Some(Stop::Interrupted);
        }
    }
    st.debug.stop.is_some()
}

/// The gdb side of a run, set up before the guest thread is jailed.
pub struct Gdb {
    watcher: Watcher,
    /// The connection accepted before the start (--gdb-wait), or the lab's socket pair.
    accepted: Option<Connection>,
    wait: bool,
}

/// Listens (with --gdb-wait: until gdb connects) and starts the watcher: a thread, so before
/// the jail, with the engine's signals blocked on it. Inside a lab host the connection is
/// the socket pair init relays over (lab::gdb_relay), and nothing listens here.
pub fn prepare(config: &GdbConfig, jail: bool) -> Result<Gdb> {
    let link = match lab::gdb_relay::inner_fd() {
        // SAFETY: init passed us this descriptor (lab::gdb_relay::FD_ENV) and nothing else in
        // this process owns it. A Unix stream socket reads and writes as a TcpStream does
        // (recv/send), which is all the stub does with it.
        Some(fd) => Link::connected(TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) })),
        None => common::gdb::listen(config)?,
    };
    let (watcher, accepted) = signals::with_handled_blocked(|| link.start(interrupt, jail))?;
    Ok(Gdb { watcher, accepted, wait: config.wait })
}

/// Runs the guest under gdb until it ends: enters it, serves gdb at every stop.
pub fn run(gdb: &mut Gdb, st: &mut RunState) {
    st.debug.on = true;
    // Code the interpreter runs (Sv39 upper half) hits gdb's breakpoints there too.
    st.paging.interp.debugger = true;
    INTERRUPT.store(false, Ordering::SeqCst);
    let mut session: Option<Session<RunState>> = None;
    // With --gdb-wait the guest is stopped before its first instruction.
    let mut stopped = false;
    // The lab's socket pair without --gdb-wait: the session starts when gdb first speaks.
    let mut pending = None;
    match gdb.accepted.take() {
        Some(conn) if gdb.wait => {
            session = start_session(conn, st);
            stopped = session.is_some();
        }
        conn => pending = conn,
    }
    loop {
        if stopped {
            let Some(s) = session.as_mut() else { break };
            let served = s.serve(st);
            if !settle(&mut session, served, st) {
                break;
            }
            // A Ctrl-C right behind the resume may already be read (into the connection's
            // buffer, where the watcher cannot see it): take it before the guest runs.
            let early = session.as_mut().and_then(|s| s.take_interrupt(st));
            if let Some(served) = early {
                if !settle(&mut session, served, st) {
                    break;
                }
            } else if session.as_ref().is_some_and(|s| !s.is_running()) {
                // It was a Ctrl-C: gdb has been told the guest stopped.
                st.debug.resume = None;
                continue;
            }
        }
        let resume = st.debug.resume.take();
        if resume == Some(Resume::Step) {
            plant_step(st);
        } else {
            // A SIGALRM that came while the guest was stopped (its timer, --timeout) found no
            // guest: one trap soon after it goes on looks at both again.
            st.guest_timer.arm(Some(Duration::from_millis(1)));
        }
        if session.is_some() || pending.is_some() {
            gdb.watcher.watch();
        }
        signals::enter_guest();
        gdb.watcher.pause();
        if st.debug.stepping {
            st.debug.stepping = false;
            let mut bps = std::mem::take(&mut st.debug.breakpoints);
            bps.remove_step(&mut DebugMem::of(st));
            st.debug.breakpoints = bps;
            crate::engine::memory::flush_icache_range(st.ram_base, st.ram_size);
        }
        if let Some(exit) = st.exit.clone() {
            if let Some(s) = session.as_mut() {
                s.finish(st, &exit);
            }
            break;
        }
        stopped = match st.debug.stop.take() {
            None => break,
            Some(Stop::Interrupted) if session.is_none() => {
                match gdb.watcher.take_connection().or_else(|| pending.take()) {
                    // gdb connected while the guest ran: it is stopped for the new session.
                    Some(conn) => {
                        session = start_session(conn, st);
                        session.is_some()
                    }
                    None => false,
                }
            }
            Some(Stop::Interrupted) => {
                let s = session.as_mut().expect("a session");
                match s.take_interrupt(st) {
                    Some(served) => {
                        if !settle(&mut session, served, st) {
                            break;
                        }
                        false
                    }
                    // Not a Ctrl-C (a packet gdb may send while the guest runs): run on.
                    None => !session.as_ref().is_some_and(Session::is_running),
                }
            }
            Some(stop) => match session.as_mut().map(|s| s.report(st, stop)) {
                Some(None) => true,
                Some(Some(served)) => {
                    if !settle(&mut session, served, st) {
                        break;
                    }
                    false
                }
                None => false,
            },
        };
    }
    if !st.debug.breakpoints.is_empty() {
        let mut bps = std::mem::take(&mut st.debug.breakpoints);
        bps.clear(&mut DebugMem::of(st));
    }
    st.debug.on = false;
    st.paging.interp.debugger = false;
}

fn start_session(conn: Connection, st: &mut RunState) -> Option<Session<RunState>> {
    match Session::new(conn, st) {
        Ok(s) => Some(s),
        Err(e) => {
            common::console::say(&format!("vmm: {}; the guest runs on without it", e.message));
            None
        }
    }
}

/// Acts on how serving ended; false when the run ends (gdb killed the guest).
fn settle(session: &mut Option<Session<RunState>>, served: Served, st: &mut RunState) -> bool {
    match served {
        Served::Resumed => true,
        Served::Killed => {
            st.exit = Some(GuestExit::Failed(common::gdb::session::KILLED_MESSAGE.into()));
            false
        }
        Served::Ended => false,
        Served::Detached | Served::Lost(_) => {
            if let Served::Lost(why) = &served {
                common::console::say(&format!("vmm: gdb: {why}; the guest runs on without it"));
            }
            *session = None;
            st.debug.resume = Some(Resume::Continue);
            let mut bps = std::mem::take(&mut st.debug.breakpoints);
            bps.clear(&mut DebugMem::of(st));
            crate::engine::memory::flush_icache_range(st.ram_base, st.ram_size);
            true
        }
    }
}

/// Plants the temporary breakpoints of a single-step at every next pc of the instruction at pc.
fn plant_step(st: &mut RunState) {
    let pc = st.hart.pc;
    let hart = st.hart.clone();
    let mut bps = std::mem::take(&mut st.debug.breakpoints);
    {
        let mut mem = DebugMem::of(st);
        // The instruction as the guest has it (an ebreak of ours there is hidden); the
        // second half may lie on an unreadable page after a compressed instruction.
        let mut raw = [0u8; 4];
        if !mem.read(pc, &mut raw) {
            raw[2..].fill(0);
            mem.read(pc, &mut raw[..2]);
        }
        bps.hide(pc, &mut raw);
        let len = crate::decode::insn_len(u16::from_le_bytes([raw[0], raw[1]]));
        let next = step::next_pcs(&hart, u32::from_le_bytes(raw), len);
        for target in next {
            bps.insert(&mut mem, target, Owner::Step);
        }
    }
    st.debug.breakpoints = bps;
    st.debug.stepping = true;
    crate::engine::memory::flush_icache_range(st.ram_base, st.ram_size);
}
