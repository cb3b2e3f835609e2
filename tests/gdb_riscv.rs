//! The gdb stub on URVirt, with the real gdb-multiarch in batch mode, through the real lab host
//! (a riscv64 Linux under qemu-system-riscv64, whose riscv64 vmm serves gdb over the serial
//! line to the outer vmm, which listens on loopback here).
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use support::{artifact, describe, path_str};

/// Hard wall-clock limit for vmm and for gdb: a lab boot takes seconds; leave room for a busy machine.
const LIMIT: u64 = 180;

fn guest(name: &str) -> String {
    support::require_riscv_lab();
    path_str(&artifact(&format!("guests/riscv/{name}"))).to_string()
}

fn require_gdb() {
    let ok =
        Command::new("gdb-multiarch").arg("--version").stdin(Stdio::null()).output().is_ok_and(|o| o.status.success());
    assert!(ok, "MISSING PREREQUISITE: gdb-multiarch does not run; `scripts/setup.sh` installs it");
}

/// vmm running with `--gdb 127.0.0.1:0` (a free port), its output lines arriving on channels.
struct Vmm {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

impl Vmm {
    /// `extra`: more options (`--gdb-wait`).
    fn start(extra: &[&str], elf: &str) -> Vmm {
        let mut child = Command::new("timeout")
            .args(["--kill-after=5", &LIMIT.to_string(), env!("CARGO_BIN_EXE_vmm")])
            .args(["run", "--arch", "riscv", "--gdb", "127.0.0.1:0"])
            .args(extra)
            .arg(elf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vmm");
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Vmm { child, out, err, stdout: Vec::new(), stderr: Vec::new() }
    }

    /// Waits for a line on stdout (`on_stdout`) or stderr containing `text`; returns it.
    fn wait_for(&mut self, on_stdout: bool, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(LIMIT);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (rx, seen) = if on_stdout { (&self.out, &mut self.stdout) } else { (&self.err, &mut self.stderr) };
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("vmm never printed {text:?}; stdout {:?} stderr {:?}", self.stdout, self.stderr),
            }
        }
    }

    /// The port from `vmm: gdb can connect on 127.0.0.1:PORT`.
    fn port(&mut self) -> u16 {
        let line = self.wait_for(false, "gdb can connect on 127.0.0.1:");
        line.rsplit(':').next().unwrap().trim().parse().expect("a port")
    }

    /// Waits for vmm to end; returns its status and all of its output.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().expect("wait for vmm").code();
        assert_ne!(status, Some(124), "vmm hung past {LIMIT}s");
        self.stdout.extend(self.out.iter());
        self.stderr.extend(self.err.iter());
        (status, self.stdout.join("\n"), self.stderr.join("\n"))
    }
}

/// gdb-multiarch -batch with `commands` (a command file), under the wall-clock limit.
fn gdb(test: &str, commands: &str) -> Child {
    require_gdb();
    let file = support::scratch_file(test, "commands.gdb", commands.as_bytes());
    Command::new("timeout")
        .args(["--kill-after=5", &LIMIT.to_string(), "gdb-multiarch", "-batch", "-nx", "-x", path_str(&file)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gdb-multiarch")
}

fn gdb_output(child: Child) -> Output {
    let out = child.wait_with_output().expect("wait for gdb");
    assert_ne!(out.status.code(), Some(124), "gdb hung past {LIMIT}s: {}", describe(&out));
    out
}

/// The value printed on gdb's line `NAME value`.
fn value(out: &str, name: &str) -> String {
    let prefix = format!("{name} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("gdb printed no {name} line: {out}"))
        .trim()
        .to_string()
}

const PREAMBLE: &str = "set architecture riscv:rv64\nset remotetimeout 60\nset pagination off\n";

#[test]
fn break_read_step_and_run_to_the_end() {
    let elf = guest("gdb-target.elf");
    let mut vmm = Vmm::start(&["--gdb-wait"], &elf);
    let port = vmm.port();
    let commands = format!(
        "{PREAMBLE}file {elf}\ntarget remote 127.0.0.1:{port}\n\
         printf \"PC0 %#lx\\n\", $pc\nprintf \"ENTRY %#lx\\n\", (long)&_start\n\
         break *gdb_tick\ncontinue\n\
         printf \"PCBP %#lx\\n\", $pc\nprintf \"TICK %#lx\\n\", (long)&gdb_tick\n\
         printf \"A0 %ld\\n\", $a0\nprintf \"COUNTER %ld\\n\", (long)GDB_COUNTER\n\
         stepi\nprintf \"PCSTEP %#lx\\n\", $pc\n\
         continue\nprintf \"A0AGAIN %ld\\n\", $a0\nprintf \"COUNTERAGAIN %ld\\n\", (long)GDB_COUNTER\n\
         set var *(long *)&GDB_COUNTER = 100\nset var $a0 = 20\n\
         delete\ncontinue\n"
    );
    let g = gdb_output(gdb("break_read_step", &commands));
    let (status, stdout, stderr) = vmm.finish();
    let text = String::from_utf8_lossy(&g.stdout).into_owned() + &String::from_utf8_lossy(&g.stderr);
    let all = format!("gdb:\n{text}\nvmm status {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(value(&text, "PC0"), value(&text, "ENTRY"), "stopped at the entry point: {all}");
    assert_eq!(value(&text, "PC0"), "0x80200000", "{all}");
    assert_eq!(value(&text, "PCBP"), value(&text, "TICK"), "stopped at the breakpoint: {all}");
    assert_eq!(value(&text, "A0"), "1", "the first call's argument: {all}");
    assert_eq!(value(&text, "COUNTER"), "0", "{all}");
    let tick = u64::from_str_radix(value(&text, "TICK").trim_start_matches("0x"), 16).unwrap();
    let stepped = u64::from_str_radix(value(&text, "PCSTEP").trim_start_matches("0x"), 16).unwrap();
    assert_eq!(stepped, tick + 4, "stepi ran the 4-byte auipc at gdb_tick: {all}");
    assert_eq!(value(&text, "A0AGAIN"), "2", "the breakpoint was put back after the step: {all}");
    assert_eq!(value(&text, "COUNTERAGAIN"), "1", "{all}");
    assert!(text.contains("exited normally"), "gdb saw the guest end with status 0: {all}");
    // 100 and 20 written by gdb (memory and a register), then the third tick's 3.
    // And the guest's own ebreak went to its own handler, not to gdb.
    assert_eq!(stdout, "gdb guest: start\ngdb guest: own ebreak handled\ngdb guest: counter 123", "{all}");
    assert_eq!(status, Some(0), "{all}");
}

#[test]
fn ctrl_c_stops_a_spinning_guest_and_kill_ends_the_run() {
    let elf = guest("spin.elf");
    let mut vmm = Vmm::start(&["--gdb-wait"], &elf);
    let port = vmm.port();
    let commands = format!(
        "{PREAMBLE}file {elf}\ntarget remote 127.0.0.1:{port}\ncontinue\n\
         printf \"PCINT %#lx\\n\", $pc\ninfo symbol $pc\nkill\n"
    );
    let child = gdb("ctrl_c", &commands);
    // The guest runs once it printed; then Ctrl-C, as a user at gdb's terminal would.
    vmm.wait_for(true, "spinning forever");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill with a child's pid and a plain signal number. The child is `timeout`, which
    // passes SIGINT on to gdb.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let g = gdb_output(child);
    let (status, stdout, stderr) = vmm.finish();
    let text = String::from_utf8_lossy(&g.stdout).into_owned() + &String::from_utf8_lossy(&g.stderr);
    let all = format!("gdb:\n{text}\nvmm status {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(text.contains("SIGINT"), "gdb reports the interrupt: {all}");
    assert!(text.contains("guest_main + "), "the pc is in the spin loop: {all}");
    assert!(stderr.contains("vmm: the guest was killed from gdb"), "{all}");
    assert_eq!(status, Some(1), "killed from gdb: {all}");
}

#[test]
fn gdb_attaches_to_a_running_guest_and_detaches() {
    let elf = guest("spin.elf");
    // No --gdb-wait: the guest runs at once; --timeout ends it after gdb has gone.
    let mut vmm = Vmm::start(&["--timeout", "20"], &elf);
    let port = vmm.port();
    vmm.wait_for(true, "spinning forever");
    let commands = format!(
        "{PREAMBLE}file {elf}\ntarget remote 127.0.0.1:{port}\ninfo symbol $pc\n\
         printf \"SP %#lx\\n\", $sp\ndetach\n"
    );
    let g = gdb_output(gdb("attach", &commands));
    let (status, stdout, stderr) = vmm.finish();
    let text = String::from_utf8_lossy(&g.stdout).into_owned() + &String::from_utf8_lossy(&g.stderr);
    let all = format!("gdb:\n{text}\nvmm status {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(text.contains("guest_main + "), "connecting stopped the guest in its loop: {all}");
    assert!(value(&text, "SP").starts_with("0x8020"), "the guest's stack, in its RAM: {all}");
    assert!(text.contains("detached"), "{all}");
    // Detached, the guest spun on until --timeout.
    assert!(stderr.contains("timeout"), "{all}");
    assert_eq!(status, Some(1), "{all}");
}
