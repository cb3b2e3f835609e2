//! The gdb stub on URVirt, with the real gdb-multiarch in batch mode, through the real lab host
//! (a riscv64 Linux under qemu-system-riscv64, whose riscv64 vmm serves gdb over the serial
//! line to the outer vmm, which listens on loopback here). vmm runs the guests' ELF files
//! (guests/riscv/src/bin/gdb_target.rs, spin.rs) and gdb reads their symbols.
mod support;

use support::gdb::{elf_entry, run_gdb, Gdb, GdbVmm};
use support::{artifact, describe, path_str, stderr, stdout};

/// vmm's own limit and gdb's: a lab boot takes seconds; leave room for a busy machine.
const LIMIT: u64 = 180;

fn guest(name: &str) -> (String, std::path::PathBuf) {
    support::require_riscv_lab();
    let elf = artifact(&format!("guests/riscv/{name}.elf"));
    (path_str(&elf).to_string(), elf)
}

/// The value printed on gdb's line `NAME value`.
fn value(out: &str, name: &str) -> String {
    let prefix = format!("{name} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("gdb printed no {name} line: {out}"))
        .trim()
        .to_string()
}

fn hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("not hex: {text}"))
}

#[test]
fn break_read_step_write_and_run_to_the_end() {
    let (path, elf) = guest("gdb-target");
    let vmm = GdbVmm::spawn(&["--arch", "riscv", "--gdb-wait", &path], LIMIT);
    let cmds = [
        "printf \"PC0 %#lx\\n\", $pc",
        "break *gdb_tick",
        "continue",
        "printf \"PCBP %#lx\\n\", $pc",
        "printf \"TICK %#lx\\n\", (long)&gdb_tick",
        "printf \"A0 %ld\\n\", $a0",
        "printf \"COUNTER %ld\\n\", (long)GDB_COUNTER",
        "stepi",
        "printf \"PCSTEP %#lx\\n\", $pc",
        "continue",
        "printf \"A0AGAIN %ld\\n\", $a0",
        "printf \"COUNTERAGAIN %ld\\n\", (long)GDB_COUNTER",
        "set var *(long *)&GDB_COUNTER = 100",
        "set var $a0 = 20",
        "delete",
        "continue",
    ];
    let (status, text) = run_gdb("riscv-gdb-break", &elf, &vmm.addr, &cmds, LIMIT);
    let out = vmm.wait();
    let all = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert_eq!(hex(&value(&text, "PC0")), elf_entry(&elf), "stopped at the entry point: {}", all());
    assert_eq!(value(&text, "PCBP"), value(&text, "TICK"), "stopped at the breakpoint: {}", all());
    assert_eq!(value(&text, "A0"), "1", "the first call's argument: {}", all());
    assert_eq!(value(&text, "COUNTER"), "0", "{}", all());
    let (tick, stepped) = (hex(&value(&text, "TICK")), hex(&value(&text, "PCSTEP")));
    assert_eq!(stepped, tick + 4, "stepi ran the 4-byte auipc at gdb_tick: {}", all());
    assert_eq!(value(&text, "A0AGAIN"), "2", "the breakpoint was put back after the step: {}", all());
    assert_eq!(value(&text, "COUNTERAGAIN"), "1", "{}", all());
    assert!(text.contains("[Inferior 1 (process 1) exited normally]"), "gdb saw status 0: {}", all());
    // 100 and 20 written by gdb (memory and a register), then the third tick's 3; and the
    // guest's own ebreak went to its own handler, not to gdb.
    assert_eq!(stdout(&out), "gdb guest: start\ngdb guest: own ebreak handled\ngdb guest: counter 123\n", "{}", all());
    assert_eq!(out.status.code(), Some(0), "{}", all());
}

#[test]
fn ctrl_c_stops_a_spinning_guest_and_kill_ends_the_run() {
    let (path, elf) = guest("spin");
    let vmm = GdbVmm::spawn(&["--arch", "riscv", "--gdb-wait", &path], LIMIT);
    let cmds = ["continue", "echo STOPPED\\n", "info symbol $pc", "kill"];
    let gdb = Gdb::spawn("riscv-gdb-ctrl-c", &elf, &vmm.addr, &cmds, LIMIT);
    // The guest runs once it printed; then Ctrl-C, as a user at gdb's terminal would.
    vmm.wait_for_stdout("spinning forever", LIMIT);
    gdb.interrupt();
    let (status, text) = gdb.wait();
    let out = vmm.wait();
    let all = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains("Program received signal SIGINT, Interrupt."), "{}", all());
    let stopped = text.split_once("STOPPED").map_or("", |(_, s)| s);
    assert!(stopped.contains("guest_main + "), "the pc is in the spin loop: {}", all());
    assert!(text.contains("[Inferior 1 (process 1) killed]"), "{}", all());
    assert!(stderr(&out).ends_with("vmm: the guest was killed from gdb\n"), "{}", all());
    assert_eq!(out.status.code(), Some(1), "killed from gdb: {}", all());
}

#[test]
fn gdb_attaches_to_a_running_guest_and_detaches() {
    let (path, elf) = guest("spin");
    // No --gdb-wait: the guest runs at once; --timeout ends it after gdb has gone.
    let vmm = GdbVmm::spawn(&["--arch", "riscv", "--timeout", "20", &path], LIMIT);
    vmm.wait_for_stdout("spinning forever", LIMIT);
    let cmds = [
        "echo CONNECTED\\n",
        "info symbol $pc",
        "printf \"SP %#lx\\n\", $sp",
        "monitor phys",
        "printf \"FIRST %#x\\n\", *(unsigned int *)0x80200000",
        "monitor virt",
        "detach",
    ];
    let (status, text) = run_gdb("riscv-gdb-attach", &elf, &vmm.addr, &cmds, LIMIT);
    let out = vmm.wait();
    let all = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    let connected = text.split_once("CONNECTED").map_or("", |(_, s)| s);
    assert!(connected.contains("guest_main + "), "connecting stopped the guest in its loop: {}", all());
    assert!(value(&text, "SP").starts_with("0x8020"), "the guest's stack, in its RAM: {}", all());
    assert!(text.contains("memory addresses are guest physical"), "{}", all());
    let first = u32::from_le_bytes(
        std::fs::read(path_str(&artifact("guests/riscv/spin.bin"))).unwrap()[..4].try_into().unwrap(),
    );
    assert_eq!(hex(&value(&text, "FIRST")), first as u64, "guest RAM by physical address: {}", all());
    assert!(text.contains("[Inferior 1 (process 1) detached]"), "{}", all());
    // Detached, the guest spun on until --timeout.
    assert!(stderr(&out).contains("timeout"), "{}", all());
    assert_eq!(out.status.code(), Some(1), "{}", all());
}

#[test]
fn a_timeout_ends_a_debugged_run_and_gdb_hears_its_exit_code() {
    let (path, elf) = guest("spin");
    let vmm = GdbVmm::spawn(&["--arch", "riscv", "--timeout", "5", "--gdb-wait", &path], LIMIT);
    let (status, text) = run_gdb("riscv-gdb-timeout", &elf, &vmm.addr, &["continue"], LIMIT);
    let out = vmm.wait();
    let all = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains("[Inferior 1 (process 1) exited with code 01]"), "{}", all());
    assert!(stderr(&out).ends_with("vmm: guest did not finish within 5 s (--timeout)\n"), "{}", all());
    assert_eq!(out.status.code(), Some(1), "{}", all());
}

#[test]
fn a_gdb_that_dies_leaves_the_guest_running_without_breakpoints() {
    let (path, elf) = guest("gdb-target");
    let vmm = GdbVmm::spawn(&["--arch", "riscv", "--gdb-wait", &path], LIMIT);
    // gdb is killed (SIGKILL, by its own shell) while the guest waits at a breakpoint: the
    // outer vmm sees the connection end and tells the inner one over the serial line.
    let cmds = ["break *gdb_tick", "continue", "shell kill -9 $PPID"];
    let (status, text) = run_gdb("riscv-gdb-dies", &elf, &vmm.addr, &cmds, LIMIT);
    let out = vmm.wait();
    let all = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains(" in gdb_tick ()"), "{}", all());
    assert_eq!(status, None, "gdb died of its signal: {}", all());
    assert!(stderr(&out).contains("vmm: gdb: gdb closed the connection; the guest runs on without it\n"), "{}", all());
    assert_eq!(
        stdout(&out),
        "gdb guest: start\ngdb guest: own ebreak handled\ngdb guest: counter 6\n",
        "the breakpoint went with gdb: {}",
        all()
    );
    assert_eq!(out.status.code(), Some(0), "{}", all());
}

/// A breakpoint in code the engine interprets (the paged kernel's trampoline, in the Sv39
/// upper half, which no host process can map) stops for gdb like any other, steps, and once
/// deleted the kernel runs on to its usual end: the guest never sees gdb's ebreak.
#[test]
fn a_breakpoint_in_interpreted_code_stops_for_gdb() {
    let (path, elf) = guest("paged");
    let vmm = GdbVmm::spawn(&["--arch", "riscv", "--gdb-wait", &path], LIMIT);
    let cmds = [
        // Sv39 is on and the tasks are made, none has run yet (the symbol has no debug info
        // and its name ends in a hash: rbreak finds it).
        "rbreak ^paged::trap::start::",
        "continue",
        "delete",
        "break *0xfffffffffffff000",
        "continue",
        "printf \"PCBP %#lx\\n\", $pc",
        "stepi",
        "printf \"PCSTEP %#lx\\n\", $pc",
        "delete",
        "continue",
    ];
    let (status, text) = run_gdb("riscv-gdb-interpreted", &elf, &vmm.addr, &cmds, LIMIT);
    let out = vmm.wait();
    let all = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert_eq!(value(&text, "PCBP"), "0xfffffffffffff000", "stopped at the trampoline: {}", all());
    assert_eq!(value(&text, "PCSTEP"), "0xfffffffffffff004", "stepi ran its csrrw: {}", all());
    assert!(text.contains("[Inferior 1 (process 1) exited normally]"), "{}", all());
    let lines = stdout(&out);
    assert!(lines.ends_with("paged: all 18 checks passed\n") && !lines.contains("FAIL"), "{}", all());
    assert_eq!(out.status.code(), Some(0), "{}", all());
}
