//! A guest driving virtio-blk on this host's KVM: guests/x86/virtio.S, a flat 32-bit guest with
//! a minimal modern virtio-mmio driver, reads sector 0 of the disk at 0xd0000000 and prints it,
//! writes sector 1 and flushes; the host file is checked afterwards. Runs with the jail on, so
//! the vCPU thread's notify and the worker's I/O are inside their allowlists.
#![cfg(target_arch = "x86_64")]
mod support;

use support::*;

fn run_guest(disk_arg: &str) -> std::process::Output {
    require_kvm();
    let guest = artifact("guests/x86/virtio.bin");
    let args = ["run", "--arch", "x86", "--mode", "protected", "--timeout", "20", "--stats", "--disk", disk_arg];
    let mut all = args.to_vec();
    all.push(path_str(&guest));
    run_vmm(&all, 60)
}

#[test]
fn a_flat_guest_reads_writes_and_flushes_through_the_device() {
    let d = test_disk("x86-virtio-rw", 8);
    let out = run_guest(path_str(&d));
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), X86_VIRTIO_GUEST_LINES, "{}", describe(&out));
    // The guest's register accesses are MMIO exits to the device.
    assert!(row_count(&stderr(&out), "mmio-write virtio-blk").is_some_and(|n| n > 20), "{}", describe(&out));
    let after = std::fs::read(&d).unwrap();
    assert!(after[512..].starts_with(b"written by the flat x86 guest\n\0"), "{:?}", &after[512..560]);
    assert!(after[1024..].starts_with(b"sector 2 of the vmm test disk\n"));
}

#[test]
fn a_read_only_disk_fails_the_write_with_ioerr() {
    let d = test_disk("x86-virtio-ro", 8);
    let before = std::fs::read(&d).unwrap();
    let out = run_guest(&format!("{},ro", d.display()));
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("virtio-blk read status 0\nsector 0 of the vmm test disk\n"), "{}", describe(&out));
    assert!(stdout(&out).contains("virtio-blk write status 1\n"), "VIRTIO_BLK_S_IOERR: {}", describe(&out));
    assert_eq!(std::fs::read(&d).unwrap(), before);
}
