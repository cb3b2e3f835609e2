//! The outer side of the lab host (any machine that is not riscv64 Linux): finds the lab
//! (kernel, riscv64 vmm, firmware), packs the riscv64 vmm and the guest into an initramfs and
//! runs them under qemu-system-riscv64 ([`super::qemu`]).
use super::cpio::Cpio;
use super::qemu;
use crate::config::RiscvConfig;
use common::image::Image;
use common::vm::{Outcome, VirtualMachine};
use common::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

const SETUP_HINT: &str = "run `scripts/setup.sh` (it builds the riscv64 kernel and vmm for the lab host)";
const DEFAULT_FIRMWARE: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
/// Where Debian's libc6-riscv64-cross keeps the riscv64 loader and libraries.
const CROSS_LIBS: &str = "/usr/riscv64-linux-gnu/lib";
/// What the dynamically linked riscv64 vmm needs (its PT_INTERP and DT_NEEDED entries). ld.so
/// looks in /lib when there is no cache, so they all go there.
const SHARED_LIBS: [&str; 3] = ["ld-linux-riscv64-lp64d.so.1", "libc.so.6", "libgcc_s.so.1"];

/// Everything the lab host is made of.
pub struct Lab {
    /// The riscv64 Linux kernel (arch/riscv/boot/Image).
    pub kernel: PathBuf,
    /// The riscv64 build of vmm: it becomes /init.
    pub vmm: PathBuf,
    /// OpenSBI fw_jump, the machine-mode firmware.
    pub firmware: PathBuf,
    /// The qemu binary (a name looked up in PATH, or a path).
    pub qemu: PathBuf,
}

impl Lab {
    /// `$VMM_RISCV_LAB/{Image,vmm}` if set, else beside this executable's target dir:
    /// `<target>/riscv-lab/Image` and `<target>/riscv64gc-unknown-linux-gnu/release/vmm`, where
    /// `<target>` is the grandparent of the running vmm (target/release/vmm -> target/).
    pub fn locate() -> Result<Lab> {
        let (kernel, vmm) = match std::env::var_os("VMM_RISCV_LAB") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                (dir.join("Image"), dir.join("vmm"))
            }
            None => {
                let exe = std::env::current_exe()
                    .map_err(|e| Error::bad_input(format!("cannot find the running vmm executable: {e}")))?;
                let target = exe.parent().and_then(Path::parent).unwrap_or(Path::new("."));
                (target.join("riscv-lab/Image"), target.join("riscv64gc-unknown-linux-gnu/release/vmm"))
            }
        };
        let firmware = std::env::var_os("VMM_RISCV_FIRMWARE").map_or(PathBuf::from(DEFAULT_FIRMWARE), PathBuf::from);
        let qemu = std::env::var_os("VMM_QEMU_RISCV").map_or(PathBuf::from("qemu-system-riscv64"), PathBuf::from);
        for (what, path) in
            [("riscv64 lab kernel", &kernel), ("riscv64 build of vmm", &vmm), ("OpenSBI firmware", &firmware)]
        {
            if !path.is_file() {
                return Err(Error::bad_input(format!(
                    "--arch riscv on this host needs the lab host: the {what} {} is missing; {SETUP_HINT}",
                    path.display()
                )));
            }
        }
        Ok(Lab { kernel, vmm, firmware, qemu })
    }
}

/// Runs the riscv64 vmm inside the lab host with `inner_args` (e.g. `run --arch riscv ...
/// /guest.bin` or `bench --arch riscv`) and `files` placed at the root of its initramfs.
/// The inner vmm's stdout and stderr become ours; its exit status becomes the outcome.
pub fn run_inner(config: &RiscvConfig, inner_args: Vec<String>, files: Vec<(String, Vec<u8>)>) -> Result<Outcome> {
    let lab = Lab::locate()?;
    let vmm = std::fs::read(&lab.vmm)
        .map_err(|e| Error::bad_input(format!("cannot read {}: {e}; {SETUP_HINT}", lab.vmm.display())))?;
    let mut cpio = Cpio::new();
    cpio.dir("dev");
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.dir("proc");
    cpio.file("init", 0o755, &vmm);
    // A position-independent vmm is what keeps the monitor above the guest's Sv39 lower half.
    if crate::loader::has_interpreter(&vmm) {
        cpio.dir("lib");
        for lib in SHARED_LIBS {
            let path = Path::new(CROSS_LIBS).join(lib);
            let data = std::fs::read(&path).map_err(|e| {
                Error::bad_input(format!(
                    "cannot read {} for the dynamically linked riscv64 vmm: {}; apt-get install libc6-riscv64-cross",
                    path.display(),
                    common::image::io_reason(&e)
                ))
            })?;
            cpio.file(&format!("lib/{lib}"), 0o755, &data);
        }
    }
    let mut args = Vec::new();
    for a in &inner_args {
        args.extend_from_slice(a.as_bytes());
        args.push(0);
    }
    cpio.file("vmm-args", 0o644, &args);
    for (env, file) in
        [(super::SIGNAL_STORM_ENV, super::SIGNAL_STORM_FILE), (super::JAIL_PROBE_ENV, super::JAIL_PROBE_FILE)]
    {
        if std::env::var_os(env).is_some() {
            cpio.file(file.trim_start_matches('/'), 0o644, b"");
        }
    }
    let mut dirs = BTreeSet::new();
    for (name, data) in &files {
        let name = name.trim_start_matches('/');
        // Parent directories first, each once.
        for (i, _) in name.match_indices('/') {
            if dirs.insert(name[..i].to_string()) {
                cpio.dir(&name[..i]);
            }
        }
        cpio.file(name, 0o644, data);
    }
    common::console::say(&format!(
        "vmm: running the riscv64 build inside riscv64 Linux under qemu-system-riscv64 (this host is {})",
        std::env::consts::ARCH
    ));
    qemu::boot(&lab, config, &cpio.finish())
}

/// `vmm run --arch riscv` on a host that is not riscv64 Linux.
pub struct LabHostVm {
    config: RiscvConfig,
    guest: Option<Vec<u8>>,
    /// Where the guest sits in the initramfs (and what the inner vmm's messages call it).
    guest_path: String,
}

/// Names the initramfs already uses.
const RESERVED: [&str; 6] = ["dev", "proc", "init", "vmm-args", "vmm-signal-storm", "lib"];

/// The user's image path as the inner vmm should see it, so that its messages name the file
/// the user gave: the same path (the inner vmm runs in /), or /guest.bin when that path cannot
/// be recreated as is (`..`, not UTF-8, or clashing with the initramfs's own names).
fn inner_guest_path(path: &Path) -> String {
    let fallback = || "/guest.bin".to_string();
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => match p.to_str() {
                Some(p) => parts.push(p),
                None => return fallback(),
            },
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return fallback(),
        }
    }
    if parts.is_empty() || RESERVED.contains(&parts[0]) {
        return fallback();
    }
    let joined = parts.join("/");
    if path.has_root() {
        format!("/{joined}")
    } else {
        joined
    }
}

impl LabHostVm {
    /// Refuses a bad `--mem` here, before anything is parsed or booted.
    pub fn new(config: RiscvConfig) -> Result<Self> {
        crate::config::check_mem(config.vm.mem_size)?;
        Ok(LabHostVm { config, guest: None, guest_path: "/guest.bin".into() })
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
        if !c.vm.jail {
            args.push("--no-seccomp".into());
        }
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
        self.guest_path = inner_guest_path(&image.path);
        Ok(())
    }

    fn run(&mut self) -> Result<Outcome> {
        let guest = self.guest.take().ok_or_else(|| Error::bad_input("no guest image was loaded"))?;
        run_inner(&self.config, self.inner_args(), vec![(self.guest_path.clone(), guest)])
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
            vm: VmConfig { mem_size: 64 << 20, timeout, console: Console::capture(), jail: true },
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
    }

    #[test]
    fn the_inner_vmm_sees_the_users_path_when_it_can() {
        let p = |s: &str| inner_guest_path(Path::new(s));
        assert_eq!(p("target/guests/riscv/hello.bin"), "target/guests/riscv/hello.bin");
        assert_eq!(p("./hello.bin"), "hello.bin");
        assert_eq!(p("/tmp/x/garbage.bin"), "/tmp/x/garbage.bin");
        assert_eq!(p("../hello.bin"), "/guest.bin");
        assert_eq!(p("/init"), "/guest.bin");
        assert_eq!(p("dev/console"), "/guest.bin");
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
