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
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line expected: {}", describe(out));
    assert!(lines[0].starts_with("vmm: ") && lines[0].contains(needle), "{}", describe(out));
    assert_eq!(stdout(out), "", "{}", describe(out));
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

#[test]
fn triple_fault_is_a_guest_failure() {
    require_kvm();
    let out = run_vmm(&["run", "--arch", "x86", "--mode", "long", &guest("triple.bin")], 30);
    let flavor = host_flavor();
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

#[test]
fn unknown_port_is_a_guest_failure() {
    require_kvm();
    let out = run_vmm(&["run", "--arch", "x86", &guest("badport.bin")], 30);
    assert_one_line(&out, 1, "guest write of unknown I/O port 0x99 (size 1) at RIP=0x");
}

#[test]
fn unknown_port_string_read_is_reported_as_one_access() {
    require_kvm();
    // `rep insb` x4 from 0x99 arrives as one exit holding four 1-byte reads (KVM reads ahead).
    let out = run_vmm(&["run", "--arch", "x86", &guest("badins.bin")], 30);
    assert_one_line(&out, 1, "guest read of unknown I/O port 0x99 (size 1) at RIP=0x100a");
}

#[test]
fn emulation_failure_names_the_instruction() {
    require_kvm();
    let out = run_vmm(&["run", "--arch", "x86", "--mode", "long", &guest("emufail.bin")], 30);
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        // kvm-pvm runs guest instructions through KVM's emulator, which lacks xrstor.
        assert_one_line(&out, 1, "KVM internal error: emulation failure (suberror 1) at RIP=0x1004");
        assert!(stderr(&out).contains("instruction bytes: 0f ae 2c 25"), "{}", describe(&out));
    } else {
        // VMX/SVM execute it: #UD (XSAVE is off) with no IDT ends in a triple fault.
        assert_one_line(&out, 1, "guest triple fault");
    }
}

#[test]
fn runaway_guest_is_stopped_by_timeout() {
    require_kvm();
    let start = Instant::now();
    let out = run_vmm(&["run", "--arch", "x86", "--timeout", "1", &guest("loop.bin")], 20);
    let took = start.elapsed();
    assert_one_line(&out, 1, "guest did not finish within 1 s (--timeout)");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "took {took:?}");
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
    let out = run_vmm_env(&args, 30, &[("VMM_TEST_JAIL_PROBE", "console")]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stderr(&out), jail_line("console"), "{}", describe(&out));
}

#[test]
fn no_seccomp_lets_the_same_calls_through() {
    require_kvm();
    for thread in ["vcpu", "console"] {
        let args = ["run", "--arch", "x86", "--no-seccomp", &guest("hello.bin")];
        let out = run_vmm_env(&args, 30, &[("VMM_TEST_JAIL_PROBE", thread)]);
        assert_eq!(out.status.code(), Some(0), "{thread}: {}", describe(&out));
        assert_eq!(stdout(&out), "Hello\n", "{thread}: {}", describe(&out));
        assert_eq!(stderr(&out), "", "{thread}: {}", describe(&out));
    }
}
