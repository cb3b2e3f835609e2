//! The disk part of `vmm bench`: sequential 4 KiB reads and writes through virtio-blk against
//! the same pread/pwrite done by this process directly, on the same file, in the same run.
//!
//! Through the device, each request takes the whole device path: the host-side driver
//! ([`super::driver`]) puts the chain in the split ring and writes QueueNotify (an eventfd
//! write); the worker wakes, parses the chain, preads/pwrites straight into guest RAM, fills
//! the used ring and raises the line, here an eventfd the driver sleeps on as a guest waits
//! for its interrupt; the driver acknowledges it. What is not in it: the guest's own exit to
//! the VMM for the notify and the interrupt injection (x86: one MMIO exit and an irqfd;
//! measured by the exit-cost benchmark). A backend can add what a real guest driving the
//! device measured ([`GuestFigures`]: x86's guests/x86/virtio-bench.S, exits included). The
//! file is in the page cache on every side.
use super::driver::{Driver, DATA};
use super::Version;
use crate::irq::InterruptLine;
use crate::vm::DiskConfig;
use crate::{Error, Result};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INTERRUPT_STATUS};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

const BLOCK: u64 = 4096;
/// Requests per round, each side: a 16 MiB file.
const REQUESTS: u64 = 4096;
const ROUNDS: usize = 5;

/// Seconds per 4 KiB request that a guest driving the device measured, and how it did it.
pub struct GuestFigures {
    pub label: &'static str,
    pub read: f64,
    pub write: f64,
}

/// An interrupt line that wakes a sleeping driver, as an irqfd wakes a guest.
struct EventLine {
    fd: EventFd,
    high: AtomicBool,
}

impl InterruptLine for EventLine {
    fn set_level(&self, high: bool) {
        if high && !self.high.swap(true, Ordering::SeqCst) {
            let _ = self.fd.write(1);
        } else if !high {
            self.high.store(false, Ordering::SeqCst);
        }
    }
}

/// Seconds for one pass of REQUESTS sequential 4 KiB requests of `kind` through the device.
fn device_pass(d: &mut Driver<EventLine>, kind: u32) -> Result<f64> {
    let start = Instant::now();
    for i in 0..REQUESTS {
        d.start(kind, i * (BLOCK / 512), BLOCK as u32);
        while d.completed().is_none() {
            d.line.fd.read().map_err(|e| Error::guest(format!("disk benchmark: waiting: {e}")))?;
            let status = d.read(VIRTIO_MMIO_INTERRUPT_STATUS);
            d.write(VIRTIO_MMIO_INTERRUPT_ACK, status);
        }
        if d.status() != VIRTIO_BLK_S_OK as u8 {
            return Err(Error::guest(format!("disk benchmark: request {i} failed with status {}", d.status())));
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The same requests by this process on the file.
fn host_pass(file: &std::fs::File, write: bool) -> Result<f64> {
    let mut buf = vec![0x5au8; BLOCK as usize];
    let start = Instant::now();
    for i in 0..REQUESTS {
        let r = if write { file.write_all_at(&buf, i * BLOCK) } else { file.read_exact_at(&mut buf, i * BLOCK) };
        r.map_err(|e| Error::guest(format!("disk benchmark: host I/O: {e}")))?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Runs the benchmark on a scratch file in `dir` and returns its report, with `guest`'s
/// figures beside it if there are any.
pub fn run(dir: &Path, guest: Option<GuestFigures>) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| Error::bad_input(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("disk-bench.img");
    let bad = |e: std::io::Error| Error::bad_input(format!("disk benchmark: {}: {e}", path.display()));
    std::fs::write(&path, vec![0u8; (REQUESTS * BLOCK) as usize]).map_err(bad)?;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(bad)?;
    let disk = DiskConfig { path: path.clone(), read_only: false };
    let fd = EventFd::new(libc::EFD_CLOEXEC).map_err(|e| Error::bad_input(format!("eventfd: {e}")))?;
    let line = Arc::new(EventLine { fd, high: AtomicBool::new(false) });
    let mut d = Driver::new(&disk, Version::Modern, line, false)?;
    d.init(u64::MAX, super::driver::SIZE as u32);
    d.mem.write_slice(&[0xa5; BLOCK as usize], GuestAddress(DATA)).map_err(|e| Error::guest(e.to_string()))?;

    let mut rows = Vec::new();
    for (name, kind, write) in [("read", VIRTIO_BLK_T_IN, false), ("write", VIRTIO_BLK_T_OUT, true)] {
        // A warm-up pass each (page cache, worker wake-up paths), then alternating rounds.
        device_pass(&mut d, kind)?;
        host_pass(&file, write)?;
        let (mut dev, mut host) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            dev.push(device_pass(&mut d, kind)?);
            host.push(host_pass(&file, write)?);
        }
        let by_guest = guest.as_ref().map(|g| (g.label, if write { g.write } else { g.read } * REQUESTS as f64));
        rows.push((name, crate::stats::median(dev), by_guest, crate::stats::median(host)));
    }
    drop(d);
    let _ = std::fs::remove_file(&path);

    let mib = (REQUESTS * BLOCK) as f64 / (1 << 20) as f64;
    let mut out = vec![format!(
        "disk: sequential 4 KiB requests over a {mib:.0} MiB file in the page cache; median of {ROUNDS} rounds"
    )];
    let line = |what: String, secs: f64| {
        format!("  {what:<50} {:8.1} MiB/s {:8.2} us/request", mib / secs, secs * 1e6 / REQUESTS as f64)
    };
    let ratio = |what: String, r: f64| format!("  {what:<50} {r:8.2}x as long per request");
    for (name, dev, by_guest, host) in rows {
        out.push(line(format!("{name} through virtio-blk (ring, worker, irq)"), dev));
        if let Some((label, secs)) = by_guest {
            out.push(line(format!("{name} by a guest: {label}"), secs));
        }
        out.push(line(format!("{name} by the host process (p{name})"), host));
        out.push(ratio(format!("ratio virtio-blk/host, {name}"), dev / host));
        if let Some((_, secs)) = by_guest {
            out.push(ratio(format!("ratio guest/host, {name}"), secs / host));
        }
    }
    Ok(out.join("\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_benchmark_runs_and_reports_both_sides() {
        let dir = std::env::temp_dir().join(format!("vmm-disk-bench-{}", std::process::id()));
        let guest = super::GuestFigures { label: "test", read: 1e-5, write: 2e-5 };
        let report = super::run(&dir, Some(guest)).unwrap();
        let _ = std::fs::remove_dir(&dir);
        for want in ["read through virtio-blk", "read by the host process", "write through virtio-blk", "ratio"] {
            assert!(report.contains(want), "{report}");
        }
        assert!(report.contains("write by a guest: test") && report.contains("20.00 us/request"), "{report}");
        assert_eq!(report.lines().count(), 11, "{report}");
    }
}
