//! The interactive console on a real pseudo-terminal: raw mode while the guest runs, Ctrl-A x
//! quits with 0, and the terminal is restored both then and when vmm is killed by SIGTERM.
//! The guests are the x86 test kernel (flat guests read no keys; tests/x86_console.rs quits them) and a RISC-V guest run
//! through the lab host, whose outer side owns the terminal.
#![cfg(target_arch = "x86_64")]
mod pty;
mod support;
use pty::*;
use std::fs::File;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The guests that take console input: the x86 test kernel, and a RISC-V guest through the lab.
#[derive(Clone, Copy)]
enum Guest {
    X86Linux,
    RiscvSpin,
}

fn start_on(slave: &File, guest: Guest) -> Child {
    let mut cmd = vmm();
    match guest {
        Guest::X86Linux => {
            require_kvm();
            let kernel = artifact("guests/x86/linux/vmlinux");
            let initrd = artifact("guests/x86/linux/initramfs.cpio.gz");
            cmd.args(["run", "--arch", "x86", "--timeout", "60", "--initrd", path_str(&initrd), path_str(&kernel)]);
        }
        Guest::RiscvSpin => {
            require_riscv_lab();
            let spin = artifact("guests/riscv/spin.bin");
            cmd.args(["run", "--arch", "riscv", "--timeout", "60", path_str(&spin)]);
        }
    }
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::null());
    cmd.spawn().expect("spawn vmm")
}

fn ctrl_a_x_quits_with_zero_and_restores_the_terminal(guest: Guest) {
    let (mut master, slave) = pty();
    let cooked = local_flags(&slave);
    assert_ne!(cooked & libc::ICANON, 0, "a new pty starts in canonical mode");
    let mut child = start_on(&slave, guest);
    wait_for_raw(&slave, &mut child);
    master.write_all(&[0x01, b'x']).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "Ctrl-A x is a normal quit");
    assert_eq!(local_flags(&slave), cooked, "terminal restored after Ctrl-A x");
}

fn sigterm_restores_the_terminal(guest: Guest) {
    let (_master, slave) = pty();
    let cooked = local_flags(&slave);
    let mut child = start_on(&slave, guest);
    wait_for_raw(&slave, &mut child);
    // SAFETY: sending SIGTERM to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_exit(&mut child, Duration::from_secs(5));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "vmm dies of the signal, as a process should");
    assert_eq!(local_flags(&slave), cooked, "terminal restored after SIGTERM");
}

#[test]
fn x86_ctrl_a_x_quits_with_zero_and_restores_the_terminal() {
    ctrl_a_x_quits_with_zero_and_restores_the_terminal(Guest::X86Linux);
}

#[test]
fn x86_sigterm_restores_the_terminal() {
    sigterm_restores_the_terminal(Guest::X86Linux);
}

#[test]
fn riscv_ctrl_a_x_quits_with_zero_and_restores_the_terminal() {
    ctrl_a_x_quits_with_zero_and_restores_the_terminal(Guest::RiscvSpin);
}

#[test]
fn riscv_sigterm_restores_the_terminal() {
    sigterm_restores_the_terminal(Guest::RiscvSpin);
}

/// Ctrl-A x with --stats through the lab: the outer vmm passes the quit to the inner one, which
/// ends the run itself, so its trap table (relayed on stderr) and exit 0 come back.
#[test]
fn riscv_ctrl_a_x_with_stats_prints_the_stats() {
    require_riscv_lab();
    let (mut master, slave) = pty();
    let cooked = local_flags(&slave);
    let spin = artifact("guests/riscv/spin.bin");
    let err_path = scratch_file("ctrl-a-x-stats", "stderr.txt", b"");
    let mut child = vmm()
        .args(["run", "--arch", "riscv", "--timeout", "60", "--stats", path_str(&spin)])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn vmm");
    wait_for_raw(&slave, &mut child);
    // Quit only once the guest runs (it prints first), as a person would.
    let start = Instant::now();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("spinning forever") {
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut master, &mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
        assert!(start.elapsed() < Duration::from_secs(60), "the guest never printed");
    }
    master.write_all(&[0x01, b'x']).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-A x is a normal quit: {err}");
    assert!(err.contains("kind") && err.contains("count"), "the trap table came back: {err}");
    assert!(err.contains("urvirt: ecall trap"), "the inner vmm's notes came back: {err}");
    assert_eq!(local_flags(&slave), cooked, "terminal restored after Ctrl-A x");
}
