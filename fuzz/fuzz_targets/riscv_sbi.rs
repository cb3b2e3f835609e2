//! The SBI dispatcher (urvirt-riscv/src/sbi.rs): a sequence of ecalls with fuzzed registers
//! on one hart, against the unit tests' FakePlatform (4 KiB of RAM at 0x80000000, console
//! input from the fuzzer).
//!
//! Invariants: no panic; only a0/a1 and the timer/IPI state change; an extension is answered
//! "not supported" exactly when `probe_extension` says it is absent; a standard call returns
//! an SBI error code; only a shutdown or a valid SRST ends the run, with the reason's status;
//! the debug console moves exactly the bytes of the named guest RAM, never outside it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use urvirt_riscv::hart::{Action, Hart};
use urvirt_riscv::platform::fake::FakePlatform;
use urvirt_riscv::sbi::{self, *};

const RAM_BASE: u64 = 0x8000_0000;

/// Extension ids: the implemented ones and a few real ones we do not offer, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Eid {
    Known(u8),
    Raw(u64),
}

const EIDS: [u64; 17] =
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, EXT_BASE, EXT_TIME, EXT_SRST, EXT_DBCN, 0x0048_534d, 0x0073_5049, 0x5246_4e43];

/// An argument: a small number, an address in or around guest RAM, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Arg {
    Small(u8),
    Ram(u16),
    Reason(u8),
    Raw(u64),
}

impl Arg {
    fn get(self) -> u64 {
        match self {
            Arg::Small(n) => n.into(),
            Arg::Ram(off) => RAM_BASE - 16 + u64::from(off % 0x1020),
            Arg::Reason(n) => SRST_REASON_URVIRT_STATUS | u64::from(n),
            Arg::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Call {
    eid: Eid,
    fid: u8,
    args: [Arg; 6],
}

#[derive(Arbitrary, Debug)]
struct Input {
    x: [u64; 32],
    sip: u64,
    input: Vec<u8>,
    calls: Vec<Call>,
}

fuzz_target!(|input: Input| {
    let mut hart = Hart::new(RAM_BASE + 0x20_0000);
    hart.x = input.x;
    hart.x[0] = 0;
    hart.csrs.sip = input.sip;
    let mut p = FakePlatform::new();
    p.input.extend(&input.input);
    for (i, b) in p.ram.iter_mut().enumerate() {
        *b = i as u8;
    }
    for call in input.calls.iter().take(32) {
        let eid = match call.eid {
            Eid::Known(i) => EIDS[i as usize % EIDS.len()],
            Eid::Raw(e) => e,
        };
        let fid = u64::from(call.fid % 8);
        hart.x[17] = eid;
        hart.x[16] = fid;
        for (r, a) in hart.x[10..16].iter_mut().zip(call.args) {
            *r = a.get();
        }
        let (before, ram_before, out_before, in_before) =
            (hart.clone(), p.ram.clone(), p.output.len(), p.input.clone());
        let r = sbi::handle(&mut hart, &mut p);

        let mut untouched = hart.clone();
        untouched.x[10] = before.x[10];
        untouched.x[11] = before.x[11];
        untouched.csrs.sip = before.csrs.sip;
        untouched.csrs.timer_deadline = before.csrs.timer_deadline;
        assert_eq!(untouched, before, "only a0, a1, sip and the timer may change");
        assert_eq!(r.kind == "sigsys sbi unsupported", !is_supported(eid), "eid {eid:#x}: kind {}", r.kind);
        let (a0, a1) = (before.x[10], before.x[11]);
        let error = hart.x[10] as i64;

        let shutdown = match (eid, fid) {
            (LEGACY_SHUTDOWN, _) => Some(0),
            (EXT_SRST, 0) if a0 & 0xffff_ffff <= 2 => reason_status(a1 & 0xffff_ffff),
            _ => None,
        };
        match shutdown {
            Some(status) => assert_eq!(r.action, Action::Shutdown(status)),
            None => assert_eq!(r.action, Action::Resume, "eid {eid:#x} fid {fid}"),
        }
        if shutdown.is_none() && eid >= EXT_BASE {
            assert!([SBI_SUCCESS, SBI_ERR_NOT_SUPPORTED, SBI_ERR_INVALID_PARAM].contains(&error), "error {error}");
        }
        if eid == LEGACY_CONSOLE_GETCHAR {
            match in_before.front() {
                Some(&b) => assert_eq!(hart.x[10], u64::from(b)),
                None => assert_eq!(hart.x[10], u64::MAX),
            }
        }
        if eid == EXT_BASE && fid == 3 {
            assert_eq!(hart.x[11], is_supported(a0) as u64);
        }

        // The debug console: exactly the bytes at [lo, lo + n) of RAM, or nothing.
        let (len, lo, hi) = (before.x[10], before.x[11], before.x[12]);
        let n = len.min(4096) as usize;
        let in_ram =
            lo.checked_sub(RAM_BASE).and_then(|off| off.checked_add(n as u64)).is_some_and(|end| end <= 0x1000);
        if eid == EXT_DBCN && fid == 0 {
            if hi == 0 && in_ram {
                assert_eq!((error, hart.x[11]), (SBI_SUCCESS, n as u64));
                let off = (lo - RAM_BASE) as usize;
                assert_eq!(&p.output[out_before..], &ram_before[off..off + n]);
            } else {
                assert_eq!(error, SBI_ERR_INVALID_PARAM);
                assert_eq!(p.output.len(), out_before, "nothing written for a refused call");
            }
        } else if eid == EXT_DBCN && fid == 1 {
            if hi == 0 && in_ram {
                let got = n.min(in_before.len());
                assert_eq!((error, hart.x[11]), (SBI_SUCCESS, got as u64));
                let off = (lo - RAM_BASE) as usize;
                let consumed: Vec<u8> = in_before.iter().take(got).copied().collect();
                assert_eq!(&p.ram[off..off + got], &consumed[..]);
                assert_eq!(&p.ram[..off], &ram_before[..off], "RAM below the buffer changed");
                assert_eq!(&p.ram[off + got..], &ram_before[off + got..], "RAM past the bytes read changed");
                assert_eq!(p.input.len(), in_before.len() - got);
            } else {
                assert_eq!(error, SBI_ERR_INVALID_PARAM);
                assert_eq!(p.input, in_before, "nothing consumed for a refused call");
            }
        }
        if !(eid == EXT_DBCN && fid == 1) {
            assert_eq!(p.ram, ram_before, "only a DBCN read writes guest RAM");
        }
        if r.action != Action::Resume {
            break;
        }
    }
});
