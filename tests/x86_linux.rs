//! Linux on the x86/KVM backend (issue 3), on the real /dev/kvm with the kernel and initramfs
//! that scripts/build-x86-kernel.sh builds, and Debian's own bzImage.
//!
//! What a boot can show depends on the host's KVM flavor, and each test prints which it found:
//! - kvm-pvm (no VMX/SVM): every guest instruction goes through KVM's instruction emulator,
//!   which lacks some instructions (xrstor, then int3). The kernel's own lines must arrive
//!   through our 8250, and vmm must then end with the emulation-failure diagnostic and exit
//!   code 1, by itself, not by --timeout.
//! - VMX/SVM: the full boot to the initramfs marker and a clean power-off (exit 0).
#![cfg(target_arch = "x86_64")]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// kvm-pvm: guests run in KVM's instruction emulator.
    Pvm,
    /// Intel VMX or AMD SVM: guests run on the CPU.
    Hardware,
}

fn flavor() -> Flavor {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let f = if hw {
        Flavor::Hardware
    } else {
        assert!(
            Path::new("/sys/module/kvm_pvm").exists(),
            "no vmx/svm in /proc/cpuinfo and no kvm_pvm module: unknown KVM flavor"
        );
        Flavor::Pvm
    };
    println!("KVM flavor detected: {f:?}");
    f
}

const MARKER: &str = "VMM-INIT-OK";
/// Long enough for any of these boots; vmm must end on its own well before it.
const SAFETY_TIMEOUT: &str = "150";

fn guest(name: &str) -> PathBuf {
    artifact(&format!("guests/x86/linux/{name}"))
}

fn boot(kernel: &Path, extra: &[&str]) -> Output {
    require_kvm();
    let initrd = guest("initramfs.cpio.gz");
    let mut args = vec!["run", "--arch", "x86", "--timeout", SAFETY_TIMEOUT, "--initrd", path_str(&initrd)];
    args.extend_from_slice(extra);
    args.push(path_str(kernel));
    run_vmm(&args, 200)
}

/// The checks of the issue, by flavor.
fn assert_boots(kernel: &Path, extra: &[&str]) {
    let out = boot(kernel, extra);
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(so.contains("Linux version 6."), "no banner through the 8250: {}", describe(&out));
    assert!(so.contains("BIOS-e820: [mem 0x0000000000100000-"), "no e820 map: {}", describe(&out));
    assert!(so.contains("printk: console [ttyS0] enabled"), "console not enabled: {}", describe(&out));
    assert!(!se.contains("--timeout"), "vmm was stopped by the safety timeout: {}", describe(&out));
    match flavor() {
        Flavor::Pvm => {
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert!(se.contains("emulation failure"), "no emulation-failure diagnostic: {}", describe(&out));
            assert_eq!(se.lines().count(), 1, "one diagnostic line: {}", describe(&out));
        }
        Flavor::Hardware => {
            assert!(so.contains(MARKER), "init did not run: {}", describe(&out));
            assert_eq!(out.status.code(), Some(0), "no clean power-off: {}", describe(&out));
        }
    }
}

#[test]
fn vmlinux_boots_through_pvh() {
    assert_boots(&guest("vmlinux"), &[]);
}

#[test]
fn bzimage_boots_through_the_64bit_protocol() {
    assert_boots(&guest("bzImage"), &[]);
}

fn debian_kernel() -> PathBuf {
    let mut found: Vec<PathBuf> =
        std::fs::read_dir("/boot").map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")));
    found.sort();
    found.pop().expect("MISSING PREREQUISITE: no /boot/vmlinuz-*: apt-get install linux-image-amd64")
}

/// Debian's bzImage loads the same way. It is XZ-compressed: on VMX/SVM it boots (and, with
/// no initramfs of its own here, panics and reboots through reboot=k); under kvm-pvm its
/// decompressor alone needs far more emulated instructions than a test can wait for, so there
/// we check that its 64-bit entry ran into the decompressor's C code, which sets up the 8250
/// for `earlyprintk=serial`, and that vmm stops it cleanly at the limit.
#[test]
fn debian_bzimage_loads_the_same_way() {
    require_kvm();
    let kernel = debian_kernel();
    let cmdline = "console=ttyS0 earlyprintk=serial reboot=k panic=1 pci=off";
    match flavor() {
        Flavor::Hardware => {
            let out = run_vmm(
                &["run", "--arch", "x86", "--timeout", "60", "--kernel-cmdline", cmdline, path_str(&kernel)],
                90,
            );
            assert!(stdout(&out).contains("Linux version 6."), "no banner: {}", describe(&out));
            assert!(stdout(&out).contains("BIOS-e820"), "no e820 map: {}", describe(&out));
        }
        Flavor::Pvm => {
            let args = ["run", "--arch", "x86", "--stats", "--timeout", "15", "--kernel-cmdline", cmdline];
            let mut args = args.to_vec();
            args.push(path_str(&kernel));
            let out = run_vmm(&args, 60);
            let (so, se) = (stdout(&out), stderr(&out));
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert!(se.contains("--timeout"), "expected the decompressor to still run: {}", describe(&out));
            // The count of the stats row named `row` ("io-out serial-0x3f8").
            let count = |row: &str| -> u64 {
                so.lines()
                    .chain(se.lines())
                    .find_map(|l| l.strip_prefix(row)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0)
            };
            // early_serial_init: eight writes (LCR, IER, FCR, MCR, DLAB, DLL, DLH, LCR) and a
            // read, counted per device; the DLL write (port 0x3f8) may be one KVM queued.
            assert!(
                count("io-out serial-0x3f8") >= 7 && count("io-in serial-0x3f8") >= 1,
                "the decompressor never reached the UART: {}",
                describe(&out)
            );
        }
    }
}

// ---- bad input: one clear line, exit code 2 ----

fn assert_bad_input(args: &[&str], expect: &str) {
    let out = run_vmm(args, 60);
    let se = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(se.lines().count(), 1, "exactly one line: {}", describe(&out));
    assert!(se.starts_with("vmm: ") && se.contains(expect), "expected '{expect}': {}", describe(&out));
    assert!(stdout(&out).is_empty(), "the guest must not have run: {}", describe(&out));
}

fn run_args<'a>(kernel: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "--arch", "x86", "--timeout", "20"];
    a.extend_from_slice(extra);
    a.push(path_str(kernel));
    a
}

#[test]
fn truncated_bzimage_is_refused() {
    let bz = std::fs::read(guest("bzImage")).unwrap();
    let cut = scratch_file("truncated", "bzImage", &bz[..bz.len() / 2]);
    assert_bad_input(&run_args(&cut, &[]), "truncated bzImage");
    let tiny = scratch_file("truncated", "header-only", &bz[..0x210]);
    assert_bad_input(&run_args(&tiny, &[]), "too short for the setup header");
}

#[test]
fn bzimage_with_wrong_magic_is_refused() {
    let mut bz = std::fs::read(guest("bzImage")).unwrap();
    bz[0x202..0x206].copy_from_slice(b"XXXX");
    let bad = scratch_file("magic", "bzImage", &bz);
    assert_bad_input(&run_args(&bad, &[]), "\"HdrS\"");
    let _ = std::fs::remove_file(bad);
}

#[test]
fn elf_for_another_machine_is_refused() {
    let mut elf = std::fs::read(guest("vmlinux")).unwrap();
    elf[18..20].copy_from_slice(&243u16.to_le_bytes()); // EM_RISCV
    let bad = scratch_file("machine", "vmlinux-riscv", &elf);
    assert_bad_input(&run_args(&bad, &[]), "is for RISC-V (e_machine 243), not x86_64");
    let _ = std::fs::remove_file(bad);
}

#[test]
fn kernel_larger_than_ram_is_refused() {
    require_kvm();
    // An ELF file is read whatever its size (it holds symbols it never loads): the refusal
    // comes from what the kernel needs once loaded, even with --mem below the file's size.
    let vmlinux = guest("vmlinux");
    assert_bad_input(&run_args(&vmlinux, &["--mem", "8M"]), "use a larger --mem");
    assert_bad_input(&run_args(&vmlinux, &["--mem", "16M"]), "use a larger --mem");
    let bz = guest("bzImage");
    assert_bad_input(&run_args(&bz, &["--mem", "8M"]), "use a larger --mem");
}

#[test]
fn mode_is_refused_for_a_linux_kernel() {
    require_kvm();
    let vmlinux = guest("vmlinux");
    assert_bad_input(&run_args(&vmlinux, &["--mode", "long"]), "--mode applies to flat binaries");
}

#[test]
fn initramfs_larger_than_ram_is_refused() {
    require_kvm();
    let big = scratch_file("initrd", "big.cpio.gz", &vec![0u8; 48 << 20]);
    let vmlinux = guest("vmlinux");
    assert_bad_input(
        &run_args(&vmlinux, &["--mem", "64M", "--initrd", path_str(&big)]),
        "of guest RAM above the kernel",
    );
    let _ = std::fs::remove_file(big);
}

/// A device or a FIFO as initramfs is refused before reading: /dev/zero would never end.
#[test]
fn initrd_that_is_not_a_regular_file_is_refused_at_once() {
    require_kvm();
    let vmlinux = guest("vmlinux");
    let fifo = std::env::temp_dir().join(format!("vmm-test-initrd-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    for initrd in ["/dev/zero", path_str(&fifo)] {
        let start = std::time::Instant::now();
        assert_bad_input(&run_args(&vmlinux, &["--initrd", initrd]), &format!("initrd {initrd} is not a regular file"));
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "took {:?}", start.elapsed());
    }
    let _ = std::fs::remove_file(fifo);
}

#[test]
fn missing_initrd_is_refused() {
    require_kvm();
    let vmlinux = guest("vmlinux");
    assert_bad_input(&run_args(&vmlinux, &["--initrd", "/nonexistent/initramfs.cpio.gz"]), "cannot read initrd");
}
