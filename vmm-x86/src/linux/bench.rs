//! The boot benchmark (a measurement, not a test): wall time from process start to each boot
//! phase of the project's kernel, up to its initramfs's marker, vmm against
//! `qemu-system-x86_64 -M microvm -enable-kvm` with the same vmlinux, initramfs and command
//! line, alternating the two in the same run so both see the same machine load.
use super::DEFAULT_CMDLINE;
use common::{Error, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The boot's phases as the console shows them, in order, each timed from process start: the
/// kernel's first line, its serial driver, the hand-over to the initramfs, and the marker the
/// project's init prints (the figure the two are compared on).
pub const PHASES: [(&str, &str); 4] = [
    ("first console line", "\n"),
    ("Serial: 8250", "Serial: 8250"),
    ("Run /init", "Run /init"),
    ("init's marker", "VMM-INIT-OK"),
];
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The vmm binary to time (usually std::env::current_exe()).
    pub vmm: PathBuf,
    pub qemu: PathBuf,
    /// An ELF vmlinux with the PVH note: QEMU's microvm boots exactly that with -kernel.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// Guest RAM for both, as both CLIs spell it (e.g. "256M").
    pub mem: String,
    pub runs: usize,
    /// Give up on one boot after this long.
    pub limit: Duration,
}

impl BenchConfig {
    /// The guest that scripts/build-x86-kernel.sh builds under `root`/target/guests/x86/linux.
    pub fn for_repo(root: &Path, vmm: PathBuf, runs: usize) -> BenchConfig {
        let dir = root.join("target/guests/x86/linux");
        BenchConfig {
            vmm,
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel: dir.join("vmlinux"),
            initrd: dir.join("initramfs.cpio.gz"),
            cmdline: DEFAULT_CMDLINE.to_string(),
            mem: "256M".to_string(),
            runs,
            limit: Duration::from_secs(60),
        }
    }

    fn vmm_command(&self) -> Command {
        let mut c = Command::new(&self.vmm);
        c.args(["run", "--arch", "x86", "--mem", &self.mem, "--kernel-cmdline", &self.cmdline, "--initrd"])
            .arg(&self.initrd)
            .arg(&self.kernel);
        c
    }

    fn qemu_command(&self) -> Command {
        let mut c = Command::new(&self.qemu);
        // QEMU's default CPU model: `-cpu host` dies on kvm-pvm (QEMU asserts setting MSR 0x10a).
        c.args(["-M", "microvm", "-enable-kvm", "-smp", "1", "-m", &self.mem])
            .args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &self.cmdline]);
        c
    }
}

/// Phase times of both, one entry per run (each holding one time per [`PHASES`] entry).
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub vmm: Vec<Vec<Duration>>,
    pub qemu: Vec<Vec<Duration>>,
    /// The guest's own uptime at the marker (s), from each run whose init printed it.
    pub vmm_uptime: Vec<f64>,
    pub qemu_uptime: Vec<f64>,
}

/// The median over runs of phase `phase`.
fn phase_median(runs: &[Vec<Duration>], phase: usize) -> Duration {
    let secs: Vec<f64> = runs.iter().filter_map(|r| r.get(phase)).map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(common::stats::median(secs))
}

impl BenchReport {
    /// Median time to the last phase, the marker.
    pub fn vmm_median(&self) -> Duration {
        phase_median(&self.vmm, PHASES.len() - 1)
    }

    pub fn qemu_median(&self) -> Duration {
        phase_median(&self.qemu, PHASES.len() - 1)
    }

    /// vmm's median time to the marker over QEMU's: below 1 means vmm is faster.
    pub fn ratio(&self) -> f64 {
        self.vmm_median().as_secs_f64() / self.qemu_median().as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Linux boot, process start to each phase (s), median of {} runs each:", self.vmm.len())?;
        writeln!(f, "  {:<20} {:>8} {:>13} {:>8}", "phase", "vmm", "qemu microvm", "ratio")?;
        for (i, (name, _)) in PHASES.iter().enumerate() {
            let (v, q) = (phase_median(&self.vmm, i).as_secs_f64(), phase_median(&self.qemu, i).as_secs_f64());
            writeln!(f, "  {name:<20} {v:>8.3} {q:>13.3} {:>8.3}", v / q.max(f64::MIN_POSITIVE))?;
        }
        let list = |runs: &[Vec<Duration>]| {
            let last = runs.iter().filter_map(|r| r.last());
            last.map(|d| format!("{:.3}", d.as_secs_f64())).collect::<Vec<_>>().join(" ")
        };
        if !self.vmm_uptime.is_empty() && !self.qemu_uptime.is_empty() {
            let (v, q) =
                (common::stats::median(self.vmm_uptime.clone()), common::stats::median(self.qemu_uptime.clone()));
            writeln!(f, "  {:<20} {v:>8.3} {q:>13.3} {:>8.3}", "guest's own uptime", v / q.max(f64::MIN_POSITIVE))?;
        }
        writeln!(f, "  to the marker, every run: vmm [{}], qemu [{}]", list(&self.vmm), list(&self.qemu))?;
        write!(
            f,
            "  vmm / qemu to the marker {:.3} ({})",
            self.ratio(),
            if self.ratio() < 1.0 { "vmm faster" } else { "qemu faster" }
        )
    }
}

/// Makes the process `cmd` starts receive SIGKILL when the thread that started it ends, so a
/// killed `vmm bench --linux` does not leave qemu (or vmm) running.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only the
    // async-signal-safe prctl, getppid and _exit.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // We may have died before the prctl: then nobody would send the signal.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// What one boot showed: the time from just before the spawn to each marker, and the text
/// after the last marker up to the end of its line (where the init prints its uptime).
#[derive(Debug, Clone, Default)]
pub struct Timed {
    pub times: Vec<Duration>,
    pub rest_of_line: String,
}

/// What the reader thread of [`time_to_markers`] sends: each marker's time, then the rest of
/// the last marker's line, or that the output ended first.
enum Seen {
    Marker(Duration),
    RestOfLine(String),
    Ended,
}

/// Starts `cmd` and times each of `markers` on its stdout, in order (see [`Timed`]); the
/// process is killed either way, and also when we are killed ourselves.
pub fn time_to_markers(mut cmd: Command, markers: &[&str], limit: Duration) -> Result<Timed> {
    let what = format!("{:?}", cmd.get_program());
    die_with_parent(&mut cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::bad_input(format!("cannot start {what}: {e}")))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<Seen>();
    let needles: Vec<Vec<u8>> = markers.iter().map(|m| m.as_bytes().to_vec()).collect();
    std::thread::spawn(move || {
        let (mut seen, mut from) = (Vec::new(), 0);
        let mut buf = [0u8; 4096];
        let mut more = |seen: &mut Vec<u8>| match out.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                true
            }
        };
        for needle in needles {
            // Each marker is looked for after the one before it.
            loop {
                if let Some(at) = seen[from..].windows(needle.len()).position(|w| w == needle) {
                    from += at + needle.len();
                    let _ = tx.send(Seen::Marker(start.elapsed()));
                    break;
                }
                if !more(&mut seen) {
                    let _ = tx.send(Seen::Ended);
                    return;
                }
            }
        }
        while !seen[from..].contains(&b'\n') && more(&mut seen) {}
        let line = seen[from..].split(|&b| b == b'\n').next().unwrap_or_default();
        let _ = tx.send(Seen::RestOfLine(String::from_utf8_lossy(line).trim().to_string()));
    });
    let deadline = start + limit;
    let mut timed = Timed::default();
    let mut failure = None;
    for marker in markers.iter().map(Some).chain([None]) {
        let waiting_for = marker.map_or("the end of the marker's line".to_string(), |m| format!("\"{m}\""));
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Seen::Marker(t)) => timed.times.push(t),
            Ok(Seen::RestOfLine(rest)) => timed.rest_of_line = rest,
            Ok(Seen::Ended) => failure = Some(format!("{what} ended before printing {waiting_for}")),
            Err(_) => failure = Some(format!("{what} did not print {waiting_for} within {}s", limit.as_secs())),
        }
        if failure.is_some() {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    match failure {
        Some(why) => Err(Error::guest(why)),
        None => Ok(timed),
    }
}

/// The guest's uptime in seconds from the init's `VMM-INIT-OK uptime=<s>` line, if it printed one.
pub fn uptime_of(rest_of_line: &str) -> Option<f64> {
    rest_of_line.split_whitespace().find_map(|w| w.strip_prefix("uptime=")?.parse().ok())
}

/// Runs the benchmark: `runs` boots of each, alternating vmm and QEMU.
pub fn run(config: &BenchConfig) -> Result<BenchReport> {
    for p in [&config.kernel, &config.initrd, &config.vmm] {
        if !p.exists() {
            return Err(Error::bad_input(format!(
                "benchmark input {} is missing (run scripts/build-x86-kernel.sh)",
                p.display()
            )));
        }
    }
    let mut report = BenchReport::default();
    let runs = config.runs.max(1);
    for run in 1..=runs {
        let markers = PHASES.map(|(_, marker)| marker);
        eprintln!("vmm bench: boot {run} of {runs}: vmm");
        let vmm = time_to_markers(config.vmm_command(), &markers, config.limit)?;
        report.vmm_uptime.extend(uptime_of(&vmm.rest_of_line));
        let took = vmm.times.last().map_or(0.0, Duration::as_secs_f64);
        report.vmm.push(vmm.times);
        eprintln!("vmm bench: boot {run} of {runs}: vmm {took:.3} s to the marker; now qemu");
        let qemu = time_to_markers(config.qemu_command(), &markers, config.limit)?;
        report.qemu_uptime.extend(uptime_of(&qemu.rest_of_line));
        report.qemu.push(qemu.times);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_takes_medians_and_ratio() {
        let ms = Duration::from_millis;
        let run = |last| vec![ms(10), ms(20), ms(30), ms(last)];
        let r = BenchReport {
            vmm: vec![run(300), run(100), run(200)],
            qemu: vec![run(400), run(400), run(900)],
            vmm_uptime: vec![0.2, 0.1, 0.3],
            qemu_uptime: vec![0.4, 0.4, 0.5],
        };
        assert_eq!(r.vmm_median(), ms(200));
        assert_eq!(r.qemu_median(), ms(400));
        assert!((r.ratio() - 0.5).abs() < 1e-9);
        let text = r.to_string();
        assert!(text.contains("vmm faster") && text.contains("Serial: 8250"), "{text}");
        assert!(text.contains("guest's own uptime      0.200         0.400    0.500"), "{text}");
    }

    #[test]
    fn markers_are_timed_in_order_on_a_real_process() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "echo boot; sleep 0.2; echo 'Serial: 8250'; printf 'VMM-INIT-OK up'; sleep 0.1; echo 'time=1.25'; sleep 5",
        ]);
        let timed = time_to_markers(c, &["boot", "Serial: 8250", "VMM-INIT-OK"], Duration::from_secs(4)).unwrap();
        assert_eq!(uptime_of(&timed.rest_of_line), Some(1.25), "{timed:?}");
        let t = timed.times;
        assert_eq!(t.len(), 3);
        assert!(t[0] < t[1] && t[1] <= t[2] && t[2] < Duration::from_secs(3), "{t:?}");
        // A marker printed before the one it must follow does not count.
        let mut c = Command::new("sh");
        c.args(["-c", "echo VMM-INIT-OK; echo 'Serial: 8250'"]);
        let e = time_to_markers(c, &["Serial: 8250", "VMM-INIT-OK"], Duration::from_secs(4)).unwrap_err();
        assert!(e.message.contains("ended before printing \"VMM-INIT-OK\""), "{}", e.message);
        assert_eq!(uptime_of("no uptime here"), None);
    }

    #[test]
    fn children_die_with_the_thread_that_started_them() {
        use std::os::unix::process::ExitStatusExt;
        // PR_SET_PDEATHSIG fires when the starting thread ends: a short-lived thread stands in
        // for a killed vmm.
        let mut child = std::thread::spawn(|| {
            let mut c = Command::new("sleep");
            c.arg("30");
            die_with_parent(&mut c);
            c.spawn().unwrap()
        })
        .join()
        .unwrap();
        let start = Instant::now();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
