//! `--trace FILE`: one line per exit (x86) or trap (RISC-V), for both backends.
//!
//! A line is five tab-separated fields:
//!
//! ```text
//! # time_us  kind               target      value  handling_ns
//! 12.345     io-out debug-0xf1  port=0xf1   0x48   1530
//! ```
//!
//! time since the run started (µs), the kind (the same names as the `--stats` rows), what was
//! touched (port, address, CSR, SBI EID/FID), the value (written, read or passed; `-` when
//! there is none) and how long the monitor took to handle it (ns).
//!
//! Recording never allocates and takes no lock: on URVirt it happens inside a synchronous
//! signal handler. Lines are formatted into a buffer allocated up front and written with
//! write(2) when it fills and at the end ([`Tracer::flush`], also on drop). The file is opened
//! before the run, outside any seccomp jail; write(2) is allowed in every jail. A write error
//! (a full disk) ends the trace, not the run: it is one warning line at the end, and the
//! guest's exit code and --stats stay as they were.
//!
//! When tracing is off a backend holds `None` instead of a [`Tracer`]: its hot path pays one
//! predictable branch (`vmm bench` measures it).
use crate::{Error, Result};
use std::fmt::Write as _;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The buffer: flushed when less than [`LINE_MAX`] is left, so a line never grows it.
const BUFFER: usize = 64 << 10;
/// The longest line a record can format (kind names and targets are short).
const LINE_MAX: usize = 512;
/// The most kinds `--trace-kinds` may name.
pub const MAX_KINDS: usize = 16;

/// What `--trace FILE [--trace-kinds K1,K2]` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    pub path: PathBuf,
    /// Empty: every kind. Otherwise a row is traced when its name is one of these, or starts
    /// with one of these and a space ("io-out" takes "io-out debug-0xf1"; "sigsys sbi" every
    /// SBI call).
    pub kinds: Vec<String>,
}

impl TraceConfig {
    /// `--trace-kinds` text: comma-separated kind names, as the --stats rows show them.
    pub fn parse_kinds(text: &str) -> Result<Vec<String>> {
        let kinds: Vec<String> = text.split(',').map(|k| k.trim().to_string()).collect();
        if kinds.iter().any(String::is_empty) || kinds.len() > MAX_KINDS {
            return Err(Error::bad_input(format!(
                "bad --trace-kinds '{text}': give up to {MAX_KINDS} comma-separated kind names as --stats shows them, e.g. io-out,hlt"
            )));
        }
        Ok(kinds)
    }
}

/// What an event touched: the field after the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    None,
    Port(u16),
    Addr(u64),
    Csr(u16),
    /// An SBI call: extension and function ids.
    Sbi {
        eid: u64,
        fid: u64,
    },
    /// An instruction the monitor emulated (its encoding).
    Insn(u32),
}

/// One open trace: the file, the kind filter, the line buffer.
pub struct Tracer {
    file: File,
    path: PathBuf,
    kinds: Vec<String>,
    buf: Vec<u8>,
    start: Instant,
    /// The first write(2) error, reported by [`Tracer::finish`]; later lines are dropped.
    failed: Option<i32>,
}

impl Tracer {
    /// Creates (or truncates) the trace file and writes its header line.
    pub fn create(config: &TraceConfig) -> Result<Tracer> {
        let file = File::create(&config.path).map_err(|e| {
            Error::bad_input(format!("--trace {}: {}", config.path.display(), crate::image::io_reason(&e)))
        })?;
        let mut t = Tracer {
            file,
            path: config.path.clone(),
            kinds: config.kinds.clone(),
            buf: Vec::with_capacity(BUFFER),
            start: Instant::now(),
            failed: None,
        };
        t.buf.extend_from_slice(b"# time_us\tkind\ttarget\tvalue\thandling_ns\n");
        Ok(t)
    }

    /// Whether `path` could be opened for the trace, checked without opening it: an existing
    /// file (or FIFO, which an open would block on) must be writable, a new one needs a
    /// writable directory. Used before a VM or lab host is made; the run opens it once.
    pub fn check_writable(path: &Path) -> Result<()> {
        let refuse = |why: String| Err(Error::bad_input(format!("--trace {}: {why}", path.display())));
        let errno = |e: std::io::Error| crate::image::io_reason(&e);
        let can_write = |p: &Path| {
            let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: `c` is a NUL-terminated path that outlives the call.
            match unsafe { libc::access(c.as_ptr(), libc::W_OK) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => refuse("is a directory".into()),
            Ok(_) => can_write(path).or_else(|e| refuse(errno(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                match std::fs::metadata(dir) {
                    Ok(m) if m.is_dir() => can_write(dir).or_else(|e| refuse(errno(e))),
                    Ok(_) => refuse(errno(std::io::Error::from_raw_os_error(libc::ENOTDIR))),
                    Err(e) => refuse(errno(e)),
                }
            }
            Err(e) => refuse(errno(e)),
        }
    }

    /// Times are measured from now on (call as the guest starts).
    pub fn restart_clock(&mut self) {
        self.start = Instant::now();
    }

    /// Whether a row named `kind` (+ " " + `device` when that is not empty) passes the filter.
    pub fn wants(&self, kind: &str, device: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| row_matches(k, kind, device))
    }

    /// Records one event that happened at `at` and took `handling` to handle. Never allocates.
    pub fn record(
        &mut self,
        at: Instant,
        kind: &str,
        device: &str,
        target: Target,
        value: Option<u64>,
        handling: Duration,
    ) {
        if !self.wants(kind, device) {
            return;
        }
        if self.buf.capacity() - self.buf.len() < LINE_MAX {
            self.flush();
        }
        let since = at.saturating_duration_since(self.start);
        let mut line = Line { buf: &mut self.buf, limit: LINE_MAX - 1 };
        let _ = write!(line, "{}.{:03}\t{kind}", since.as_micros(), since.subsec_nanos() % 1000);
        if !device.is_empty() {
            let _ = write!(line, " {device}");
        }
        let _ = match target {
            Target::None => write!(line, "\t-"),
            Target::Port(p) => write!(line, "\tport={p:#x}"),
            Target::Addr(a) => write!(line, "\taddr={a:#x}"),
            Target::Csr(c) => write!(line, "\tcsr={c:#x}"),
            Target::Sbi { eid, fid } => write!(line, "\teid={eid:#x} fid={fid:#x}"),
            Target::Insn(i) => write!(line, "\tinsn={i:#010x}"),
        };
        let _ = match value {
            Some(v) => write!(line, "\t{v:#x}"),
            None => write!(line, "\t-"),
        };
        let _ = write!(line, "\t{}", handling.as_nanos());
        // Room for it was kept: a line cut short still ends here.
        self.buf.push(b'\n');
    }

    /// Writes out what is buffered, with write(2) only (safe in a signal handler).
    pub fn flush(&mut self) {
        let mut done = 0;
        while done < self.buf.len() && self.failed.is_none() {
            let rest = &self.buf[done..];
            // SAFETY: `rest` is valid for reads of its length; the fd is ours and open.
            let n = unsafe { libc::write(self.file.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                done += n as usize;
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            } else {
                self.failed = Some(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
            }
        }
        self.buf.clear();
    }

    /// Flushes and reports a write error as one line (after the run, outside any handler).
    pub fn finish(&mut self) -> Result<()> {
        self.flush();
        match self.failed.take() {
            None => Ok(()),
            Some(errno) => Err(Error::bad_input(format!(
                "--trace {}: writing the trace failed: {}",
                self.path.display(),
                crate::image::io_reason(&std::io::Error::from_raw_os_error(errno))
            ))),
        }
    }

    /// The end of a run: flushes, and a write error becomes one warning line on stderr. The
    /// trace is a by-product: losing it must not replace the guest's result (exit code,
    /// failure line, --stats).
    pub fn finish_or_warn(&mut self) {
        if let Err(e) = self.finish() {
            crate::console::say(&format!("vmm: warning: {}", e.message));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Whether filter entry `want` selects the row (kind, device): the whole row name
/// ("kind device"), or a prefix of it that ends where a space follows. Compared byte by
/// byte, so the row name is never built.
fn row_matches(want: &str, kind: &str, device: &str) -> bool {
    let sep: &[u8] = if device.is_empty() { b"" } else { b" " };
    let mut row = kind.bytes().chain(sep.iter().copied()).chain(device.bytes());
    for w in want.bytes() {
        if row.next() != Some(w) {
            return false;
        }
    }
    matches!(row.next(), None | Some(b' '))
}

/// A fixed-capacity writer over the tracer's buffer: what does not fit is cut, never grown.
struct Line<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
}

impl std::fmt::Write for Line<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.limit.min(self.buf.capacity() - self.buf.len());
        let take = s.len().min(room);
        self.buf.extend_from_slice(&s.as_bytes()[..take]);
        self.limit -= take;
        Ok(())
    }
}

/// A little-endian value of up to 8 bytes (an I/O or MMIO access's data).
pub fn le_value(data: &[u8]) -> u64 {
    data.iter().take(8).rev().fold(0, |v, &b| (v << 8) | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vmm-trace-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn lines_have_five_fields_and_the_filter_applies() {
        let path = temp("lines");
        let config = TraceConfig { path: path.clone(), kinds: vec!["io-out".into(), "hlt".into()] };
        let mut t = Tracer::create(&config).unwrap();
        let at = t.start + Duration::from_nanos(12_345_678);
        t.record(at, "io-out", "debug-0xf1", Target::Port(0xf1), Some(0x48), Duration::from_nanos(1530));
        t.record(at, "io-in", "", Target::Port(0x60), Some(1), Duration::ZERO);
        t.record(at, "hlt", "", Target::None, None, Duration::from_nanos(7));
        t.finish().unwrap();
        drop(t);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# time_us\tkind\ttarget\tvalue\thandling_ns");
        assert_eq!(lines[1], "12345.678\tio-out debug-0xf1\tport=0xf1\t0x48\t1530");
        assert_eq!(lines[2], "12345.678\thlt\t-\t-\t7");
        assert_eq!(lines.len(), 3, "{text}");
    }

    #[test]
    fn kind_names_match_rows_whole_or_at_a_space() {
        assert!(row_matches("io-out", "io-out", "debug-0xf1"));
        assert!(row_matches("io-out debug-0xf1", "io-out", "debug-0xf1"));
        assert!(!row_matches("io-out debug", "io-out", "debug-0xf1"));
        assert!(!row_matches("io-ou", "io-out", ""));
        assert!(!row_matches("io-outx", "io-out", ""));
        assert!(row_matches("sigsys", "sigsys sbi legacy-putchar", ""));
        assert!(row_matches("sigsys sbi", "sigsys sbi legacy-putchar", ""));
        assert!(row_matches("sigsys sbi legacy-putchar", "sigsys sbi legacy-putchar", ""));
        assert!(!row_matches("sigsys sbi legacy", "sigsys sbi legacy-putchar", ""));
        assert!(!row_matches("hlt", "io-out", ""));
    }

    #[test]
    fn bad_kind_lists_are_one_line_errors() {
        assert_eq!(TraceConfig::parse_kinds("io-out, hlt").unwrap(), ["io-out", "hlt"]);
        for bad in ["", "io-out,", ",hlt", &"k,".repeat(20)] {
            let e = TraceConfig::parse_kinds(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.message.starts_with("bad --trace-kinds"), "{}", e.message);
        }
    }

    #[test]
    fn many_records_flush_without_growing_the_buffer() {
        let path = temp("many");
        let mut t = Tracer::create(&TraceConfig { path: path.clone(), kinds: Vec::new() }).unwrap();
        let cap = t.buf.capacity();
        let long_kind: &'static str = Box::leak("k".repeat(2000).into_boxed_str());
        for i in 0..10_000u64 {
            t.record(Instant::now(), "mmio-write", "virtio-0", Target::Addr(i), Some(i), Duration::ZERO);
        }
        t.record(Instant::now(), long_kind, "", Target::None, None, Duration::ZERO);
        assert_eq!(t.buf.capacity(), cap, "a record must never reallocate");
        t.finish().unwrap();
        drop(t);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(text.lines().count(), 1 + 10_000 + 1);
        assert!(text.lines().nth(10_000).unwrap().ends_with("\taddr=0x270f\t0x270f\t0"));
    }

    #[test]
    fn values_are_little_endian() {
        assert_eq!(le_value(&[0x48]), 0x48);
        assert_eq!(le_value(&[0x34, 0x12]), 0x1234);
        assert_eq!(le_value(&[]), 0);
        assert_eq!(le_value(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), 0x0807_0605_0403_0201);
    }

    #[test]
    fn the_writability_check_creates_nothing_and_names_the_reason() {
        let path = temp("check");
        Tracer::check_writable(&path).unwrap();
        assert!(!path.exists(), "checking must not create the file");
        std::fs::write(&path, b"keep").unwrap();
        Tracer::check_writable(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"keep", "checking must not truncate the file");
        std::fs::remove_file(&path).unwrap();
        for (bad, why) in [("/nonexistent-dir/t.trace", ""), ("/", "is a directory")] {
            let e = Tracer::check_writable(Path::new(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.message.starts_with(&format!("--trace {bad}: {why}")), "{}", e.message);
        }
    }

    #[test]
    fn an_unwritable_trace_path_is_bad_input() {
        let e = Tracer::create(&TraceConfig { path: "/nonexistent-dir/t.trace".into(), kinds: Vec::new() }).err();
        let e = e.expect("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.starts_with("--trace /nonexistent-dir/t.trace: "), "{}", e.message);
    }
}
