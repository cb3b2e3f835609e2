//! Host clocks and timers for the guest: the `time` counter, the SBI timer deadline and the
//! `--timeout` limit, both delivered as SIGALRM to the thread that runs the guest.
pub use crate::guest_timer::ticks_to_duration;
use common::{Error, Result};
use std::time::Duration;

/// The host's `time` CSR. Linux lets U-mode read it (scounteren.TM), so this does not trap.
#[inline(always)]
pub fn rdtime() -> u64 {
    let t: u64;
    // SAFETY: rdtime only reads a counter.
    unsafe { std::arch::asm!("rdtime {}", out(reg) t, options(nomem, nostack)) };
    t
}

/// A one-shot CLOCK_MONOTONIC timer that sends SIGALRM to one thread.
pub struct HostTimer {
    id: libc::timer_t,
}

impl HostTimer {
    /// A disarmed timer aimed at the calling thread.
    pub fn for_this_thread() -> Result<Self> {
        // SAFETY: sigevent is plain data; zero is a valid starting point.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = libc::SIGALRM;
        // SAFETY: gettid has no preconditions.
        ev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid sigevent and out pointer.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return Err(Error::bad_input(format!("cannot create a host timer: {}", std::io::Error::last_os_error())));
        }
        Ok(HostTimer { id })
    }

    /// Fires once after `after` (None: disarm). A zero duration would disarm, so it is
    /// rounded up to one nanosecond; one too long for a timespec is capped (centuries).
    pub fn arm(&self, after: Option<Duration>) {
        let d = after.map(|d| d.max(Duration::from_nanos(1))).unwrap_or(Duration::ZERO);
        let secs = d.as_secs().min(libc::time_t::MAX as u64 / 2) as libc::time_t;
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: secs, tv_nsec: d.subsec_nanos() as libc::c_long },
        };
        // SAFETY: our timer id and a valid itimerspec.
        unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) };
    }
}

impl Drop for HostTimer {
    fn drop(&mut self) {
        // SAFETY: deleting the timer we created.
        unsafe { libc::timer_delete(self.id) };
    }
}
