//! `vmm run --arch riscv` on this (non-riscv64) host: every guest runs through the real lab
//! host, a riscv64 Linux under qemu-system-riscv64, where the riscv64 vmm traps the guest's
//! ecalls with real seccomp or real syscall user dispatch. Set-up (`scripts/setup.sh`) builds
//! the kernel, the riscv64 vmm and the guests; a missing piece fails loudly.
mod support;

use std::process::Output;
use std::time::Instant;
use support::{
    artifact, assert_exit, assert_no_plumbing, describe, path_str, run_vmm, scratch_file, stderr, stdout, LAB_NOTICE,
};

/// Per-run wall-clock limit: a boot takes about a second; leave room for a busy machine.
const LIMIT: u64 = 90;

fn require_lab() {
    support::require_riscv_lab();
}

fn guest(name: &str) -> String {
    require_lab();
    path_str(&artifact(&format!("guests/riscv/{name}"))).to_string()
}

/// `vmm run --arch riscv --ecall <ecall> <extra..> <image>`.
fn run_riscv(ecall: &str, extra: &[&str], image: &str) -> Output {
    let mut args = vec!["run", "--arch", "riscv", "--ecall", ecall];
    args.extend_from_slice(extra);
    args.push(image);
    run_vmm(&args, LIMIT)
}

fn hello(ecall: &str) {
    let out = run_riscv(ecall, &[], &guest("hello.bin"));
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "I wrote this with SBI calls\n", "{}", describe(&out));
    assert_no_plumbing(&out);
}

#[test]
fn hello_with_seccomp() {
    hello("seccomp");
}

#[test]
fn hello_with_syscall_user_dispatch() {
    hello("sud");
}

#[test]
fn hello_with_auto() {
    hello("auto");
}

/// The exact console output of a self-checking guest whose checks all pass.
fn checks_output(title: &str, names: &[&str]) -> String {
    let mut s = format!("{title}\n");
    for n in names {
        s.push_str(&format!("PASS {n}\n"));
    }
    s.push_str(&format!("{title}: all {} checks passed\n", names.len()));
    s
}

fn sbi_probe_expected() -> String {
    let mut s = String::from("sbi-probe\n");
    for n in [
        "base.get_spec_version",
        "base.get_impl_id",
        "base.get_impl_version",
        "base.probe_extension.base",
        "base.probe_extension.time",
        "base.probe_extension.dbcn",
        "base.probe_extension.srst",
        "base.probe_extension.unknown",
        "base.get_mvendorid",
        "base.get_marchid",
        "base.get_mimpid",
        "unknown.extension",
        "unknown.base_function",
    ] {
        s.push_str(&format!("PASS {n}\n"));
    }
    s.push_str("dbcn: hello through write\nPASS dbcn.write\n");
    s.push_str("dbcn: hello through write_byte\nPASS dbcn.write_byte\n");
    s.push_str("PASS dbcn.read\nPASS time.set_timer\nPASS time.set_timer.disarm\n");
    s.push_str("sbi-probe: all 18 checks passed\n");
    s
}

fn sbi_probe(ecall: &str) {
    let out = run_riscv(ecall, &[], &guest("sbi-probe.bin"));
    assert_eq!(stdout(&out), sbi_probe_expected(), "{}", describe(&out));
    assert_exit(&out, 0);
    assert_no_plumbing(&out);
}

#[test]
fn sbi_probe_with_seccomp() {
    sbi_probe("seccomp");
}

#[test]
fn sbi_probe_with_syscall_user_dispatch() {
    sbi_probe("sud");
}

const CSR_CHECKS: &[&str] = &[
    "sscratch.write_read",
    "sepc.write_read",
    "scause.write_read",
    "stval.write_read",
    "stvec.write_read",
    "csrrw.old",
    "csrrw.new",
    "csrrs.old",
    "csrrs.new",
    "csrrc.old",
    "csrrc.new",
    "csrrwi.old",
    "csrrwi.new",
    "csrrsi.old",
    "csrrsi.new",
    "csrrci.old",
    "csrrci.new",
    "csrrs.x0_reads",
    "csrrs.x0_keeps",
    "sie.write_read",
    "sie.clear",
    "sip.timer_pending",
    "sip.timer_cleared",
    "sstatus.SIE",
    "sstatus.SPIE",
    "sstatus.SPP",
    "sstatus.SUM",
    "sstatus.FS.dirty",
    "sstatus.SIE.immediate",
    "time.monotonic",
    "cycle.monotonic",
    "instret.monotonic",
    "satp.bare",
    "satp.write_bare",
    "sret.lands",
    "sret.sstatus",
    "sfence.vma",
    "wfi.timer_taken",
];

fn csr_test(ecall: &str) {
    let out = run_riscv(ecall, &[], &guest("csr-test.bin"));
    assert_eq!(stdout(&out), checks_output("csr-test", CSR_CHECKS), "{}", describe(&out));
    assert_exit(&out, 0);
    assert_no_plumbing(&out);
}

#[test]
fn csr_test_with_seccomp() {
    csr_test("seccomp");
}

#[test]
fn csr_test_with_syscall_user_dispatch() {
    csr_test("sud");
}

#[test]
fn stats_come_back_on_stderr() {
    let out = run_riscv("seccomp", &["--stats"], &guest("hello.bin"));
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "I wrote this with SBI calls\n", "{}", describe(&out));
    assert!(stderr(&out).contains("sigsys"), "the inner vmm's trap table reaches our stderr: {}", describe(&out));
}

#[test]
fn empty_image_is_bad_input() {
    require_lab();
    let empty = scratch_file("riscv-empty", "empty.bin", b"");
    let out = run_riscv("auto", &[], path_str(&empty));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("is empty"), "{}", describe(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn image_larger_than_guest_ram_is_bad_input() {
    require_lab();
    // 3 MiB of `nop` into 2 MiB of RAM (the kernel goes 2 MiB in).
    let nops: Vec<u8> = [0x13u8, 0, 0, 0].iter().copied().cycle().take(3 << 20).collect();
    let big = scratch_file("riscv-big", "big.bin", &nops);
    let out = run_riscv("auto", &["--mem", "2M"], path_str(&big));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("does not fit"), "{}", describe(&out));
    assert_eq!(stdout(&out), "");
}

fn garbage(ecall: &str) {
    let out = run_riscv(ecall, &[], &guest("garbage.bin"));
    assert_exit(&out, 1);
    let e = stderr(&out);
    assert!(e.contains("illegal instruction"), "{}", describe(&out));
    assert!(e.contains("pc 0x80200000"), "the diagnostic names the pc: {}", describe(&out));
    assert!(e.contains("ff ff"), "the diagnostic shows the instruction: {}", describe(&out));
    assert_eq!(stdout(&out), "");
    assert_no_plumbing(&out);
}

#[test]
fn garbage_guest_fails_with_pc_and_instruction_seccomp() {
    garbage("seccomp");
}

#[test]
fn garbage_guest_fails_with_pc_and_instruction_sud() {
    garbage("sud");
}

#[test]
fn runaway_guest_is_stopped_by_timeout() {
    let image = guest("spin.bin");
    let start = Instant::now();
    let out = run_riscv("auto", &["--timeout", "2"], &image);
    let took = start.elapsed();
    assert_exit(&out, 1);
    assert_eq!(stdout(&out), "spinning forever\n", "{}", describe(&out));
    assert!(stderr(&out).contains("timeout"), "the diagnostic says why: {}", describe(&out));
    assert!(took.as_secs_f64() >= 2.0, "stopped after {took:?}, before the 2 s timeout");
    assert!(took.as_secs_f64() < 30.0, "took {took:?} to stop a 2 s timeout");
}

/// A timeout that runs out before (or while) the inner vmm switches into the guest still ends
/// the run from inside, with the x86 wording, not through the outer safety net.
/// The guest is `j .` alone: it makes no ecall, so only the timeout can stop it (with 1 ns the
/// SIGALRM used to come before the switch and be dropped).
fn tiny_timeout(ecall: &str) {
    require_lab();
    let image = scratch_file(&format!("tiny-timeout-{ecall}"), "jself.bin", &0x0000_006fu32.to_le_bytes());
    for (timeout, shown) in [("1e-9", "0.000000001"), ("0.001", "0.001")] {
        // A lost timeout would leave `j .` running until the outer safety net kills the lab,
        // which never prints the inner vmm's own timeout line: the text is the check (a wall
        // clock bound only measured how loaded the machine was).
        let out = run_riscv(ecall, &["--timeout", timeout], path_str(&image));
        assert_exit(&out, 1);
        let want = format!("vmm: guest did not finish within {shown} s (--timeout)");
        assert!(stderr(&out).contains(&want), "the inner vmm stopped it: {}", describe(&out));
    }
}

#[test]
fn tiny_timeout_still_ends_the_run_seccomp() {
    tiny_timeout("seccomp");
}

#[test]
fn tiny_timeout_still_ends_the_run_sud() {
    tiny_timeout("sud");
}

/// A --mem URVirt cannot use is one line and exit 2 before anything boots: qemu points at a
/// file that does not exist, so reaching it would say "cannot start" instead.
#[test]
fn bad_mem_is_refused_before_the_lab_boots() {
    let image = guest("hello.bin");
    for mem in ["8K", "8000000000G", "1048577"] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmm"));
        cmd.args(["run", "--arch", "riscv", "--mem", mem, &image]).env("VMM_QEMU_RISCV", "/nonexistent/qemu");
        let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {}", describe(&out));
        assert!(err.starts_with("vmm: --mem ") && err.contains("between 1 MiB and 2 GiB"), "{}", describe(&out));
        assert!(!err.contains(LAB_NOTICE) && !err.contains("cannot start"), "qemu was not started: {}", describe(&out));
    }
}

#[test]
fn missing_lab_names_the_setup_command() {
    let image = scratch_file("riscv-nolab", "hello.bin", &[0x73, 0, 0x50, 0x10]);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmm"));
    cmd.args(["run", "--arch", "riscv", path_str(&image)]).env("VMM_RISCV_LAB", "/nonexistent/riscv-lab");
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("scripts/setup.sh"), "{}", describe(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "one line: {}", describe(&out));
}

#[test]
fn console_input_reaches_the_guest() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let image = guest("echo.bin");
    let mut child = Command::new("timeout")
        .args(["--kill-after=5", &LIMIT.to_string(), env!("CARGO_BIN_EXE_vmm")])
        .args(["run", "--arch", "riscv", "--timeout", "30", &image])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // Type only once the guest is listening, as a person would.
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "echo: ready\n");
    child.stdin.take().unwrap().write_all(b"abc\nq").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "abc\necho: bye\n");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn full_stderr_is_not_a_panic() {
    require_lab();
    let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
    let out =
        support::vmm().args(["run", "--arch", "riscv", "--stats", &guest("hello.bin")]).stderr(full).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "I wrote this with SBI calls\n");
}

fn modified(p: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(p).and_then(|m| m.modified()).unwrap()
}

/// Plain `cargo test` must not boot a stale riscv64 vmm: after an engine source changes (here
/// touched: same content, newer time), the next lab test process rebuilds it before booting.
/// The next process is this test binary again, running only `hello_with_auto`.
#[test]
fn a_changed_engine_source_is_rebuilt_before_the_next_lab_test() {
    require_lab();
    let engine = artifact(support::RISCV_ENGINE);
    let before = modified(&engine);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let source = support::root().join("urvirt-riscv/src/engine/run.rs");
    std::fs::File::options().append(true).open(&source).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hello_with_auto", "--test-threads", "1"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "the lab test after the change: {}", describe(&out));
    assert!(stdout(&out).contains("1 passed"), "it ran: {}", describe(&out));
    let after = modified(&engine);
    assert!(after > before, "the riscv64 vmm was not rebuilt: {before:?} then {after:?}");
}

/// Process-directed SIGALRMs, about one a millisecond, sent by the lab's init to the inner vmm
/// from the guest's first line to the process's end (a test hook of the lab). The kernel gives
/// such a signal to any thread that does not block it: it must never be the console thread
/// (whose registers would become the guest's), and one after the run must not end vmm with
/// "Alarm clock". csr-test traps on nearly every instruction and checks its own results.
fn signal_storm(ecall: &str) {
    let image = guest("csr-test.bin");
    let args = ["run", "--arch", "riscv", "--ecall", ecall, "--timeout", "60", &image];
    let out = support::run_vmm_env(&args, LIMIT, &[(urvirt_riscv::lab::SIGNAL_STORM_ENV, "1")]);
    assert_eq!(stdout(&out), checks_output("csr-test", CSR_CHECKS), "{}", describe(&out));
    assert_exit(&out, 0);
    assert_no_plumbing(&out);
}

#[test]
fn process_directed_signals_never_run_the_guest_on_another_thread_seccomp() {
    signal_storm("seccomp");
}

#[test]
fn process_directed_signals_never_run_the_guest_on_another_thread_sud() {
    signal_storm("sud");
}

/// The monitor's resident memory that the inner vmm reports with --stats, in KiB.
fn monitor_rss_kib(out: &Output) -> u64 {
    let err = stderr(out);
    let line = err.lines().find(|l| l.contains("urvirt: monitor resident memory")).unwrap_or_else(|| {
        panic!("no resident-memory note in --stats: {}", describe(out));
    });
    line.split_whitespace().rev().nth(1).and_then(|n| n.parse().ok()).unwrap()
}

/// `yes | vmm run --arch riscv spin.bin`: the guest never reads, so input must stop queueing
/// at the bound (64 KiB) instead of growing with everything `yes` writes; the run still ends
/// cleanly at its timeout.
#[test]
fn endless_input_to_a_guest_that_never_reads_stays_bounded() {
    use std::process::{Command, Stdio};
    let image = guest("spin.bin");
    // The baseline reads a pipe too, one that never delivers: the same threads (and their
    // allocator arenas) as the flooded run, so only queued input can make a difference.
    // (With /dev/null on stdin vmm starts no input thread at all.)
    let run_with_stdin = |stdin: std::process::ChildStdout, timeout: &str| {
        Command::new("timeout")
            .args(["--kill-after=5", &LIMIT.to_string(), env!("CARGO_BIN_EXE_vmm")])
            .args(["run", "--arch", "riscv", "--timeout", timeout, "--stats", &image])
            .stdin(stdin)
            .output()
            .unwrap()
    };
    // Two silent runs: identical runs differ by up to 150 KiB here (2,848 to 2,992 KiB), and
    // one low baseline once failed this test; the larger one is the baseline.
    let quiet_run = || {
        let mut silent = Command::new("sleep").arg("600").stdout(Stdio::piped()).spawn().unwrap();
        let quiet = run_with_stdin(silent.stdout.take().unwrap(), "2");
        let _ = silent.kill();
        let _ = silent.wait();
        assert_exit(&quiet, 1);
        quiet
    };
    let quiet = [quiet_run(), quiet_run()].into_iter().max_by_key(monitor_rss_kib).unwrap();
    // The lab's serial line carries about 10 KB/s: in 30 s `yes` gets some 300 KB to the inner
    // vmm, far past the 64 KiB bound: an unbounded queue would hold it all. Measured here against
    // the silent baseline: +40 KiB.
    let mut yes = Command::new("yes").stdout(Stdio::piped()).spawn().unwrap();
    let out = run_with_stdin(yes.stdout.take().unwrap(), "30");
    let _ = yes.kill();
    let _ = yes.wait();
    assert_exit(&out, 1);
    assert_eq!(stdout(&out), "spinning forever\n", "{}", describe(&out));
    assert!(stderr(&out).contains("vmm: guest did not finish within 30 s (--timeout)"), "{}", describe(&out));
    let (without, with) = (monitor_rss_kib(&quiet), monitor_rss_kib(&out));
    println!("monitor RSS: {without} KiB with silent input, {with} KiB with endless input");
    assert!(with < without + 192, "input grew the monitor from {without} KiB to {with} KiB");
}

/// A call outside the jail made by the monitor inside a signal handler (where the other
/// handled signals are blocked) is still reported in one line with exit 3, not a bare SIGSYS
/// death: the lab's test hook makes the handler of hello's first SBI call try openat.
fn jail_probe_in_a_handler(ecall: &str) {
    let image = guest("hello.bin");
    let args = ["run", "--arch", "riscv", "--ecall", ecall, "--timeout", "30", &image];
    let out = support::run_vmm_env(&args, LIMIT, &[(urvirt_riscv::lab::JAIL_PROBE_ENV, "1")]);
    let want = "vmm: seccomp jail (urvirt guest): blocked system call openat (56)";
    assert!(stderr(&out).contains(want), "{ecall}: {}", describe(&out));
    assert_exit(&out, 3);
    assert_eq!(stdout(&out), "", "the guest's first SBI call never completed: {}", describe(&out));
}

#[test]
fn a_call_outside_the_jail_from_a_handler_is_reported_seccomp() {
    jail_probe_in_a_handler("seccomp");
}

#[test]
fn a_call_outside_the_jail_from_a_handler_is_reported_sud() {
    jail_probe_in_a_handler("sud");
}
