//! The paged teaching kernel (guests/riscv/src/bin/paged: Sv39, trampoline at the top of every
//! address space, upper-half kernel stacks, four U-mode tasks at 0x10000 with their own page
//! tables, timer preemption, system calls, page-fault kills) prints the same lines under
//! qemu-system-riscv64 with OpenSBI, the reference, and under `vmm run --arch riscv`.
mod support;

use std::process::{Command, Output, Stdio};
use support::{artifact, assert_exit, describe, path_str, run_vmm, stdout};

/// Wall-clock limit per run, generous for a busy machine (QEMU alone takes about a second).
const LIMIT: u64 = 150;
/// The kernel's first line: everything before it on QEMU's serial line is OpenSBI's banner.
const FIRST_LINE: &str = "paged: sv39 on, kernel identity-mapped 0x80200000..0x88000000";

fn paged_bin() -> String {
    path_str(&artifact("guests/riscv/paged.bin")).to_string()
}

/// The kernel's lines under QEMU's `virt` machine with OpenSBI fw_jump (which enters S-mode
/// at 0x80200000, where the kernel is linked), 128 MiB of RAM like URVirt's default.
fn under_qemu() -> String {
    let qemu = std::env::var("VMM_QEMU_RISCV").unwrap_or_else(|_| "qemu-system-riscv64".into());
    let firmware = std::env::var("VMM_RISCV_FIRMWARE")
        .unwrap_or_else(|_| "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin".into());
    assert!(
        std::path::Path::new(&firmware).exists(),
        "MISSING PREREQUISITE: OpenSBI firmware {firmware} (scripts/setup.sh installs opensbi)"
    );
    let out: Output = Command::new("timeout")
        .args(["--kill-after=5", &LIMIT.to_string(), &qemu])
        .args(["-M", "virt", "-m", "128M", "-smp", "1", "-nodefaults", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio", "-no-reboot", "-bios", &firmware, "-kernel", &paged_bin()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("MISSING PREREQUISITE: cannot run {qemu}: {e} (scripts/setup.sh installs it)"));
    assert_eq!(out.status.code(), Some(0), "QEMU did not power off cleanly: {}", describe(&out));
    // OpenSBI's console turns "\n" into "\r\n".
    let text = stdout(&out).replace('\r', "");
    let start = text.find(FIRST_LINE).unwrap_or_else(|| panic!("the kernel never started: {}", describe(&out)));
    text[start..].to_string()
}

/// What the kernel must print: every probe and every task outcome, in a fixed order.
fn assert_reference(lines: &str) {
    for want in [
        "PASS S load from a U page without SUM: load page fault\n",
        "PASS remap seen after sfence.vma by address, then by ASID\n",
        // More faults at one pc than the stuck-guest detector allows: TLB fills must not count.
        "PASS 10240 faulting stores from one instruction\n",
        "writer: line 1\nwriter: line 2\nwriter: write from a kernel address refused\nwriter: line 3\n",
        "spinner: spinning without system calls\nspinner: done\n",
        "task 2 reader: killed by load page fault (scause 13, stval 0xfffffffffffff000)\n",
        "task 3 scribbler: killed by store page fault (scause 15, stval 0x10010)\n",
        "PASS spinner was preempted by the timer\n",
    ] {
        assert!(lines.contains(want), "missing {want:?} in:\n{lines}");
    }
    assert!(lines.ends_with("paged: all 18 checks passed\n"), "{lines}");
    assert!(!lines.contains("FAIL"), "{lines}");
}

#[test]
fn paged_kernel_passes_under_qemu_and_opensbi() {
    assert_reference(&under_qemu());
}

fn same_lines_as_qemu(ecall: &str) {
    let reference = under_qemu();
    assert_reference(&reference);
    let out = run_vmm(&["run", "--arch", "riscv", "--ecall", ecall, "--timeout", "100", &paged_bin()], LIMIT);
    assert_eq!(stdout(&out), reference, "vmm and QEMU differ: {}", describe(&out));
    assert_exit(&out, 0);
}

#[test]
fn paged_kernel_prints_the_same_lines_as_qemu_seccomp() {
    same_lines_as_qemu("seccomp");
}

#[test]
fn paged_kernel_prints_the_same_lines_as_qemu_sud() {
    same_lines_as_qemu("sud");
}

/// `--stats` names the software TLB's work and the mode each trap came from.
#[test]
fn paged_kernel_stats_show_the_tlb_and_trap_modes() {
    let out =
        run_vmm(&["run", "--arch", "riscv", "--ecall", "sud", "--stats", "--timeout", "100", &paged_bin()], LIMIT);
    assert_exit(&out, 0);
    let err = support::stderr(&out);
    for want in ["sv39 tlb fills", "instructions interpreted", "from u-mode", "trap from s-mode", "sigsegv tlb fill"] {
        assert!(err.contains(want), "no {want:?} in --stats: {}", describe(&out));
    }
}
