//! How the lab host's init talks to `vmm` on the outer machine over the one serial line.
//!
//! The serial line also carries what we do not want the user to see: firmware banners and
//! anything the lab host's kernel prints. So init wraps everything it relays in frames, and the outer
//! side keeps only frames, treating every other byte as boot noise (kept for diagnostics).
//!
//! A frame is `ESC _ L A B`, a kind byte, the payload length as 4 hex digits, the payload.
//! Kinds: `S` init has started (empty), `O` the inner vmm's stdout, `E` its stderr,
//! `X` its exit (payload `code N` or `signal N`), `T` part of its `--trace` file, `C` credit (payload: how many
//! input bytes init has taken from the console, in decimal; see [`super::keys::InputWindow`]), `G` bytes from the
//! inner vmm's gdb stub ([`super::gdb_relay`]). The console is raw,
//! so payloads are 8-bit clean.

const MAGIC: &[u8] = b"\x1b_LAB";
const HEADER_LEN: usize = MAGIC.len() + 1 + 4;
/// The largest payload one frame carries; longer data is split.
pub const MAX_PAYLOAD: usize = 0xffff;

pub const START: u8 = b'S';
pub const STDOUT: u8 = b'O';
pub const STDERR: u8 = b'E';
pub const EXIT: u8 = b'X';
pub const CREDIT: u8 = b'C';
pub const GDB: u8 = b'G';
/// The inner vmm's `--trace` file, sent by init once the inner vmm has ended.
pub const TRACE: u8 = b'T';

/// Appends the frames carrying `data` (split as needed) to `out`.
pub fn encode(kind: u8, data: &[u8], out: &mut Vec<u8>) {
    let mut chunks = data.chunks(MAX_PAYLOAD).peekable();
    if chunks.peek().is_none() {
        push_header(kind, 0, out);
        return;
    }
    for chunk in chunks {
        push_header(kind, chunk.len(), out);
        out.extend_from_slice(chunk);
    }
}

fn push_header(kind: u8, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.extend_from_slice(format!("{len:04x}").as_bytes());
}

/// How the inner vmm ended, as init saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerExit {
    Code(i32),
    Signal(i32),
}

impl InnerExit {
    pub fn to_payload(self) -> String {
        match self {
            InnerExit::Code(c) => format!("code {c}"),
            InnerExit::Signal(s) => format!("signal {s}"),
        }
    }

    pub fn parse(payload: &[u8]) -> Option<InnerExit> {
        let text = std::str::from_utf8(payload).ok()?;
        let (word, number) = text.split_once(' ')?;
        let n = number.parse().ok()?;
        match word {
            "code" => Some(InnerExit::Code(n)),
            "signal" => Some(InnerExit::Signal(n)),
            _ => None,
        }
    }
}

/// What the decoder found in the serial stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(InnerExit),
    /// init took this many input bytes off the console: the outer side may send as many more.
    Credit(usize),
    /// Bytes from the inner vmm's gdb stub, for the outer side's gdb connection.
    Gdb(Vec<u8>),
    /// Part of the inner vmm's `--trace` file.
    Trace(Vec<u8>),
}

/// Turns the serial byte stream back into events. Bytes outside frames are noise; the last
/// few KiB of it are kept to explain a boot that never got as far as init.
#[derive(Default)]
pub struct Decoder {
    pending: Vec<u8>,
    noise_tail: Vec<u8>,
    exited: bool,
}

const NOISE_KEEP: usize = 4096;

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes as they arrive (frames may be split anywhere); returns complete events.
    /// Nothing after the exit frame is decoded.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        if self.exited {
            return events;
        }
        self.pending.extend_from_slice(bytes);
        loop {
            // Everything before the next magic is noise.
            let start = match find(&self.pending, MAGIC) {
                Some(i) => i,
                None => {
                    // Keep a partial magic at the end; the rest is noise.
                    let keep = partial_magic_suffix(&self.pending);
                    let noise_end = self.pending.len() - keep;
                    self.note_noise(noise_end);
                    break;
                }
            };
            self.note_noise(start);
            if self.pending.len() < HEADER_LEN {
                break;
            }
            let kind = self.pending[MAGIC.len()];
            let len = std::str::from_utf8(&self.pending[MAGIC.len() + 1..HEADER_LEN])
                .ok()
                .and_then(|s| usize::from_str_radix(s, 16).ok());
            let Some(len) = len.filter(|_| matches!(kind, START | STDOUT | STDERR | EXIT | CREDIT | GDB | TRACE))
            else {
                // Not a real frame: the magic byte itself is noise; look further on.
                self.note_noise(1);
                continue;
            };
            if self.pending.len() < HEADER_LEN + len {
                break;
            }
            let payload = self.pending[HEADER_LEN..HEADER_LEN + len].to_vec();
            self.pending.drain(..HEADER_LEN + len);
            match kind {
                START => events.push(Event::Started),
                STDOUT => events.push(Event::Stdout(payload)),
                STDERR => events.push(Event::Stderr(payload)),
                GDB => events.push(Event::Gdb(payload)),
                TRACE => events.push(Event::Trace(payload)),
                // A credit that does not parse grants nothing (the outer side then waits).
                CREDIT => events
                    .push(Event::Credit(std::str::from_utf8(&payload).ok().and_then(|t| t.parse().ok()).unwrap_or(0))),
                _ => {
                    let exit = InnerExit::parse(&payload).unwrap_or(InnerExit::Code(1));
                    events.push(Event::Exit(exit));
                    self.exited = true;
                    self.pending.clear();
                    break;
                }
            }
        }
        events
    }

    /// The last bytes that were not part of a frame, as text, for a diagnostic.
    pub fn noise_tail(&self) -> String {
        let mut all = self.noise_tail.clone();
        all.extend_from_slice(&self.pending);
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Moves `pending[..n]` into the noise tail.
    fn note_noise(&mut self, n: usize) {
        self.noise_tail.extend(self.pending.drain(..n));
        if self.noise_tail.len() > NOISE_KEEP {
            let cut = self.noise_tail.len() - NOISE_KEEP;
            self.noise_tail.drain(..cut);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How many bytes at the end of `b` could be the start of MAGIC.
fn partial_magic_suffix(b: &[u8]) -> usize {
    (1..MAGIC.len()).rev().find(|&n| b.len() >= n && b[b.len() - n..] == MAGIC[..n]).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut s = b"OpenSBI v1.5\r\n   ____    banner\x1b[0m\r\n".to_vec();
        encode(START, b"", &mut s);
        encode(STDOUT, b"I wrote this with SBI calls\n", &mut s);
        encode(STDERR, b"vmm: stats\n", &mut s);
        encode(CREDIT, b"300", &mut s);
        encode(GDB, b"$OK#9a", &mut s);
        encode(STDOUT, b"\x1b_LAB fake magic inside data\n", &mut s);
        encode(EXIT, InnerExit::Code(3).to_payload().as_bytes(), &mut s);
        s.extend_from_slice(b"reboot: Power down\r\n");
        s
    }

    fn expected() -> Vec<Event> {
        vec![
            Event::Started,
            Event::Stdout(b"I wrote this with SBI calls\n".to_vec()),
            Event::Stderr(b"vmm: stats\n".to_vec()),
            Event::Credit(300),
            Event::Gdb(b"$OK#9a".to_vec()),
            Event::Stdout(b"\x1b_LAB fake magic inside data\n".to_vec()),
            Event::Exit(InnerExit::Code(3)),
        ]
    }

    #[test]
    fn decodes_frames_and_skips_boot_noise() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(&stream()), expected());
        assert!(d.noise_tail().contains("OpenSBI"));
        assert!(!d.noise_tail().contains("Power down"), "nothing after the exit frame is read");
    }

    #[test]
    fn frames_split_at_every_byte_boundary() {
        let s = stream();
        for cut in 0..s.len() {
            let mut d = Decoder::new();
            let mut got = d.feed(&s[..cut]);
            got.extend(d.feed(&s[cut..]));
            assert_eq!(got, expected(), "cut at {cut}");
        }
        let mut d = Decoder::new();
        let got: Vec<Event> = s.iter().flat_map(|b| d.feed(std::slice::from_ref(b))).collect();
        assert_eq!(got, expected());
    }

    #[test]
    fn bad_headers_are_noise() {
        let mut d = Decoder::new();
        let mut s = b"\x1b_LABQzzzz\x1b_LABOxyz!".to_vec();
        encode(STDOUT, b"ok", &mut s);
        assert_eq!(d.feed(&s), vec![Event::Stdout(b"ok".to_vec())]);
        assert!(d.noise_tail().contains("Qzzzz"));
    }

    #[test]
    fn long_data_is_split_into_frames() {
        let data = vec![7u8; MAX_PAYLOAD + 10];
        let mut s = Vec::new();
        encode(STDOUT, &data, &mut s);
        let events = Decoder::new().feed(&s);
        assert_eq!(events.len(), 2);
        let joined: Vec<u8> = events
            .into_iter()
            .flat_map(|e| match e {
                Event::Stdout(b) => b,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn exit_payloads() {
        assert_eq!(InnerExit::parse(b"code 0"), Some(InnerExit::Code(0)));
        assert_eq!(InnerExit::parse(b"signal 11"), Some(InnerExit::Signal(11)));
        assert_eq!(InnerExit::parse(b"code x"), None);
        assert_eq!(InnerExit::parse(b"bye"), None);
        assert_eq!(InnerExit::parse(InnerExit::Signal(9).to_payload().as_bytes()), Some(InnerExit::Signal(9)));
    }
}
