//! Pseudo-terminal helpers for tests that drive vmm's interactive console: a pty pair, its
//! local flags (raw or cooked), and waiting for vmm to enter raw mode or to exit.
#![allow(dead_code)]
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A pty pair: vmm gets the slave as stdin/stdout, the test keeps the master.
pub fn pty() -> (File, File) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors; null name/termios/winsize are allowed.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) }
}

pub fn local_flags(tty: &File) -> libc::tcflag_t {
    // SAFETY: termios is plain data; tcgetattr fills it for a valid terminal descriptor.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `tty` is an open pty descriptor.
    assert_eq!(unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut t) }, 0);
    t.c_lflag
}

/// Waits until the pty leaves canonical mode (vmm entered raw mode), or fails.
pub fn wait_for_raw(slave: &File, child: &mut Child) {
    let start = Instant::now();
    while local_flags(slave) & libc::ICANON != 0 {
        assert!(child.try_wait().unwrap().is_none(), "vmm ended before entering raw mode");
        assert!(start.elapsed() < Duration::from_secs(10), "vmm never put the terminal in raw mode");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit; kills it and fails after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("vmm did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
