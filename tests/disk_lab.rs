//! `--disk` through the lab hosts: the user's file becomes a virtio-blk disk of the lab host
//! (QEMU -drive + virtio-blk, readonly=on for ro) and the inner vmm's `--disk /dev/vmm-disk<i>`.
//! x86: the project's Linux guest, inside the x86 lab host, reads sector 0 of /dev/vda and
//! writes sector 1; the host file has that sector afterwards.
#![cfg(target_arch = "x86_64")]
mod support;

use std::path::PathBuf;
use support::*;

/// A disk whose sector s starts with the line "sector s of the vmm test disk".
fn disk(test: &str, sectors: usize) -> PathBuf {
    let mut bytes = vec![0u8; sectors * 512];
    for (s, sector) in bytes.chunks_mut(512).enumerate() {
        let line = format!("sector {s} of the vmm test disk\n");
        sector[..line.len()].copy_from_slice(line.as_bytes());
    }
    scratch_file(test, "disk.img", &bytes)
}

#[test]
fn riscv_lab_hands_each_disk_to_the_inner_vmm() {
    require_riscv_lab();
    let (a, b) = (disk("rvlab-a", 8), disk("rvlab-b", 4));
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
