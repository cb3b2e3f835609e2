//! The x86 lab host (`--lab`): vmm's full-boot path (KVM on VMX/SVM) on any x86_64 machine,
//! also one whose /dev/kvm is kvm-pvm or that has no /dev/kvm. QEMU runs a small Linux 6.12 in
//! software (TCG) on an emulated AMD EPYC with SVM and nested paging; that kernel's KVM_AMD
//! offers a /dev/kvm, and the static x86_64 build of vmm runs the same command there (the
//! `lab` crate boots it and relays the console). Only what is x86 about it is here.
use crate::config::{EntryMode, X86Config};
use common::image::Image;
use common::vm::{Outcome, VirtualMachine, VmConfig};
use common::{Error, Result};
use lab::LabHost;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SETUP_HINT: &str = "run `scripts/build-x86-lab.sh` (it builds the lab host's kernel and the static x86_64 vmm)";
/// The emulated CPU: an AMD one, so that its SVM (which TCG emulates, with nested paging) is
/// what the lab kernel's KVM_AMD drives. TCG has no VMX.
const CPU: &str = "EPYC,+svm,+npt";
/// Where a user's file goes in the initramfs when its path cannot be used as is.
const FALLBACK_IMAGE: &str = "/guest.img";
const FALLBACK_INITRD: &str = "/guest.initrd";

/// The x86 lab: `$VMM_X86_LAB/{bzImage,vmm}` if set, else beside this executable's target dir:
/// `<target>/x86-lab/bzImage` and `<target>/x86_64-unknown-linux-musl/release/vmm`, where
/// `<target>` is the running vmm's ([`common::layout::target_dir`]).
pub fn locate() -> Result<LabHost> {
    let (kernel, vmm) = parts()?;
    let qemu = std::env::var_os("VMM_QEMU_X86").map_or(PathBuf::from("qemu-system-x86_64"), PathBuf::from);
    let mut host = LabHost {
        notice: "vmm: running the static x86_64 build inside x86_64 Linux on an emulated AMD-V CPU \
                 (qemu-system-x86_64, TCG) (--lab)"
            .into(),
        inner: "the x86_64 vmm",
        qemu,
        machine_args: ["-accel", "tcg", "-cpu", CPU, "-smp", "1", "-kernel"]
            .map(Into::into)
            .into_iter()
            .chain([kernel.clone().into()])
            .collect(),
        kernel_cmdline: String::new(),
        vmm: vmm.clone(),
        ram_overhead_mib: 128,
        setup_hint: SETUP_HINT,
        disk_device: "virtio-blk-pci",
    };
    host.check_parts("--lab", &[("x86 lab kernel", &kernel), ("static x86_64 build of vmm", &vmm)])?;
    host.kernel_cmdline = kernel_cmdline(host_tsc_khz()?);
    Ok(host)
}

/// One line for `vmm info`: whether `--lab` can run here.
pub fn status() -> String {
    let missing = |what: &str, path: &Path| {
        format!("x86 lab host (--lab): not set up: no {what} {}; {SETUP_HINT}", path.display())
    };
    match parts() {
        Ok((kernel, _)) if !kernel.is_file() => missing("lab kernel", &kernel),
        Ok((_, vmm)) if !vmm.is_file() => missing("static x86_64 vmm", &vmm),
        Ok((kernel, _)) => format!(
            "x86 lab host (--lab): ready, Linux {} on an emulated {CPU} under qemu-system-x86_64 (TCG); \
             `vmm info --lab` shows its KVM",
            kernel.display()
        ),
        Err(e) => format!("x86 lab host (--lab): {e}"),
    }
}

/// The lab kernel and the static vmm (which may not exist).
fn parts() -> Result<(PathBuf, PathBuf)> {
    Ok(match std::env::var_os("VMM_X86_LAB") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            (dir.join("bzImage"), dir.join("vmm"))
        }
        None => {
            let target = common::layout::target_dir()?;
            (target.join("x86-lab/bzImage"), target.join("x86_64-unknown-linux-musl/release/vmm"))
        }
    })
}

/// The lab kernel's command line. `tsc_early_khz` is the fix for a hang: without it the lab
/// kernel sometimes fails to calibrate the emulated TSC ("Marking TSC unstable due to could not
/// calculate TSC khz"), and its KVM then spins in the first KVM_RUN waiting for a TSC rate.
/// TCG's TSC counts at the host's rate, so the host's rate is the right one. tsc=reliable: the
/// clocksource watchdog would compare that TSC with jiffies, which lag under TCG, mark it
/// unstable and fall back to jiffies, so the lab's clock (and --timeout in it) would run slow.
/// reboot=k: init's restart is an i8042 reset, which QEMU's -no-reboot turns into exiting.
/// loglevel=1: only a panic reaches the console.
pub fn kernel_cmdline(tsc_khz: u64) -> String {
    format!("console=ttyS0 quiet loglevel=1 reboot=k panic=-1 tsc_early_khz={tsc_khz} tsc=reliable")
}

/// This host's TSC rate in kHz, measured against CLOCK_MONOTONIC over 20 ms.
pub fn host_tsc_khz() -> Result<u64> {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(20));
    let (c1, elapsed) = (rdtsc(), t0.elapsed());
    tsc_khz_from(c1.wrapping_sub(c0), elapsed)
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// `ticks` in `elapsed` as kHz, refused unless between 100 MHz and 20 GHz (a TSC that is not
/// counting, or a clock that jumped). Pure.
pub fn tsc_khz_from(ticks: u64, elapsed: Duration) -> Result<u64> {
    let micros = elapsed.as_micros().max(1) as u64;
    let khz = ticks.saturating_mul(1000) / micros;
    if (100_000..=20_000_000).contains(&khz) {
        Ok(khz)
    } else {
        Err(Error::bad_input(format!(
            "--lab: this host's TSC counted {ticks} ticks in {micros} us ({khz} kHz), not a rate to give the lab kernel"
        )))
    }
}

/// Runs the static x86_64 vmm inside the lab host with `inner_args` (e.g. `info`) and `files`.
pub fn run_inner(vm: &VmConfig, inner_args: &[String], files: &[(String, Vec<u8>)]) -> Result<Outcome> {
    lab::run_inner(&locate()?, vm, inner_args, files)
}

/// `vmm bench --arch x86 --lab [--linux]` inside the lab host, on its SVM. The files the
/// benchmark reads go into the initramfs where the inner vmm (run from /) looks for them.
/// Without `linux_runs`: exit cost and start-up, against the C baseline, compiled here
/// statically (the lab has no compiler or libc). With it: boot to the init marker, vmm against
/// QEMU microvm, so this host's qemu-system-x86_64 goes in too, with its libraries and firmware.
pub fn bench(root: &Path, linux_runs: Option<usize>) -> Result<Outcome> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| {
            Error::bad_input(format!(
                "cannot read {}: {e}; run `scripts/setup.sh` (it builds the x86 guests)",
                path.display()
            ))
        })
    };
    let mut files = Vec::new();
    let mut args: Vec<String> = ["bench", "--arch", "x86"].map(String::from).to_vec();
    match linux_runs {
        None => {
            let opts = crate::bench::BenchOptions::in_repo(root)?;
            let baseline = crate::bench::build_baseline(&opts, true)?;
            for (inside, path) in [
                ("target/guests/x86/outs.bin", opts.guests.join("outs.bin")),
                ("target/guests/x86/hello.bin", opts.guests.join("hello.bin")),
                ("target/guests/x86/virtio-bench.bin", opts.guests.join("virtio-bench.bin")),
                ("benches/baseline/kvm_hello.c", opts.baseline_c.clone()),
                ("target/bench/kvm_hello-static", baseline),
            ] {
                files.push((inside.to_string(), read(&path)?));
            }
        }
        Some(runs) => {
            let config = crate::linux::bench::BenchConfig::for_repo(root, PathBuf::new(), runs);
            files.push(("target/guests/x86/linux/vmlinux".into(), read(&config.kernel)?));
            files.push(("target/guests/x86/linux/initramfs.cpio.gz".into(), read(&config.initrd)?));
            files.extend(qemu_files(&config.qemu)?);
            args.extend(["--linux".into(), "--runs".into(), runs.to_string()]);
        }
    }
    // A bound on the whole benchmark, so that a boot stuck inside the lab host (seen in three of
    // nine `--linux --runs 5` runs here, cause unknown: the lab host sat idle) ends in a line,
    // not a hang: each boot's own limit is 60 s (linux/bench.rs).
    let limit = linux_runs.map_or(600, |runs| 2 * 60 * runs as u64 + 120);
    let vm = VmConfig {
        mem_size: 2 * crate::config::DEFAULT_MEM,
        timeout: Some(std::time::Duration::from_secs(limit)),
        console: common::console::Console::stdout(),
        jail: true,
        ..VmConfig::default()
    };
    run_inner(&vm, &args, &files)
}

/// Where Debian's QEMU looks for firmware (its --firmwarepath), in order.
const QEMU_FIRMWARE_PATH: [&str; 2] = ["/usr/share/qemu", "/usr/share/seabios"];

/// This host's qemu-system-x86_64 as files for the lab's initramfs: the binary at /usr/bin (the
/// inner benchmark finds it through the default PATH), every library `ldd` names and the
/// dynamic loader at the paths it names, and the firmware QEMU microvm loads for a PVH kernel.
fn qemu_files(qemu: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let binary = find_in_path(qemu)?;
    let ldd = std::process::Command::new("ldd")
        .arg(&binary)
        .output()
        .map_err(|e| Error::bad_input(format!("cannot run ldd on {}: {e}", binary.display())))?;
    if !ldd.status.success() {
        return Err(Error::bad_input(format!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&ldd.stderr).trim()
        )));
    }
    let mut paths = vec![(format!("usr/bin/{}", file_name(&binary)), binary.clone())];
    for lib in ldd_paths(&String::from_utf8_lossy(&ldd.stdout)) {
        paths.push((lib.clone(), PathBuf::from(lib)));
    }
    for firmware in ["bios-microvm.bin", "pvh.bin"] {
        let found = QEMU_FIRMWARE_PATH.iter().map(|dir| Path::new(dir).join(firmware)).find(|p| p.is_file());
        let path = found.ok_or_else(|| {
            Error::bad_input(format!("--linux --lab needs QEMU's {firmware} in {}", QEMU_FIRMWARE_PATH.join(" or ")))
        })?;
        paths.push((path.display().to_string(), path));
    }
    paths
        .into_iter()
        .map(|(inside, path)| {
            // fs::read follows symlinks: the initramfs holds the file under the name asked for.
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::bad_input(format!("--linux --lab needs {}: {e}", path.display())))?;
            Ok((inside, bytes))
        })
        .collect()
}

/// The absolute paths in `ldd` output: "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)"
/// and the loader line "/lib64/ld-linux-x86-64.so.2 (0x...)". Pure.
pub fn ldd_paths(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let path = line.split_once("=>").map_or(line, |(_, right)| right).split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "qemu".into(), |n| n.to_string_lossy().into_owned())
}

/// `name` itself if it has a slash, else its first match in PATH.
fn find_in_path(name: &Path) -> Result<PathBuf> {
    if name.components().count() > 1 {
        return Ok(name.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::bad_input(format!("--linux --lab needs {} in PATH", name.display())))
}

/// `vmm run --arch x86 --lab`: the same run inside the lab host.
pub struct LabVm {
    config: X86Config,
    /// (path inside the initramfs, contents): the image, then the initrd if any.
    files: Vec<(String, Vec<u8>)>,
}

impl LabVm {
    pub fn new(config: X86Config) -> Self {
        LabVm { config, files: Vec::new() }
    }

    /// The inner command line: the same options, with the files' paths inside the lab.
    fn inner_args(&self) -> Vec<String> {
        let c = &self.config;
        let mut args: Vec<String> = ["run", "--arch", "x86", "--mem"].map(String::from).to_vec();
        args.push(c.vm.mem_size.to_string());
        if let Some(mode) = c.mode {
            let name = match mode {
                EntryMode::Real => "real",
                EntryMode::Protected => "protected",
                EntryMode::Long => "long",
            };
            args.extend(["--mode".into(), name.into()]);
        }
        if let Some(t) = c.vm.timeout {
            args.extend(["--timeout".into(), t.as_secs_f64().to_string()]);
        }
        if c.stats {
            args.push("--stats".into());
        }
        if c.vm.stats_json {
            args.push("--stats-json".into());
        }
        if c.lab_devices {
            args.push("--lab-devices".into());
        }
        if !c.vm.jail {
            args.push("--no-seccomp".into());
        }
        if let Some(cmdline) = &c.linux.cmdline {
            args.extend(["--kernel-cmdline".into(), cmdline.clone()]);
        }
        if let Some((initrd, _)) = self.files.get(1) {
            args.extend(["--initrd".into(), initrd.clone()]);
        }
        args.extend(lab::inner_disk_args(&c.vm.disks));
        args.extend(lab::passthrough::inner_args(&c.vm));
        args.push(self.files.first().map_or(FALLBACK_IMAGE.into(), |(path, _)| path.clone()));
        args
    }
}

impl VirtualMachine for LabVm {
    /// Reads the image and the initrd here, so a missing file is refused before booting; the
    /// inner vmm judges their contents.
    fn load(&mut self, image: &Image) -> Result<()> {
        let mut files = vec![(lab::inner_path(&image.path, FALLBACK_IMAGE), image.bytes.clone())];
        if let Some(path) = &self.config.linux.initrd {
            let initrd = Image::read_limited(path, "initrd", self.config.vm.mem_size)?;
            let mut inner = lab::inner_path(path, FALLBACK_INITRD);
            if inner == files[0].0 {
                inner = FALLBACK_INITRD.into();
            }
            files.push((inner, initrd.bytes));
        }
        self.files = files;
        Ok(())
    }

    fn run(&mut self) -> Result<Outcome> {
        if self.files.is_empty() {
            return Err(Error::bad_input("no guest image was loaded"));
        }
        run_inner(&self.config.vm, &self.inner_args(), &self.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LinuxOptions;
    use common::console::Console;

    fn config(mode: Option<EntryMode>, linux: LinuxOptions) -> X86Config {
        let vm = VmConfig {
            mem_size: 256 << 20,
            timeout: Some(Duration::from_secs(30)),
            console: Console::capture(),
            jail: false,
            ..VmConfig::default()
        };
        X86Config { vm, mode, linux, stats: true, lab_devices: false }
    }

    #[test]
    fn inner_command_line_carries_every_option() {
        let bin = Image { path: "target/guests/x86/hello64.bin".into(), bytes: vec![0xf4] };
        let mut vm = LabVm::new(config(Some(EntryMode::Long), LinuxOptions::default()));
        vm.load(&bin).unwrap();
        assert_eq!(
            vm.inner_args().join(" "),
            "run --arch x86 --mem 268435456 --mode long --timeout 30 --stats --no-seccomp target/guests/x86/hello64.bin"
        );
    }

    #[test]
    fn disks_go_in_as_the_lab_hosts_disks() {
        let mut c = config(None, LinuxOptions::default());
        c.vm.disks = vec![
            common::vm::DiskConfig { path: "a.img".into(), read_only: false },
            common::vm::DiskConfig { path: "b.img".into(), read_only: true },
        ];
        let mut vm = LabVm::new(c);
        vm.load(&Image { path: "bzImage".into(), bytes: vec![1] }).unwrap();
        let args = vm.inner_args().join(" ");
        assert!(args.ends_with("--disk /dev/vmm-disk0 --disk /dev/vmm-disk1,ro bzImage"), "{args}");
    }

    #[test]
    fn the_initrd_and_command_line_go_along() {
        let initrd = std::env::temp_dir().join(format!("vmm-lab-test-{}.cpio", std::process::id()));
        std::fs::write(&initrd, b"070701").unwrap();
        let linux = LinuxOptions { cmdline: Some("console=ttyS0 vmm.shell".into()), initrd: Some(initrd.clone()) };
        let mut vm = LabVm::new(config(None, linux));
        vm.load(&Image { path: "../bzImage".into(), bytes: vec![1] }).unwrap();
        let args = vm.inner_args();
        std::fs::remove_file(&initrd).unwrap();
        let n = args.len();
        assert_eq!(args[n - 5..n - 2], ["--kernel-cmdline", "console=ttyS0 vmm.shell", "--initrd"]);
        assert_eq!(args[n - 2], initrd.to_str().unwrap());
        assert_eq!(args[n - 1], FALLBACK_IMAGE, "a path with .. cannot be recreated inside");
        assert_eq!(vm.files[1].1, b"070701");
    }

    #[test]
    fn a_missing_initrd_is_bad_input_before_booting() {
        let linux = LinuxOptions { cmdline: None, initrd: Some("/nonexistent/initrd".into()) };
        let mut vm = LabVm::new(config(None, linux));
        let err = vm.load(&Image { path: "bzImage".into(), bytes: vec![1] }).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message.starts_with("cannot read initrd /nonexistent/initrd"), "{}", err.message);
    }

    #[test]
    fn tsc_rate_is_checked() {
        assert_eq!(tsc_khz_from(48_908_080, Duration::from_millis(20)).unwrap(), 2_445_404);
        assert!(tsc_khz_from(0, Duration::from_millis(20)).is_err());
        assert!(tsc_khz_from(u64::MAX, Duration::from_millis(20)).is_err());
        assert!(tsc_khz_from(1_000_000_000, Duration::ZERO).is_err(), "a clock that did not move");
        assert!(kernel_cmdline(2_445_404).contains(" tsc_early_khz=2445404 "));
    }

    #[test]
    fn ldd_output_gives_libraries_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x7f)\n\
                   \tlibgone.so => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(ldd_paths(out), ["/lib/x86_64-linux-gnu/libz.so.1", "/lib64/ld-linux-x86-64.so.2"]);
    }

    #[test]
    fn this_hosts_tsc_is_measurable() {
        let khz = host_tsc_khz().unwrap();
        assert!(khz >= 100_000, "{khz}");
    }
}
