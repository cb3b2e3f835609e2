//! Running vmm under the real gdb (Debian's gdb-multiarch) for the gdb stub tests: vmm is
//! started with `--gdb 127.0.0.1:0` (a free port, which vmm names on stderr), gdb in batch mode
//! with a command file. Every child has a hard wall-clock limit (`timeout`), so nothing hangs.
use super::{describe, root};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Debian's gdb-multiarch (set-up installs it); missing, the test fails loudly.
pub fn require_gdb() -> PathBuf {
    let found = Command::new("gdb-multiarch").arg("--version").stdin(Stdio::null()).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "MISSING PREREQUISITE: gdb-multiarch does not run. Run `scripts/setup.sh` first (it installs gdb-multiarch)."
    );
    PathBuf::from("gdb-multiarch")
}

/// A vmm serving gdb.
pub struct GdbVmm {
    child: Child,
    /// Where vmm listens, from its "waiting for gdb on ..." / "gdb can connect on ..." line.
    pub addr: String,
    /// The stderr lines up to and including that one.
    first_lines: String,
    rest: JoinHandle<String>,
    /// Its stdout so far, read as it comes ([`GdbVmm::wait_for_stdout`]).
    stdout: Arc<Mutex<Vec<u8>>>,
    stdout_reader: JoinHandle<()>,
}

impl GdbVmm {
    /// Starts `vmm run ARGS --gdb 127.0.0.1:0` (ARGS may add --gdb-wait) with a wall-clock limit,
    /// and waits for the line that names its port.
    pub fn spawn(args: &[&str], limit_secs: u64) -> GdbVmm {
        let mut child = Command::new("timeout")
            .arg("--kill-after=5")
            .arg(limit_secs.to_string())
            .arg(env!("CARGO_BIN_EXE_vmm"))
            .arg("run")
            .args(args)
            .args(["--gdb", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vmm");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first_lines = String::new();
        let addr = loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                panic!("vmm ended before it listened for gdb; stderr:\n{first_lines}");
            }
            first_lines.push_str(&line);
            let named =
                ["vmm: waiting for gdb on ", "vmm: gdb can connect on "].iter().find_map(|p| line.strip_prefix(p));
            if let Some(addr) = named {
                break addr.trim().to_string();
            }
        };
        let rest = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (mut out, sink) = (child.stdout.take().unwrap(), Arc::clone(&stdout));
        let stdout_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        GdbVmm { child, addr, first_lines, rest, stdout, stdout_reader }
    }

    /// Waits until the guest has printed `text` (say, that it is now spinning), at most
    /// `limit_secs`.
    pub fn wait_for_stdout(&self, text: &str, limit_secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(limit_secs);
        while !String::from_utf8_lossy(&self.stdout.lock().unwrap()).contains(text) {
            let seen = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
            assert!(Instant::now() < deadline, "vmm never printed {text:?}; its stdout so far: {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for vmm to end (its own limit bounds this) and returns what it did.
    pub fn wait(mut self) -> Output {
        let status = self.child.wait().expect("wait for vmm");
        let _ = self.stdout_reader.join();
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        let stderr = self.first_lines + &self.rest.join().unwrap();
        let out = Output { status, stdout, stderr: stderr.into_bytes() };
        assert_ne!(out.status.code(), Some(124), "vmm hung past its limit: {}", describe(&out));
        out
    }
}

/// Writes a gdb command file: `file ELF`, `target remote ADDR`, then `commands`.
fn command_file(test: &str, elf: &Path, addr: &str, commands: &[&str]) -> PathBuf {
    // The timeouts matter through a lab host, whose boot (seconds, more on a busy machine)
    // comes before its stub answers or even listens (gdb retries a refused connection).
    let mut text = format!(
        "set pagination off\nset confirm off\nset remotetimeout 60\nset tcp connect-timeout 120\nfile {}\ntarget remote {addr}\n",
        elf.display()
    );
    for c in commands {
        text.push_str(c);
        text.push('\n');
    }
    let dir = std::env::temp_dir().join(format!("vmm-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("commands.gdb");
    std::fs::write(&path, text).unwrap();
    path
}

/// A gdb-multiarch running a command file in batch mode.
pub struct Gdb {
    child: Child,
    /// gdb's output so far (a thread appends to it as gdb writes).
    output: Arc<Mutex<String>>,
    reader: JoinHandle<()>,
    deadline: Instant,
}

impl Gdb {
    /// `gdb-multiarch -batch -nx -x FILE`; stdout and stderr go to one pipe, in gdb's order.
    /// [`Gdb::wait`] kills it if it is still there after `limit_secs`.
    pub fn spawn(test: &str, elf: &Path, addr: &str, commands: &[&str], limit_secs: u64) -> Gdb {
        let gdb = require_gdb();
        let file = command_file(test, elf, addr, commands);
        let (mut read, write) = std::io::pipe().expect("pipe");
        let child = Command::new(gdb)
            .args(["-batch", "-nx", "-x"])
            .arg(&file)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(write.try_clone().unwrap())
            .stderr(write)
            .spawn()
            .expect("spawn gdb-multiarch");
        let output = Arc::new(Mutex::new(String::new()));
        let theirs = output.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = read.read(&mut buf) {
                theirs.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Gdb { child, output, reader, deadline: Instant::now() + Duration::from_secs(limit_secs) }
    }

    /// Waits until gdb has printed one of `texts` (within gdb's limit).
    pub fn wait_for_output(&self, texts: &[&str]) {
        while !texts.iter().any(|t| self.output.lock().unwrap().contains(t)) {
            assert!(
                Instant::now() < self.deadline,
                "gdb never printed any of {texts:?}; its output:\n{}",
                self.output.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ctrl-C, as a user at gdb's terminal gives it: gdb then sends the stub its interrupt byte.
    pub fn interrupt(&self) {
        // SAFETY: kill(2) on our own child, not yet waited for (so its pid is still its own).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }

    /// Waits for gdb (at most until its limit, then kills it) and returns its exit status and
    /// output.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for gdb") {
                break status;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.reader.join();
                panic!("gdb-multiarch hung past its limit; its output:\n{}", self.output.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = self.reader.join();
        let text = self.output.lock().unwrap().clone();
        (status.code(), text)
    }
}

/// Runs gdb's `commands` against `addr` to the end.
pub fn run_gdb(test: &str, elf: &Path, addr: &str, commands: &[&str], limit_secs: u64) -> (Option<i32>, String) {
    Gdb::spawn(test, elf, addr, commands, limit_secs).wait()
}

/// An ELF's entry point (e_entry, at byte 24 of an ELF64 header; 32-bit ELF at byte 24 too,
/// as 4 bytes).
pub fn elf_entry(elf: &Path) -> u64 {
    let bytes = std::fs::read(elf).expect("read the guest ELF");
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not an ELF", elf.display());
    match bytes[4] {
        2 => u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        _ => u32::from_le_bytes(bytes[24..28].try_into().unwrap()).into(),
    }
}
