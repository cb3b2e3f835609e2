//! The keys the outer vmm sends the inner one over the serial line, with Ctrl-A x in band.
//!
//! The outer vmm owns the user's terminal and sees Ctrl-A x first; the guest's stats and exit
//! belong to the inner vmm, so the outer passes the quit on instead of killing the lab host.
//! In the byte stream a Ctrl-A is an escape: `C-a C-a` is one Ctrl-A for the guest, `C-a x`
//! means quit (the same keys a user types at a terminal). init tells the inner vmm, by
//! [`ENV`], that its stdin speaks this.
//!
//! The serial line has no flow control of its own: QEMU's UART accepts bytes as fast as the
//! lab host's kernel takes its interrupts, and `yes | vmm ...` kept the guest CPU so busy with
//! them that the lab host booted for over a minute or the run outlived its --timeout by far.
//! So keys move under a credit window ([`InputWindow`]): nothing is sent before init starts,
//! then at most [`WINDOW`] bytes that init has not yet taken off the console (it reports what
//! it takes in credit frames). A guest that reads nothing stops the stream instead of drowning
//! the lab host in interrupts.
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const CTRL_A: u8 = 0x01;

/// Bytes in flight to init. Well under the tty's 4 KiB buffer, so init never loses any.
pub const WINDOW: usize = 1024;
/// How long keys wait for credit before the rest of a chunk is dropped, as a UART overruns:
/// the console reader must get back to stdin to see a Ctrl-A x behind a guest that reads nothing.
const PATIENCE: Duration = Duration::from_secs(2);

/// Set by the lab's init for the inner vmm: its stdin carries escaped keys.
pub const ENV: &str = "VMM_LAB_KEYS";

/// What the outer vmm sends for Ctrl-A x.
pub const QUIT: [u8; 2] = [CTRL_A, b'x'];

/// Every Ctrl-A of the guest's input doubled; the inner vmm reads it back with the console's
/// own [`common::console::EscapeState`].
///
/// The longest prefix of `bytes` whose escaped form fits in `room` wire bytes, escaped, and
/// how many input bytes it used. A doubled Ctrl-A is never split, so what follows a dropped
/// tail can never pair with half an escape and become a quit.
pub fn escape_within(bytes: &[u8], room: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    for &b in bytes {
        let len = if b == CTRL_A { 2 } else { 1 };
        if out.len() + len > room {
            break;
        }
        out.push(b);
        if b == CTRL_A {
            out.push(CTRL_A);
        }
        used += 1;
    }
    (out, used)
}

/// The outer side's credit: how many more wire bytes it may send to init.
#[derive(Default)]
pub struct InputWindow {
    state: Mutex<WindowState>,
    changed: Condvar,
}

#[derive(Default)]
struct WindowState {
    credit: usize,
    closed: bool,
}

impl InputWindow {
    /// init gave back `n` bytes of room (its start grants the whole window).
    pub fn grant(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.credit = s.credit.saturating_add(n).min(WINDOW);
        self.changed.notify_all();
    }

    /// The run is over: nothing more is sent and a waiting sender returns.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.changed.notify_all();
    }

    /// Sends the guest's input `bytes` escaped through `write`, as credit allows, waiting at most
    /// [`PATIENCE`] in all; what is left then is dropped. `write` runs without the lock held.
    pub fn send(&self, bytes: &[u8], write: impl FnMut(&[u8])) {
        self.send_within(bytes, PATIENCE, write)
    }

    /// Sends `wire` (already framed, at most [`WINDOW`] bytes: a gdb frame) in one piece once
    /// there is credit for all of it, however long that takes: unlike keys, gdb's bytes are
    /// never dropped. Returns at once if the window is closed.
    pub fn send_whole(&self, wire: &[u8], write: impl FnOnce(&[u8])) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !s.closed && s.credit < wire.len().min(WINDOW) {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.closed {
            return;
        }
        s.credit = s.credit.saturating_sub(wire.len());
        drop(s);
        write(wire);
    }

    /// [`InputWindow::send`] with its own patience (tests give a long one, so a slow machine
    /// cannot drop bytes they count).
    fn send_within(&self, mut bytes: &[u8], patience: Duration, mut write: impl FnMut(&[u8])) {
        let give_up = Instant::now() + patience;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !bytes.is_empty() && !s.closed {
            let (wire, used) = escape_within(bytes, s.credit);
            if used == 0 {
                let left = give_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                s = self.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            s.credit -= wire.len();
            bytes = &bytes[used..];
            drop(s);
            write(&wire);
            s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::console::EscapeState;
    use std::sync::Arc;

    #[test]
    fn escapes_are_never_split_at_the_window_edge() {
        assert_eq!(escape_within(b"ab\x01c", 3), (b"ab".to_vec(), 2));
        assert_eq!(escape_within(b"ab\x01c", 4), (b"ab\x01\x01".to_vec(), 3));
        assert_eq!(escape_within(b"\x01", 1), (Vec::new(), 0));
        assert_eq!(escape_within(b"abc", 0), (Vec::new(), 0));
    }

    /// Waits for `done`, failing (not hanging) if it never comes.
    fn wait_until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "the sender never got there");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn nothing_is_sent_before_credit_and_never_more_than_granted() {
        let window = Arc::new(InputWindow::default());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (w, out) = (Arc::clone(&window), Arc::clone(&sent));
        let sender = std::thread::spawn(move || {
            w.send_within(&[b'y'; 3000], Duration::from_secs(600), |wire| out.lock().unwrap().extend_from_slice(wire));
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(sent.lock().unwrap().is_empty(), "no credit yet, nothing may go");
        window.grant(WINDOW);
        wait_until(|| sent.lock().unwrap().len() >= WINDOW);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(sent.lock().unwrap().len(), WINDOW, "stops at the window until init takes some");
        window.grant(500);
        wait_until(|| sent.lock().unwrap().len() >= WINDOW + 500);
        // Credit never piles up beyond one window, however much init reports.
        window.grant(5 * WINDOW);
        wait_until(|| sent.lock().unwrap().len() >= 2 * WINDOW + 500);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(sent.lock().unwrap().len(), 2 * WINDOW + 500, "credit must not pile up");
        window.grant(WINDOW);
        sender.join().unwrap();
        assert_eq!(sent.lock().unwrap().len(), 3000);
    }

    #[test]
    fn a_gdb_frame_waits_for_credit_for_all_of_it_and_is_never_dropped() {
        let window = Arc::new(InputWindow::default());
        window.grant(100);
        let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
        let (w, out) = (Arc::clone(&window), Arc::clone(&sent));
        let sender =
            std::thread::spawn(move || w.send_whole(&[7u8; 300], |wire| out.lock().unwrap().extend_from_slice(wire)));
        // Far longer than the keys' patience would allow: a gdb frame still goes.
        std::thread::sleep(PATIENCE + Duration::from_millis(200));
        assert!(sent.lock().unwrap().is_empty(), "100 bytes of credit are not enough for 300");
        window.grant(200);
        sender.join().unwrap();
        assert_eq!(sent.lock().unwrap().len(), 300, "sent whole");
    }

    #[test]
    fn a_closed_window_ends_a_waiting_sender() {
        let window = Arc::new(InputWindow::default());
        let w = Arc::clone(&window);
        let sender = std::thread::spawn(move || w.send(b"lost", |_| panic!("nothing may be sent")));
        window.close();
        sender.join().unwrap();
    }

    #[test]
    fn escaped_bytes_come_back_unchanged_and_quit_is_seen() {
        let all: Vec<u8> = (0..=255u8).chain([CTRL_A, b'x', CTRL_A, CTRL_A]).collect();
        let mut wire = escape_within(&all, usize::MAX).0;
        wire.extend_from_slice(&QUIT);
        wire.extend_from_slice(b"after");
        // Byte by byte, so every escape is split across two reads.
        let (mut got, mut quit) = (Vec::new(), false);
        let mut u = EscapeState::default();
        for b in &wire {
            let (bytes, q) = u.feed(std::slice::from_ref(b));
            got.extend(bytes);
            if q {
                quit = true;
                break;
            }
        }
        assert_eq!(got, all, "a guest's Ctrl-A x is data, not a quit");
        assert!(quit);
        assert_eq!(EscapeState::default().feed(&escape_within(b"plain", usize::MAX).0), (b"plain".to_vec(), false));
    }
}
