//! Bad input (exit 2) and failing guests (exit 1) on x86: each gives one clear line.
//! "No /dev/kvm" and "permission denied on /dev/kvm" cannot be staged on a machine that has
//! KVM and runs tests as root; their messages are unit-tested in vmm-x86/src/kvm.rs.
#![cfg(target_arch = "x86_64")]
mod support;
use std::time::{Duration, Instant};
use support::*;

fn guest(name: &str) -> String {
    path_str(&artifact(&format!("guests/x86/{name}"))).to_string()
}

/// Asserts the exit code and that stderr is exactly one line starting with `vmm: ` and containing `needle`.
fn assert_one_line(out: &std::process::Output, code: i32, needle: &str) {
    assert_one_line_with_stdout(out, code, needle);
    assert_eq!(stdout(out), "", "{}", describe(out));
}

/// [`assert_one_line`] for a command that also prints a report on stdout.
fn assert_one_line_with_stdout(out: &std::process::Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line expected: {}", describe(out));
    assert!(lines[0].starts_with("vmm: ") && lines[0].contains(needle), "{}", describe(out));
}

#[test]
fn missing_image() {
    let out = run_vmm(&["run", "--arch", "x86", "/nonexistent/guest.bin"], 30);
    assert_one_line(&out, 2, "cannot read image /nonexistent/guest.bin: no such file");
}

#[test]
fn unreadable_image() {
    // Root can read any file, so use something no one can read as an image: a directory.
    let dir = std::env::temp_dir();
    let out = run_vmm(&["run", "--arch", "x86", path_str(&dir)], 30);
    assert_one_line(&out, 2, &format!("image {} is not a regular file", path_str(&dir)));
}

#[test]
fn device_as_image_is_refused_without_reading() {
    // Reading /dev/zero would never end (and grow memory until then).
    let start = Instant::now();
    let out = run_vmm(&["run", "--arch", "x86", "/dev/zero"], 30);
    assert_one_line(&out, 2, "image /dev/zero is not a regular file");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn empty_image() {
    let p = scratch_file("empty", "empty.bin", b"");
    let out = run_vmm(&["run", "--arch", "x86", path_str(&p)], 30);
    assert_one_line(&out, 2, "is empty");
}

#[test]
fn image_larger_than_guest_ram() {
    require_kvm();
    let p = scratch_file("big", "big.bin", &vec![0xf4; 128 << 10]);
    let out = run_vmm(&["run", "--arch", "x86", "--mem", "64K", path_str(&p)], 30);
    assert_one_line(&out, 2, "does not fit in 64 KiB of guest RAM");
}

#[test]
fn linux_options_on_a_flat_binary_are_refused() {
    require_kvm();
    let hello = guest("hello.bin");
    let out = run_vmm(&["run", "--arch", "x86", "--initrd", "/nonexistent", &hello], 30);
    assert_one_line(&out, 2, "apply to Linux kernels");
    let out = run_vmm(&["run", "--arch", "x86", "--kernel-cmdline", "quiet", &hello], 30);
    assert_one_line(&out, 2, "is a flat binary");
}

#[test]
fn bad_mem_values() {
    let hello = guest("hello.bin");
    let out = run_vmm(&["run", "--arch", "x86", "--mem", "12Q", &hello], 30);
    assert_one_line(&out, 2, "bad size '12Q'");
    require_kvm();
    let out = run_vmm(&["run", "--arch", "x86", "--mem", "1K", &hello], 30);
    assert_one_line(&out, 2, "bad --mem 1 KiB");
    let out = run_vmm(&["run", "--arch", "x86", "--mem", "8G", &hello], 30);
    assert_one_line(&out, 2, "bad --mem 8 GiB");
}

/// The host's flavor from `vmm info`: "VMX", "SVM" or "PVM" (the first word after "host flavor: ").
fn host_flavor() -> String {
    let out = run_vmm(&["info"], 30);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let s = stdout(&out);
    let line = s.lines().find_map(|l| l.strip_prefix("host flavor: ")).unwrap_or_else(|| panic!("{s}"));
    line.split_whitespace().next().unwrap_or("").to_string()
}

/// Where a failing guest runs: on this host's KVM, or inside the x86 lab host, whose KVM is
/// SVM on every machine. Each failure is checked on both, so the SVM branch always runs.
#[derive(Clone, Copy)]
enum On {
    Host,
    Lab,
}

/// Runs `vmm run --arch x86 ARGS` there; returns the output (the lab's notice line taken off
/// stderr, after checking it came first) and the KVM flavor it ran on.
fn run_failing(on: On, args: &[&str]) -> (std::process::Output, String) {
    let mut full = vec!["run", "--arch", "x86"];
    match on {
        On::Host => {
            require_kvm();
            full.extend_from_slice(args);
            (run_vmm(&full, 30), host_flavor())
        }
        On::Lab => {
            require_x86_lab();
            full.push("--lab");
            full.extend_from_slice(args);
            let mut out = run_vmm(&full, 300);
            let err = stderr(&out);
            assert!(err.starts_with(X86_LAB_NOTICE), "no lab notice first: {}", describe(&out));
            out.stderr = err.split_once('\n').map_or("", |(_, rest)| rest).as_bytes().to_vec();
            (out, "SVM".to_string())
        }
    }
}

fn triple_fault(on: On) {
    let (out, flavor) = run_failing(on, &["--mode", "long", &guest("triple.bin")]);
    if flavor == "SVM" {
        // KVM on SVM resets the vCPU as it reports the shutdown: the fault's state is gone.
        assert_one_line(&out, 1, "guest triple fault (KVM_EXIT_SHUTDOWN); KVM reset the vCPU on shutdown");
    } else {
        assert!(flavor == "VMX" || flavor == "PVM", "unknown KVM flavor: {flavor}");
        assert_one_line(&out, 1, "guest triple fault (KVM_EXIT_SHUTDOWN) at RIP=0x1007 (long mode");
        // The diagnostic shows the faulting instruction: ud2 is 0f 0b.
        assert!(stderr(&out).contains("instruction bytes: 0f 0b"), "{}", describe(&out));
    }
}

fn unknown_port(on: On) {
    let (out, _) = run_failing(on, &[&guest("badport.bin")]);
    // The RIP reported differs by flavor (kvm-pvm: past the `out`), so only its presence is checked.
    assert_one_line(&out, 1, "guest write of unknown I/O port 0x99 (size 1) at RIP=0x");
}

fn unknown_port_string_read(on: On) {
    // `rep insb` x4 from 0x99 arrives as one exit holding four 1-byte reads (KVM reads ahead).
    let (out, _) = run_failing(on, &[&guest("badins.bin")]);
    assert_one_line(&out, 1, "guest read of unknown I/O port 0x99 (size 1) at RIP=0x100a");
}

fn emulation_failure(on: On) {
    let (out, flavor) = run_failing(on, &["--mode", "long", &guest("emufail.bin")]);
    if flavor == "PVM" {
        // kvm-pvm runs guest instructions through KVM's emulator, which lacks xrstor.
        assert_one_line(&out, 1, "KVM internal error: emulation failure (suberror 1) at RIP=0x1004");
        assert!(stderr(&out).contains("instruction bytes: 0f ae 2c 25"), "{}", describe(&out));
    } else {
        // VMX/SVM execute it: #UD (XSAVE is off) with no IDT ends in a triple fault.
        assert_one_line(&out, 1, "guest triple fault");
    }
}

fn runaway_guest(on: On) {
    let start = Instant::now();
    let (out, _) = run_failing(on, &["--timeout", "1", &guest("loop.bin")]);
    let took = start.elapsed();
    assert_one_line(&out, 1, "guest did not finish within 1 s (--timeout)");
    // The lab adds its own boot; only on this host is the stop itself timed.
    if matches!(on, On::Host) {
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "took {took:?}");
    }
}

#[test]
fn triple_fault_is_a_guest_failure() {
    triple_fault(On::Host);
}

#[test]
fn triple_fault_in_the_lab_is_reported_as_svm_does() {
    triple_fault(On::Lab);
}

#[test]
fn unknown_port_is_a_guest_failure() {
    unknown_port(On::Host);
}

#[test]
fn unknown_port_is_a_guest_failure_in_the_lab() {
    unknown_port(On::Lab);
}

#[test]
fn unknown_port_string_read_is_reported_as_one_access() {
    unknown_port_string_read(On::Host);
}

#[test]
fn unknown_port_string_read_is_one_access_in_the_lab() {
    unknown_port_string_read(On::Lab);
}

#[test]
fn emulation_failure_names_the_instruction() {
    emulation_failure(On::Host);
}

#[test]
fn xrstor_that_kvm_pvm_cannot_emulate_runs_in_the_lab() {
    emulation_failure(On::Lab);
}

#[test]
fn runaway_guest_is_stopped_by_timeout() {
    runaway_guest(On::Host);
}

#[test]
fn runaway_guest_is_stopped_by_timeout_in_the_lab() {
    runaway_guest(On::Lab);
}

#[test]
fn raw_image_larger_than_ram_is_refused_without_reading_it() {
    // A sparse 1 GiB file: reading it whole would take seconds and a GiB of memory.
    let p = scratch_file("sparse", "sparse.bin", b"");
    std::fs::File::options().write(true).open(&p).unwrap().set_len(1 << 30).unwrap();
    let start = Instant::now();
    let out = run_vmm(&["run", "--arch", "x86", "--mem", "16M", path_str(&p)], 30);
    assert_one_line(&out, 2, "is 1073741824 bytes; it does not fit in 16 MiB of guest RAM");
    assert!(start.elapsed() < Duration::from_secs(2), "refused only after {:?}", start.elapsed());
}

#[test]
fn full_stderr_is_not_a_panic() {
    require_kvm();
    let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
    let out = vmm().args(["run", "--arch", "x86", "--stats", &guest("hello.bin")]).stderr(full).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "Hello\n");
}

/// The line the seccomp jail ends vmm with when thread `thread` makes a call outside its list.
fn jail_line(thread: &str) -> String {
    format!("vmm: seccomp jail ({thread}): blocked system call openat (257); --no-seccomp turns the jail off\n")
}

#[test]
fn the_vcpu_jail_refuses_a_call_outside_its_list() {
    require_kvm();
    // The test hook makes the vCPU thread try openat once its jail is on, before the guest runs.
    let out = run_vmm_env(&["run", "--arch", "x86", &guest("hello.bin")], 30, &[("VMM_TEST_JAIL_PROBE", "vcpu")]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stderr(&out), jail_line("vcpu"), "{}", describe(&out));
    assert_eq!(stdout(&out), "", "the guest must not have run: {}", describe(&out));
}

#[test]
fn the_console_jail_refuses_a_call_outside_its_list() {
    require_kvm();
    // A guest that never ends: only the console thread's refused call can end this run.
    let args = ["run", "--arch", "x86", "--timeout", "20", &guest("loop.bin")];
    // A pipe on stdin: with /dev/null there is no console input thread to probe.
    let out = run_vmm_env_piped_stdin(&args, 30, &[("VMM_TEST_JAIL_PROBE", "console")]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stderr(&out), jail_line("console"), "{}", describe(&out));
}

#[test]
fn no_seccomp_lets_the_same_calls_through() {
    require_kvm();
    for thread in ["vcpu", "console"] {
        let args = ["run", "--arch", "x86", "--no-seccomp", &guest("hello.bin")];
        let out = run_vmm_env_piped_stdin(&args, 30, &[("VMM_TEST_JAIL_PROBE", thread)]);
        assert_eq!(out.status.code(), Some(0), "{thread}: {}", describe(&out));
        assert_eq!(stdout(&out), "Hello\n", "{thread}: {}", describe(&out));
        assert_eq!(stderr(&out), "", "{thread}: {}", describe(&out));
    }
}

/// With no /dev/kvm at all (a private mount namespace with an empty /dev), `vmm info` still
/// reports the lab, which needs no KVM, then fails in one line; and `--lab` runs a guest there.
#[test]
fn without_dev_kvm_info_reports_the_lab_and_the_lab_still_runs() {
    require_x86_lab();
    let hide_kvm = |args: &[&str]| {
        let script = "mount -t tmpfs none /dev && touch /dev/null && exec \"$0\" \"$@\"";
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script, env!("CARGO_BIN_EXE_vmm")])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run unshare (util-linux)");
        assert!(!stderr(&out).contains("unshare:"), "cannot hide /dev/kvm here: {}", describe(&out));
        out
    };
    let out = hide_kvm(&["info"]);
    assert_one_line_with_stdout(&out, 2, "no /dev/kvm: this host has no KVM");
    assert!(stdout(&out).starts_with("x86 lab host (--lab): ready"), "{}", describe(&out));
    let out = hide_kvm(&["run", "--arch", "x86", "--lab", &guest("hello.bin")]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "Hello\n", "{}", describe(&out));
}
