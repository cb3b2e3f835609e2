//! The RISC-V lab host: on a machine that is not riscv64 Linux, `vmm run --arch riscv` runs the
//! riscv64 build of vmm inside a small riscv64 Linux under qemu-system-riscv64 (the `lab`
//! crate boots it and relays the console). Only what is RISC-V about it is here: where the
//! kernel, firmware and riscv64 vmm are, the QEMU machine, and the inner command line.
use crate::config::RiscvConfig;
use common::image::Image;
use common::vm::{Outcome, VirtualMachine};
use common::{Error, Result};
use lab::LabHost;
use std::path::{Path, PathBuf};

/// The lab's test hooks, under the names the RISC-V lab tests and the engine use.
pub use lab::{JAIL_PROBE_ENV, JAIL_PROBE_FILE, MONITOR_ECALL_ENV, MONITOR_ECALL_FILE, SIGNAL_STORM_ENV};

const SETUP_HINT: &str = "run `scripts/setup.sh` (it builds the riscv64 kernel and vmm for the lab host)";
const DEFAULT_FIRMWARE: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
/// Where Debian's libc6-riscv64-cross keeps the riscv64 loader and libraries.
const CROSS_LIBS: &str = "/usr/riscv64-linux-gnu/lib";
/// What the dynamically linked riscv64 vmm needs (its PT_INTERP and DT_NEEDED entries). ld.so
/// looks in /lib when there is no cache, so they all go there. libm: the lab's report (`vmm lab`)
/// uses floating-point functions.
const SHARED_LIBS: [&str; 4] = ["ld-linux-riscv64-lp64d.so.1", "libc.so.6", "libgcc_s.so.1", "libm.so.6"];
// loglevel=1: only KERN_EMERG (a panic) reaches the console, and only matters when a boot fails.
const KERNEL_CMDLINE: &str = "console=ttyS0 quiet loglevel=1 panic=-1";
/// Where the guest sits in the initramfs when the user's path cannot be used as is.
const FALLBACK_GUEST: &str = "/guest.bin";

/// The riscv64 lab: `$VMM_RISCV_LAB/{Image,vmm}` if set, else beside this executable's target
/// dir: `<target>/riscv-lab/Image` and `<target>/riscv64gc-unknown-linux-gnu/release/vmm`, where
/// `<target>` is the running vmm's ([`common::layout::target_dir`]).
pub fn locate() -> Result<LabHost> {
    let (kernel, vmm) = match std::env::var_os("VMM_RISCV_LAB") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            (dir.join("Image"), dir.join("vmm"))
        }
        None => {
            let target = common::layout::target_dir()?;
            (target.join("riscv-lab/Image"), target.join("riscv64gc-unknown-linux-gnu/release/vmm"))
        }
    };
    let firmware = std::env::var_os("VMM_RISCV_FIRMWARE").map_or(PathBuf::from(DEFAULT_FIRMWARE), PathBuf::from);
    let qemu = std::env::var_os("VMM_QEMU_RISCV").map_or(PathBuf::from("qemu-system-riscv64"), PathBuf::from);
    let host = LabHost {
        notice: format!(
            "vmm: running the riscv64 build inside riscv64 Linux under qemu-system-riscv64 (this host is {})",
            std::env::consts::ARCH
        ),
        inner: "the riscv64 vmm",
        qemu,
        machine_args: ["-M", "virt", "-smp", "1", "-bios"]
            .map(Into::into)
            .into_iter()
            .chain([firmware.clone().into(), "-kernel".into(), kernel.clone().into()])
            .collect(),
        kernel_cmdline: KERNEL_CMDLINE.into(),
        vmm: vmm.clone(),
        ram_overhead_mib: 96,
        setup_hint: SETUP_HINT,
        disk_device: "virtio-blk-device",
    };
    host.check_parts(
        "--arch riscv on this host",
        &[("riscv64 lab kernel", &kernel), ("riscv64 build of vmm", &vmm), ("OpenSBI firmware", &firmware)],
    )?;
    Ok(host)
}

/// Runs the riscv64 vmm inside the lab host with `inner_args` (e.g. `bench --arch riscv`) and
/// `files` placed in its initramfs.
pub fn run_inner(config: &RiscvConfig, inner_args: &[String], files: &[(String, Vec<u8>)]) -> Result<Outcome> {
    let host = locate()?;
    let mut files = files.to_vec();
    files.extend(shared_libs(&host.vmm)?);
    lab::run_inner(&host, &config.vm, inner_args, &files)
}

/// The loader and libraries a dynamically linked riscv64 vmm needs, as /lib/* files for the
/// initramfs; none for a static one. A position-independent vmm is what keeps the monitor
/// above the guest's Sv39 lower half.
fn shared_libs(vmm: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let bytes = std::fs::read(vmm)
        .map_err(|e| Error::bad_input(format!("cannot read {}: {e}; {SETUP_HINT}", vmm.display())))?;
    if !crate::loader::has_interpreter(&bytes) {
        return Ok(Vec::new());
    }
    SHARED_LIBS
        .iter()
        .map(|lib| {
            let path = Path::new(CROSS_LIBS).join(lib);
            let data = std::fs::read(&path).map_err(|e| {
                Error::bad_input(format!(
                    "cannot read {} for the dynamically linked riscv64 vmm: {}; apt-get install libc6-riscv64-cross",
                    path.display(),
                    common::image::io_reason(&e)
                ))
            })?;
            Ok((format!("lib/{lib}"), data))
        })
        .collect()
}

/// `vmm run --arch riscv` on a host that is not riscv64 Linux.
pub struct LabHostVm {
    config: RiscvConfig,
    guest: Option<Vec<u8>>,
    /// Where the guest sits in the initramfs (and what the inner vmm's messages call it).
    guest_path: String,
}

impl LabHostVm {
    /// Refuses a bad `--mem` here, before anything is parsed or booted.
    pub fn new(config: RiscvConfig) -> Result<Self> {
        crate::config::check_mem(config.vm.mem_size)?;
        // Inside, a shared --mem-file is a block device, which the disks' view of RAM
        // (common::memory::from_fd) cannot size.
        if config.vm.mem_file.as_ref().is_some_and(|m| m.shared) && !config.vm.disks.is_empty() {
            return Err(Error::bad_input(
                "--disk with --mem-file --mem-share is not supported through the RISC-V lab host yet",
            ));
        }
        Ok(LabHostVm { config, guest: None, guest_path: FALLBACK_GUEST.into() })
    }

    /// The inner command line: the same run, on the lab's riscv64 Linux.
    fn inner_args(&self) -> Vec<String> {
        let c = &self.config;
        let mut args: Vec<String> = ["run", "--arch", "riscv", "--mem"].map(String::from).to_vec();
        args.push(c.vm.mem_size.to_string());
        args.push("--ecall".into());
        args.push(c.ecall_trap.as_str().into());
        if let Some(t) = c.vm.timeout {
            args.push("--timeout".into());
            args.push(t.as_secs_f64().to_string());
        }
        if c.stats {
            args.push("--stats".into());
        }
        if c.vm.stats_json {
            args.push("--stats-json".into());
        }
        if !c.vm.jail {
            args.push("--no-seccomp".into());
        }
        args.extend(lab::inner_disk_args(&c.vm.disks));
        if let Some(gdb) = &c.vm.gdb {
            // The inner vmm talks to gdb over init's relay (lab::gdb_relay), not this address.
            args.extend(["--gdb".into(), gdb.addr.to_string()]);
            if gdb.wait {
                args.push("--gdb-wait".into());
            }
        }
        args.extend(lab::passthrough::inner_args(&c.vm));
        args.push(self.guest_path.clone());
        args
    }
}

impl VirtualMachine for LabHostVm {
    /// Checks what can be checked without booting (the inner vmm checks the rest).
    fn load(&mut self, image: &Image) -> Result<()> {
        // The loader is pure: judge the image here exactly as the engine will, so a bad one
        // is refused before a riscv64 Linux is booted for it.
        let mem_size = self.config.vm.mem_size;
        crate::config::check_mem(mem_size)?;
        crate::loader::parse(image, crate::fdt::fdt_address(crate::loader::RAM_BASE, mem_size), mem_size)?;
        self.guest = Some(image.bytes.clone());
        self.guest_path = lab::inner_path(&image.path, FALLBACK_GUEST);
        Ok(())
    }

    fn run(&mut self) -> Result<Outcome> {
        let guest = self.guest.take().ok_or_else(|| Error::bad_input("no guest image was loaded"))?;
        run_inner(&self.config, &self.inner_args(), &[(self.guest_path.clone(), guest)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::console::Console;
    use common::vm::VmConfig;
    use std::time::Duration;

    fn config(timeout: Option<Duration>, stats: bool) -> RiscvConfig {
        RiscvConfig {
            vm: VmConfig {
                mem_size: 64 << 20,
                timeout,
                console: Console::capture(),
                jail: true,
                ..VmConfig::default()
            },
            ecall_trap: crate::EcallTrap::Seccomp,
            stats,
        }
    }

    #[test]
    fn inner_command_line_carries_every_option() {
        let vm = LabHostVm::new(config(Some(Duration::from_millis(2500)), true)).unwrap();
        assert_eq!(
            vm.inner_args().join(" "),
            "run --arch riscv --mem 67108864 --ecall seccomp --timeout 2.5 --stats /guest.bin"
        );
        let vm = LabHostVm::new(config(None, false)).unwrap();
        assert_eq!(vm.inner_args().join(" "), "run --arch riscv --mem 67108864 --ecall seccomp /guest.bin");
        let mut c = config(None, false);
        c.vm.gdb = Some(common::gdb::GdbConfig { addr: "127.0.0.1:1234".parse().unwrap(), wait: true });
        assert_eq!(
            LabHostVm::new(c).unwrap().inner_args().join(" "),
            "run --arch riscv --mem 67108864 --ecall seccomp --gdb 127.0.0.1:1234 --gdb-wait /guest.bin"
        );
    }

    #[test]
    fn a_raw_image_larger_than_ram_is_bad_input_before_booting() {
        let mut vm = LabHostVm::new(config(None, false)).unwrap();
        let big = Image { path: "big.bin".into(), bytes: vec![0x13; 63 << 20] };
        let err = vm.load(&big).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message.contains("does not fit"), "{}", err.message);
        let small = Image { path: "small.bin".into(), bytes: vec![0x13; 4096] };
        vm.load(&small).unwrap();
    }

    #[test]
    fn bad_mem_is_refused_before_anything_else() {
        for mem_size in [8 << 10, !4095, 1 << 63] {
            let mut c = config(None, false);
            c.vm.mem_size = mem_size;
            let err = LabHostVm::new(c).err().expect("refused");
            assert_eq!(err.exit_code(), 2);
            assert!(err.message.starts_with("--mem "), "{}", err.message);
        }
    }
}
