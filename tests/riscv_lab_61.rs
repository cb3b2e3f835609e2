//! `vmm run --arch riscv` in a lab host running Linux 6.1, whose riscv64 entry code predates
//! syscall user dispatch (SUD came with the generic entry code in 6.4): `--ecall auto` must fall
//! back to the seccomp filter and `--ecall sud` must be refused with one line and exit 2.
//! Set-up (`scripts/build-riscv-lab.sh kernel-6.1`) puts that kernel and a link to the riscv64
//! vmm in target/riscv-lab-6.1; every run here points VMM_RISCV_LAB at it. A missing piece fails.
mod support;

use std::process::Output;
use support::{artifact, assert_exit, assert_no_plumbing, describe, path_str, run_vmm_env, stderr, stdout, LAB_NOTICE};

/// Per-run wall-clock limit: a boot takes about a second; leave room for a busy machine.
const LIMIT: u64 = 90;

/// The 6.1 lab directory (`Image` and `vmm`, as `Lab::locate` wants them under VMM_RISCV_LAB).
fn lab_61() -> String {
    artifact("riscv-lab-6.1/Image");
    // riscv-lab-6.1/vmm links to the riscv64 vmm: build it from the current sources.
    support::require_riscv_lab();
    artifact("riscv-lab-6.1/vmm");
    path_str(&artifact("riscv-lab-6.1")).to_string()
}

fn guest(name: &str) -> String {
    path_str(&artifact(&format!("guests/riscv/{name}"))).to_string()
}

/// `vmm run --arch riscv --ecall <ecall> <extra..> <image>` in the 6.1 lab, under a hard limit.
fn run_61(ecall: &str, extra: &[&str], image: &str) -> Output {
    let lab = lab_61();
    let mut args = vec!["run", "--arch", "riscv", "--ecall", ecall];
    args.extend_from_slice(extra);
    args.push(image);
    run_vmm_env(&args, LIMIT, &[("VMM_RISCV_LAB", &lab)])
}

#[test]
fn auto_falls_back_to_seccomp() {
    let out = run_61("auto", &["--stats"], &guest("hello.bin"));
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "I wrote this with SBI calls\n", "{}", describe(&out));
    let e = stderr(&out);
    assert!(e.contains("urvirt: ecall trap seccomp filter,"), "auto chose seccomp: {}", describe(&out));
    assert!(!e.contains("syscall user dispatch"), "{}", describe(&out));
    assert!(e.contains("sigsys"), "the guest's ecalls trapped as SIGSYS: {}", describe(&out));
    assert_no_plumbing(&out);
}

#[test]
fn seccomp_works() {
    let out = run_61("seccomp", &["--stats"], &guest("hello.bin"));
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "I wrote this with SBI calls\n", "{}", describe(&out));
    assert!(stderr(&out).contains("urvirt: ecall trap seccomp filter,"), "{}", describe(&out));
    assert_no_plumbing(&out);
}

#[test]
fn sud_is_refused_with_one_line_naming_the_version_it_needs() {
    let out = run_61("sud", &[], &guest("hello.bin"));
    assert_exit(&out, 2);
    assert_eq!(stdout(&out), "", "the guest never ran: {}", describe(&out));
    assert_no_plumbing(&out);
    let e = stderr(&out);
    let lines: Vec<&str> = e.lines().filter(|l| !l.starts_with(LAB_NOTICE)).collect();
    assert_eq!(lines.len(), 1, "one line besides the lab notice: {}", describe(&out));
    let line = lines[0];
    assert!(line.starts_with("vmm: --ecall sud: "), "{}", describe(&out));
    assert!(line.contains("needs Linux >= 6.4"), "names the version it needs: {}", describe(&out));
    // The kernel's own release (6.1.x) is named, which also proves the 6.1 lab really ran.
    assert!(line.contains("this kernel is 6.1."), "names the running kernel: {}", describe(&out));
    assert!(line.contains("--ecall seccomp"), "names the way out: {}", describe(&out));
}

/// csr-test's exact output, without repeating its list of checks: a title, only PASS lines,
/// and the summary that counts them.
fn assert_csr_test_passes(out: &Output) {
    let o = stdout(out);
    let lines: Vec<&str> = o.lines().collect();
    assert!(lines.len() > 2, "{}", describe(out));
    assert_eq!(lines[0], "csr-test", "{}", describe(out));
    let checks = &lines[1..lines.len() - 1];
    assert!(checks.iter().all(|l| l.starts_with("PASS ")), "only passes: {}", describe(out));
    assert!(checks.len() >= 30, "all of csr-test's checks ran: {}", describe(out));
    let summary = format!("csr-test: all {} checks passed", checks.len());
    assert_eq!(lines[lines.len() - 1], summary, "{}", describe(out));
    assert!(o.ends_with('\n'), "{}", describe(out));
}

#[test]
fn csr_test_passes_with_auto() {
    let out = run_61("auto", &[], &guest("csr-test.bin"));
    assert_csr_test_passes(&out);
    assert_exit(&out, 0);
    assert_no_plumbing(&out);
}

#[test]
fn csr_test_passes_with_seccomp() {
    let out = run_61("seccomp", &[], &guest("csr-test.bin"));
    assert_csr_test_passes(&out);
    assert_exit(&out, 0);
    assert_no_plumbing(&out);
}
