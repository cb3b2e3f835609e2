//! The host side of the guest console.
//!
//! Output goes to stdout (coalesced for at most a few milliseconds by [`crate::stdout_buffer`]:
//! guests print a byte at a time and a user wants to see it now) or to a capture buffer that tests read back. Input comes from stdin on a thread of
//! its own. When stdin is a terminal it is put in raw mode so keys reach the guest as typed,
//! and Ctrl-A x quits, as in QEMU's -nographic; the terminal is restored on every exit path
//! through [`restore_terminal`] (called by `main` and by the panic hook).
use crate::{Error, Result};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

enum Output {
    Stdout,
    Capture(Mutex<Vec<u8>>),
}

/// A cheap handle to the console; clone it into every device that prints.
#[derive(Clone)]
pub struct Console {
    out: Arc<Output>,
}

impl Console {
    pub fn stdout() -> Self {
        Console { out: Arc::new(Output::Stdout) }
    }

    /// A console whose output is kept in memory, for tests.
    pub fn capture() -> Self {
        Console { out: Arc::new(Output::Capture(Mutex::new(Vec::new()))) }
    }

    pub fn write(&self, bytes: &[u8]) {
        match &*self.out {
            Output::Stdout => crate::stdout_buffer::push(bytes),
            Output::Capture(buf) => buf.lock().unwrap().extend_from_slice(bytes),
        }
    }

    /// What a capture console has received so far (empty for stdout).
    pub fn captured(&self) -> Vec<u8> {
        match &*self.out {
            Output::Stdout => Vec::new(),
            Output::Capture(buf) => buf.lock().unwrap().clone(),
        }
    }

    /// Whether this console only captures output (tests, benchmarks): it takes no input.
    pub fn is_capture(&self) -> bool {
        matches!(&*self.out, Output::Capture(_))
    }

    /// Starts feeding stdin to the guest: `sink` gets each chunk of input bytes, `quit` runs
    /// once if the user presses Ctrl-A x on a terminal. Returns at once; the reader thread
    /// lives until stdin closes or the process exits.
    pub fn start_input<S, Q>(&self, sink: S, quit: Q)
    where
        S: FnMut(&[u8]) + Send + 'static,
        Q: FnOnce() + Send + 'static,
    {
        // Without a jail the reader cannot fail to start in a way worth reporting.
        let _ = self.start_input_jailed(sink, quit, None);
    }

    /// [`Console::start_input`], with the reader thread put under the seccomp allowlist
    /// `jail` (its name for messages, and the calls it may make) before it reads anything.
    /// Returns once the jail is on, or the error that kept it off (the thread then ends).
    pub fn start_input_jailed<S, Q>(
        &self,
        mut sink: S,
        quit: Q,
        jail: Option<(&'static str, &'static [i64])>,
    ) -> Result<()>
    where
        S: FnMut(&[u8]) + Send + 'static,
        Q: FnOnce() + Send + 'static,
    {
        if stdin_is_dev_null() {
            // Nothing can ever be read (and Ctrl-A x cannot be typed): no thread, no jail to
            // build, and the guest starts sooner (`vmm bench` starts vmm this way).
            return Ok(());
        }
        let interactive = enter_raw_mode();
        let (jailed, jail_result) = std::sync::mpsc::sync_channel::<Result<()>>(1);
        let spawned = std::thread::Builder::new().name("console-in".into()).spawn(move || {
            let probe = jail_probe_requested(jail.map_or("console", |(name, _)| name));
            let r = jail.map_or(Ok(()), |(name, allowed)| crate::jail::apply(name, allowed));
            let ok = r.is_ok();
            let _ = jailed.send(r);
            if !ok {
                return;
            }
            if probe {
                jail_probe();
            }
            let mut escape = EscapeState::default();
            let mut quit = Some(quit);
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if !interactive {
                    sink(&buf[..n]);
                    continue;
                }
                let (bytes, quit_now) = escape.feed(&buf[..n]);
                // Quit first: the keys typed just before it do not matter, and handing them
                // over may wait for a guest that does not read.
                if quit_now {
                    if let Some(q) = quit.take() {
                        q();
                    }
                    return;
                }
                if !bytes.is_empty() {
                    sink(&bytes);
                }
            }
        });
        let started = match spawned {
            Ok(_) => jail_result.recv().unwrap_or(Ok(())),
            Err(e) => Err(Error::bad_input(format!("cannot start the console input thread: {e}"))),
        };
        if started.is_err() {
            restore_terminal();
        }
        started
    }
}

/// Whether stdin is /dev/null (the character device 1:3), where a read only ever ends.
fn stdin_is_dev_null() -> bool {
    // SAFETY: `stat` is plain data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into the stat we own; a closed fd 0 is just an error.
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        return false;
    }
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
}

/// Test hook (not for users): `VMM_TEST_JAIL_PROBE=<thread>` makes the thread of that name
/// ("vcpu", "console") try `openat`, which no jail allows, right after its jail is on, so
/// tests can watch a real thread be refused (and, with --no-seccomp, not refused). Read
/// before the jail goes on.
pub fn jail_probe_requested(thread: &str) -> bool {
    std::env::var_os("VMM_TEST_JAIL_PROBE").is_some_and(|v| v == thread)
}

/// The forbidden call of [`jail_probe_requested`]: opening a file.
pub fn jail_probe() {
    // SAFETY: opening a constant path read-only; under the jail this raises SIGSYS instead.
    // openat, not open: musl's open() is the old `open` call, glibc's is openat.
    unsafe { libc::openat(libc::AT_FDCWD, c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
}

/// Ctrl-A handling on an interactive console: `C-a x` quits, `C-a C-a` sends one C-a,
/// `C-a` + anything else sends both keys. Also what the lab's inner vmm reads its stdin with:
/// the outer one sends the user's keys with every Ctrl-A doubled, and its Ctrl-A x as is.
#[derive(Default)]
pub struct EscapeState {
    after_ctrl_a: bool,
}

const CTRL_A: u8 = 0x01;

impl EscapeState {
    /// Returns the bytes for the guest and whether the user asked to quit.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.after_ctrl_a {
                self.after_ctrl_a = false;
                match b {
                    b'x' | b'X' => return (out, true),
                    CTRL_A => out.push(CTRL_A),
                    other => out.extend_from_slice(&[CTRL_A, other]),
                }
            } else if b == CTRL_A {
                self.after_ctrl_a = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The terminal settings to put back. Set once, before raw mode is entered; read from signal
/// handlers, so it is a OnceLock (a lock-free read once set) rather than a Mutex.
static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();
/// Whether the terminal is in raw mode now; whoever swaps it to false restores the terminal.
static RAW_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Signals that end the process by default: with them the terminal would stay raw.
const FATAL_SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGINT];

/// Puts stdin in raw mode if it is a terminal; returns whether it is one.
fn enter_raw_mode() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return false;
    }
    // SAFETY: termios is plain old data; tcgetattr fills it for a valid descriptor.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: stdin is a terminal (checked above) and `t` is a valid termios to fill.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
        return false;
    }
    let saved = *SAVED_TERMIOS.get_or_init(|| t);
    let mut raw = saved;
    // SAFETY: cfmakeraw only edits the struct we own.
    unsafe { libc::cfmakeraw(&mut raw) };
    // Keep output processing so a guest's bare "\n" still starts a new line.
    raw.c_oflag |= libc::OPOST | libc::ONLCR;
    for sig in FATAL_SIGNALS {
        install_restoring_handler(sig);
    }
    RAW_ACTIVE.store(true, Ordering::SeqCst);
    // SAFETY: valid descriptor and termios.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) };
    true
}

/// Makes `sig` restore the terminal before it ends the process, unless the signal is ignored
/// (e.g. SIGHUP under nohup): an ignored signal stays ignored.
fn install_restoring_handler(sig: libc::c_int) {
    // SAFETY: sigaction is plain data; zeroed is a valid empty action.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying the current action into a valid struct.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 || old.sa_sigaction == libc::SIG_IGN {
        return;
    }
    // SAFETY: as above.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = restore_and_reraise as *const () as libc::sighandler_t;
    // SAFETY: the handler only calls async-signal-safe functions (tcsetattr, signal, raise).
    unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
}

/// Keeps the fatal signals above off the calling thread, so the process receives them on
/// another one. URVirt calls this on the thread that runs guest code (a handler must never
/// run there on the guest's stack and registers); x86 on its jailed vCPU thread, so the
/// handler runs on the main thread, outside the jail. Does nothing unless
/// raw mode (and so the restoring handlers) is active: with default actions, blocking would
/// only delay the process's death.
pub fn keep_fatal_signals_off_this_thread() {
    if !RAW_ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; pthread_sigmask only changes this thread's mask.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in FATAL_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// For helper threads (console output, device workers): blocks every signal but the
/// synchronous ones (a fault, and the jail's SIGSYS, which must reach its reporter), so a
/// process-directed signal (URVirt's SIGALRM, SIGTERM) is always taken by a thread that
/// handles it, never by a helper whose default action would end the process.
pub fn block_async_signals_on_this_thread() {
    // SAFETY: a sigset we own, filled, trimmed and passed to pthread_sigmask for this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in [libc::SIGSYS, libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP] {
            libc::sigdelset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Restores the terminal if raw mode was entered. Safe to call any number of times, from
/// any exit path, and from a signal handler. The flag is cleared only after the terminal is
/// restored, so a signal arriving in between still finds it set and restores it too.
pub fn restore_terminal() {
    // What the guest printed last goes out before whatever ends the process says why.
    crate::stdout_buffer::try_flush();
    if RAW_ACTIVE.load(Ordering::SeqCst) {
        if let Some(t) = SAVED_TERMIOS.get() {
            // One TCSETS ioctl, not tcsetattr: glibc's also reads the settings before and
            // after (TCGETS), and this runs in jailed threads' handlers, whose jail allows
            // only TCSETS. The kernel's termios is a prefix of libc's (flags, line, c_cc).
            // SAFETY: restoring settings read earlier from the same descriptor.
            unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TCSETS, t as *const libc::termios) };
        }
        RAW_ACTIVE.store(false, Ordering::SeqCst);
    }
}

/// Writes one line to stderr. A closed or full stderr must not turn into a panic, which
/// `eprintln!` would.
pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fatal signal while the terminal is raw: restore it, then die of the same signal so
/// the parent sees the usual status.
extern "C" fn restore_and_reraise(sig: libc::c_int) {
    restore_terminal();
    // SAFETY: signal and raise are async-signal-safe; the default action ends the process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_collects_output() {
        let c = Console::capture();
        c.write(b"Hel");
        c.clone().write(b"lo\n");
        assert_eq!(c.captured(), b"Hello\n");
        assert!(Console::stdout().captured().is_empty());
    }

    #[test]
    fn ctrl_a_x_quits_and_ctrl_a_escapes() {
        let mut e = EscapeState::default();
        assert_eq!(e.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(e.feed(&[CTRL_A, CTRL_A, b'q']), (vec![CTRL_A, b'q'], false));
        assert_eq!(e.feed(&[CTRL_A, b'c']), (vec![CTRL_A, b'c'], false));
        // The escape may be split across two reads.
        assert_eq!(e.feed(&[b'a', CTRL_A]), (vec![b'a'], false));
        assert_eq!(e.feed(b"x"), (vec![], true));
    }

    #[test]
    fn restore_without_raw_mode_is_harmless() {
        restore_terminal();
        restore_terminal();
    }
}
