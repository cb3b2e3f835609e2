//! RISC-V devices at QEMU virt's addresses, end to end: the `devices` kernel
//! (guests/riscv/src/bin/devices) prints through the MMIO 16550 and the SBI console, checks a
//! UART register round trip and the PLIC's registers, takes the UART's receive interrupt
//! through the PLIC when the test types a line, then turns Sv39 on and reaches the same
//! devices through a guest virtual address (VA 0x4000_0000 maps physical 0). It runs under `qemu-system-riscv64 -M virt
//! -bios default` (the reference) and under `vmm run --arch riscv` (through the riscv64 lab
//! host), and both must print the same lines.
//!
//! The `blk` kernel (guests/riscv/src/bin/blk.rs) drives a disk through the legacy
//! virtio-mmio interface at 0x10001000 with one interrupt per request: under QEMU with
//! `-global virtio-mmio.force-legacy=true` and under `vmm run --disk`, the same lines, and the
//! host file holds the sector the guest wrote.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use support::{artifact, describe, path_str, stdout, test_disk};

/// Wall-clock limit per run, generous for a busy machine.
const LIMIT: u64 = 120;
/// The kernel's first line: everything before it on QEMU's serial line is OpenSBI's banner.
const FIRST_LINE: &str = "devices: hello through the MMIO UART at 0x10000000\n";
/// The kernel says this once its receive interrupt is on; then the test types [`TYPED`].
const READY: &str = "devices: waiting for a key\n";
const TYPED: &[u8] = b"key\n";
/// Then it polls the UART: the test types [`POLLED`].
const POLLING: &str = "devices: polling for a key\n";
const POLLED: &[u8] = b"polled\n";

fn devices_bin() -> String {
    path_str(&artifact("guests/riscv/devices.bin")).to_string()
}

/// Runs `cmd` (under `timeout`), types [`TYPED`] once [`READY`] appears and [`POLLED`] once
/// [`POLLING`] does, and returns the output from [`FIRST_LINE`] on ('\r' removed) and the
/// exit status.
fn run_typing(mut cmd: Command) -> (String, Option<i32>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("MISSING PREREQUISITE: cannot run {cmd:?}: {e}"));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    let mut prompts = [(READY, TYPED), (POLLING, POLLED)].into_iter().peekable();
    while prompts.peek().is_some() && out.read_line(&mut line).unwrap() > 0 {
        let clean = line.replace('\r', "");
        seen.push_str(&clean);
        line.clear();
        if let Some(&(_, keys)) = prompts.peek().filter(|(prompt, _)| clean == *prompt) {
            child.stdin.as_mut().unwrap().write_all(keys).unwrap();
            prompts.next();
        }
    }
    out.read_to_string(&mut line).unwrap();
    seen.push_str(&line.replace('\r', ""));
    drop(child.stdin.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap().code();
    let start = seen.find(FIRST_LINE).unwrap_or_else(|| panic!("the kernel never started: {seen}\n{err}"));
    assert!(seen.contains(READY), "never ready for input: {seen}\n{err}");
    (seen[start..].to_string(), status)
}

fn under_qemu() -> String {
    let qemu = std::env::var("VMM_QEMU_RISCV").unwrap_or_else(|_| "qemu-system-riscv64".into());
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &LIMIT.to_string(), &qemu]);
    cmd.args(["-M", "virt", "-m", "128M", "-smp", "1", "-nographic", "-bios", "default", "-kernel", &devices_bin()]);
    let (text, status) = run_typing(cmd);
    assert_eq!(status, Some(0), "QEMU did not power off cleanly:\n{text}");
    text
}

/// What the kernel must print, in this order.
fn assert_reference(text: &str) {
    let want = "\
devices: hello through the MMIO UART at 0x10000000
devices: and this through the SBI console
devices: scratch register 0xa5 reads back as -91 (lb) and 165 (lbu)
devices: LSR transmitter bits 0x60
devices: plic priority 1 and 1 (9 written), enable word 0x400, threshold 0
devices: waiting for a key
devices: the UART's interrupt brought \"key\"
devices: other sources claimed 0, left to claim 0
devices: polling for a key
devices: polling the line status brought \"polled\"
devices: through Sv39, the UART at VA 0x50000000
devices: through Sv39, PLIC source 10 priority 1, threshold written 3, at its physical address 3
devices: done
";
    assert_eq!(text, want);
}

#[test]
fn devices_kernel_passes_under_qemu() {
    assert_reference(&under_qemu());
}

fn same_lines_as_qemu(ecall: &str) {
    let reference = under_qemu();
    assert_reference(&reference);
    support::require_riscv_lab();
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &LIMIT.to_string(), env!("CARGO_BIN_EXE_vmm")]);
    cmd.args(["run", "--arch", "riscv", "--ecall", ecall, "--timeout", "60", &devices_bin()]);
    let (text, status) = run_typing(cmd);
    assert_eq!(text, reference, "vmm and QEMU differ");
    assert_eq!(status, Some(0), "{text}");
}

#[test]
fn devices_kernel_prints_the_same_lines_as_qemu_sud() {
    same_lines_as_qemu("sud");
}

#[test]
fn devices_kernel_prints_the_same_lines_as_qemu_seccomp() {
    same_lines_as_qemu("seccomp");
}

/// `--stats` counts the MMIO accesses by device and the external interrupt.
#[test]
fn stats_count_mmio_by_device_and_the_interrupt() {
    support::require_riscv_lab();
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &LIMIT.to_string(), env!("CARGO_BIN_EXE_vmm")]);
    cmd.args(["run", "--arch", "riscv", "--stats", "--timeout", "60", &devices_bin()]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && line != READY {
        line.clear();
    }
    line.clear();
    child.stdin.as_mut().unwrap().write_all(TYPED).unwrap();
    while out.read_line(&mut line).unwrap() > 0 && line != POLLING {
        line.clear();
    }
    child.stdin.as_mut().unwrap().write_all(POLLED).unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest}\n{err}");
    // The kernel's UART lines are some hundred byte stores plus LSR polls; the PLIC saw at
    // least its set-up, one claim and one completion.
    let uart = support::row_count(&err, "mmio uart").unwrap_or(0);
    let plic = support::row_count(&err, "mmio plic").unwrap_or(0);
    assert!(uart > 300, "mmio uart {uart}: {err}");
    assert!(plic >= 10, "mmio plic {plic}: {err}");
    assert!(support::row_count(&err, "interrupt delivered").unwrap_or(0) >= 1, "{err}");
}

fn blk_bin() -> String {
    path_str(&artifact("guests/riscv/blk.bin")).to_string()
}

/// What the guest writes into sector 1 (the rest of the sector is zeros).
const WRITTEN: &[u8] = b"sector 1 as the guest wrote it through legacy virtio-blk\n";

/// Sector `s` of the file at `p`.
fn sector(p: &Path, s: usize) -> Vec<u8> {
    std::fs::read(p).unwrap()[s * 512..(s + 1) * 512].to_vec()
}

/// The blk kernel under QEMU with the disk in virtio-mmio slot 0 (bus virtio-mmio-bus.0 is
/// 0x10001000; without `bus=` QEMU would use the highest slot) and the legacy interface.
fn blk_under_qemu(disk: &Path, read_only: bool) -> String {
    let qemu = std::env::var("VMM_QEMU_RISCV").unwrap_or_else(|_| "qemu-system-riscv64".into());
    let ro = if read_only { ",readonly=on" } else { "" };
    let out = Command::new("timeout")
        .args(["--kill-after=5", &LIMIT.to_string(), &qemu])
        .args(["-M", "virt", "-m", "128M", "-smp", "1", "-nographic", "-bios", "default", "-kernel", &blk_bin()])
        .args(["-drive", &format!("file={},format=raw,if=none,id=d0{ro}", disk.display())])
        .args(["-device", "virtio-blk-device,drive=d0,bus=virtio-mmio-bus.0"])
        .args(["-global", "virtio-mmio.force-legacy=true"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("MISSING PREREQUISITE: cannot run {qemu}: {e}"));
    assert_eq!(out.status.code(), Some(0), "QEMU did not power off cleanly: {}", describe(&out));
    let text = stdout(&out).replace('\r', "");
    let start = text.find("blk: ").unwrap_or_else(|| panic!("the kernel never started: {}", describe(&out)));
    text[start..].to_string()
}

fn blk_reference(read_only: bool) -> String {
    let (write, back) = if read_only { (1, "false") } else { (0, "true") };
    format!(
        "\
blk: legacy virtio-mmio block device, flush true
blk: capacity 8 sectors
blk: read sector 0: status 0, \"sector 0 of the vmm test disk\"
blk: read sector 2: status 0, \"sector 2 of the vmm test disk\"
blk: write sector 1: status {write}
blk: read sector 1 back: status 0, same as written {back}
blk: flush: status 0
blk: read sector 8 (past the end): status 1
blk: 6 requests, one interrupt each
blk: done
"
    )
}

#[test]
fn blk_kernel_reads_and_writes_under_qemu() {
    let d = test_disk("blk-qemu", 8);
    assert_eq!(blk_under_qemu(&d, false), blk_reference(false));
    assert_eq!(&sector(&d, 1)[..WRITTEN.len()], WRITTEN);
}

fn blk_same_as_qemu(ecall: &str) {
    let q = test_disk(&format!("blk-q-{ecall}"), 8);
    let reference = blk_under_qemu(&q, false);
    assert_eq!(reference, blk_reference(false));
    support::require_riscv_lab();
    let d = test_disk(&format!("blk-v-{ecall}"), 8);
    let out = support::run_vmm(
        &["run", "--arch", "riscv", "--ecall", ecall, "--timeout", "60", "--disk", path_str(&d), &blk_bin()],
        LIMIT,
    );
    assert_eq!(stdout(&out), reference, "vmm and QEMU differ: {}", describe(&out));
    support::assert_exit(&out, 0);
    // The host file holds what the guest wrote, and nothing else changed.
    assert_eq!(std::fs::read(&d).unwrap(), std::fs::read(&q).unwrap(), "the two disks differ after the runs");
    let mut want = vec![0u8; 512];
    want[..WRITTEN.len()].copy_from_slice(WRITTEN);
    assert_eq!(sector(&d, 1), want);
}

#[test]
fn blk_kernel_prints_the_same_lines_as_qemu_and_the_file_holds_its_write_sud() {
    blk_same_as_qemu("sud");
}

#[test]
fn blk_kernel_prints_the_same_lines_as_qemu_and_the_file_holds_its_write_seccomp() {
    blk_same_as_qemu("seccomp");
}

/// A read-only disk: the write completes with an I/O error on both, and the file is unchanged.
#[test]
fn blk_kernel_on_a_read_only_disk_matches_qemu_and_changes_nothing() {
    let q = test_disk("blk-ro-q", 8);
    let reference = blk_under_qemu(&q, true);
    assert_eq!(reference, blk_reference(true));
    support::require_riscv_lab();
    let d = test_disk("blk-ro-v", 8);
    let before = std::fs::read(&d).unwrap();
    let ro = format!("{},ro", d.display());
    let out = support::run_vmm(&["run", "--arch", "riscv", "--timeout", "60", "--disk", &ro, &blk_bin()], LIMIT);
    assert_eq!(stdout(&out), reference, "vmm and QEMU differ: {}", describe(&out));
    support::assert_exit(&out, 0);
    assert_eq!(std::fs::read(&d).unwrap(), before);
}
