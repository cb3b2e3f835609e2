//! The x86 lab host (`--lab`): vmm's full-boot path on every x86_64 machine. QEMU runs the lab
//! kernel (scripts/build-x86-lab.sh) in software on an emulated AMD EPYC with SVM and nested
//! paging; its KVM_AMD offers a /dev/kvm, and the static x86_64 vmm runs the same command
//! there. So these tests boot Linux to its init on the SVM branch even where the host's own KVM
//! is kvm-pvm (tests/x86_linux.rs keeps that host's behaviour). The lab's parts are set-up
//! artifacts: a missing one fails loudly.
#![cfg(target_arch = "x86_64")]
mod pty;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

use support::X86_LAB_NOTICE as NOTICE;
const MARKER: &str = "VMM-INIT-OK";
/// Long enough for any boot here (about 6 s in the lab, more on a loaded machine); the inner
/// vmm must end on its own well before it.
const SAFETY_TIMEOUT: &str = "300";

fn guest(name: &str) -> PathBuf {
    artifact(&format!("guests/x86/{name}"))
}

fn lab_vmm(args: &[&str], limit_secs: u64) -> Output {
    require_x86_lab();
    run_vmm(args, limit_secs)
}

/// The lab notice is the first line of stderr and the only one from the lab itself.
fn assert_notice_first(out: &Output) {
    let se = stderr(out);
    assert!(se.starts_with(NOTICE), "the lab notice comes first on stderr: {}", describe(out));
    assert_eq!(se.matches(NOTICE).count(), 1, "{}", describe(out));
}

/// Nothing of the lab host itself reaches the user: not its kernel (6.12, whose command line
/// carries tsc_early_khz; the guest's own kernel is 6.1), not the frames.
fn assert_no_lab_plumbing(out: &Output) {
    let (o, e) = (stdout(out), stderr(out));
    for noise in ["Linux version 6.12", "tsc_early_khz", "\x1b_LAB", "kvm_amd"] {
        assert!(!o.contains(noise) && !e.contains(noise), "{noise:?} leaked: {}", describe(out));
    }
}

#[test]
fn the_lab_hosts_kvm_is_svm() {
    let out = lab_vmm(&["info", "--lab"], 120);
    assert_exit(&out, 0);
    assert_notice_first(&out);
    let so = stdout(&out);
    assert!(so.contains("host flavor: SVM (AMD-V)"), "the lab's KVM is not SVM: {}", describe(&out));
    assert!(so.contains("KVM API version: 12"), "{}", describe(&out));
}

#[test]
fn vmm_info_names_the_lab_host() {
    require_kvm();
    require_x86_lab();
    let out = run_vmm(&["info"], 30);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("x86 lab host (--lab): ready"), "{}", describe(&out));
}

/// Flat guests on SVM. Long mode failed here with "KVM_SET_SREGS failed: Invalid argument"
/// until flat long-mode guests got a CPUID with long mode (modes::set_flat_cpuid).
#[test]
fn hello_in_all_three_modes() {
    for (mode, image, line) in [
        ("real", "hello.bin", "Hello"),
        ("protected", "hello32.bin", "Hello from 32-bit protected mode"),
        ("long", "hello64.bin", "Hello from 64-bit long mode"),
    ] {
        let image = guest(image);
        let out = lab_vmm(&["run", "--arch", "x86", "--lab", "--mode", mode, path_str(&image)], 120);
        assert_exit(&out, 0);
        assert_notice_first(&out);
        assert_eq!(stdout(&out).trim_end(), line, "{}", describe(&out));
        assert_no_lab_plumbing(&out);
    }
}

/// Boots the test kernel inside the lab with the test initramfs.
fn boot(kernel: &str) -> Output {
    let kernel = guest(&format!("linux/{kernel}"));
    let initrd = guest("linux/initramfs.cpio.gz");
    let args = ["run", "--arch", "x86", "--lab", "--timeout", SAFETY_TIMEOUT, "--initrd", path_str(&initrd)];
    let mut args = args.to_vec();
    args.push(path_str(&kernel));
    lab_vmm(&args, 400)
}

/// The full boot: banner through vmm's 8250, the initramfs's marker, and its reset (reboot=k)
/// ending vmm with 0, by itself and not by --timeout.
fn assert_boots_to_init(kernel: &str) {
    let started = Instant::now();
    let out = boot(kernel);
    let (so, se) = (stdout(&out), stderr(&out));
    println!("{kernel} in the lab: {:.1} s", started.elapsed().as_secs_f64());
    assert!(so.contains("Linux version 6.1."), "no guest banner: {}", describe(&out));
    assert!(so.contains(MARKER), "init did not run: {}", describe(&out));
    assert!(!se.contains("--timeout"), "stopped by the safety timeout: {}", describe(&out));
    assert_exit(&out, 0);
    assert_notice_first(&out);
    assert_eq!(se.lines().count(), 1, "only the notice on stderr: {}", describe(&out));
    assert_no_lab_plumbing(&out);
}

/// The monitor's resident memory that --stats reports, in KiB.
fn monitor_rss_kib(out: &Output) -> u64 {
    let err = stderr(out);
    let line = err.lines().find_map(|l| l.strip_prefix("monitor RSS (excluding guest RAM): "));
    let kib = line.and_then(|l| l.strip_suffix(" KiB")).and_then(|n| n.parse().ok());
    kib.unwrap_or_else(|| panic!("no monitor RSS in --stats: {}", describe(out)))
}

/// No exit storm in a boot, and a lean monitor. Linux's i8042 probe gets every answer at once
/// (against a stub that answered nothing it polled the status port some 20,000 times, over
/// two seconds of the boot). Its console writes THR without an exit per byte: KVM queues those
/// writes while the UART's interrupts are off, and every one still reaches the console, in
/// order (coalesced.rs). The kernel image is not kept once it is in guest RAM, the initrd never
/// enters our heap. Bounds from the issue: 5 MiB after a Linux boot, 3 MiB for hello.
#[test]
fn a_linux_boot_has_no_exit_storm_and_the_monitor_stays_small() {
    let kernel = guest("linux/bzImage");
    let initrd = guest("linux/initramfs.cpio.gz");
    let args = ["run", "--arch", "x86", "--lab", "--stats", "--timeout", SAFETY_TIMEOUT, "--initrd"];
    let mut args = args.to_vec();
    args.extend([path_str(&initrd), path_str(&kernel)]);
    let out = lab_vmm(&args, 400);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains(MARKER), "init did not run: {}", describe(&out));
    assert!(stdout(&out).contains("serio: i8042 KBD port"), "the guest found no i8042: {}", describe(&out));
    assert!(!stdout(&out).contains("Keylock active"), "{}", describe(&out));
    let polls = row_count(&stderr(&out), "io-in i8042").unwrap_or_else(|| panic!("no i8042 row: {}", describe(&out)));
    assert!(polls <= 400, "{polls} i8042 reads in one boot: {}", describe(&out));
    // About 5,000 console bytes in this boot: a THR exit per byte would be that many `out`s
    // (the LSR poll before each byte still exits: an `in`).
    let (so, se) = (stdout(&out), stderr(&out));
    let outs = row_count(&se, "io-out serial-0x3f8").unwrap_or_else(|| panic!("no UART row: {}", describe(&out)));
    let queued: u64 = se
        .lines()
        .find_map(|l| l.strip_prefix("UART THR writes KVM queued instead of exiting: "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no queued-writes note: {}", describe(&out)));
    assert!(outs <= 1000 && queued >= 3000, "{outs} UART exits, {queued} queued writes: {}", describe(&out));
    // Every queued byte came out, in order: the phases in sequence, the marker's line whole.
    let mut from = 0;
    for phase in
        ["Linux version 6.1.", "printk: console [ttyS0] enabled", "Serial: 8250", "Run /init", "VMM-INIT-OK uptime="]
    {
        let at =
            so[from..].find(phase).unwrap_or_else(|| panic!("{phase:?} missing or out of order: {}", describe(&out)));
        from += at + phase.len();
    }
    let rss = monitor_rss_kib(&out);
    assert!(rss <= 5 << 10, "monitor RSS after a Linux boot is {rss} KiB, over 5 MiB");
    let out = lab_vmm(&["run", "--arch", "x86", "--lab", "--stats", path_str(&guest("hello.bin"))], 120);
    assert_exit(&out, 0);
    let rss = monitor_rss_kib(&out);
    assert!(rss <= 3 << 10, "monitor RSS for hello is {rss} KiB, over 3 MiB");
}

#[test]
fn vmlinux_boots_to_init_through_pvh() {
    assert_boots_to_init("vmlinux");
}

#[test]
fn bzimage_boots_to_init_through_the_64bit_protocol() {
    assert_boots_to_init("bzImage");
}

/// The console both ways: a command typed into the guest's shell, its answer read back, then
/// `exit` ends the shell, init resets the guest and vmm ends with 0.
#[test]
fn a_shell_in_the_lab_answers_typed_commands() {
    require_x86_lab();
    let kernel = guest("linux/bzImage");
    let initrd = guest("linux/initramfs.cpio.gz");
    let mut child = vmm()
        .args(["run", "--arch", "x86", "--lab", "--timeout", SAFETY_TIMEOUT, "--initrd", path_str(&initrd)])
        .args(["--kernel-cmdline", "console=ttyS0 reboot=k panic=1 pci=off nomodules vmm.shell"])
        .arg(path_str(&kernel))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmm");
    let mut input = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let output = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(output).split(b'\n') {
            let Ok(line) = line else { break };
            if tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(350);
    let mut seen = String::new();
    let mut wait_for = |want: &str, seen: &mut String| {
        while !seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("never saw {want:?}; output so far:\n{seen}");
                }
            }
        }
    };
    wait_for(MARKER, &mut seen);
    // Give the shell a moment to start reading; typed-ahead input is not lost, only echoed late.
    std::thread::sleep(Duration::from_millis(500));
    input.write_all(b"echo lab-answer-$((6*7))\n").unwrap();
    wait_for("lab-answer-42", &mut seen);
    input.write_all(b"exit\n").unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "stdout:\n{seen}\nstderr:\n{err}");
    assert!(err.starts_with(NOTICE), "{err}");
}

#[test]
fn inner_exit_codes_pass_through_unchanged() {
    // A port nobody handles: the guest failed (1), with the inner vmm's one-line diagnostic.
    let out = lab_vmm(&["run", "--arch", "x86", "--lab", path_str(&guest("badport.bin"))], 120);
    assert_exit(&out, 1);
    assert_notice_first(&out);
    assert_eq!(stderr(&out).lines().count(), 2, "{}", describe(&out));
    // A kernel the inner vmm refuses: bad input (2), its message naming the user's path.
    let bz = std::fs::read(guest("linux/bzImage")).unwrap();
    let cut = scratch_file("lab-truncated", "bzImage", &bz[..bz.len() / 2]);
    let out = lab_vmm(&["run", "--arch", "x86", "--lab", path_str(&cut)], 120);
    assert_exit(&out, 2);
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("truncated bzImage") && last.contains(path_str(&cut)), "{}", describe(&out));
}

#[test]
fn a_missing_lab_is_one_line_and_exit_2() {
    let out = run_vmm_env(
        &["run", "--arch", "x86", "--lab", path_str(&guest("hello.bin"))],
        30,
        &[("VMM_X86_LAB", "/nonexistent/lab")],
    );
    assert_exit(&out, 2);
    assert_eq!(
        stderr(&out),
        "vmm: --lab needs the lab host: the x86 lab kernel /nonexistent/lab/bzImage is missing; \
         run `scripts/build-x86-lab.sh` (it builds the lab host's kernel and the static x86_64 vmm)\n"
    );
}

#[test]
fn lab_does_not_apply_to_riscv() {
    let out = run_vmm(&["run", "--arch", "riscv", "--lab", "whatever.bin"], 30);
    assert_exit(&out, 2);
    assert_eq!(stderr(&out), "vmm: --lab does not apply to --arch riscv\n");
}

/// A "qemu" that never boots anything: vmm stops it after the boot limit with a clear line,
/// and the process is gone afterwards.
#[test]
fn a_lab_host_that_never_comes_up_times_out_clearly() {
    require_x86_lab();
    let pid_file = std::env::temp_dir().join(format!("vmm-test-{}-fake-qemu.pid", std::process::id()));
    let script = format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", pid_file.display());
    let fake = scratch_file("never-boots", "fake-qemu", script.as_bytes());
    make_executable(&fake);
    let started = Instant::now();
    let out = run_vmm_env(
        &["run", "--arch", "x86", "--lab", path_str(&guest("hello.bin"))],
        60,
        &[("VMM_QEMU_X86", path_str(&fake)), ("VMM_LAB_BOOT_TIMEOUT", "3")],
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{}", describe(&out));
    assert_exit(&out, 1);
    assert!(
        stderr(&out).ends_with("vmm: the lab host (fake-qemu) did not boot within 3 s; stopped it\n"),
        "{}",
        describe(&out)
    );
    let pid = std::fs::read_to_string(&pid_file).expect("the fake qemu ran");
    let _ = std::fs::remove_file(&pid_file);
    assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "the fake qemu {pid} is still running");
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Without `--lab`, on a kvm-pvm host, a Linux kernel ends in an emulation failure: its one
/// line says that `--lab` exists. On a VMX/SVM host the same run boots, with no such hint.
#[test]
fn an_emulation_failure_on_kvm_pvm_points_to_the_lab() {
    require_kvm();
    let kernel = guest("linux/bzImage");
    let initrd = guest("linux/initramfs.cpio.gz");
    let out = run_vmm(
        &["run", "--arch", "x86", "--timeout", SAFETY_TIMEOUT, "--initrd", path_str(&initrd), path_str(&kernel)],
        200,
    );
    let se = stderr(&out);
    if Path::new("/sys/module/kvm_pvm").exists() {
        assert_exit(&out, 1);
        assert_eq!(se.lines().count(), 1, "one line: {}", describe(&out));
        assert!(se.contains("emulation failure") && se.contains("`--lab` runs the same command"), "{}", describe(&out));
    } else {
        assert_exit(&out, 0);
        assert!(!se.contains("--lab"), "{}", describe(&out));
    }
}

/// The interactive console on a real terminal through the lab: a command typed at the shell,
/// its answer read back, then Ctrl-A x, which the outer vmm passes on in band so that the inner
/// vmm ends the run itself (its --stats table arrives) and vmm exits 0 with the terminal restored.
#[test]
fn a_shell_on_a_terminal_then_ctrl_a_x() {
    require_x86_lab();
    let kernel = guest("linux/bzImage");
    let initrd = guest("linux/initramfs.cpio.gz");
    let (mut master, slave) = pty::pty();
    let cooked = pty::local_flags(&slave);
    let mut child = vmm()
        .args(["run", "--arch", "x86", "--lab", "--stats", "--timeout", SAFETY_TIMEOUT, "--initrd", path_str(&initrd)])
        .args(["--kernel-cmdline", "console=ttyS0 reboot=k panic=1 pci=off nomodules vmm.shell"])
        .arg(path_str(&kernel))
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmm");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(350);
    let mut seen = Vec::new();
    let wait_for = |want: &str, seen: &mut Vec<u8>| {
        while !String::from_utf8_lossy(seen).contains(want) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(bytes) => seen.extend(bytes),
                Err(_) => panic!("never saw {want:?}; terminal so far:\n{}", String::from_utf8_lossy(seen)),
            }
        }
    };
    wait_for(MARKER, &mut seen);
    std::thread::sleep(Duration::from_millis(500));
    master.write_all(b"echo lab-tty-$((6*7))\r").unwrap();
    wait_for("lab-tty-42", &mut seen);
    master.write_all(b"\x01x").unwrap();
    let status = pty::wait_exit(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-A x is a normal quit; stderr: {err}");
    assert!(err.starts_with(NOTICE), "{err}");
    assert!(err.contains("io-out serial-0x3f8"), "the inner vmm's stats table: {err}");
    assert_eq!(pty::local_flags(&slave), cooked, "terminal restored after Ctrl-A x; stderr: {err}");
}

/// The newest file in /boot whose name starts with `prefix`; a missing one fails loudly.
fn debian_boot_file(prefix: &str) -> PathBuf {
    let mut found: Vec<PathBuf> =
        std::fs::read_dir("/boot").map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)));
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("MISSING PREREQUISITE: no /boot/{prefix}*: apt-get install linux-image-amd64 initramfs-tools")
    })
}

/// Debian's stock bzImage (XZ, ACPI, modules) on SVM, with Debian's own initramfs: its banner,
/// the initramfs unpacked and its /init (initramfs-tools) run. Given no root= it stops, and
/// with panic=1 on the command line it reboots, which ends vmm with 0.
#[test]
fn debian_bzimage_reaches_its_initramfs() {
    let kernel = debian_boot_file("vmlinuz-");
    let initrd = debian_boot_file("initrd.img-");
    let started = Instant::now();
    let out = lab_vmm(
        &[
            "run",
            "--arch",
            "x86",
            "--lab",
            "--stats",
            "--mem",
            "512M",
            "--timeout",
            "400",
            "--kernel-cmdline",
            "console=ttyS0 reboot=k panic=1 pci=off",
            "--initrd",
            path_str(&initrd),
            path_str(&kernel),
        ],
        450,
    );
    println!("Debian's kernel in the lab: {:.1} s", started.elapsed().as_secs_f64());
    let so = stdout(&out);
    assert!(so.contains("Linux version 6."), "no banner: {}", describe(&out));
    assert!(so.contains("Run /init as init process"), "its initramfs did not run: {}", describe(&out));
    assert!(so.contains("No root device specified"), "initramfs-tools did not get to its check: {}", describe(&out));
    // Debian's kernel probes the i8042 the same quick way (see the test above).
    assert!(!so.contains("Keylock active"), "{}", describe(&out));
    let polls = row_count(&stderr(&out), "io-in i8042").unwrap_or_else(|| panic!("no i8042 row: {}", describe(&out)));
    assert!(polls <= 400, "{polls} i8042 reads in one boot: {}", describe(&out));
    assert_exit(&out, 0);
    assert_notice_first(&out);
}
