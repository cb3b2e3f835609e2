//! The gdb remote stub's shared part (`vmm run --gdb ADDR:PORT [--gdb-wait]`), for both backends.
//!
//! - [`GdbConfig`] and [`parse_addr`]: what the command line asks for.
//! - [`listen`] and [`Link`]: the listening socket; with `--gdb-wait` one connection is accepted
//!   before the guest starts, otherwise gdb may connect while the guest runs.
//! - [`Connection`]: the byte stream handed to `gdbstub` (buffered writes, blocking reads).
//! - [`watcher::Watcher`]: a thread that notices, while the vCPU runs, that gdb connected or sent
//!   a byte (Ctrl-C), and calls the backend's "interrupt the guest" callback.
//! - [`session::Session`]: the gdbstub state machine driven from a backend's own run loop (the
//!   guest stopped, it runs, it stopped because ...), generic over the backend's `Target`.
//!
//! The backend supplies the `gdbstub::target::Target` (registers, memory, breakpoints, step)
//! and calls the session at the points of its run loop where the guest stops or starts.
pub mod session;
pub mod watcher;

use crate::{Error, Result};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

pub use session::{Served, Session, Stop};
pub use watcher::Watcher;

/// `--gdb ADDR:PORT` (or `--gdb PORT`, on loopback) and `--gdb-wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GdbConfig {
    pub addr: SocketAddr,
    /// Stop before the first guest instruction until gdb connects and continues (like QEMU's -S).
    pub wait: bool,
}

/// Parses `--gdb`'s value: `PORT` (127.0.0.1:PORT), `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
/// Port 0 picks a free port, printed in the "waiting for gdb" line.
pub fn parse_addr(text: &str) -> Result<SocketAddr> {
    let bad = || Error::bad_input(format!("bad --gdb '{text}': give PORT or ADDR:PORT, e.g. 1234 or 127.0.0.1:1234"));
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port.parse::<u16>().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| bad())
}

/// A bound listener, and the connection already accepted with `--gdb-wait`.
pub struct Link {
    /// None for a link that came connected ([`Link::connected`]).
    listener: Option<TcpListener>,
    accepted: Option<TcpStream>,
}

impl Link {
    /// A connection that exists already (a lab host's inner vmm gets its gdb over a socket
    /// pair from init, see lab::gdb_relay): nothing to listen on or accept.
    pub fn connected(stream: TcpStream) -> Link {
        Link { listener: None, accepted: Some(stream) }
    }
}

/// Binds `config.addr`, says where on stderr, and with `wait` accepts one gdb before returning.
pub fn listen(config: &GdbConfig) -> Result<Link> {
    let listener = TcpListener::bind(config.addr).map_err(|e| {
        Error::bad_input(format!("--gdb {}: cannot listen: {}", config.addr, crate::image::io_reason(&e)))
    })?;
    let bound = listener.local_addr().map_err(|e| Error::bad_input(format!("--gdb: {e}")))?;
    let accepted = if config.wait {
        crate::console::say(&format!("vmm: waiting for gdb on {bound}"));
        let (stream, _) = listener
            .accept()
            .map_err(|e| Error::bad_input(format!("--gdb {bound}: accept failed: {}", crate::image::io_reason(&e))))?;
        Some(accepted(stream))
    } else {
        crate::console::say(&format!("vmm: gdb can connect on {bound}"));
        None
    };
    Ok(Link { listener: Some(listener), accepted })
}

/// The connection given to gdbstub. gdbstub writes a packet byte by byte and then flushes:
/// the bytes are gathered here and sent with one `send`, so a packet is one TCP segment.
/// Reads are blocking and buffered; `has_input` tells, without blocking, whether a read would
/// find something.
pub struct Connection {
    stream: TcpStream,
    out: Vec<u8>,
    input: Vec<u8>,
    next: usize,
}

impl Connection {
    /// Wraps an accepted stream (see [`accepted`]).
    pub fn new(stream: TcpStream) -> Connection {
        Connection { stream, out: Vec::new(), input: Vec::new(), next: 0 }
    }

    /// The next byte from gdb, waiting for it; None when gdb closed the connection.
    pub fn read_byte(&mut self) -> std::io::Result<Option<u8>> {
        if self.next == self.input.len() {
            self.input.resize(4096, 0);
            let n = loop {
                match self.stream.read(&mut self.input) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            self.input.truncate(n);
            self.next = 0;
            if n == 0 {
                return Ok(None);
            }
        }
        self.next += 1;
        Ok(Some(self.input[self.next - 1]))
    }

    /// Whether `read_byte` would return at once (a byte buffered or waiting, or the end).
    pub fn has_input(&self) -> bool {
        self.next < self.input.len() || poll_readable(self.stream.as_raw_fd(), 0)
    }
}

impl gdbstub::conn::Connection for Connection {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> std::io::Result<()> {
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = std::io::Write::write_all(&mut self.stream, &self.out);
        self.out.clear();
        result
    }
}

/// A stream just accepted, made ready for gdb: no Nagle delay, since gdb waits for each
/// reply. Done where it is accepted, outside the vCPU thread's jail (setsockopt).
pub(crate) fn accepted(stream: TcpStream) -> TcpStream {
    let _ = stream.set_nodelay(true);
    stream
}

/// Whether `fd` is readable (or at its end) within `timeout_ms` (0: look, do not wait).
pub(crate) fn poll_readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on the stack, its count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    n > 0 && pfd.revents != 0
}

/// What a thread serving gdb needs besides its own list (for a backend's vCPU thread jail):
/// reading and writing the socket (recvfrom, sendto: std's TcpStream uses recv and send),
/// looking whether gdb sent something (poll; ppoll where there is no poll, as on riscv64),
/// and closing the connection when the session ends (close; a debug build first checks the
/// descriptor with fcntl F_GETFD).
pub const SESSION_SYSCALLS: &[i64] = &[
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_close,
    libc::SYS_fcntl,
];

/// gdb's `monitor` commands, the same on every backend: `phys` makes gdb's memory addresses
/// guest physical, `virt` guest virtual (through the guest's page tables while paging is on).
/// Updates `physical` and returns the line to show gdb.
pub fn monitor_command(cmd: &[u8], physical: &mut bool) -> &'static str {
    match cmd {
        b"phys" => {
            *physical = true;
            "memory addresses are guest physical"
        }
        b"virt" => {
            *physical = false;
            "memory addresses are guest virtual (through the page tables when paging is on)"
        }
        _ => "vmm monitor commands: phys (addresses are guest physical), virt (guest virtual, the default)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn addresses() {
        let a = |s: &str| parse_addr(s).unwrap().to_string();
        assert_eq!(a("1234"), "127.0.0.1:1234");
        assert_eq!(a("localhost:1234"), "127.0.0.1:1234");
        assert_eq!(a("0.0.0.0:99"), "0.0.0.0:99");
        assert_eq!(a("[::1]:5"), "[::1]:5");
        assert_eq!(a("0"), "127.0.0.1:0");
        for bad in ["", "65536", "host:1", "1.2.3.4", "1.2.3.4:x", ":1234", "-1"] {
            let e = parse_addr(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert_eq!(e.message, format!("bad --gdb '{bad}': give PORT or ADDR:PORT, e.g. 1234 or 127.0.0.1:1234"),);
        }
    }

    #[test]
    fn a_packet_is_sent_whole_and_reads_are_buffered() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut conn = Connection::new(listener.accept().unwrap().0);
        assert!(!conn.has_input());
        gdbstub::conn::Connection::write(&mut conn, b'$').unwrap();
        gdbstub::conn::Connection::write_all(&mut conn, b"OK#9a").unwrap();
        gdbstub::conn::Connection::flush(&mut conn).unwrap();
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"$OK#9a");
        peer.write_all(b"+\x03").unwrap();
        assert_eq!(conn.read_byte().unwrap(), Some(b'+'));
        assert!(conn.has_input());
        assert_eq!(conn.read_byte().unwrap(), Some(3));
        drop(peer);
        assert!(conn.has_input(), "the end reads at once");
        assert_eq!(conn.read_byte().unwrap(), None);
    }
}
