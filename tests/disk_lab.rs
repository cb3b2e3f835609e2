//! `--disk` through the lab hosts: the user's file becomes a virtio-blk disk of the lab host
//! (QEMU -drive + virtio-blk, readonly=on for ro) and the inner vmm's `--disk /dev/vmm-disk<i>`.
//! x86: the project's Linux guest, inside the x86 lab host, reads sector 0 of /dev/vda and
//! writes sector 1; the host file has that sector afterwards.
#![cfg(target_arch = "x86_64")]
mod support;

use std::path::PathBuf;
use support::*;

#[test]
fn riscv_lab_hands_each_disk_to_the_inner_vmm() {
    require_riscv_lab();
    let (a, b) = (test_disk("rvlab-a", 8), test_disk("rvlab-b", 4));
    let before = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let hello = artifact("guests/riscv/hello.bin");
    let ro = format!("{},ro", b.display());
    // The inner vmm opens /dev/vmm-disk0 and /dev/vmm-disk1 itself: a disk missing in the lab
    // host would fail the run with exit 2 naming it.
    let out = run_vmm(&["run", "--arch", "riscv", "--disk", path_str(&a), "--disk", &ro, path_str(&hello)], 120);
    assert_exit(&out, 0);
    assert_no_plumbing(&out);
    assert_eq!(stdout(&out).trim_end(), "I wrote this with SBI calls", "{}", describe(&out));
    assert_eq!((std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()), before);
}

#[test]
fn x86_lab_hands_the_disk_to_a_flat_guest() {
    // The flat virtio guest inside the x86 lab host: its reads and writes go guest -> inner
    // vmm -> the lab host's /dev/vda (virtio-blk-pci) -> QEMU -> the user's file.
    require_x86_lab();
    let a = test_disk("x86lab-flat", 8);
    let guest = artifact("guests/x86/virtio.bin");
    let args = ["run", "--arch", "x86", "--lab", "--mode", "protected", "--timeout", "60", "--disk", path_str(&a)];
    let mut all = args.to_vec();
    all.push(path_str(&guest));
    let out = run_vmm(&all, 300);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), X86_VIRTIO_GUEST_LINES, "{}", describe(&out));
    let after = std::fs::read(&a).unwrap();
    assert!(after[512..].starts_with(b"written by the flat x86 guest\n\0"), "{:?}", &after[512..560]);
}

/// An initramfs for the project's x86 Linux guest whose /init reports what it finds on its
/// two disks, writes sector 1 of the first (and tries the read-only second), then ends the VM.
fn disk_initramfs(test: &str) -> PathBuf {
    let init = r#"#!/bin/busybox sh
b=/bin/busybox
$b mount -t devtmpfs devtmpfs /dev
$b mount -t sysfs sysfs /sys
echo "DISK vda sectors=$($b cat /sys/block/vda/size) ro=$($b cat /sys/block/vda/ro)"
echo "DISK vdb sectors=$($b cat /sys/block/vdb/size) ro=$($b cat /sys/block/vdb/ro)"
echo "DISK read: $($b dd if=/dev/vda bs=512 count=1 2>/dev/null | $b head -n 1)"
echo "written by the x86 guest" | $b dd of=/dev/vda bs=512 seek=1 conv=sync,fsync 2>/dev/null && echo "DISK wrote vda"
echo "not allowed" | $b dd of=/dev/vdb bs=512 seek=1 conv=sync,fsync 2>/dev/null || echo "DISK vdb refused the write"
$b reboot -f
"#;
    let mut cpio = lab::cpio::Cpio::new();
    for dir in ["dev", "sys", "proc", "bin"] {
        cpio.dir(dir);
    }
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.file(
        "bin/busybox",
        0o755,
        &std::fs::read("/bin/busybox").expect("MISSING PREREQUISITE: /bin/busybox (busybox-static)"),
    );
    cpio.file("init", 0o755, init.as_bytes());
    scratch_file(test, "disk-init.cpio", &cpio.finish())
}

#[test]
fn x86_linux_in_the_lab_reads_and_writes_its_disks() {
    require_x86_lab();
    let kernel = artifact("guests/x86/linux/bzImage");
    let initrd = disk_initramfs("x86lab-disk");
    let (a, b) = (test_disk("x86lab-a", 64), test_disk("x86lab-b", 16));
    let b_before = std::fs::read(&b).unwrap();
    let ro = format!("{},ro", b.display());
    let args = [
        "run",
        "--arch",
        "x86",
        "--lab",
        "--timeout",
        "240",
        "--initrd",
        path_str(&initrd),
        "--disk",
        path_str(&a),
        "--disk",
        &ro,
        path_str(&kernel),
    ];
    let out = run_vmm(&args, 400);
    assert_exit(&out, 0);
    let so = stdout(&out);
    for want in [
        "DISK vda sectors=64 ro=0",
        "DISK vdb sectors=16 ro=1",
        "DISK read: sector 0 of the vmm test disk",
        "DISK wrote vda",
        "DISK vdb refused the write",
    ] {
        assert!(so.contains(want), "{want:?} missing: {}", describe(&out));
    }
    let after = std::fs::read(&a).unwrap();
    assert!(after[512..].starts_with(b"written by the x86 guest\n\0"), "sector 1: {:?}", &after[512..560]);
    assert!(after[1024..].starts_with(b"sector 2 of the vmm test disk"), "sector 2 untouched");
    assert_eq!(std::fs::read(&b).unwrap(), b_before, "the ro disk is unchanged");
}
