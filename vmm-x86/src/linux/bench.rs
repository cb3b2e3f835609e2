//! The boot benchmark of issue 3 (a measurement, not a test): wall time from process start
//! to the kernel's `console [ttyS0] enabled` line, vmm against `qemu-system-x86_64 -M
//! microvm -enable-kvm` with the same vmlinux, initramfs and command line, alternating the
//! two in the same run so both see the same machine load.
use super::DEFAULT_CMDLINE;
use common::{Error, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The line both boots are timed to.
pub const MARKER: &str = "console [ttyS0] enabled";

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

/// Boot times of both, in run order.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub vmm: Vec<Duration>,
    pub qemu: Vec<Duration>,
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

impl BenchReport {
    pub fn vmm_median(&self) -> Duration {
        median(&self.vmm)
    }

    pub fn qemu_median(&self) -> Duration {
        median(&self.qemu)
    }

    /// vmm's median boot time over QEMU's: below 1 means vmm is faster.
    pub fn ratio(&self) -> f64 {
        self.vmm_median().as_secs_f64() / self.qemu_median().as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[Duration]| v.iter().map(|d| format!("{:.3}", d.as_secs_f64())).collect::<Vec<_>>().join(" ");
        writeln!(f, "time to \"{MARKER}\" (s), median of {} runs each:", self.vmm.len())?;
        writeln!(f, "  vmm            {:>8.3}   [{}]", self.vmm_median().as_secs_f64(), list(&self.vmm))?;
        writeln!(f, "  qemu microvm   {:>8.3}   [{}]", self.qemu_median().as_secs_f64(), list(&self.qemu))?;
        write!(
            f,
            "  vmm / qemu     {:>8.3}   ({})",
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

/// Starts `cmd` and returns the time from just before the spawn until `marker` appears on its
/// stdout; the process is killed either way, and also when we are killed ourselves.
pub fn time_to_marker(mut cmd: Command, marker: &str, limit: Duration) -> Result<Duration> {
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
    let (tx, rx) = mpsc::channel();
    let needle = marker.as_bytes().to_vec();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if seen.windows(needle.len()).any(|w| w == needle) {
                let _ = tx.send(Some(start.elapsed()));
                return;
            }
        }
    });
    let result = rx.recv_timeout(limit);
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(Error::guest(format!("{what} ended before printing \"{marker}\""))),
        Err(_) => Err(Error::guest(format!("{what} did not print \"{marker}\" within {}s", limit.as_secs()))),
    }
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
    for _ in 0..config.runs.max(1) {
        report.vmm.push(time_to_marker(config.vmm_command(), MARKER, config.limit)?);
        report.qemu.push(time_to_marker(config.qemu_command(), MARKER, config.limit)?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_takes_medians_and_ratio() {
        let ms = Duration::from_millis;
        let r = BenchReport { vmm: vec![ms(300), ms(100), ms(200)], qemu: vec![ms(400), ms(400), ms(900)] };
        assert_eq!(r.vmm_median(), ms(200));
        assert_eq!(r.qemu_median(), ms(400));
        assert!((r.ratio() - 0.5).abs() < 1e-9);
        assert!(r.to_string().contains("vmm faster"));
    }

    #[test]
    fn marker_is_timed_on_a_real_process() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo boot; echo 'printk: console [ttyS0] enabled'; sleep 5"]);
        let t = time_to_marker(c, MARKER, Duration::from_secs(4)).unwrap();
        assert!(t < Duration::from_secs(3), "{t:?}");
        let mut c = Command::new("sh");
        c.args(["-c", "echo nothing"]);
        assert!(time_to_marker(c, MARKER, Duration::from_secs(4)).unwrap_err().message.contains("ended before"));
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
