//! The gdb connection through a lab host: gdb-multiarch on the outer machine talks to the stub
//! of the inner vmm, over the one serial line the console already uses.
//!
//! - Outer vmm: listens on the user's `--gdb` address (loopback by default) and relays the one
//!   connection it accepts ([`serve_outer`]). Bytes from gdb go to init as `Ctrl-A g` frames in
//!   the key stream ([`encode_inbound`]), under the same credit window as keys; bytes from the
//!   stub come back as `G` frames ([`super::frame::GDB`]).
//! - init: splits the console's byte stream into keys and gdb bytes ([`Splitter`]) and relays
//!   the gdb bytes over a socket pair to the inner vmm, whose descriptor it names in
//!   [`FD_ENV`]. The inner vmm's stub then talks over that socket instead of listening.
//!
//! In the key stream a Ctrl-A is already an escape (`C-a C-a` one Ctrl-A, `C-a x` quit, see
//! [`super::keys`]); a gdb frame is `C-a g`, the payload length as 4 hex digits, the payload.
//! A guest's own Ctrl-A g is sent as `C-a C-a g`, so it can never start one. An empty frame
//! ([`CLOSED`]) says gdb went away: init shuts its end of the pair, so the stub reads the end
//! of its connection as it would a closed TCP socket (and lets the guest run on).
use common::gdb::GdbConfig;
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::sync::{Arc, Mutex};

const CTRL_A: u8 = 0x01;
const GDB_KEY: u8 = b'g';
/// The largest payload of one inbound frame: small against the 1 KiB credit window.
pub const MAX_INBOUND: usize = 256;
const HEADER: usize = 2 + 4;

/// The frame the outer vmm sends when gdb's connection ends.
pub const CLOSED: [u8; HEADER] = [CTRL_A, GDB_KEY, b'0', b'0', b'0', b'0'];

/// Set by init for the inner vmm: the descriptor of its end of the gdb socket pair.
pub const FD_ENV: &str = "VMM_LAB_GDB_FD";

/// Appends the inbound frames carrying gdb's `bytes` (split as needed) to `out`.
pub fn encode_inbound(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(MAX_INBOUND) {
        out.extend_from_slice(&[CTRL_A, GDB_KEY]);
        out.extend_from_slice(format!("{:04x}", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
    }
}

/// init's side: takes gdb frames out of the console's byte stream and passes every other
/// byte (escapes included, for the inner vmm to read) through unchanged.
#[derive(Debug, Default)]
pub struct Splitter {
    state: State,
    /// An empty frame ([`CLOSED`]) came: gdb went away.
    pub closed: bool,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Keys,
    /// A Ctrl-A was the last key byte.
    AfterCtrlA,
    /// Inside a gdb frame's header (the hex digits so far).
    Length(Vec<u8>),
    /// Inside a gdb frame's payload: this many bytes still to come.
    Payload(usize),
}

impl Splitter {
    /// Feeds console bytes; returns (bytes for the inner vmm's stdin, bytes for its stub).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut keys, mut gdb) = (Vec::new(), Vec::new());
        for &b in input {
            self.state = match std::mem::take(&mut self.state) {
                State::Keys if b == CTRL_A => State::AfterCtrlA,
                State::Keys => {
                    keys.push(b);
                    State::Keys
                }
                State::AfterCtrlA if b == GDB_KEY => State::Length(Vec::new()),
                State::AfterCtrlA => {
                    keys.extend_from_slice(&[CTRL_A, b]);
                    State::Keys
                }
                State::Length(mut digits) => {
                    digits.push(b);
                    if digits.len() < HEADER - 2 {
                        State::Length(digits)
                    } else {
                        // A header that does not parse cannot come from the outer vmm; drop it.
                        let len = std::str::from_utf8(&digits).ok().and_then(|s| usize::from_str_radix(s, 16).ok());
                        match len {
                            Some(0) => {
                                self.closed = true;
                                State::Keys
                            }
                            None => State::Keys,
                            Some(n) => State::Payload(n),
                        }
                    }
                }
                State::Payload(n) => {
                    gdb.push(b);
                    if n > 1 {
                        State::Payload(n - 1)
                    } else {
                        State::Keys
                    }
                }
            };
        }
        (keys, gdb)
    }
}

/// The inner vmm's end of the gdb socket pair, if init gave it one.
pub fn inner_fd() -> Option<RawFd> {
    std::env::var(FD_ENV).ok()?.parse().ok()
}

/// Where the outer vmm's relay writes what the stub sends: the accepted connection, once
/// there is one. The serial reader calls [`GdbPeer::send`] with each `G` frame's payload.
#[derive(Clone, Default)]
pub struct GdbPeer(Arc<Mutex<Option<std::net::TcpStream>>>);

impl GdbPeer {
    pub fn send(&self, bytes: &[u8]) {
        if let Some(s) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = s.write_all(bytes);
        }
    }
}

/// The outer vmm's socket for `--gdb`: bound at once, so its address is known and printed
/// (the same line as without a lab host), but listening only from [`serve_outer`], once the
/// lab host's init has started. A gdb that connects earlier is refused and retries (gdb's
/// `tcp auto-retry`, for up to `tcp connect-timeout`, 15 s), instead of sending its first
/// packets to a stub that is not there yet and giving up on their answers after
/// `remotetimeout` (2 s) while the lab host boots.
pub struct OuterSocket(Socket);

pub fn bind(config: &GdbConfig) -> common::Result<OuterSocket> {
    let failed = |e: std::io::Error| {
        common::Error::bad_input(format!("--gdb {}: cannot listen: {}", config.addr, common::image::io_reason(&e)))
    };
    let socket = Socket::new(Domain::for_address(config.addr), Type::STREAM, None).map_err(failed)?;
    // As std's TcpListener::bind does: a port in TIME_WAIT from an earlier run is free again.
    socket.set_reuse_address(true).map_err(failed)?;
    socket.bind(&config.addr.into()).map_err(failed)?;
    let bound = socket.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(config.addr);
    let line = if config.wait { "vmm: waiting for gdb on" } else { "vmm: gdb can connect on" };
    common::console::say(&format!("{line} {bound}"));
    Ok(OuterSocket(socket))
}

/// The outer vmm's relay, once init has started: listens on `socket` and accepts one gdb
/// connection (on a thread of its own), makes it `peer`'s, then sends everything gdb writes to
/// init through `to_init` (which applies the credit window).
pub fn serve_outer(socket: OuterSocket, peer: &GdbPeer, to_init: impl Fn(&[u8]) + Send + 'static) {
    let answer = peer.clone();
    std::thread::spawn(move || {
        if let Err(e) = socket.0.listen(1) {
            common::console::say(&format!("vmm: --gdb: cannot listen: {}", common::image::io_reason(&e)));
            return;
        }
        let listener: TcpListener = socket.0.into();
        let Ok((mut stream, _)) = listener.accept() else { return };
        let _ = stream.set_nodelay(true);
        let Ok(reader) = stream.try_clone() else { return };
        *answer.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
        let mut buf = [0u8; MAX_INBOUND];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut wire = Vec::with_capacity(n + HEADER);
                    encode_inbound(&buf[..n], &mut wire);
                    to_init(&wire);
                }
            }
        }
        to_init(&CLOSED);
    });
}

/// init's end of the gdb relay: a socket pair whose other end the inner vmm inherits.
pub struct InitSide {
    /// (init's end, the inner vmm's end until it has started); None without --gdb.
    pair: Option<(UnixStream, Option<UnixStream>)>,
    splitter: Splitter,
    /// gdb's bytes the stub has not taken yet. init's end is non-blocking: a stub that is not
    /// reading (its guest runs) must not stall init's one loop, which also relays the console
    /// and the exit frame. gdb waits for answers, so this stays a few packets long.
    to_stub: Vec<u8>,
    /// Our end's write half is shut (gdb went away, everything before that delivered).
    shut: bool,
}

impl InitSide {
    pub fn new(wanted: bool) -> std::io::Result<Self> {
        let pair = if wanted {
            let (ours, theirs) = UnixStream::pair()?;
            ours.set_nonblocking(true)?;
            Some((ours, Some(theirs)))
        } else {
            None
        };
        Ok(InitSide { pair, splitter: Splitter::default(), to_stub: Vec::new(), shut: false })
    }

    /// Lets the inner vmm inherit its end and tells it where that is ([`FD_ENV`]).
    pub fn pass_to(&self, command: &mut std::process::Command) {
        if let Some((_, Some(theirs))) = &self.pair {
            let fd = theirs.as_raw_fd();
            // SAFETY: clearing FD_CLOEXEC on a descriptor we own, in the fork before exec.
            unsafe {
                command.pre_exec(move || {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                    Ok(())
                });
            }
            command.env(FD_ENV, fd.to_string());
        }
    }

    /// The inner vmm has its copy: ours goes, so its end of the pair closes when it exits.
    pub fn child_started(&mut self) {
        if let Some((_, theirs)) = &mut self.pair {
            theirs.take();
        }
    }

    /// What init polls for: the stub's output, and room for queued gdb bytes (fd -1: none).
    pub fn pollfd(&self) -> libc::pollfd {
        let fd = self.pair.as_ref().map_or(-1, |(ours, _)| ours.as_raw_fd());
        let out = if self.to_stub.is_empty() { 0 } else { libc::POLLOUT };
        libc::pollfd { fd, events: libc::POLLIN | out, revents: 0 }
    }

    /// Console bytes in: gdb frames are queued for the stub, the rest is returned for the
    /// inner vmm's stdin.
    pub fn split(&mut self, input: &[u8]) -> Vec<u8> {
        if self.pair.is_none() {
            return input.to_vec();
        }
        let (keys, gdb) = self.splitter.feed(input);
        self.to_stub.extend(gdb);
        self.flush();
        keys
    }

    /// Writes what the stub has room for, never waiting; once gdb went away and all it sent
    /// is through, shuts our write half (the stub reads the end of its connection).
    fn flush(&mut self) {
        let Some((ours, _)) = &mut self.pair else { return };
        while !self.to_stub.is_empty() {
            match ours.write(&self.to_stub) {
                Ok(n) => {
                    self.to_stub.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // The stub's end is gone: nobody will read these.
                Err(_) => self.to_stub.clear(),
            }
        }
        if self.splitter.closed && !self.shut {
            let _ = ours.shutdown(std::net::Shutdown::Write);
            self.shut = true;
        }
    }

    /// init's poll said our end is ready (`revents`): write what is queued, relay what the
    /// stub wrote.
    pub fn ready(&mut self, revents: libc::c_short, buf: &mut [u8], send: impl Fn(&[u8])) {
        if revents & libc::POLLOUT != 0 {
            self.flush();
        }
        if revents & !libc::POLLOUT != 0 {
            self.relay_out(buf, send);
        }
    }

    /// The inner vmm ended: relay what its stub wrote last (gdb's "exited" reply).
    pub fn drain(&mut self, buf: &mut [u8], send: impl Fn(&[u8])) {
        while let Some((ours, _)) = &self.pair {
            let mut pfd = libc::pollfd { fd: ours.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd; timeout 0 only looks.
            if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
                return;
            }
            self.relay_out(buf, &send);
        }
    }

    /// The stub wrote: relay what is there through `send` (as G frames); at its end, stop polling.
    pub fn relay_out(&mut self, buf: &mut [u8], send: impl Fn(&[u8])) {
        let Some((ours, _)) = &mut self.pair else { return };
        match ours.read(buf) {
            Ok(n) if n > 0 => send(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) => {}
            _ => self.pair = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdb_frames_come_out_and_keys_pass_through_with_their_escapes() {
        let mut wire = b"ab\x01\x01c".to_vec();
        encode_inbound(b"$g#67\x03", &mut wire);
        wire.extend_from_slice(b"d\x01x");
        let (keys, gdb) = Splitter::default().feed(&wire);
        assert_eq!(keys, b"ab\x01\x01cd\x01x", "escapes stay for the inner vmm");
        assert_eq!(gdb, b"$g#67\x03");
    }

    #[test]
    fn split_at_every_byte_and_long_payloads() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * MAX_INBOUND + 7).collect();
        let mut wire = b"k\x01".to_vec();
        wire.push(b'y');
        encode_inbound(&data, &mut wire);
        wire.push(b'z');
        for cut in [0, 1, 2, 3, 5, 8, 200, wire.len() - 1] {
            let mut s = Splitter::default();
            let (mut keys, mut gdb) = s.feed(&wire[..cut]);
            let (k, g) = s.feed(&wire[cut..]);
            keys.extend(k);
            gdb.extend(g);
            assert_eq!(keys, b"k\x01yz", "cut at {cut}");
            assert_eq!(gdb, data, "cut at {cut}");
        }
        let mut s = Splitter::default();
        let gdb: Vec<u8> = wire.iter().flat_map(|b| s.feed(std::slice::from_ref(b)).1).collect();
        assert_eq!(gdb, data);
    }

    #[test]
    fn an_empty_frame_says_gdb_went_away() {
        let mut s = Splitter::default();
        let mut wire = Vec::new();
        encode_inbound(b"$D#44", &mut wire);
        assert_eq!(s.feed(&wire), (Vec::new(), b"$D#44".to_vec()));
        assert!(!s.closed);
        assert_eq!(s.feed(&[&CLOSED[..], b"k"].concat()), (b"k".to_vec(), Vec::new()));
        assert!(s.closed);
    }

    #[test]
    fn init_never_waits_for_a_stub_that_is_not_reading() {
        let mut side = InitSide::new(true).expect("socket pair");
        let mut stub = side.pair.as_mut().and_then(|(_, theirs)| theirs.take()).expect("the stub's end");
        // Far more than a socket pair's buffer, while the stub reads nothing.
        let data: Vec<u8> = (0..=255u8).cycle().take(4 << 20).collect();
        let mut wire = Vec::new();
        encode_inbound(&data, &mut wire);
        wire.extend_from_slice(b"key");
        wire.extend_from_slice(&CLOSED);
        assert_eq!(side.split(&wire), b"key", "keys come back at once");
        assert!(side.pollfd().events & libc::POLLOUT != 0, "bytes are queued");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stub.read(&mut buf).expect("read") {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
            side.ready(libc::POLLOUT, &mut [], |_| {});
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "all of gdb's bytes, in order, then the end of the connection");
        assert_eq!(side.pollfd().events, libc::POLLIN);
    }

    #[test]
    fn a_bad_header_is_dropped() {
        let (keys, gdb) = Splitter::default().feed(b"\x01gzzzzok");
        assert_eq!((keys.as_slice(), gdb.as_slice()), (&b"ok"[..], &b""[..]));
    }
}
