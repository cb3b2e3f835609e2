//! The gdb stub on KVM, with the real gdb-multiarch in batch mode against the ELF-built guests
//! guests/x86/gdb.S and gdb-spin.S (vmm runs the .bin, gdb reads the symbols from the .elf).
mod support;
use support::gdb::{run_gdb, Gdb, GdbVmm};
use support::*;

/// vmm's own limit and gdb's: generous, since six builds may share this machine.
const LIMIT: u64 = 60;

fn guest(name: &str) -> (String, std::path::PathBuf) {
    let bin = path_str(&artifact(&format!("guests/x86/{name}.bin"))).to_string();
    (bin, artifact(&format!("guests/x86/{name}.elf")))
}

/// gdb's output from the first line containing `from` on (what a command printed).
fn after<'a>(text: &'a str, from: &str) -> &'a str {
    text.find(from).map_or("", |i| &text[i..])
}

#[test]
fn gdb_stops_at_the_entry_breaks_steps_reads_and_writes_then_the_guest_ends() {
    require_kvm();
    let (bin, elf) = guest("gdb");
    let vmm = GdbVmm::spawn(&["--mode", "long", "--stats", "--gdb-wait", &bin], LIMIT);
    let commands = [
        "echo PC-AT-START\\n",
        "print/x $pc",
        "break bump",
        "continue",
        "echo REGS-AT-BREAK\\n",
        "print/x $rcx",
        "x/dw &counter",
        "stepi",
        "echo AFTER-STEP\\n",
        "info symbol $pc",
        "print/x $rdx",
        // A register and a variable written: two calls of bump from here on, starting at 41.
        "set $rcx = 2",
        "set {int}&counter = 41",
        "delete",
        "continue",
    ];
    let (status, text) = run_gdb("gdb-break", &elf, &vmm.addr, &commands, LIMIT);
    let addr = vmm.addr.clone();
    let out = vmm.wait();
    let entry = support::gdb::elf_entry(&elf);
    assert_eq!(entry, 0x1000);
    let ctx = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(after(&text, "PC-AT-START").contains(&format!("$1 = {entry:#x}")), "{}", ctx());
    assert!(after(&text, "Breakpoint 1, 0x").starts_with("Breakpoint 1, 0x0000000000001"), "{}", ctx());
    assert!(after(&text, "Breakpoint 1, 0x").contains(" in bump ()\n"), "{}", ctx());
    let regs = after(&text, "REGS-AT-BREAK");
    assert!(regs.contains("$2 = 0x5"), "rcx is the loop count: {}", ctx());
    assert!(regs.contains("<counter>:\t0"), "{}", ctx());
    let stepped = after(&text, "AFTER-STEP");
    assert!(stepped.contains("bump + 5 in section .text"), "one instruction further: {}", ctx());
    assert!(stepped.contains("$3 = 0x1234"), "the stepped instruction ran: {}", ctx());
    assert!(text.contains("[Inferior 1 (process 1) exited normally]"), "{}", ctx());
    assert_eq!(status, Some(0), "{}", ctx());
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "gdb guest done\n");
    // The guest leaves counter in RAX: 41 + the two calls the written rcx left.
    assert!(stderr(&out).contains("RAX=0x2b"), "{}", ctx());
    assert!(stderr(&out).starts_with(&format!("vmm: waiting for gdb on {addr}\n")), "{}", ctx());
}

#[test]
fn ctrl_c_in_gdb_stops_a_spinning_guest_and_kill_ends_the_run() {
    require_kvm();
    let (bin, elf) = guest("gdb-spin");
    let vmm = GdbVmm::spawn(&["--mode", "long", "--gdb-wait", &bin], LIMIT);
    // Into the loop first, so the pc is in it however soon the interrupt comes. Then gdb's
    // packet log shows when it has sent `continue`: Ctrl-C, as a user would press it.
    let commands = [
        "hbreak spin",
        "continue",
        "delete",
        "set debug remote 1",
        "continue",
        "set debug remote 0",
        "echo STOPPED\\n",
        "info symbol $pc",
        "kill",
    ];
    let gdb = Gdb::spawn("gdb-ctrl-c", &elf, &vmm.addr, &commands, LIMIT);
    gdb.wait_for_output(&["Sending packet: $vCont;c", "Sending packet: $c#"]);
    gdb.interrupt();
    let (status, text) = gdb.wait();
    let out = vmm.wait();
    let ctx = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains("Program received signal SIGINT, Interrupt."), "{}", ctx());
    let stopped = after(&text, "STOPPED");
    assert!(
        stopped.contains("spin + 3 in section") || stopped.contains("spin in section"),
        "pc in the loop: {}",
        ctx()
    );
    assert!(text.contains("[Inferior 1 (process 1) killed]"), "{}", ctx());
    assert_eq!(status, Some(0), "{}", ctx());
    // Killed from gdb: exit 1 with its line (the guest did not finish, as with --timeout).
    assert_exit(&out, 1);
    assert!(stderr(&out).ends_with("vmm: the guest was killed from gdb\n"), "{}", ctx());
}

#[test]
fn hardware_breakpoints_then_detach_let_the_guest_finish() {
    require_kvm();
    let (bin, elf) = guest("gdb");
    let vmm = GdbVmm::spawn(&["--mode", "long", "--gdb-wait", &bin], LIMIT);
    let commands = [
        "hbreak bump",
        "continue",
        "continue",
        "echo SECOND\\n",
        "x/dw &counter",
        // The guest mapped virtual ALIAS onto physical 0: gdb's addresses are virtual ...
        "echo VIRTUAL\\n",
        "x/dw (long)&ALIAS + (long)&counter",
        // ... unless `monitor phys` says otherwise: physical ALIAS is beyond guest RAM.
        "monitor phys",
        "echo PHYSICAL\\n",
        "x/dw &counter",
        "python",
        "try:",
        "    gdb.execute('x/dw (long)&ALIAS + (long)&counter')",
        "except gdb.MemoryError as e:",
        "    print('unreachable:', e)",
        "end",
        "monitor virt",
        "detach",
    ];
    let (status, text) = run_gdb("gdb-hbreak", &elf, &vmm.addr, &commands, LIMIT);
    let out = vmm.wait();
    let ctx = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains("Hardware assisted breakpoint 1 at 0x1"), "{}", ctx());
    assert_eq!(text.matches(" in bump ()\n").count(), 2, "{}", ctx());
    assert!(after(&text, "SECOND").contains("<counter>:\t1"), "{}", ctx());
    assert!(after(&text, "VIRTUAL").contains(":\t1\n"), "counter through the alias: {}", ctx());
    let physical = after(&text, "PHYSICAL");
    assert!(physical.contains("<counter>:\t1"), "{}", ctx());
    assert!(physical.contains("unreachable: Cannot access memory at address 0x1900"), "{}", ctx());
    assert!(text.contains("memory addresses are guest physical"), "{}", ctx());
    assert!(text.contains("[Inferior 1 (process 1) detached]"), "{}", ctx());
    assert_eq!(status, Some(0), "{}", ctx());
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "gdb guest done\n", "{}", ctx());
}

#[test]
fn without_gdb_wait_the_guest_runs_until_gdb_connects() {
    require_kvm();
    let (bin, elf) = guest("gdb-spin");
    let vmm = GdbVmm::spawn(&["--mode", "long", &bin], LIMIT);
    let commands = ["echo CONNECTED\\n", "info symbol $pc", "print $rax > 0", "kill"];
    let (status, text) = run_gdb("gdb-late", &elf, &vmm.addr, &commands, LIMIT);
    let addr = vmm.addr.clone();
    let out = vmm.wait();
    let ctx = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    let connected = after(&text, "CONNECTED");
    assert!(connected.contains("spin"), "stopped inside the loop: {}", ctx());
    assert!(connected.contains("$1 = 1"), "the guest ran before gdb came: {}", ctx());
    assert!(stderr(&out).starts_with(&format!("vmm: gdb can connect on {addr}\n")), "{}", ctx());
    assert_exit(&out, 1);
}

#[test]
fn bad_gdb_options_are_one_line_usage_errors() {
    let (bin, _) = guest("gdb");
    let out = run_vmm(&["run", "--gdb-wait", &bin], LIMIT);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--gdb <ADDR:PORT>"), "{}", describe(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", describe(&out));
    let out = run_vmm(&["run", "--gdb", "localhost", &bin], LIMIT);
    assert_exit(&out, 2);
    assert_eq!(stderr(&out), "vmm: bad --gdb 'localhost': give PORT or ADDR:PORT, e.g. 1234 or 127.0.0.1:1234\n");
    // A port someone else holds: one line, before the guest starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_vmm(&["run", "--mode", "long", "--gdb", &port, &bin], LIMIT);
    assert_exit(&out, 2);
    // The C library's text for EADDRINUSE (glibc and musl word it differently).
    let in_use = std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    let in_use = in_use.split(" (os error").next().unwrap();
    assert_eq!(stderr(&out), format!("vmm: --gdb 127.0.0.1:{port}: cannot listen: {in_use}\n"));
    assert_eq!(stdout(&out), "", "the guest did not run");
    let out = run_vmm(&["run", "--gdb", "1234", "--lab", &bin], LIMIT);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--gdb does not apply to --lab runs"), "{}", describe(&out));
}

#[test]
fn a_gdb_that_dies_leaves_the_guest_running_without_breakpoints() {
    require_kvm();
    let (bin, elf) = guest("gdb");
    let vmm = GdbVmm::spawn(&["--mode", "long", "--gdb-wait", &bin], LIMIT);
    // gdb is killed (SIGKILL, by its own shell) while the guest waits at a breakpoint.
    let commands = ["hbreak bump", "continue", "shell kill -9 $PPID"];
    let (status, text) = run_gdb("gdb-dies", &elf, &vmm.addr, &commands, LIMIT);
    let out = vmm.wait();
    let ctx = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains(" in bump ()"), "{}", ctx());
    assert_eq!(status, None, "gdb died of its signal: {}", ctx());
    assert!(stderr(&out).contains("vmm: gdb: gdb closed the connection; the guest runs on without it\n"), "{}", ctx());
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "gdb guest done\n", "the breakpoint went with gdb: {}", ctx());
}

#[test]
fn a_fifth_hardware_breakpoint_is_refused_in_one_line() {
    require_kvm();
    let (bin, elf) = guest("gdb");
    let vmm = GdbVmm::spawn(&["--mode", "long", "--gdb-wait", &bin], LIMIT);
    // gdb inserts breakpoints when it resumes: the fifth finds DR0-DR3 taken. The failed
    // command ends gdb's batch, and gdb detaches on its way out.
    let commands = ["hbreak bump", "hbreak *0x2000", "hbreak *0x2010", "hbreak *0x2020", "hbreak *0x2030", "continue"];
    let (status, text) = run_gdb("gdb-five", &elf, &vmm.addr, &commands, LIMIT);
    let out = vmm.wait();
    let ctx = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains("Could not insert hardware breakpoints"), "{}", ctx());
    assert!(stderr(&out).contains("\nvmm: gdb: all 4 debug registers are in use"), "{}", ctx());
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "gdb guest done\n", "{}", ctx());
}

/// One packet of gdb's remote protocol: `$data#checksum`.
fn packet(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("${data}#{sum:02x}").into_bytes()
}

/// Reads from gdb's side of the socket until `want` has come (or the socket's timeout).
fn read_until(stream: &mut std::net::TcpStream, want: &str) -> String {
    use std::io::Read;
    let mut got = String::new();
    let mut buf = [0u8; 512];
    while !got.contains(want) {
        match stream.read(&mut buf) {
            Ok(n @ 1..) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => break,
        }
    }
    got
}

#[test]
fn a_ctrl_c_in_the_same_segment_as_continue_still_stops_the_guest() {
    use std::io::Write;
    require_kvm();
    let (bin, _) = guest("gdb-spin");
    let vmm = GdbVmm::spawn(&["--mode", "long", "--gdb-wait", &bin], LIMIT);
    // What a quick user and a slow vCPU thread make of gdb's bytes: `c` and the interrupt
    // byte read by vmm at once, before the guest runs and the watcher could see the byte.
    let mut gdb = std::net::TcpStream::connect(&vmm.addr).unwrap();
    gdb.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    gdb.write_all(&packet("?")).unwrap();
    let why = read_until(&mut gdb, "#07");
    gdb.write_all(&[b"+".to_vec(), packet("c"), vec![3]].concat()).unwrap();
    let stop = read_until(&mut gdb, "#b5");
    gdb.write_all(&[b"+".to_vec(), packet("k")].concat()).unwrap();
    let killed = read_until(&mut gdb, "$OK#9a");
    let out = vmm.wait();
    assert_eq!(why, "+$T05thread:01;#07", "held at the start (SIGTRAP): {}", describe(&out));
    assert_eq!(stop, "+$S02#b5", "acknowledged, stopped by SIGINT: {}", describe(&out));
    assert_eq!(killed, "+$OK#9a", "{}", describe(&out));
    assert_exit(&out, 1);
}

#[test]
fn a_timeout_ends_a_debugged_run_and_gdb_hears_its_exit_code() {
    require_kvm();
    let (bin, elf) = guest("gdb-spin");
    let vmm = GdbVmm::spawn(&["--mode", "long", "--timeout", "1", "--gdb-wait", &bin], LIMIT);
    let (status, text) = run_gdb("gdb-timeout", &elf, &vmm.addr, &["continue"], LIMIT);
    let out = vmm.wait();
    let ctx = || format!("gdb status {status:?}, output:\n{text}\nvmm: {}", describe(&out));
    assert!(text.contains("[Inferior 1 (process 1) exited with code 01]"), "{}", ctx());
    assert_exit(&out, 1);
    assert!(stderr(&out).ends_with("vmm: guest did not finish within 1 s (--timeout)\n"), "{}", ctx());
}
