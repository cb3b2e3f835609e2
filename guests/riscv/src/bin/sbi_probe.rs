//! Exercises the SBI: BASE, DBCN, TIME, unknown calls, then SRST with a reason.
//! One `PASS name` / `FAIL name: ...` line per check, a summary line, then SRST shutdown
//! (no reason if everything passed, system failure otherwise).
#![no_std]
#![no_main]

use riscv_guests::sbi::{self, call, SbiRet};
use riscv_guests::{print, Checks};

const UNKNOWN_EXT: usize = 0x0A5A_5A5A;

fn ok(checks: &mut Checks, name: &str, r: SbiRet) -> bool {
    checks.check(name, r.error == sbi::SUCCESS, format_args!("error {}", r.error));
    r.error == sbi::SUCCESS
}

fn base(checks: &mut Checks) {
    let r = call(sbi::EXT_BASE, sbi::BASE_GET_SPEC_VERSION, 0, 0, 0);
    // DBCN and SRST need spec 2.0 or later: major version in bits 30..24.
    let major = (r.value >> 24) & 0x7f;
    checks.check(
        "base.get_spec_version",
        r.error == sbi::SUCCESS && major >= 2,
        format_args!("error {} version {:#x}", r.error, r.value),
    );
    ok(checks, "base.get_impl_id", call(sbi::EXT_BASE, sbi::BASE_GET_IMPL_ID, 0, 0, 0));
    ok(checks, "base.get_impl_version", call(sbi::EXT_BASE, sbi::BASE_GET_IMPL_VERSION, 0, 0, 0));
    for (name, ext) in [
        ("base.probe_extension.base", sbi::EXT_BASE),
        ("base.probe_extension.time", sbi::EXT_TIME),
        ("base.probe_extension.dbcn", sbi::EXT_DBCN),
        ("base.probe_extension.srst", sbi::EXT_SRST),
    ] {
        let r = call(sbi::EXT_BASE, sbi::BASE_PROBE_EXTENSION, ext, 0, 0);
        checks.check(
            name,
            r.error == sbi::SUCCESS && r.value != 0,
            format_args!("error {} value {}", r.error, r.value),
        );
    }
    let r = call(sbi::EXT_BASE, sbi::BASE_PROBE_EXTENSION, UNKNOWN_EXT, 0, 0);
    checks.check(
        "base.probe_extension.unknown",
        r.error == sbi::SUCCESS && r.value == 0,
        format_args!("error {} value {}", r.error, r.value),
    );
    ok(checks, "base.get_mvendorid", call(sbi::EXT_BASE, sbi::BASE_GET_MVENDORID, 0, 0, 0));
    ok(checks, "base.get_marchid", call(sbi::EXT_BASE, sbi::BASE_GET_MARCHID, 0, 0, 0));
    ok(checks, "base.get_mimpid", call(sbi::EXT_BASE, sbi::BASE_GET_MIMPID, 0, 0, 0));
}

fn not_supported(checks: &mut Checks) {
    let r = call(UNKNOWN_EXT, 0, 0, 0, 0);
    checks.check(
        "unknown.extension",
        r.error == sbi::ERR_NOT_SUPPORTED,
        format_args!("error {} want {}", r.error, sbi::ERR_NOT_SUPPORTED),
    );
    let r = call(sbi::EXT_BASE, 0x7777, 0, 0, 0);
    checks.check(
        "unknown.base_function",
        r.error == sbi::ERR_NOT_SUPPORTED,
        format_args!("error {} want {}", r.error, sbi::ERR_NOT_SUPPORTED),
    );
}

fn dbcn(checks: &mut Checks) {
    // Bare mode: the buffer's address is its guest-physical address (split lo/hi per the spec).
    let line = b"dbcn: hello through write\n";
    let addr = line.as_ptr() as usize;
    let r = call(sbi::EXT_DBCN, sbi::DBCN_WRITE, line.len(), addr, 0);
    checks.check(
        "dbcn.write",
        r.error == sbi::SUCCESS && r.value == line.len(),
        format_args!("error {} wrote {} of {}", r.error, r.value, line.len()),
    );
    let mut all_ok = true;
    for &b in b"dbcn: hello through write_byte\n" {
        all_ok &= call(sbi::EXT_DBCN, sbi::DBCN_WRITE_BYTE, b as usize, 0, 0).error == sbi::SUCCESS;
    }
    checks.check("dbcn.write_byte", all_ok, format_args!("an error was returned"));
    // Reading may find no input (it never blocks): success with 0 or 1 byte is right.
    let mut buf = [0u8; 1];
    let r = call(sbi::EXT_DBCN, sbi::DBCN_READ, 1, buf.as_mut_ptr() as usize, 0);
    checks.check(
        "dbcn.read",
        r.error == sbi::SUCCESS && r.value <= 1,
        format_args!("error {} read {}", r.error, r.value),
    );
}

fn time(checks: &mut Checks) {
    // Arm the timer far in the future (no interrupt is enabled anyway), then disarm it.
    let now: u64;
    // SAFETY: reading the time CSR has no side effects.
    unsafe { core::arch::asm!("rdtime {}", out(reg) now) };
    ok(checks, "time.set_timer", call(sbi::EXT_TIME, 0, (now + 1_000_000_000) as usize, 0, 0));
    ok(checks, "time.set_timer.disarm", call(sbi::EXT_TIME, 0, usize::MAX, 0, 0));
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    print("sbi-probe\n");
    let mut checks = Checks::new();
    base(&mut checks);
    not_supported(&mut checks);
    dbcn(&mut checks);
    time(&mut checks);
    checks.finish("sbi-probe")
}
