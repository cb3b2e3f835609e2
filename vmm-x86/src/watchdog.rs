//! Ending a KVM_RUN from another thread ([`Kicker`]), and --timeout ([`Watchdog`]), a thread
//! that kicks the vCPU when time is up. Ctrl-A x kicks through the same [`Kicker`].
//!
//! Two things together make a kick reliable: `immediate_exit` in kvm_run makes the *next*
//! KVM_RUN return EINTR at once (covers a kick that lands just before we enter the guest),
//! and a signal with a no-op handler installed without SA_RESTART interrupts a KVM_RUN that
//! is already running.
use common::{Error, Result};
use kvm_bindings::kvm_run;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

/// The kick signal: the first real-time signal, which nothing else in vmm uses.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction is plain data; zeroed means an empty mask and no flags. No
        // SA_RESTART, so the interrupted KVM_RUN returns EINTR instead of being restarted.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_kick as *const () as libc::sighandler_t;
        // SAFETY: installs an async-signal-safe (empty) handler for a signal only we use.
        unsafe { libc::sigaction(kick_signal(), &act, std::ptr::null_mut()) };
    });
}

/// The vCPU thread and its kvm_run, while it runs the guest.
struct Target {
    run: *mut kvm_run,
    thread: libc::pthread_t,
}
// SAFETY: kickers only write the one-byte immediate_exit field, which KVM documents as
// settable from another thread, and signal the thread (a pointer in musl's pthread_t), both
// only while the vCPU thread holds the `Armed` guard (so the thread, the vCPU and its
// mapping are alive).
unsafe impl Send for Target {}

/// Makes the vCPU thread leave KVM_RUN, from any thread (the watchdog, the console's Ctrl-A x).
/// Cheap to clone; a kick while no vCPU thread is armed (before or after the run) does nothing.
#[derive(Clone, Default)]
pub struct Kicker {
    target: Arc<Mutex<Option<Target>>>,
}

/// While this lives, kicks go to the thread that armed the [`Kicker`]; dropping it (before
/// that thread or its vCPU goes away) disarms.
pub struct Armed<'a>(&'a Kicker);

impl Kicker {
    /// Aims kicks at the calling thread, which must be the one running KVM_RUN on the vCPU
    /// whose kvm_run is `run`, until the returned guard is dropped.
    pub fn arm(&self, run: *mut kvm_run) -> Armed<'_> {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(Target { run, thread });
        Armed(self)
    }

    /// Ends the armed thread's current or next KVM_RUN with EINTR. Returns whether a thread
    /// was armed.
    pub fn kick(&self) -> bool {
        let target = self.target.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = target.as_ref() else { return false };
        // SAFETY: `run` points into the vCPU's kvm_run mapping, alive while armed (we hold the
        // lock the guard needs to disarm); a volatile byte write is what KVM expects here.
        unsafe { std::ptr::addr_of_mut!((*t.run).immediate_exit).write_volatile(1) };
        // SAFETY: the armed thread is alive: it disarms (under this lock) before it ends.
        unsafe { libc::pthread_kill(t.thread, kick_signal()) };
        true
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        *self.0.target.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

pub struct Watchdog {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    /// Starts counting `timeout`; when it runs out, `kicker` ends the guest's KVM_RUN. Drop
    /// the watchdog before the kicker's vCPU thread disarms. Fails (rather than silently
    /// running without a limit) if the thread cannot be started.
    pub fn start(timeout: Duration, kicker: Kicker) -> Result<Watchdog> {
        let fired = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = channel::<()>();
        let flag = fired.clone();
        let thread = std::thread::Builder::new()
            .name("vmm-watchdog".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(timeout) {
                    flag.store(true, Ordering::SeqCst);
                    kicker.kick();
                }
            })
            .map_err(|e| {
                Error::bad_input(format!("cannot start the --timeout thread: {}", common::image::io_reason(&e)))
            })?;
        Ok(Watchdog { stop: Some(stop), thread: Some(thread), fired })
    }

    /// Whether time ran out.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The one line for a guest stopped by --timeout.
pub fn timeout_message(timeout: Duration) -> String {
    format!("guest did not finish within {} s (--timeout)", timeout.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_and_sets_immediate_exit() {
        // SAFETY: kvm_run is plain data; all zeroes is a valid value.
        let mut run: kvm_run = unsafe { std::mem::zeroed() };
        let kicker = Kicker::default();
        let armed = kicker.arm(&mut run);
        let w = Watchdog::start(Duration::from_millis(20), kicker.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(w.fired());
        drop(w);
        drop(armed);
        assert_eq!(run.immediate_exit, 1);
    }

    #[test]
    fn stopping_early_does_not_fire() {
        // SAFETY: as above.
        let mut run: kvm_run = unsafe { std::mem::zeroed() };
        let kicker = Kicker::default();
        let armed = kicker.arm(&mut run);
        let w = Watchdog::start(Duration::from_secs(60), kicker.clone()).unwrap();
        assert!(!w.fired());
        drop(w);
        drop(armed);
        assert_eq!(run.immediate_exit, 0);
        assert_eq!(timeout_message(Duration::from_secs(1)), "guest did not finish within 1 s (--timeout)");
    }

    #[test]
    fn a_kick_reaches_only_an_armed_thread() {
        let kicker = Kicker::default();
        assert!(!kicker.kick(), "nothing armed yet");
        // SAFETY: as above.
        let mut run: kvm_run = unsafe { std::mem::zeroed() };
        {
            let _armed = kicker.arm(&mut run);
            let other = kicker.clone();
            assert!(std::thread::spawn(move || other.kick()).join().unwrap());
        }
        assert_eq!(run.immediate_exit, 1);
        run.immediate_exit = 0;
        assert!(!kicker.kick(), "disarmed: the vCPU may be gone");
        assert_eq!(run.immediate_exit, 0);
    }
}
