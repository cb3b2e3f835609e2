//! The watcher: while the guest runs, the vCPU thread is inside KVM_RUN (or the guest's own
//! code on URVirt) and reads no socket. This thread does: it accepts gdb's connection if none
//! was accepted before the start, and once the session runs it notices the byte gdb sends for
//! Ctrl-C (0x03). Either way it calls the backend's `interrupt` callback (x86: a kick out of
//! KVM_RUN), and the vCPU thread, back in its run loop, asks the session what came.
//!
//! It watches only while the vCPU thread says the guest runs ([`Watcher::watch`]); while the
//! guest is stopped the vCPU thread reads the socket itself and the watcher keeps out of it.
//! After one interrupt it pauses by itself, so bytes not read yet do not kick again and again.
//!
//! One gdb connection per run: the listener closes once a connection is taken (README, --help).
use super::{accepted, poll_readable, Connection, Link};
use crate::{Error, Result};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How long one wait of the watcher lasts before it looks at its flags again: short enough
/// that Ctrl-C and the end of the run are noticed at once, long enough to cost nothing.
const TICK_MS: i32 = 50;

/// The watcher thread's allowlist: waiting on sockets (poll/ppoll, accept4 and close for the
/// listener, setsockopt for TCP_NODELAY, fcntl to duplicate the connection), its flags' lock,
/// the kick (a signal to the vCPU thread: getpid, gettid, tgkill, rt_sigprocmask), the
/// allocator, and ending the thread.
const WATCHER_SYSCALLS: &[i64] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_accept4,
    libc::SYS_close,
    libc::SYS_setsockopt,
    libc::SYS_fcntl,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep, // musl's sleep (std before Rust 1.95 calls nanosleep())
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_tkill, // musl's pthread_kill
    libc::SYS_rt_sigprocmask,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
];

#[derive(Default)]
struct Shared {
    /// A connection accepted while the guest ran, for the vCPU thread to take.
    new_connection: Mutex<Option<TcpStream>>,
    /// The guest runs and a byte from gdb should interrupt it.
    watching: AtomicBool,
    stop: AtomicBool,
}

/// The watcher thread; dropping it ends the thread.
pub struct Watcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Starts the watcher with the backend's `interrupt` (called from the watcher thread) and
    /// returns it with the connection accepted before the start (`--gdb-wait`), if any. With
    /// `jail`, the watcher runs under its own seccomp allowlist.
    pub fn start(self, interrupt: impl Fn() + Send + 'static, jail: bool) -> Result<(Watcher, Option<Connection>)> {
        let shared = Arc::new(Shared::default());
        let clone_error = |e: std::io::Error| Error::bad_input(format!("--gdb: {}", crate::image::io_reason(&e)));
        let (listener, watched) = match &self.accepted {
            Some(stream) => (None, Some(stream.try_clone().map_err(clone_error)?)),
            None => (self.listener, None),
        };
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vmm-gdb".into())
            .spawn(move || {
                if jail {
                    if let Err(e) = crate::jail::apply("gdb", WATCHER_SYSCALLS) {
                        crate::console::say(&format!("vmm: {e}"));
                        std::process::exit(crate::error::EXIT_BAD_INPUT);
                    }
                }
                watch_loop(&theirs, listener, watched, &interrupt)
            })
            .map_err(|e| Error::bad_input(format!("cannot start the gdb thread: {}", crate::image::io_reason(&e))))?;
        let watcher = Watcher { shared, thread: Some(thread) };
        Ok((watcher, self.accepted.map(Connection::new)))
    }
}

fn watch_loop(
    shared: &Shared,
    mut listener: Option<std::net::TcpListener>,
    mut watched: Option<TcpStream>,
    interrupt: &dyn Fn(),
) {
    while !shared.stop.load(Ordering::SeqCst) {
        if let Some(l) = &listener {
            if !poll_readable(l.as_raw_fd(), TICK_MS) {
                continue;
            }
            // One gdb per run: the listener closes once it is taken.
            if let Ok((stream, _)) = l.accept() {
                let stream = accepted(stream);
                watched = stream.try_clone().ok();
                *shared.new_connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
                listener = None;
                interrupt();
            }
            continue;
        }
        let Some(stream) = &watched else { return };
        if !shared.watching.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(TICK_MS as u64));
            continue;
        }
        // Still watching after the wait: the vCPU thread has not taken the socket meanwhile.
        if poll_readable(stream.as_raw_fd(), TICK_MS) && shared.watching.swap(false, Ordering::SeqCst) {
            interrupt();
        }
    }
}

impl Watcher {
    /// The connection gdb made while the guest ran, once (the callback has been called for it).
    pub fn take_connection(&self) -> Option<Connection> {
        self.shared.new_connection.lock().unwrap_or_else(|e| e.into_inner()).take().map(Connection::new)
    }

    /// The guest is about to run: a byte from gdb now interrupts it.
    pub fn watch(&self) {
        self.shared.watching.store(true, Ordering::SeqCst);
    }

    /// The guest is stopped: the vCPU thread reads the socket itself.
    pub fn pause(&self) {
        self.shared.watching.store(false, Ordering::SeqCst);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{listen, GdbConfig};
    use std::io::Write;
    use std::net::TcpStream;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn a_late_connection_and_a_ctrl_c_each_interrupt_once() {
        let link = listen(&GdbConfig { addr: "127.0.0.1:0".parse().unwrap(), wait: false }).unwrap();
        let addr = link.listener.as_ref().unwrap().local_addr().unwrap();
        let (tx, rx) = channel();
        let (watcher, accepted) = link.start(move || tx.send(()).unwrap(), false).unwrap();
        assert!(accepted.is_none());
        let mut gdb = TcpStream::connect(addr).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).expect("a connection interrupts");
        let mut conn = watcher.take_connection().expect("the connection is handed over");
        assert!(watcher.take_connection().is_none());
        // Not watching: a byte is left for the vCPU thread.
        gdb.write_all(b"+").unwrap();
        assert_eq!(conn.read_byte().unwrap(), Some(b'+'));
        watcher.watch();
        gdb.write_all(&[3]).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).expect("Ctrl-C interrupts");
        // The watcher paused itself before it called back: the byte left unread cannot kick again.
        assert!(!watcher.shared.watching.load(Ordering::SeqCst), "one interrupt, then paused");
        assert_eq!(conn.read_byte().unwrap(), Some(3));
    }
}
