//! The outer side of a lab host: what a lab is made of ([`LabHost`], filled in by each
//! architecture), packing the inner vmm, its command line and the guest's files into an
//! initramfs, and booting it ([`super::qemu`]).
use super::cpio::Cpio;
use super::init::ARGS_FILE;
use super::qemu;
use common::vm::{DiskConfig, Outcome, VmConfig};
use common::{Error, Result};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// One lab host: a small Linux under QEMU whose init is a build of vmm for that machine.
pub struct LabHost {
    /// The one line printed before booting, e.g. "vmm: running the riscv64 build inside ...".
    pub notice: String,
    /// How messages name the vmm inside, e.g. "the riscv64 vmm".
    pub inner: &'static str,
    /// The qemu binary (a name looked up in PATH, or a path).
    pub qemu: PathBuf,
    /// Machine, CPU, firmware and kernel: every QEMU argument except memory, serial, initramfs
    /// and command line, which [`run_inner`] adds.
    pub machine_args: Vec<OsString>,
    /// The lab kernel's command line. Its console must be the first serial port.
    pub kernel_cmdline: String,
    /// The build of vmm that becomes /init.
    pub vmm: PathBuf,
    /// Lab host RAM beyond guest RAM and twice the initramfs: its kernel and the inner vmm.
    pub ram_overhead_mib: u64,
    /// What to run when a part is missing, e.g. "run `scripts/setup.sh` (it builds ...)".
    pub setup_hint: &'static str,
    /// The QEMU device that gives the lab host each `--disk` as a virtio-blk disk:
    /// "virtio-blk-device" (virtio-mmio, riscv virt) or "virtio-blk-pci" (x86 pc).
    pub disk_device: &'static str,
}

impl LabHost {
    /// Fails with a one-line error naming the first of `parts` (what, path) that is not a file.
    pub fn check_parts(&self, lab_of: &str, parts: &[(&str, &Path)]) -> Result<()> {
        match parts.iter().find(|(_, path)| !path.is_file()) {
            Some((what, path)) => Err(Error::bad_input(format!(
                "{lab_of} needs the lab host: the {what} {} is missing; {}",
                path.display(),
                self.setup_hint
            ))),
            None => Ok(()),
        }
    }
}

/// The names the initramfs itself uses (lib: a dynamically linked inner vmm's loader and
/// libraries); a guest file may not take them.
const RESERVED: [&str; 9] =
    ["dev", "proc", "sys", "init", ARGS_FILE, "vmm-signal-storm", "vmm-jail-probe-handler", "lib", "vmm-trace"];

/// Runs the lab's vmm inside the lab host with `inner_args` (e.g. `run --arch riscv ...
/// /guest.bin` or `bench --arch riscv`) and `files` (path inside, contents) in its initramfs.
/// The inner vmm's stdout and stderr become ours; its exit status becomes the outcome.
pub fn run_inner(host: &LabHost, vm: &VmConfig, inner_args: &[String], files: &[(String, Vec<u8>)]) -> Result<Outcome> {
    let vmm = std::fs::read(&host.vmm)
        .map_err(|e| Error::bad_input(format!("cannot read {}: {e}; {}", host.vmm.display(), host.setup_hint)))?;
    let mut cpio = Cpio::new();
    cpio.dir("dev");
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.dir("proc");
    cpio.dir("sys");
    cpio.file("init", 0o755, &vmm);
    let mut args = Vec::new();
    for a in inner_args {
        args.extend_from_slice(a.as_bytes());
        args.push(0);
    }
    cpio.file(ARGS_FILE, 0o644, &args);
    for (env, file) in [
        (crate::SIGNAL_STORM_ENV, crate::SIGNAL_STORM_FILE),
        (crate::JAIL_PROBE_ENV, crate::JAIL_PROBE_FILE),
        (crate::MONITOR_ECALL_ENV, crate::MONITOR_ECALL_FILE),
    ] {
        if std::env::var_os(env).is_some() {
            cpio.file(file.trim_start_matches('/'), 0o644, b"");
        }
    }
    let mut dirs = BTreeSet::new();
    for (name, data) in files {
        let name = name.trim_start_matches('/');
        // Parent directories first, each once.
        for (i, _) in name.match_indices('/') {
            if dirs.insert(name[..i].to_string()) {
                cpio.dir(&name[..i]);
            }
        }
        // Executable: a file may be a program the inner vmm runs (the benchmark's C baseline).
        cpio.file(name, 0o755, data);
    }
    common::console::say(&host.notice);
    qemu::boot(host, vm, &cpio.finish())
}

/// The inner vmm's `--disk` options: disk i is the lab host's virtio-blk disk with serial
/// `vmm-disk<i>`, which init links as /dev/vmm-disk<i> (whatever /dev/vdX the kernel named it).
pub fn inner_disk_args(disks: &[DiskConfig]) -> Vec<String> {
    disks
        .iter()
        .enumerate()
        .flat_map(|(i, d)| ["--disk".to_string(), format!("{}{i}{}", DISK_LINK, if d.read_only { ",ro" } else { "" })])
        .collect()
}

/// Where init links the lab host's disk with serial `vmm-disk<i>`: this prefix and i.
pub const DISK_LINK: &str = "/dev/vmm-disk";

/// A user's file path as the inner vmm should see it, so that its messages name the file the
/// user gave: the same path (the inner vmm runs in /), or `fallback` when that path cannot be
/// recreated as is (`..`, not UTF-8, or clashing with the initramfs's own names).
pub fn inner_path(path: &Path, fallback: &str) -> String {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => match p.to_str() {
                Some(p) => parts.push(p),
                None => return fallback.to_string(),
            },
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return fallback.to_string(),
        }
    }
    if parts.is_empty() || RESERVED.contains(&parts[0]) {
        return fallback.to_string();
    }
    let joined = parts.join("/");
    if path.has_root() {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inner_vmm_sees_the_users_path_when_it_can() {
        let p = |s: &str| inner_path(Path::new(s), "/guest.bin");
        assert_eq!(p("target/guests/riscv/hello.bin"), "target/guests/riscv/hello.bin");
        assert_eq!(p("./hello.bin"), "hello.bin");
        assert_eq!(p("/tmp/x/garbage.bin"), "/tmp/x/garbage.bin");
        assert_eq!(p("../hello.bin"), "/guest.bin");
        assert_eq!(p("/init"), "/guest.bin");
        assert_eq!(p("dev/console"), "/guest.bin");
        assert_eq!(p("vmm-args"), "/guest.bin");
    }

    #[test]
    fn disks_become_the_lab_hosts_disks_by_serial() {
        let d = |p: &str, read_only| DiskConfig { path: p.into(), read_only };
        assert_eq!(
            inner_disk_args(&[d("a.img", false), d("/x/b.img", true)]).join(" "),
            "--disk /dev/vmm-disk0 --disk /dev/vmm-disk1,ro"
        );
        assert!(inner_disk_args(&[]).is_empty());
        assert_eq!(inner_path(Path::new("sys/x"), "/guest.bin"), "/guest.bin");
    }

    #[test]
    fn a_missing_part_is_named_with_the_setup_hint() {
        let host = LabHost {
            notice: "vmm: testing".into(),
            inner: "the test vmm",
            qemu: "qemu-system-test".into(),
            machine_args: Vec::new(),
            kernel_cmdline: String::new(),
            vmm: "/nonexistent/vmm".into(),
            ram_overhead_mib: 0,
            setup_hint: "run the set-up",
            disk_device: "virtio-blk-device",
        };
        let err = host.check_parts("--arch test", &[("test kernel", Path::new("/nonexistent/Image"))]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.message,
            "--arch test needs the lab host: the test kernel /nonexistent/Image is missing; run the set-up"
        );
    }
}
