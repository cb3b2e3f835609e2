//! Command-line definitions. Exit codes are part of the interface: see `after_help`.
use clap::{Args, Parser, Subcommand, ValueEnum};
use common::vm::{DiskConfig, VirtualMachine, VmConfig};
use common::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

const EXIT_CODES: &str = "\
Exit codes:
  0      the guest halted, powered off with status 0, or the user pressed Ctrl-A x
  1      the guest failed: triple fault, emulation failure, unhandled exit, stuck, timeout
  2      bad usage or bad input: missing/unreadable/empty/malformed image, image larger than
         guest RAM, no /dev/kvm or no permission, bad --mem, --timeout or --gdb
  3      vmm stopped itself: a system call outside its seccomp allowlist (see --no-seccomp)
  4      vmm itself failed (a panic: a bug in vmm)
  65-124 the guest powered off with its own status s = 1..60 (code 64 + s; an SBI shutdown
         with reason 0xE00000ss reports ss)
  125    the guest powered off with another status (61 or more, or negative)

RISC-V note: URVirt runs the guest kernel in the same address space as the monitor. It
traps what the guest does, but a hostile guest that jumps into monitor code is NOT contained.";

#[derive(Parser)]
#[command(name = "vmm", version, about = "A small, real virtual machine monitor: x86 on KVM, RISC-V by trap-and-emulate (URVirt)", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run a guest image (flat binary, Linux bzImage/vmlinux, or RISC-V kernel)
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Show this host's KVM: API version, virtualization flavor (VMX, SVM or PVM), extensions
    Info(InfoArgs),
    /// Measure vmm against raw baselines in one run (x86: exit cost, start-up; RISC-V: SBI call, compute loop)
    Bench(BenchArgs),
    /// The teaching lab: the same workloads on KVM and on URVirt; exits or signals and ns per event
    Lab(teaching::LabArgs),
    /// For `vmm lab`: a workload's native baseline (compute) as one JSON line
    #[command(hide = true)]
    LabNative(LabNativeArgs),
}

#[derive(Args)]
pub struct LabNativeArgs {
    /// Whose kernel: the x86 one (here, or with --lab inside the x86 lab host) or the RISC-V one
    #[arg(long, value_enum, default_value = "riscv")]
    pub arch: Arch,
    /// x86: inside the x86 lab host
    #[arg(long)]
    pub lab: bool,
    /// The workload (only `compute` has a native baseline)
    pub workload: String,
    /// Iterations of its kernel
    pub iterations: u64,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Show the KVM of the x86 lab host instead (boots it: a few seconds)
    #[arg(long)]
    pub lab: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Which backend to measure
    #[arg(long, value_enum, default_value = "x86")]
    pub arch: Arch,
    /// RISC-V: how guest ecalls are trapped during the benchmark [default: auto]
    #[arg(long, value_enum)]
    pub ecall: Option<Ecall>,
    /// x86: instead, time process start to Linux's `console [ttyS0] enabled`, vmm vs QEMU microvm
    #[arg(long)]
    pub linux: bool,
    /// x86 --linux: boots of each side
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// x86: measure inside the x86 lab host, on its (emulated) SVM
    #[arg(long)]
    pub lab: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    X86,
    Riscv,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Real,
    Protected,
    Long,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ecall {
    Auto,
    Seccomp,
    Sud,
}

impl From<Ecall> for urvirt_riscv::EcallTrap {
    fn from(e: Ecall) -> Self {
        match e {
            Ecall::Auto => urvirt_riscv::EcallTrap::Auto,
            Ecall::Seccomp => urvirt_riscv::EcallTrap::Seccomp,
            Ecall::Sud => urvirt_riscv::EcallTrap::Sud,
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Guest architecture
    #[arg(long, value_enum, default_value = "x86")]
    pub arch: Arch,
    /// x86 flat binaries: the CPU mode the image is entered in, at guest physical 0x1000 [default: real]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Guest RAM, e.g. 128M or 1G (x86 default 256M, RISC-V default 128M)
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// Print exits/traps by kind with counts and mean handling time after the run
    #[arg(long)]
    pub stats: bool,
    /// Print the run's statistics and marks as one line of JSON on stderr (for scripts and `vmm lab`)
    #[arg(long)]
    pub stats_json: bool,
    /// Stop a runaway guest after this many seconds (exit code 1)
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Linux: the kernel command line (default: console=ttyS0 reboot=k panic=1 ...)
    #[arg(long, value_name = "CMDLINE")]
    pub kernel_cmdline: Option<String>,
    /// Linux: an initramfs to load
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// RISC-V: how guest ecalls are trapped (auto: syscall user dispatch if the kernel has it, else seccomp) [default: auto]
    #[arg(long, value_enum)]
    pub ecall: Option<Ecall>,
    /// Turn off the seccomp allowlists vmm's own threads run under (for debugging vmm)
    #[arg(long)]
    pub no_seccomp: bool,
    /// x86: run inside the x86 lab host, a Linux on an emulated AMD-V CPU under QEMU (TCG), so that
    /// Linux boots fully on any x86_64 host (kvm-pvm, or no /dev/kvm)
    #[arg(long)]
    pub lab: bool,
    /// x86 flat binaries: the teaching lab's devices (in-kernel irqchip and PIT, exit port 0xf4,
    /// MMIO register at 0xd0100000); `vmm lab` passes it to the lab-*.bin guests
    #[arg(long)]
    pub lab_devices: bool,
    /// A raw disk image the guest sees as a virtio-blk device (`,ro`: read-only); repeat for more
    /// disks, which take consecutive slots. No commas in FILE.
    #[arg(long, value_name = "FILE[,ro]")]
    pub disk: Vec<String>,
    /// Serve gdb's remote protocol on ADDR:PORT (PORT alone: 127.0.0.1:PORT; 0: a free port)
    /// for one gdb connection per run (after it detaches, no other gdb can connect)
    #[arg(long, value_name = "ADDR:PORT")]
    pub gdb: Option<String>,
    /// With --gdb: stop before the first guest instruction until gdb connects (like QEMU's -S)
    #[arg(long, requires = "gdb")]
    pub gdb_wait: bool,
    /// Write one line per exit (x86) or trap (RISC-V) to FILE: time since start (us), kind (as
    /// the --stats rows), target (port=, addr=, csr=, eid= fid=), value, handling time (ns),
    /// tab-separated
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// With --trace: only these kinds, comma-separated, as --stats names them; a name also takes
    /// the rows it starts ("io-out" takes "io-out debug-0xf1", "sigsys sbi" every SBI call)
    #[arg(long, value_name = "K1,K2", requires = "trace")]
    pub trace_kinds: Option<String>,
    /// Back guest RAM with PATH (its first --mem bytes). Without --mem-share the file is the
    /// guest's initial RAM, only read (as QEMU's share=off); with it the guest's writes land in it
    #[arg(long, value_name = "PATH")]
    pub mem_file: Option<PathBuf>,
    /// With --mem-file: map the file shared, so that after the run it holds the guest's memory
    /// (a missing file is created, a short one grown to the RAM size)
    #[arg(long, requires = "mem_file")]
    pub mem_share: bool,
    /// The guest image
    pub image: PathBuf,
}

/// The longest --timeout accepted: about 31 years, far beyond any run, and small enough that
/// adding it to a clock reading can never overflow.
const MAX_TIMEOUT_SECS: f64 = 1e9;

pub fn parse_timeout(text: &str) -> Result<Duration> {
    let bad = || Error::bad_input(format!("bad --timeout '{text}': give a number of seconds above 0, at most 1e9"));
    let secs: f64 = text.trim().parse().map_err(|_| bad())?;
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).ok().filter(|d| !d.is_zero()).ok_or_else(bad)
}

/// `--disk FILE[,ro]`. The file itself is checked when the device opens it.
pub fn parse_disk(text: &str) -> Result<DiskConfig> {
    let (path, read_only) = match text.rsplit_once(',') {
        None => (text, false),
        Some((path, "ro")) => (path, true),
        Some((_, option)) => {
            return Err(Error::bad_input(format!(
                "bad --disk '{text}': unknown option '{option}' (give FILE or FILE,ro)"
            )))
        }
    };
    if path.is_empty() || path.contains(',') {
        return Err(Error::bad_input(format!("bad --disk '{text}': give FILE or FILE,ro (FILE without commas)")));
    }
    Ok(DiskConfig { path: PathBuf::from(path), read_only })
}

/// `--trace FILE [--trace-kinds ...]` and `--mem-file PATH [--mem-share]` as VmConfig fields.
pub fn trace_and_mem_file(
    args: &RunArgs,
) -> Result<(Option<common::trace::TraceConfig>, Option<common::mem_file::MemFileConfig>)> {
    let kinds = args.trace_kinds.as_deref().map(common::trace::TraceConfig::parse_kinds).transpose()?;
    let trace = args.trace.clone().map(|path| common::trace::TraceConfig { path, kinds: kinds.unwrap_or_default() });
    // An unwritable trace file is refused here, before any VM or lab host is made; checked
    // without opening it (no truncation, no header, no blocking on a FIFO).
    if let Some(t) = &trace {
        common::trace::Tracer::check_writable(&t.path)?;
    }
    let mem_file = args.mem_file.clone().map(|path| common::mem_file::MemFileConfig { path, shared: args.mem_share });
    Ok((trace, mem_file))
}

/// Options that belong to one architecture are refused on the other instead of being ignored.
pub fn check_arch_options(args: &RunArgs) -> Result<()> {
    let misplaced: &[(&str, bool)] = match args.arch {
        Arch::Riscv => &[
            ("--mode", args.mode.is_some()),
            ("--initrd", args.initrd.is_some()),
            ("--kernel-cmdline", args.kernel_cmdline.is_some()),
            ("--lab", args.lab),
            ("--lab-devices", args.lab_devices),
        ],
        Arch::X86 => &[("--ecall", args.ecall.is_some())],
    };
    match misplaced.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(Error::bad_input(format!("{flag} does not apply to --arch {}", args.arch.name()))),
        None => Ok(()),
    }
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86 => "x86",
            Arch::Riscv => "riscv",
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub fn x86_default_mem() -> u64 {
    vmm_x86::config::DEFAULT_MEM
}

#[cfg(target_arch = "x86_64")]
pub fn x86_vm(args: &RunArgs, vm: VmConfig) -> Result<Box<dyn VirtualMachine>> {
    let mode = args.mode.map(|m| match m {
        Mode::Real => vmm_x86::EntryMode::Real,
        Mode::Protected => vmm_x86::EntryMode::Protected,
        Mode::Long => vmm_x86::EntryMode::Long,
    });
    let linux = vmm_x86::LinuxOptions { cmdline: args.kernel_cmdline.clone(), initrd: args.initrd.clone() };
    let config =
        vmm_x86::X86Config { vm, mode, linux, stats: args.stats || args.stats_json, lab_devices: args.lab_devices };
    if args.lab {
        if config.vm.gdb.is_some() {
            return Err(Error::bad_input("--gdb does not apply to --lab runs (the guest runs inside the lab host)"));
        }
        return Ok(Box::new(vmm_x86::lab::LabVm::new(config)));
    }
    vmm_x86::new_vm(config)
}

/// `vmm bench --arch x86`: guests, kernels and the C baseline are found from the repository
/// holding this binary ([`common::layout::repo_root`]), else from the current directory.
#[cfg(target_arch = "x86_64")]
pub fn x86_bench(args: &BenchArgs) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| Error::bad_input(format!("cannot find the vmm binary: {e}")))?;
    let root = match common::layout::repo_root() {
        Some(r) => r,
        None => std::env::current_dir().map_err(|e| Error::bad_input(format!("no current directory: {e}")))?,
    };
    if args.lab {
        let outcome = vmm_x86::lab::bench(&root, args.linux.then_some(args.runs.max(1)))?;
        return match outcome.exit {
            common::vm::GuestExit::Relayed(0) => Ok(String::new()),
            common::vm::GuestExit::Failed(why) => Err(Error::guest(why)),
            _ => Err(Error::guest(format!(
                "the benchmark inside the lab host failed (exit code {})",
                outcome.exit_code()
            ))),
        };
    }
    if args.linux {
        let config = vmm_x86::linux::bench::BenchConfig::for_repo(&root, exe, args.runs.max(1));
        Ok(vmm_x86::linux::bench::run(&config)?.to_string())
    } else {
        vmm_x86::bench::run(&vmm_x86::bench::BenchOptions::in_repo(&root)?)
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn x86_bench(_args: &BenchArgs) -> Result<String> {
    Err(Error::bad_input("--arch x86 needs an x86_64 host with /dev/kvm; this build is for another architecture"))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn x86_default_mem() -> u64 {
    256 << 20
}

#[cfg(not(target_arch = "x86_64"))]
pub fn x86_vm(_args: &RunArgs, _vm: VmConfig) -> Result<Box<dyn VirtualMachine>> {
    Err(Error::bad_input("--arch x86 needs an x86_64 host with /dev/kvm; this build is for another architecture"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_options() {
        let d = |path: &str, read_only| DiskConfig { path: path.into(), read_only };
        assert_eq!(parse_disk("a.img").unwrap(), d("a.img", false));
        assert_eq!(parse_disk("/tmp/a.img,ro").unwrap(), d("/tmp/a.img", true));
        for bad in ["f,rw2", "f,", "f,RO", "f,ro,ro", ",ro", ""] {
            let e = parse_disk(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.message.starts_with(&format!("bad --disk '{bad}': ")), "{}", e.message);
        }
    }
}
