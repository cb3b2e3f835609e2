//! The x86 flat guests on the real /dev/kvm, through the real `vmm` binary.
#![cfg(target_arch = "x86_64")]
mod support;
use support::*;

fn guest(name: &str) -> String {
    path_str(&artifact(&format!("guests/x86/{name}"))).to_string()
}

#[test]
fn hello_prints_exactly_hello_and_exits_0() {
    require_kvm();
    let bin = guest("hello.bin");
    assert_eq!(std::fs::metadata(&bin).unwrap().len(), 25, "hello.bin must be the classic 25-byte program");
    let out = run_vmm(&["run", "--arch", "x86", &bin], 30);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "Hello\n", "{}", describe(&out));
    assert_eq!(stderr(&out), "", "{}", describe(&out));
}

/// Runs a guest with --stats and checks its line, the exit table and the final state note.
fn check_mode(mode: &str, image: &str, line: &str) {
    require_kvm();
    let bin = guest(image);
    let out = run_vmm(&["run", "--arch", "x86", "--mode", mode, "--stats", &bin], 30);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), format!("{line}\n"), "{}", describe(&out));
    let err = stderr(&out);
    let out_exits = line.len() + 1;
    assert_eq!(
        row_count(&err, "io-out debug-0xf1"),
        Some(out_exits as u64),
        "one io-out exit per character, to the debug port, expected in the stats table: {}",
        describe(&out)
    );
    assert!(err.lines().next().unwrap_or("").starts_with("kind"), "stats table header: {}", describe(&out));
    assert!(err.lines().any(|l| l.starts_with("hlt ")), "{}", describe(&out));
    let state = err.lines().find(|l| l.starts_with("final state:")).unwrap_or_else(|| panic!("{}", describe(&out)));
    assert!(state.contains("RAX=0x2a") && state.contains("mem[0x400]=42"), "{state}");
    assert!(err.contains("monitor RSS (excluding guest RAM): "), "{}", describe(&out));
}

#[test]
fn hello32_in_protected_mode_leaves_42() {
    check_mode("protected", "hello32.bin", "Hello from 32-bit protected mode");
}

#[test]
fn hello64_in_long_mode_leaves_42() {
    check_mode("long", "hello64.bin", "Hello from 64-bit long mode");
}

#[test]
fn stats_table_for_the_classic_demo() {
    require_kvm();
    let out = run_vmm(&["run", "--stats", &guest("hello.bin")], 30);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "Hello\n");
    let err = stderr(&out);
    // Exits are counted per device: the six `out`s went to the debug port 0xf1.
    assert_eq!(row_count(&err, "io-out debug-0xf1"), Some(6), "{}", describe(&out));
    assert_eq!(row_count(&err, "hlt"), Some(1), "{}", describe(&out));
    assert_eq!(row_count(&err, "total"), Some(7), "{}", describe(&out));
}

#[test]
fn info_reports_api_version_and_flavor() {
    require_kvm();
    let out = run_vmm(&["info"], 30);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let s = stdout(&out);
    assert!(s.contains("KVM API version: 12"), "{s}");
    let flavor = s.lines().find(|l| l.starts_with("host flavor: ")).unwrap_or_else(|| panic!("{s}"));
    assert!(["VMX", "SVM", "PVM"].iter().any(|f| flavor.contains(f)), "{flavor}");
    assert!(s.contains("KVM_CAP_USER_MEMORY"), "{s}");
}

#[test]
fn string_io_reaches_the_device_byte_by_byte() {
    require_kvm();
    let out = run_vmm(&["run", "--arch", "x86", "--stats", &guest("strio.bin")], 30);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // `rep outsb`, `rep outsw` (low bytes), then four bytes `rep insb` read from 0xe9.
    let mut expected = b"rep outsb: the whole string\noutsw\n".to_vec();
    expected.extend_from_slice(&[0xe9, 0xe9, 0xe9, 0xe9, b'\n']);
    assert_eq!(out.stdout, expected, "{}", describe(&out));
    // KVM reads ahead for `rep insb`: one exit carried all four accesses (count 4).
    assert_eq!(row_count(&stderr(&out), "io-in debug-0xe9"), Some(1), "{}", describe(&out));
}
