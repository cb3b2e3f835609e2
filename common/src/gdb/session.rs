//! One gdb session, driven from the backend's run loop: gdbstub's state machine
//! (`GdbStubStateMachine`) turned into the three things a run loop does with a debugger:
//!
//! - the guest is stopped: [`Session::serve`] answers gdb until it resumes, detaches or kills;
//! - the guest stopped by itself (breakpoint, step, end): [`Session::report`] tells gdb why;
//! - the guest was interrupted from outside: [`Session::take_interrupt`] reads what gdb sent
//!   (Ctrl-C, 0x03) and, if it was an interrupt, reports the stop.
//!
//! Generic over the backend's gdbstub `Target`, which holds registers, memory and breakpoints
//! and records in its resume/step handlers how the guest should run next.
use super::Connection;
use crate::vm::{GuestExit, Outcome};
use crate::{Error, Result};
use gdbstub::common::Signal;
use gdbstub::conn::Connection as _;
use gdbstub::stub::state_machine::{state, GdbStubStateMachine, GdbStubStateMachineInner};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::Target;

/// Why the guest stopped, in the backend's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It ran into one of gdb's software breakpoints.
    SwBreak,
    /// It ran into a hardware breakpoint.
    HwBreak,
    /// It did the one instruction gdb asked for.
    Step,
    /// It was interrupted (Ctrl-C in gdb).
    Interrupted,
    /// It ended; gdb sees vmm's exit code as the inferior's.
    Exited(i32),
}

impl Stop {
    /// The stop for a guest that ended this way.
    pub fn ended(exit: &GuestExit) -> Stop {
        Stop::Exited(Outcome { exit: exit.clone(), stats: crate::stats::Stats::new() }.exit_code())
    }

    fn reason<U>(self) -> SingleThreadStopReason<U> {
        match self {
            Stop::SwBreak => SingleThreadStopReason::SwBreak(()),
            Stop::HwBreak => SingleThreadStopReason::HwBreak(()),
            Stop::Step => SingleThreadStopReason::DoneStep,
            Stop::Interrupted => SingleThreadStopReason::Signal(Signal::SIGINT),
            Stop::Exited(code) => SingleThreadStopReason::Exited(code.clamp(0, 255) as u8),
        }
    }
}

/// What [`Session::serve`] ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// gdb continued or stepped the guest (the target knows which).
    Resumed,
    /// gdb detached: the guest runs on without a debugger.
    Detached,
    /// gdb killed the guest: the run ends.
    Killed,
    /// The session is over because the guest ended and gdb was told.
    Ended,
    /// The connection broke (the text says how): the guest runs on without a debugger.
    Lost(String),
}

/// A gdb session; `None` inside while a transition is under way, and after the end.
pub struct Session<T: Target> {
    machine: Option<GdbStubStateMachine<'static, T, Connection>>,
}

type Machine<T> = GdbStubStateMachine<'static, T, Connection>;

impl<T: Target> Session<T>
where
    T::Error: std::fmt::Display,
{
    /// Starts a session on `conn`; the guest is stopped until gdb resumes it ([`Session::serve`]).
    pub fn new(conn: Connection, target: &mut T) -> Result<Session<T>> {
        let machine =
            GdbStub::new(conn).run_state_machine(target).map_err(|e| Error::bad_input(format!("gdb stub: {e}")))?;
        Ok(Session { machine: Some(machine) })
    }

    /// Whether gdb thinks the guest runs (it waits for a stop report).
    pub fn is_running(&self) -> bool {
        matches!(self.machine, Some(GdbStubStateMachine::Running(_)))
    }

    /// Whether the session is over (detached, killed, ended, lost).
    pub fn is_over(&self) -> bool {
        self.machine.is_none()
    }

    /// The guest is stopped: answers gdb's requests (registers, memory, breakpoints) until it
    /// resumes the guest or leaves.
    pub fn serve(&mut self, target: &mut T) -> Served {
        loop {
            let Some(machine) = self.machine.take() else { return Served::Ended };
            let next = match machine {
                GdbStubStateMachine::Running(mut m) => {
                    // gdbstub acknowledges a resume (`+`, before no-ack mode) without a flush.
                    let _ = m.borrow_conn().flush();
                    self.machine = Some(m.into());
                    return Served::Resumed;
                }
                GdbStubStateMachine::Idle(mut m) => match m.borrow_conn().read_byte() {
                    Ok(Some(byte)) => m.incoming_data(target, byte),
                    Ok(None) => return Served::Lost("gdb closed the connection".into()),
                    Err(e) => return Served::Lost(format!("reading from gdb: {}", crate::image::io_reason(&e))),
                },
                // Ctrl-C while stopped: reported when gdb next resumes.
                GdbStubStateMachine::CtrlCInterrupt(m) => m.interrupt_handled(target, Some(Stop::Interrupted.reason())),
                GdbStubStateMachine::Disconnected(m) => return ended(m),
            };
            match next {
                Ok(machine) => self.machine = Some(machine),
                Err(e) => return Served::Lost(format!("gdb stub: {e}")),
            }
        }
    }

    /// The guest stopped by itself: tells gdb (if it waits for that). Ok(None) when the session
    /// goes on (call [`Session::serve`] next); otherwise how it ended.
    pub fn report(&mut self, target: &mut T, stop: Stop) -> Option<Served> {
        let machine = self.machine.take()?;
        let next = match machine {
            GdbStubStateMachine::Running(m) => m.report_stop(target, stop.reason()),
            other => Ok(other),
        };
        self.settle(next)
    }

    /// The guest was interrupted from outside: reads what gdb sent meanwhile. Some(Served::...)
    /// if the session ended; None otherwise. Afterwards [`Session::is_running`] says whether
    /// the guest should go on (it was not a Ctrl-C) or is stopped (it was: gdb has been told).
    pub fn take_interrupt(&mut self, target: &mut T) -> Option<Served> {
        loop {
            let machine = self.machine.take()?;
            let next = match machine {
                GdbStubStateMachine::Running(mut m) => {
                    if !m.borrow_conn().has_input() {
                        let _ = m.borrow_conn().flush();
                        self.machine = Some(m.into());
                        return None;
                    }
                    match m.borrow_conn().read_byte() {
                        Ok(Some(byte)) => m.incoming_data(target, byte),
                        Ok(None) => return Some(Served::Lost("gdb closed the connection".into())),
                        Err(e) => {
                            return Some(Served::Lost(format!("reading from gdb: {}", crate::image::io_reason(&e))))
                        }
                    }
                }
                GdbStubStateMachine::CtrlCInterrupt(m) => m.interrupt_handled(target, Some(Stop::Interrupted.reason())),
                other => {
                    self.machine = Some(other);
                    return None;
                }
            };
            if let Some(end) = self.settle(next) {
                return Some(end);
            }
        }
    }

    /// Keeps the machine a transition returned, or ends the session.
    fn settle(&mut self, next: std::result::Result<Machine<T>, impl std::fmt::Display>) -> Option<Served> {
        match next {
            Ok(GdbStubStateMachine::Disconnected(m)) => Some(ended(m)),
            Ok(machine) => {
                self.machine = Some(machine);
                None
            }
            Err(e) => Some(Served::Lost(format!("gdb stub: {e}"))),
        }
    }

    /// Tells gdb the guest ended (it sees the exit code), if it is waiting for a stop.
    pub fn finish(&mut self, target: &mut T, exit: &GuestExit) {
        if self.is_running() {
            let _ = self.report(target, Stop::ended(exit));
        }
        if let Some(mut m) = self.machine.take() {
            let conn = match &mut m {
                GdbStubStateMachine::Idle(m) => m.borrow_conn(),
                GdbStubStateMachine::Running(m) => m.borrow_conn(),
                GdbStubStateMachine::CtrlCInterrupt(m) => m.borrow_conn(),
                GdbStubStateMachine::Disconnected(m) => m.borrow_conn(),
            };
            let _ = conn.flush();
        }
    }
}

type Disconnected<T> = GdbStubStateMachineInner<'static, state::Disconnected, T, Connection>;

fn ended<T: Target>(mut m: Disconnected<T>) -> Served {
    match m.get_reason() {
        DisconnectReason::Disconnect => Served::Detached,
        DisconnectReason::Kill => {
            // gdb sends vKill (gdbstub announces multiprocess) and waits for its OK, which
            // gdbstub outside extended mode does not send: without it gdb reports "Remote
            // connection closed" and fails the command. An old-style `k` expects no answer
            // and gdb closes without reading this.
            let conn = m.borrow_conn();
            let _ = conn.write_all(b"$OK#9a").and_then(|_| conn.flush());
            Served::Killed
        }
        DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_) => Served::Ended,
    }
}

/// The one line for a run that gdb killed (exit code 1, like a guest stopped by --timeout).
pub const KILLED_MESSAGE: &str = "the guest was killed from gdb";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons() {
        assert_eq!(Stop::ended(&GuestExit::Halted), Stop::Exited(0));
        assert_eq!(Stop::ended(&GuestExit::PowerOff(3)), Stop::Exited(67));
        assert_eq!(Stop::ended(&GuestExit::Failed("x".into())), Stop::Exited(1));
        assert_eq!(Stop::Exited(300).reason::<u64>(), SingleThreadStopReason::Exited(255));
        assert_eq!(Stop::Interrupted.reason::<u64>(), SingleThreadStopReason::Signal(Signal::SIGINT));
        assert_eq!(Stop::Step.reason::<u64>(), SingleThreadStopReason::DoneStep);
    }
}
