//! `--mem-file PATH [--mem-share]` with real files: the guest's pattern lands in the file (x86
//! on /dev/kvm, RISC-V in the real lab host), and each bad file gets its one line and exit 2:
//! a directory, a character device, a file too small that cannot grow (procfs), a read-only
//! mount (a tmpfs mounted ro in a private mount namespace) and a file system that cannot map
//! a file shared and writable (a real FUSE file system: bindfs with -o direct_io).
#[cfg(target_arch = "x86_64")]
mod pty;
mod support;
use std::path::Path;
use std::process::Output;
use support::*;

/// What guests/*/pattern writes: bytes 0..=255, then "PATTERN!".
fn expected_pattern() -> Vec<u8> {
    let mut p: Vec<u8> = (0..=255u8).collect();
    p.extend_from_slice(b"PATTERN!");
    p
}

fn at(file: &Path, offset: usize, len: usize) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes.len() >= offset + len, "the file holds {} bytes", bytes.len());
    bytes[offset..offset + len].to_vec()
}

fn scratch_dir(test: &str) -> std::path::PathBuf {
    let dir = scratch_file(test, "x", b"").parent().unwrap().to_path_buf();
    std::fs::remove_file(dir.join("x")).unwrap();
    dir
}

/// The run failed as bad input with exactly one line that names `why` and the file system.
fn assert_refused(out: &Output, path: &str, why: &str, fs: &str) {
    assert_exit(out, 2);
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {}", describe(out));
    assert!(err.starts_with(&format!("vmm: --mem-file {path}: {why}")), "{}", describe(out));
    assert!(err.trim_end().ends_with(&format!("({fs})")), "names the file system {fs}: {}", describe(out));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_pattern_lands_in_the_shared_file() {
    require_kvm();
    let ram = scratch_dir("x86-pattern").join("ram.img");
    let guest = artifact("guests/x86/pattern.bin");
    let out = run_vmm(&["run", "--mem", "64K", "--mem-file", path_str(&ram), "--mem-share", path_str(&guest)], 30);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "ok\n");
    assert_eq!(std::fs::metadata(&ram).unwrap().len(), 64 << 10, "created at the RAM size");
    assert_eq!(at(&ram, 0x8000, 264), expected_pattern());
    // The image itself is in RAM too, at 0x1000, where vmm loaded it.
    assert_eq!(at(&ram, 0x1000, 4), std::fs::read(&guest).unwrap()[..4].to_vec());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_without_mem_share_the_file_is_only_read() {
    require_kvm();
    let ram = scratch_file("x86-private", "ram.img", &vec![0xaa; 64 << 10]);
    let guest = artifact("guests/x86/pattern.bin");
    let out = run_vmm(&["run", "--mem", "64K", "--mem-file", path_str(&ram), path_str(&guest)], 30);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "ok\n");
    assert!(std::fs::read(&ram).unwrap().iter().all(|&b| b == 0xaa), "the guest's writes stay private");
    // A file smaller than RAM is never grown without --mem-share.
    let out = run_vmm(&["run", "--mem", "128K", "--mem-file", path_str(&ram), path_str(&guest)], 30);
    assert_refused(&out, path_str(&ram), "the file holds 64 KiB, less than the 128 KiB of guest RAM", &fs_type(&ram));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_a_guest_that_times_out_keeps_what_it_wrote() {
    require_kvm();
    // pattern.bin ends with hlt; --timeout with loop.bin shows the failure path: the loader's
    // copy of the image at 0x1000 is in the file although the run failed.
    let ram = scratch_dir("x86-timeout").join("ram.img");
    let guest = artifact("guests/x86/loop.bin");
    let out = run_vmm(
        &["run", "--mem", "64K", "--timeout", "0.5", "--mem-file", path_str(&ram), "--mem-share", path_str(&guest)],
        30,
    );
    assert_exit(&out, 1);
    let image = std::fs::read(&guest).unwrap();
    assert_eq!(at(&ram, 0x1000, image.len()), image);
}

#[test]
fn bad_files_get_one_line_naming_reason_and_file_system() {
    let guest = path_str(&artifact("guests/x86/pattern.bin")).to_string();
    let run = |file: &str| run_vmm(&["run", "--mem", "64K", "--mem-file", file, "--mem-share", &guest], 30);
    let dir = scratch_dir("bad-files");
    let fs = fs_type(&dir);
    assert_refused(&run(path_str(&dir)), path_str(&dir), "is a directory, not a file", &fs);
    assert_refused(&run("/dev/zero"), "/dev/zero", "is a character device", &fs_type(Path::new("/dev")));
    assert_refused(
        &run("/proc/sys/kernel/hostname"),
        "/proc/sys/kernel/hostname",
        "too small and cannot be resized",
        "proc",
    );
    // Through the RISC-V lab host the same checks run before anything boots.
    let rv = path_str(&artifact("guests/riscv/pattern.bin")).to_string();
    let out = run_vmm(&["run", "--arch", "riscv", "--mem-file", path_str(&dir), "--mem-share", &rv], 30);
    assert_refused(&out, path_str(&dir), "is a directory", &fs);
}

/// The name mem_file gives the file system at `p`, from `stat -f`.
fn fs_type(p: &Path) -> String {
    let out = std::process::Command::new("stat").args(["-f", "-c", "%t"]).arg(p).output().unwrap();
    let magic = u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).unwrap();
    common::mem_file::fs_name(magic)
}

/// Runs `script` with vmm as $0 in a private mount namespace (mounts vanish with it).
fn in_mount_namespace(script: &str, args: &[&str]) -> Output {
    let out = std::process::Command::new("timeout")
        .args(["60", "unshare", "--mount", "--propagation", "private", "sh", "-c", script, env!("CARGO_BIN_EXE_vmm")])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    assert!(!stderr(&out).contains("unshare:"), "cannot make a mount namespace here: {}", describe(&out));
    out
}

#[test]
fn a_read_only_mount_is_refused() {
    let mnt = scratch_dir("ro-mount");
    let guest = path_str(&artifact("guests/x86/pattern.bin")).to_string();
    let script = r#"mount -t tmpfs -o ro tmpfs "$1" || exit 99; shift; exec "$0" "$@""#;
    let file = format!("{}/ram.img", path_str(&mnt));
    let out = in_mount_namespace(
        script,
        &[path_str(&mnt), "run", "--mem", "64K", "--mem-file", &file, "--mem-share", &guest],
    );
    assert_refused(&out, &file, "is on a read-only mount", "tmpfs");
}

#[test]
fn a_fuse_file_system_that_cannot_map_shared_is_refused() {
    let bindfs = std::process::Command::new("bindfs").arg("--version").output();
    assert!(
        bindfs.is_ok_and(|o| o.status.success()),
        "MISSING PREREQUISITE: bindfs (scripts/install-deps.sh installs it) for a real FUSE file system"
    );
    let dir = scratch_dir("fuse");
    let (src, mnt) = (dir.join("src"), dir.join("mnt"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let guest = path_str(&artifact("guests/x86/pattern.bin")).to_string();
    let file = format!("{}/ram.img", path_str(&mnt));
    // direct_io: FUSE then refuses shared writable mappings (no FUSE_DIRECT_IO_ALLOW_MMAP).
    let script =
        r#"bindfs -o direct_io "$1" "$2" || exit 99; m="$2"; shift 2; "$0" "$@"; rc=$?; fusermount -u "$m"; exit $rc"#;
    let out = in_mount_namespace(
        script,
        &[path_str(&src), path_str(&mnt), "run", "--mem-file", &file, "--mem-share", "--mem", "64K", &guest],
    );
    assert_refused(&out, &file, "the file system cannot map it shared and writable (mmap: ", "fuse");
}

#[test]
fn riscv_pattern_lands_in_the_shared_file() {
    require_riscv_lab();
    let ram = scratch_dir("riscv-pattern").join("ram.img");
    let guest = artifact("guests/riscv/pattern.bin");
    let out = run_vmm(
        &["run", "--arch", "riscv", "--mem", "16M", "--mem-file", path_str(&ram), "--mem-share", path_str(&guest)],
        180,
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "ok\n");
    assert_eq!(std::fs::metadata(&ram).unwrap().len(), 16 << 20);
    assert_eq!(at(&ram, 0x80_0000, 264), expected_pattern(), "at guest physical 0x8080_0000");
}

#[test]
fn riscv_without_mem_share_the_file_is_only_read() {
    require_riscv_lab();
    let ram = scratch_file("riscv-private", "ram.img", &vec![0xaa; 16 << 20]);
    let guest = artifact("guests/riscv/pattern.bin");
    let out = run_vmm(&["run", "--arch", "riscv", "--mem", "16M", "--mem-file", path_str(&ram), path_str(&guest)], 180);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "ok\n");
    assert!(std::fs::read(&ram).unwrap().iter().all(|&b| b == 0xaa), "the guest's writes stay private");
}

#[test]
fn mem_options_that_cannot_work_are_refused_before_anything_runs() {
    let guest = path_str(&artifact("guests/x86/pattern.bin")).to_string();
    let out = run_vmm(&["run", "--mem-share", &guest], 30);
    assert_exit(&out, 2);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", describe(&out));
    let dir = scratch_dir("riscv-disk-and-mem");
    let (ram, disk) = (dir.join("ram.img"), test_disk("riscv-disk-and-mem", 8));
    let rv = path_str(&artifact("guests/riscv/pattern.bin")).to_string();
    let out = run_vmm(
        &["run", "--arch", "riscv", "--mem-file", path_str(&ram), "--mem-share", "--disk", path_str(&disk), &rv],
        30,
    );
    assert_exit(&out, 2);
    assert_eq!(
        stderr(&out),
        "vmm: --disk with --mem-file --mem-share is not supported through the RISC-V lab host yet\n",
        "{}",
        describe(&out)
    );
}

/// Ctrl-A x through the RISC-V lab host, the longest way for the guest's RAM to reach the
/// file (the lab's block device, init's sync, QEMU): the loaded image is in the file, and
/// the trace of the run came back too.
#[cfg(target_arch = "x86_64")]
#[test]
fn riscv_ctrl_a_x_keeps_ram_and_trace() {
    use std::io::{Read, Write};
    use std::time::Duration;
    require_riscv_lab();
    let (mut master, slave) = pty::pty();
    let dir = scratch_dir("riscv-ctrl-a-x");
    let (ram, trace) = (dir.join("ram.img"), dir.join("run.trace"));
    let spin = artifact("guests/riscv/spin.bin");
    let args = ["run", "--arch", "riscv", "--timeout", "60", "--mem", "16M", "--mem-share", "--trace"];
    let mut child = vmm()
        .args(args)
        .arg(&trace)
        .arg("--mem-file")
        .arg(&ram)
        .arg(&spin)
        .stdin(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stdout(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn vmm");
    pty::wait_for_raw(&slave, &mut child);
    let mut seen = Vec::new();
    // Read only what is there, so a vmm that ends (its --timeout is the hang limit) is seen.
    while !String::from_utf8_lossy(&seen).contains("spinning forever") {
        let mut fd = libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&master), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut fd, 1, 200) } > 0 {
            let mut buf = [0u8; 256];
            let n = master.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
        } else {
            let ended = child.try_wait().unwrap();
            assert!(
                ended.is_none(),
                "vmm ended ({ended:?}) before the guest printed: {}",
                String::from_utf8_lossy(&seen)
            );
        }
    }
    master.write_all(&[0x01, b'x']).unwrap();
    let status = pty::wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "Ctrl-A x is a normal quit");
    let image = std::fs::read(&spin).unwrap();
    assert_eq!(at(&ram, 0x20_0000, image.len()), image, "the guest's RAM (its image at 0x8020_0000) is in the file");
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(text.lines().any(|l| l.contains("\tsigsys sbi ")), "the trace came back: {text}");
}

/// The x86 lab host carries both files the same way: the pattern reaches the user's file, and
/// the trace of the inner run comes back.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_lab_pattern_and_trace_come_back() {
    require_x86_lab();
    let dir = scratch_dir("x86-lab");
    let (ram, trace) = (dir.join("ram.img"), dir.join("run.trace"));
    let guest = artifact("guests/x86/pattern.bin");
    let out = run_vmm(
        &[
            "run",
            "--lab",
            "--mem",
            "64K",
            "--trace",
            path_str(&trace),
            "--mem-file",
            path_str(&ram),
            "--mem-share",
            path_str(&guest),
        ],
        300,
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "ok\n");
    assert_eq!(at(&ram, 0x8000, 264), expected_pattern());
    let text = std::fs::read_to_string(&trace).unwrap();
    let outs = text.lines().filter(|l| l.contains("\tio-out debug-0xf1\tport=0xf1\t")).count();
    assert_eq!(outs, 3, "one line per byte of \"ok\\n\": {text}");
}
