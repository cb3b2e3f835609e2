//! `--disk FILE[,ro]` on the real vmm binary: bad disks are one line and exit 2 on both
//! architectures (before any VM or lab host is built), and a good one is accepted.
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use support::*;

fn hello(arch: &str) -> String {
    let name = if arch == "x86" { "guests/x86/hello.bin" } else { "guests/riscv/hello.bin" };
    path_str(&artifact(name)).to_string()
}

/// Runs `vmm run --arch ARCH <args> <hello>` and checks it failed as bad input with exactly one
/// line on stderr, which starts with `want`.
fn assert_bad_disk(arch: &str, args: &[&str], want: &str) {
    let image = hello(arch);
    let mut all = vec!["run", "--arch", arch];
    all.extend_from_slice(args);
    all.push(&image);
    let out = run_vmm(&all, 60);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {}", describe(&out));
    assert!(err.starts_with(want), "want {want:?}: {}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
}

#[test]
fn missing_file_and_directory_are_bad_input() {
    let dir = scratch_file("disk-dir", "placeholder", b"").parent().unwrap().to_path_buf();
    for arch in ["x86", "riscv"] {
        assert_bad_disk(arch, &["--disk", "/nonexistent/disk.img"], "vmm: --disk /nonexistent/disk.img: ");
        assert_bad_disk(
            arch,
            &["--disk", path_str(&dir)],
            &format!("vmm: --disk {}: is a directory, not a disk image", dir.display()),
        );
        // The second of two disks is checked too.
        let good = scratch_file("disk-two", "good.img", &[0u8; 4096]);
        assert_bad_disk(
            arch,
            &["--disk", path_str(&good), "--disk", "/nonexistent/b.img,ro"],
            "vmm: --disk /nonexistent/b.img: ",
        );
    }
}

#[test]
fn bad_option_syntax_is_bad_input() {
    let disk = scratch_file("disk-syntax", "d.img", &[0u8; 4096]);
    let d = path_str(&disk);
    for arch in ["x86", "riscv"] {
        for (arg, want) in [
            (format!("{d},rw2"), format!("vmm: bad --disk '{d},rw2': unknown option 'rw2'")),
            (format!("{d},"), format!("vmm: bad --disk '{d},': unknown option ''")),
            (",ro".to_string(), "vmm: bad --disk ',ro': give FILE or FILE,ro".to_string()),
        ] {
            assert_bad_disk(arch, &["--disk", &arg], &want);
        }
    }
}

#[test]
fn an_unreadable_file_is_bad_input() {
    let disk = scratch_file("disk-unreadable", "secret.img", &[0u8; 4096]);
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything: run vmm as nobody then (everything else it needs is world-readable).
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    for (arch, flag) in [("x86", ""), ("riscv", ""), ("x86", ",ro")] {
        let arg = format!("{}{flag}", disk.display());
        let mut cmd = vmm();
        cmd.args(["run", "--arch", arch, "--disk", &arg, &hello(arch)]);
        if root {
            // SAFETY: setgid/setuid between fork and exec, async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let out = cmd.output().unwrap();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert_eq!(err.trim_end(), format!("vmm: --disk {}: permission denied", disk.display()), "{}", describe(&out));
    }
}

#[test]
fn a_disk_on_a_flat_x86_guest_is_accepted_and_left_alone() {
    require_kvm();
    let bytes: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
    let disk = scratch_file("disk-flat", "d.img", &bytes);
    let image = hello("x86");
    let arg = format!("{},ro", disk.display());
    let out = run_vmm(&["run", "--arch", "x86", "--disk", path_str(&disk), "--disk", &arg, &image], 60);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).trim_end(), "Hello", "{}", describe(&out));
    assert_eq!(std::fs::read(&disk).unwrap(), bytes);
}
