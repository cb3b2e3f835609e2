//! The URVirt engine's own behaviour, beyond the set-up guests: timer interrupts (through
//! `wfi` and preempting a spinning guest), exceptions delivered to the guest's trap handler,
//! ELF kernels, and images that are bad input. Each guest is a few instructions of machine
//! code (assembled from the listing beside it) run through the real lab host: a riscv64 Linux
//! under qemu-system-riscv64, with the real seccomp filter and syscall user dispatch.
mod support;
use std::process::Output;
use support::*;

fn require_lab() {
    support::require_riscv_lab();
}

fn image(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn run_words(test: &str, ecall: &str, extra: &[&str], bytes: &[u8]) -> Output {
    run_words_env(test, ecall, extra, bytes, &[])
}

fn run_words_env(test: &str, ecall: &str, extra: &[&str], bytes: &[u8], env: &[(&str, &str)]) -> Output {
    require_lab();
    let path = scratch_file(test, "guest.bin", bytes);
    let mut args = vec!["run", "--arch", "riscv", "--ecall", ecall, "--timeout", "20"];
    args.extend_from_slice(extra);
    args.push(path_str(&path));
    run_vmm_env(&args, 90, env)
}

/// The jail test's guest needs to be told where monitor code makes a system call.
const MONITOR_ECALL: (&str, &str) = (urvirt_riscv::lab::MONITOR_ECALL_ENV, "1");

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
}

/// Arms the SBI timer 10 ms ahead with STIE and SIE set, then waits. The handler prints "T\n"
/// and powers off with SRST reason 0xE0000000 + 6 + (scause >> 63): status 7 (exit 64 + 7)
/// only if the trap was an interrupt.
///   la t0, handler; csrw stvec, t0; li t0, 0x20; csrs sie, t0; rdtime a0; li t1, 100000;
///   add a0, a0, t1; li a7, TIME; li a6, 0; ecall; csrsi sstatus, 2; loop: wfi; j loop
///   handler: csrr t2, scause; li a7, 1; li a0, 'T'; ecall; li a0, 10; ecall; srli t2, t2, 63;
///   li a7, SRST; li a6, 0; li a0, 0; li a1, 0xE0000000; add a1, a1, t2; addi a1, a1, 6; ecall
const TIMER_WFI: [u32; 27] = [
    0x00000297, 0x03828293, 0x10529073, 0x02000293, 0x1042a073, 0xc0102573, 0x031b6361, 0x951a6a03, 0x544958b7,
    0xd458889b, 0x00734801, 0x60730000, 0x00731001, 0xbff51050, 0x142023f3, 0x05134885, 0x00730540, 0x45290000,
    0x00000073, 0x03f3d393, 0x535258b7, 0x3548889b, 0x45014801, 0x0070059b, 0x959e05f6, 0x00730599, 0x00010000,
];

/// The same, but `loop: j loop` instead of `wfi`: only the host timer (SIGALRM) can get in.
const TIMER_SPIN: [u32; 26] = [
    0x00000297, 0x03428293, 0x10529073, 0x02000293, 0x1042a073, 0xc0102573, 0x031b6361, 0x951a6a03, 0x544958b7,
    0xd458889b, 0x00734801, 0x60730000, 0xa0011001, 0x142023f3, 0x05134885, 0x00730540, 0x45290000, 0x00000073,
    0x03f3d393, 0x535258b7, 0x3548889b, 0x45014801, 0x0070059b, 0x959e05f6, 0x00730599, 0x00010000,
];

/// vmm said nothing of its own: the guest handled its trap and powered off.
fn assert_only_the_lab_notice(out: &Output) {
    let err = stderr(out);
    assert!(err.lines().all(|l| l.starts_with(LAB_NOTICE)), "the guest handled it: {}", describe(out));
}

/// The exit code of a guest that powered off with status `s` (SRST reason 0xE00000ss).
const fn status(s: i32) -> i32 {
    64 + s
}

fn timer(test: &str, ecall: &str, words: &[u32]) {
    let out = run_words(test, ecall, &[], &image(words));
    assert_exit(&out, status(7));
    assert_eq!(stdout(&out), "T\n", "{}", describe(&out));
}

#[test]
fn timer_interrupt_wakes_wfi_seccomp() {
    timer("wfi-seccomp", "seccomp", &TIMER_WFI);
}

#[test]
fn timer_interrupt_wakes_wfi_sud() {
    timer("wfi-sud", "sud", &TIMER_WFI);
}

#[test]
fn timer_interrupt_preempts_spinning_guest_seccomp() {
    timer("spin-seccomp", "seccomp", &TIMER_SPIN);
}

#[test]
fn timer_interrupt_preempts_spinning_guest_sud() {
    timer("spin-sud", "sud", &TIMER_SPIN);
}

#[test]
fn stats_name_traps_by_kind() {
    let out = run_words("stats", "auto", &["--stats"], &image(&TIMER_WFI));
    assert_exit(&out, status(7));
    assert_eq!(stdout(&out), "T\n", "{}", describe(&out));
    let err = stderr(&out);
    for kind in ["sigill csrrw", "sigill csrrs", "sigill csrrsi", "sigsys sbi time", "sigsys sbi legacy-putchar"] {
        assert!(err.contains(kind), "no '{kind}' row in --stats:\n{err}");
    }
    assert!(err.contains("interrupt delivered"), "{err}");
    assert!(err.contains("urvirt: ecall trap syscall user dispatch"), "auto picks SUD on the 6.12 lab kernel:\n{err}");
}

/// stvec = handler; li t0, 0x1000; sd zero, 0(t0). The handler checks stval == 0x1000 and
/// powers off with status scause (7: store access fault, exit 71), or 99.
const STORE_FAULT: [u32; 16] = [
    0x00000297, 0x01428293, 0x10529073, 0xb0236285, 0xa0010002, 0x14202673, 0x143026f3, 0x05936305, 0x96630630,
    0x059b0066, 0x05f60070, 0x58b795b2, 0x889b5352, 0x48013548, 0x00734501, 0x00010000,
];

#[test]
fn store_outside_ram_is_an_access_fault_for_the_guest() {
    let out = run_words("store-fault", "auto", &[], &image(&STORE_FAULT));
    assert_exit(&out, status(7));
    assert_eq!(stdout(&out), "", "{}", describe(&out));
    assert_only_the_lab_notice(&out);
}

/// The same store without a trap handler: a guest failure naming the address and pc.
///   lui t0, 1; sd zero, 0(t0)
#[test]
fn store_outside_ram_without_handler_fails_clearly() {
    let out = run_words("store-nohandler", "auto", &[], &image(&[0xb0236285, 0x00010002]));
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("wrote to 0x1000") && err.contains("pc 0x80200002"), "{err}");
    assert!(err.contains("store access fault"), "{err}");
}

/// stvec = handler; t0 = sp = s0 = 0x1000 (not RAM); then the 4 bytes `insn` (one store, or a
/// compressed store and c.nop). The handler powers off with status scause.
///   la t0, handler; csrw stvec, t0; lui t0, 1; mv sp, t0; mv s0, t0; <insn>; j _start
///   handler: csrr a2, scause; li a1, 7; slli a1, a1, 29; add a1, a1, a2; li a7, SRST; li a6, 0;
///   li a0, 0; ecall
fn fault_at_0x1000(insn: u32) -> Vec<u8> {
    image(&[
        0x00000297, 0x02028293, 0x10529073, 0x000012b7, 0x00028113, 0x00028413, insn, 0xfe5ff06f, 0x14202673,
        0x00700593, 0x01d59593, 0x00c585b3, 0x535258b7, 0x3548889b, 0x00000813, 0x00000513, 0x00000073,
    ])
}

/// FP stores, AMOs and compressed stores write memory: a store/AMO access fault (scause 7),
/// not a load access fault. LR only reads (scause 5).
#[test]
fn fp_stores_amos_and_compressed_stores_fault_as_stores() {
    for (name, insn, scause) in [
        ("fsd", 0x0002b027, 7),    // fsd f0, 0(t0)
        ("amoadd", 0x00b2a02f, 7), // amoadd.w zero, a1, (t0)
        ("c-sdsp", 0x0001e02a, 7), // c.sdsp a0, 0(sp); c.nop
        ("lr", 0x1002a52f, 5),     // lr.w a0, (t0)
    ] {
        let out = run_words(&format!("fault-{name}"), "seccomp", &[], &fault_at_0x1000(insn));
        assert_eq!(out.status.code(), Some(status(scause)), "{name}: {}", describe(&out));
        assert_eq!(stdout(&out), "", "{name}: {}", describe(&out));
    }
}

/// stvec = handler; bad: csrr a0, mstatus. The handler checks sepc == bad and stval == the
/// instruction (0x30002573), then powers off with status scause (2), else 98.
const ILLEGAL_TO_GUEST: [u32; 21] = [
    0x00000297, 0x01428293, 0x10529073, 0x30002573, 0x0001a001, 0x14202673, 0x143026f3, 0x14102773, 0x06200593,
    0x00000317, 0xfe830313, 0x00671c63, 0x30002337, 0x5733031b, 0x00669663, 0x0070059b, 0x95b205f6, 0x535258b7,
    0x3548889b, 0x45014801, 0x00000073,
];

#[test]
fn illegal_instruction_goes_to_the_guest_handler() {
    let out = run_words("illegal", "seccomp", &[], &image(&ILLEGAL_TO_GUEST));
    assert_exit(&out, status(2));
    assert_eq!(stdout(&out), "", "{}", describe(&out));
    assert_only_the_lab_notice(&out);
}

/// stvec = handler; c.ebreak. The handler powers off with status scause (3: breakpoint).
const EBREAK: [u32; 11] = [
    0x00000297, 0x01028293, 0x10529073, 0xa0019002, 0x14202673, 0x0070059b, 0x95b205f6, 0x535258b7, 0x3548889b,
    0x45014801, 0x00000073,
];

#[test]
fn ebreak_is_a_breakpoint_for_the_guest() {
    let out = run_words("ebreak", "sud", &[], &image(&EBREAK));
    assert_exit(&out, status(3));
    assert_eq!(stdout(&out), "", "{}", describe(&out));
    assert_only_the_lab_notice(&out);
}

/// Prints "ELF\n" with legacy putchar, then SRST with reason 0xE0000005 (exit status 5).
const PUTC: [u32; 15] = [
    0x05134885, 0x00730450, 0x05130000, 0x007304c0, 0x05130000, 0x00730460, 0x45290000, 0x00000073, 0x535258b7,
    0x3548889b, 0x45014801, 0x0070059b, 0x059505f6, 0x00000073, 0x0001a001,
];

fn elf(machine: u16, paddr: u64, code: &[u8]) -> Vec<u8> {
    urvirt_riscv::loader::minimal_elf(machine, paddr, code, 4096)
}

#[test]
fn elf_kernel_runs_from_its_physical_address() {
    // Deliberately not at 0x80200000: the ELF's own address and entry are used.
    let out = run_words("elf", "auto", &[], &elf(243, 0x8040_0000, &image(&PUTC)));
    assert_exit(&out, status(5));
    assert_eq!(stdout(&out), "ELF\n");
}

#[test]
fn elf_for_another_machine_is_bad_input() {
    let out = run_words("elf-x86", "auto", &[], &elf(62, 0x8020_0000, &image(&PUTC)));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("machine 62"), "{}", describe(&out));
}

#[test]
fn text_file_is_bad_input() {
    let out = run_words("text", "auto", &[], b"this is a shopping list, not a kernel\n");
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("is not a RISC-V kernel: it is text"), "{}", describe(&out));
}

/// li a7, 139 (rt_sigreturn's number); ecall; then SRST with status 4 if a0 came back as
/// SBI_ERR_NOT_SUPPORTED (-2), else 9. A guest must never reach the host's rt_sigreturn.
///   li a7, 139; ecall; li t0, -2; li a1, 0xE0000009; bne a0, t0, 1f; li a1, 0xE0000004;
///   1: li a7, SRST; li a6, 0; li a0, 0; ecall; j .
const ECALL_139: [u32; 12] = [
    0x08b00893, 0x00000073, 0x059b52f9, 0x05f60070, 0x166305a5, 0x059b0055, 0x05f60070, 0x58b70591, 0x889b5352,
    0x48013548, 0x00734501, 0xa0010000,
];

fn ecall_139(test: &str, ecall: &str) {
    let out = run_words(test, ecall, &[], &image(&ECALL_139));
    assert_exit(&out, status(4));
    assert_eq!(stdout(&out), "", "{}", describe(&out));
    assert_only_the_lab_notice(&out);
}

#[test]
fn guest_ecall_with_sigreturn_number_is_just_an_sbi_call_seccomp() {
    ecall_139("sigret-seccomp", "seccomp");
}

#[test]
fn guest_ecall_with_sigreturn_number_is_just_an_sbi_call_sud() {
    ecall_139("sigret-sud", "sud");
}

/// With `--mem 16M` RAM is [0x80000000, 0x81000000). The guest writes an `ecall` into the last
/// word of RAM and jumps there with a7 = 1, a0 = 'E' (legacy putchar); the ecall must be an
/// SBI call (the kernel reports its ip as 0x81000000, one past RAM). Falling off the end of
/// RAM is then an instruction access fault: the handler prints "\n" and powers off with status
/// scause (1) if sepc = 0x81000000, else 9.
///   la t0, handler; csrw stvec, t0; li t1, 0x80fffffc; li t2, 0x73 (ecall); sw t2, 0(t1);
///   fence.i; li a7, 1; li a0, 'E'; jr t1
///   handler: li a7, 1; li a0, 10; ecall; csrr t2, scause; li a1, 0xE0000000; add a1, a1, t2;
///   csrr t3, sepc; li t4, 0x81000000; beq t3, t4, 1f; li a1, 0xE0000009;
///   1: li a7, SRST; li a6, 0; li a0, 0; ecall; j .
const ECALL_IN_LAST_WORD: [u32; 25] = [
    0x00000297, 0x02828293, 0x10529073, 0x0810031b, 0x13710362, 0x07300393, 0x00732023, 0x0000100f, 0x05134885,
    0x83020450, 0x45294885, 0x00000073, 0x142023f3, 0x0070059b, 0x959e05f6, 0x14102e73, 0x08100e9b, 0x06630ee2,
    0x059b01de, 0x05f60070, 0x58b705a5, 0x889b5352, 0x48013548, 0x00734501, 0xa0010000,
];

/// The seccomp ecall filter must trap an ecall in the last word of RAM. Without the jail
/// (--no-seccomp) nothing else would stop it reaching the host as system call 1.
#[test]
fn ecall_in_the_last_word_of_ram_is_an_sbi_call() {
    for extra in [&["--mem", "16M", "--no-seccomp"][..], &["--mem", "16M"][..]] {
        let out = run_words("last-word", "seccomp", extra, &image(&ECALL_IN_LAST_WORD));
        assert_eq!(stdout(&out), "E\n", "{extra:?}: the ecall printed 'E': {}", describe(&out));
        assert_exit(&out, status(1));
    }
}

/// A trap handler that returns to the faulting store: the same store access fault forever.
/// It prints "S\n" first.
///   la t0, handler; csrw stvec, t0; li a7, 1; li a0, 'S'; ecall; li a0, 10; ecall;
///   lui t0, 1; sd zero, 0(t0) (at 0x8020001e); j .
///   handler: sret
const STUCK: [u32; 10] = [
    0x00000297, 0x02428293, 0x10529073, 0x05134885, 0x00730530, 0x45290000, 0x00000073, 0xb0236285, 0xa0010002,
    0x10200073,
];

#[test]
fn a_guest_retrying_the_same_fault_forever_is_stopped() {
    for ecall in ["seccomp", "sud"] {
        let out = run_words(&format!("stuck-{ecall}"), ecall, &[], &image(&STUCK));
        assert_exit(&out, 1);
        assert_eq!(stdout(&out), "S\n", "{}", describe(&out));
        let err = stderr(&out);
        let want = "vmm: guest is stuck: store access fault at pc 0x8020001e (address 0x1000) 10000 times in a row";
        assert!(err.contains(want), "{ecall}: {}", describe(&out));
        // Not a wall-clock bound (a loaded machine is slow): the 20 s --timeout did not stop it.
        assert!(!err.contains("--timeout"), "stopped by the detector, not the 20 s timeout: {}", describe(&out));
    }
}

/// A guest that jumps into monitor code: it prints "J\n", scans forward from a2 for the first
/// `ecall` (73 00 00 00) and jumps to it with a7 = openat, a0 = AT_FDCWD, a1 = "/". a2 is the
/// monitor's signal-return stub, which ends in an `ecall`, handed over by a test hook
/// ([`urvirt_riscv::lab::MONITOR_ECALL_ENV`]): the dynamically linked monitor lies wherever the
/// kernel put it (above 2^38 in the lab), not at an address the guest could know. From monitor
/// code the ecall trap lets the call through; the jail must refuse it.
///   li a7, 1; li a0, 'J'; ecall; li a0, 10; ecall; mv t0, a2; li t1, 0x73;
///   1: lhu t3, 0(t0); bne t3, t1, 2f; lhu t4, 2(t0); beqz t4, 3f; 2: addi t0, t0, 2; j 1b
///   3: la a1, path; li a0, -100; li a2, 0; li a3, 0; li a7, 56; jr t0; path: .asciz "/"
const JUMP_INTO_MONITOR: [u32; 17] = [
    0x05134885, 0x007304a0, 0x45290000, 0x00000073, 0x031382b2, 0xde030730, 0x16630002, 0xde83006e, 0x84630022,
    0x0289000e, 0x0597b7fd, 0x85930000, 0x05130165, 0x4601f9c0, 0x08934681, 0x82820380, 0x0001002f,
];

#[test]
fn the_jail_refuses_a_system_call_made_from_monitor_code() {
    for ecall in ["seccomp", "sud"] {
        let out = run_words_env(&format!("jail-{ecall}"), ecall, &[], &image(&JUMP_INTO_MONITOR), &[MONITOR_ECALL]);
        assert_exit(&out, 3);
        assert_eq!(stdout(&out), "J\n", "{}", describe(&out));
        let want = "vmm: seccomp jail (urvirt guest): blocked system call openat (56)";
        assert!(stderr(&out).contains(want), "{ecall}: {}", describe(&out));
    }
}

/// `--no-seccomp` turns the jail off: the same call is not refused (what the guest does next
/// inside monitor code is undefined; it must just not be the jail's message or exit code).
#[test]
fn no_seccomp_turns_the_jail_off() {
    let out = run_words_env("jail-off", "seccomp", &["--no-seccomp"], &image(&JUMP_INTO_MONITOR), &[MONITOR_ECALL]);
    assert_ne!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(!stderr(&out).contains("seccomp jail"), "{}", describe(&out));
}
