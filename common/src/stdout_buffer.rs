//! Guest console output to stdout, coalesced: a guest prints one byte per exit (a 16550's THR,
//! an SBI putchar), and one `write` per byte made a Linux boot's console cost more than the
//! rest of the boot in the x86 lab host (6,479 serial writes at 438 µs each, 2.8 s of an 11.9 s
//! boot; with `quiet` it took 5.2 s). Bytes now wait at most [`WINDOW`] (or until
//! [`FLUSH_AT`] of them are queued), then go out in one write, in order.
//!
//! A flusher thread does the waiting; [`start`] runs it (for `vmm run`). Until then, and for
//! any other command, output goes straight to stdout. Every way out of a run flushes first:
//! main after the run, the panic hook, and the jail's report (which may run in a signal
//! handler, so it only flushes if nobody holds the queue).
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The longest a byte waits: far below what a person typing at a shell can notice.
const WINDOW: Duration = Duration::from_millis(5);
/// Queued bytes that go out at once, without waiting for the window.
const FLUSH_AT: usize = 16 << 10;

/// Bytes waiting. Its capacity is reserved at [`start`]: a push from a signal handler (URVirt's
/// SBI putchar) must not allocate.
static QUEUE: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static QUEUED: Condvar = Condvar::new();
/// The bytes being written, swapped with the queue (so neither ever reallocates). Its lock
/// is held while they are written, so the flusher and a direct flush never reorder output.
static WRITING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// The flusher runs (jailed if asked): pushes queue for it.
static STARTED: AtomicBool = AtomicBool::new(false);

/// What the flusher thread may call once its jail is on: waiting (futex, nanosleep, the
/// clock), writing, the allocator, and ending the thread.
const JAIL: &[i64] = &[
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep, // musl's sleep (std before Rust 1.95 calls nanosleep())
    libc::SYS_clock_gettime,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
];

/// Starts the flusher thread (once), under its seccomp allowlist if `jail`. Returns at once:
/// the guest's first instruction need not wait for it. Until the thread is ready (or for good,
/// if its jail cannot go on, which is then said in one line) output goes straight to stdout.
pub fn start(jail: bool) -> crate::Result<()> {
    static SPAWNED: AtomicBool = AtomicBool::new(false);
    if SPAWNED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    QUEUE.lock().unwrap_or_else(|e| e.into_inner()).reserve(2 * FLUSH_AT);
    WRITING.lock().unwrap_or_else(|e| e.into_inner()).reserve(2 * FLUSH_AT);
    std::thread::Builder::new()
        .name("console-out".into())
        .spawn(move || {
            crate::console::block_async_signals_on_this_thread();
            if jail {
                if let Err(e) = crate::jail::apply("console output", JAIL) {
                    crate::console::say(&format!("vmm: {e}; guest output is written unbuffered"));
                    return;
                }
            }
            STARTED.store(true, Ordering::SeqCst);
            flusher();
        })
        .map_err(|e| crate::Error::bad_input(format!("cannot start the console output thread: {e}")))?;
    Ok(())
}

/// Queues `bytes` for stdout (or writes them now if no flusher runs).
pub fn push(bytes: &[u8]) {
    if !STARTED.load(Ordering::SeqCst) {
        write_out(bytes);
        return;
    }
    if bytes.len() >= FLUSH_AT {
        // One large write (an SBI debug-console write may name all of guest RAM): what is
        // queued goes first, then these bytes straight from the guest, never through the queue,
        // which must keep its reserved size.
        let mut writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *writing, &mut *QUEUE.lock().unwrap_or_else(|e| e.into_inner()));
        write_out(&writing);
        writing.clear();
        write_out(bytes);
        return;
    }
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    if q.is_empty() {
        QUEUED.notify_one();
    }
    q.extend_from_slice(bytes);
    if q.len() >= FLUSH_AT {
        drop(q);
        flush();
    }
}

/// Writes out everything queued, now.
pub fn flush() {
    let mut writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::swap(&mut *writing, &mut *QUEUE.lock().unwrap_or_else(|e| e.into_inner()));
    write_out(&writing);
    writing.clear();
}

/// [`flush`] for a signal handler: skipped if the queue or the writer is held (perhaps by the
/// very code the signal interrupted), never waits.
pub fn try_flush() {
    let Ok(mut writing) = WRITING.try_lock() else { return };
    let Ok(mut queue) = QUEUE.try_lock() else { return };
    std::mem::swap(&mut *writing, &mut *queue);
    drop(queue);
    write_out(&writing);
    writing.clear();
}

fn flusher() {
    loop {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        while q.is_empty() {
            q = QUEUED.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        drop(q);
        // Let the rest of the line (or the burst) arrive, then send it as one write.
        std::thread::sleep(WINDOW);
        flush();
    }
}

fn write_out(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not kill the guest: drop the bytes.
    let _ = out.write_all(bytes).and_then(|_| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_bytes_go_out_on_a_flush_or_by_the_flusher() {
        start(false).unwrap();
        while !STARTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        push(b"one ");
        push(b"two");
        flush();
        assert!(QUEUE.lock().unwrap().is_empty(), "a flush sends everything at once");
        push(b"three");
        // The flusher sends it within the window without being asked.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !QUEUE.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the flusher never wrote");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A write larger than the queue goes around it: the queue keeps its reserved size.
        push(&vec![b'.'; 4 * FLUSH_AT]);
        let queue_room = QUEUE.lock().unwrap().capacity();
        assert!((2 * FLUSH_AT..4 * FLUSH_AT).contains(&queue_room), "the queue's room: {queue_room}");
    }
}
