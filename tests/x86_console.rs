//! Ctrl-A x on x86, on a real pseudo-terminal: the console thread kicks the vCPU out of
//! KVM_RUN (immediate_exit and a signal, as --timeout does), so the run ends through the
//! normal path: exit 0, --stats printed once, the terminal restored, and no interrupt
//! injected into the guest. Flat guests take no input, but Ctrl-A x still ends them.
#![cfg(target_arch = "x86_64")]
mod pty;
mod support;
use pty::*;
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Starts vmm with `args` on the pty (stdin, stdout); stderr is piped for the stats table.
fn start_on(slave: &std::fs::File, args: &[&str]) -> Child {
    require_kvm();
    let mut cmd = vmm();
    cmd.args(args)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn vmm")
}

/// Presses Ctrl-A x once vmm is in raw mode; returns how long vmm took to end after it, its
/// exit status and stderr. Checks that the terminal is restored.
fn quit_with_ctrl_a_x(args: &[&str]) -> (Duration, std::process::ExitStatus, String) {
    let (mut master, slave) = pty();
    let cooked = local_flags(&slave);
    assert_ne!(cooked & libc::ICANON, 0, "a new pty starts in canonical mode");
    let mut child = start_on(&slave, args);
    wait_for_raw(&slave, &mut child);
    // Let the guest get going (a flat guest into its loop, Linux into its boot).
    std::thread::sleep(Duration::from_millis(300));
    master.write_all(&[0x01, b'x']).unwrap();
    let pressed = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let took = pressed.elapsed();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(local_flags(&slave), cooked, "terminal restored after Ctrl-A x; stderr: {err}");
    (took, status, err)
}

/// What every Ctrl-A x must give: exit 0, soon, one stats table and no vmm message; the run
/// ended at the kick (the one `intr` exit), not at an exit a guest interrupt caused.
fn assert_quit_through_the_vcpu(took: Duration, status: std::process::ExitStatus, err: &str) {
    assert_eq!(status.code(), Some(0), "Ctrl-A x is a normal quit; stderr: {err}");
    assert!(took < Duration::from_millis(900), "Ctrl-A x took {took:?} to end the run; stderr: {err}");
    assert!(err.lines().next().unwrap_or("").starts_with("kind "), "stats table expected first: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("kind ")).count(), 1, "one stats table: {err}");
    assert_eq!(row_count(err, "intr"), Some(1), "the run must end at the kick's exit: {err}");
    assert!(err.contains("monitor RSS (excluding guest RAM): "), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("vmm: ")), "no error line: {err}");
}

#[test]
fn ctrl_a_x_ends_a_looping_flat_guest() {
    let guest = artifact("guests/x86/loop.bin");
    let (took, status, err) =
        quit_with_ctrl_a_x(&["run", "--arch", "x86", "--stats", "--timeout", "30", path_str(&guest)]);
    assert_quit_through_the_vcpu(took, status, &err);
    assert!(err.lines().any(|l| l.starts_with("final state: RIP=0x1000 ")), "loop.bin is `jmp $` at 0x1000: {err}");
}

#[test]
fn ctrl_a_x_ends_a_linux_guest_with_its_stats() {
    let kernel = artifact("guests/x86/linux/vmlinux");
    let initrd = artifact("guests/x86/linux/initramfs.cpio.gz");
    let args = ["run", "--arch", "x86", "--stats", "--timeout", "60", "--initrd", path_str(&initrd), path_str(&kernel)];
    let (took, status, err) = quit_with_ctrl_a_x(&args);
    assert_quit_through_the_vcpu(took, status, &err);
}

#[test]
fn sigterm_on_a_jailed_flat_guest_restores_the_terminal() {
    let (_master, slave) = pty();
    let cooked = local_flags(&slave);
    let guest = artifact("guests/x86/loop.bin");
    let mut child = start_on(&slave, &["run", "--arch", "x86", "--timeout", "30", path_str(&guest)]);
    wait_for_raw(&slave, &mut child);
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: sending SIGTERM to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_exit(&mut child, Duration::from_secs(5));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    use std::os::unix::process::ExitStatusExt;
    // Dying of the signal (not of a jail's SIGSYS): the handler ran outside the jails.
    assert_eq!(status.signal(), Some(libc::SIGTERM), "stderr: {err}");
    assert_eq!(err, "", "no jail message");
    assert_eq!(local_flags(&slave), cooked, "terminal restored after SIGTERM");
}

/// The tid of `pid`'s thread named `name` (its /proc comm).
fn thread_named(pid: u32, name: &str) -> Option<libc::pid_t> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| t.file_name().to_str()?.parse().ok())?
    })
}

#[test]
fn sigterm_that_lands_on_the_jailed_console_thread_restores_the_terminal() {
    // A process-directed signal may be delivered to any thread that does not block it, the
    // console thread included: its jail must let the restoring handler do its work there.
    let (_master, slave) = pty();
    let cooked = local_flags(&slave);
    let guest = artifact("guests/x86/loop.bin");
    let mut child = start_on(&slave, &["run", "--arch", "x86", "--timeout", "30", path_str(&guest)]);
    wait_for_raw(&slave, &mut child);
    let start = Instant::now();
    let tid = loop {
        if let Some(tid) = thread_named(child.id(), "console-in") {
            break tid;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no console-in thread");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: sending SIGTERM to one thread of our own child process.
    unsafe { libc::syscall(libc::SYS_tgkill, child.id() as libc::pid_t, tid, libc::SIGTERM) };
    let status = wait_exit(&mut child, Duration::from_secs(5));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "status {status:?}, stderr: {err}");
    assert_eq!(err, "", "no jail message");
    assert_eq!(local_flags(&slave), cooked, "terminal restored after SIGTERM");
}

#[test]
fn a_blocked_call_on_a_terminal_is_reported_and_the_terminal_restored() {
    // The jail's report restores the terminal from inside the SIGSYS handler, under the jail
    // of the thread that was stopped: that must work there too, for each jailed thread.
    let guest = artifact("guests/x86/loop.bin");
    for thread in ["vcpu", "console"] {
        let (_master, slave) = pty();
        let cooked = local_flags(&slave);
        let mut cmd = vmm();
        cmd.args(["run", "--arch", "x86", "--timeout", "30", path_str(&guest)])
            .env("VMM_TEST_JAIL_PROBE", thread)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn vmm");
        let status = wait_exit(&mut child, Duration::from_secs(10));
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(3), "{thread}: status {status:?}, stderr: {err}");
        let line = format!(
            "vmm: seccomp jail ({thread}): blocked system call openat (257); --no-seccomp turns the jail off\n"
        );
        assert!(err.ends_with(&line), "{thread}: stderr: {err}");
        assert_eq!(local_flags(&slave), cooked, "{thread}: terminal restored after the jail's report");
    }
}
