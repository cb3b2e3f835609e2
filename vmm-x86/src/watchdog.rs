//! --timeout: a thread that, when time is up, kicks the vCPU thread out of KVM_RUN.
//!
//! Two things together make that reliable: `immediate_exit` in kvm_run makes the *next*
//! KVM_RUN return EINTR at once (covers a signal that lands just before we enter the guest),
//! and a signal with a no-op handler installed without SA_RESTART interrupts a KVM_RUN that
//! is already running.
use common::{Error, Result};
use kvm_bindings::kvm_run;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Watchdog {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    fired: Arc<AtomicBool>,
}

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

/// A raw pointer to the vCPU's kvm_run that may cross to the watchdog thread.
struct RunPtr(*mut kvm_run);
// SAFETY: the watchdog only writes the one-byte immediate_exit field, which KVM documents as
// settable from another thread, and it is joined before the vCPU (and its mapping) can go away.
unsafe impl Send for RunPtr {}

impl Watchdog {
    /// Starts counting `timeout` for the calling thread, which must be the one running KVM_RUN
    /// on the vCPU whose kvm_run is `run`. Drop the watchdog before dropping that vCPU.
    /// Fails (rather than silently running without a limit) if the thread cannot be started.
    pub fn start(timeout: Duration, run: *mut kvm_run) -> Result<Watchdog> {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let vcpu_thread = unsafe { libc::pthread_self() };
        let fired = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = channel::<()>();
        let run = RunPtr(run);
        let flag = fired.clone();
        let thread = std::thread::Builder::new()
            .name("vmm-watchdog".into())
            .spawn(move || {
                let run = run;
                if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(timeout) {
                    flag.store(true, Ordering::SeqCst);
                    // SAFETY: `run` points into the vCPU's kvm_run mapping, alive until we are
                    // joined (see RunPtr); a volatile byte write is what KVM expects here.
                    unsafe { std::ptr::addr_of_mut!((*run.0).immediate_exit).write_volatile(1) };
                    // SAFETY: the vCPU thread is alive: it is the one that will join us.
                    unsafe { libc::pthread_kill(vcpu_thread, kick_signal()) };
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
        let w = Watchdog::start(Duration::from_millis(20), &mut run).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(w.fired());
        drop(w);
        assert_eq!(run.immediate_exit, 1);
    }

    #[test]
    fn stopping_early_does_not_fire() {
        // SAFETY: as above.
        let mut run: kvm_run = unsafe { std::mem::zeroed() };
        let w = Watchdog::start(Duration::from_secs(60), &mut run).unwrap();
        assert!(!w.fired());
        drop(w);
        assert_eq!(run.immediate_exit, 0);
        assert_eq!(timeout_message(Duration::from_secs(1)), "guest did not finish within 1 s (--timeout)");
    }
}
