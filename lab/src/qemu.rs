//! Boots a lab host under QEMU and turns its serial line back into the inner vmm's stdout,
//! stderr and exit status ([`super::frame`]). Boot noise (firmware banners, kernel messages) is
//! never shown unless the boot fails. qemu is killed on every way out, including when we are
//! killed ourselves (PR_SET_PDEATHSIG).
use super::frame::{Decoder, Event, InnerExit};
use super::host::LabHost;
use super::keys::InputWindow;
use common::stats::Stats;
use common::vm::{DiskConfig, GuestExit, Outcome, VmConfig};
use common::{Error, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// From qemu's start to init's first frame. A normal boot takes well under a second (riscv64)
/// or about 3 s (x86_64, all in software); this only catches a lab host that never comes up.
const BOOT_LIMIT: Duration = Duration::from_secs(60);
/// Replaces BOOT_LIMIT (whole seconds), so a test can see that error without waiting a minute.
const BOOT_LIMIT_VAR: &str = "VMM_LAB_BOOT_TIMEOUT";
/// What we allow beyond the user's --timeout before stopping the whole lab host ourselves
/// (the inner vmm enforces --timeout; this only catches a lab host that is stuck).
const RUN_SLACK: Duration = Duration::from_secs(20);
/// How long the inner vmm may take to stop after Ctrl-A x before we stop the lab host.
const QUIT_GRACE: Duration = Duration::from_secs(5);
/// The same with disks (or a --mem-file): the inner vmm fsyncs them and init syncs before reporting, through
/// emulated virtio-blk; killing qemu sooner could lose what the guest wrote.
const QUIT_GRACE_WITH_DISKS: Duration = Duration::from_secs(120);

enum Msg {
    Event(Event),
    /// qemu's output ended (it exited or died); carries the last boot noise.
    Ended(String),
    /// The user pressed Ctrl-A x.
    Quit,
}

/// qemu, killed when this is dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots the lab with `initramfs` and relays until the inner vmm reports its exit.
pub fn boot(host: &LabHost, vm: &VmConfig, initramfs: &[u8]) -> Result<Outcome> {
    let boot_limit = boot_limit()?;
    // --gdb: the outer side listens (once init is up); gdb's bytes cross the serial line
    // (super::gdb_relay).
    let gdb_socket = vm.gdb.as_ref().map(super::gdb_relay::bind).transpose()?;
    let gdb_peer = super::gdb_relay::GdbPeer::default();
    let initrd = memfd_with(initramfs)?;
    let mem_mib = (vm.mem_size >> 20) + host.ram_overhead_mib + 2 * (initramfs.len() as u64 >> 20);
    let mut cmd = Command::new(&host.qemu);
    cmd.args(&host.machine_args)
        .arg("-m")
        .arg(format!("{mem_mib}M"))
        .args(["-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
        .arg("-initrd")
        // qemu inherits the memfd (no CLOEXEC) and opens it through its own /proc/self/fd.
        .arg(format!("/proc/self/fd/{}", initrd.as_raw_fd()))
        .arg("-append")
        .arg(&host.kernel_cmdline)
        .args(disk_args(host, &vm.disks)?)
        .args(super::passthrough::qemu_args(host.disk_device, vm)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec we only make one async-signal-safe syscall.
    unsafe {
        cmd.pre_exec(|| {
            // Die with us: a killed `vmm` must not leave qemu running.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        Error::bad_input(format!(
            "cannot start {}: {}; {}",
            host.qemu.display(),
            common::image::io_reason(&e),
            host.setup_hint
        ))
    })?;
    let mut qemu = Qemu(child);
    let (tx, rx) = mpsc::channel();

    // Keys go to init only as it has room for them ([`super::keys::InputWindow`]).
    let window = Arc::new(InputWindow::default());
    let mut serial_out = qemu.0.stdout.take().expect("piped stdout");
    let console = vm.console.clone();
    let events = tx.clone();
    let credit = Arc::clone(&window);
    let gdb = gdb_peer.clone();
    let mut trace = super::passthrough::TraceOut::create(vm)?;
    std::thread::spawn(move || {
        let mut decoder = Decoder::new();
        let mut buf = vec![0u8; 16384];
        loop {
            let n = match serial_out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for event in decoder.feed(&buf[..n]) {
                match event {
                    Event::Stdout(bytes) => console.write(&bytes),
                    Event::Stderr(bytes) => {
                        // The guest's output so far comes before the inner vmm's own lines.
                        common::stdout_buffer::flush();
                        let mut err = std::io::stderr().lock();
                        let _ = err.write_all(&bytes).and_then(|_| err.flush());
                    }
                    Event::Credit(n) => credit.grant(n),
                    Event::Gdb(bytes) => gdb.send(&bytes),
                    Event::Trace(bytes) => trace.write(&bytes),
                    other => {
                        if other == Event::Started {
                            credit.grant(super::keys::WINDOW);
                        }
                        let _ = events.send(Msg::Event(other));
                    }
                }
            }
        }
        let _ = events.send(Msg::Ended(decoder.noise_tail()));
    });
    let mut qemu_err = qemu.0.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = qemu_err.read_to_string(&mut text);
        text
    });
    // Keys for the guest go to the inner vmm with Ctrl-A escaped; Ctrl-A x is passed on in band
    // ([`super::keys`]) so the inner vmm ends the run itself and reports its stats and exit.
    let serial_in = Arc::new(Mutex::new(qemu.0.stdin.take().expect("piped stdin")));
    let keys_in = Arc::clone(&serial_in);
    let keys_window = Arc::clone(&window);
    let (gdb_in, gdb_window) = (Arc::clone(&serial_in), Arc::clone(&window));
    let mut gdb_relay = gdb_socket.map(|socket| {
        let to_init = move |wire: &[u8]| {
            gdb_window.send_whole(wire, |w| {
                let _ = gdb_in.lock().unwrap_or_else(|e| e.into_inner()).write_all(w);
            });
        };
        (socket, to_init)
    });
    let quit = tx.clone();
    vm.console.start_input(
        move |bytes| {
            keys_window.send(bytes, |wire| {
                let _ = keys_in.lock().unwrap_or_else(|e| e.into_inner()).write_all(wire);
            });
        },
        move || {
            let _ = quit.send(Msg::Quit);
        },
    );
    drop(tx);

    let mut deadline = Instant::now().checked_add(boot_limit);
    let mut started = false;
    let mut user_quit = false;
    let exit = loop {
        let msg = match deadline {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Event(Event::Started)) => {
                started = true;
                if let Some((socket, to_init)) = gdb_relay.take() {
                    super::gdb_relay::serve_outer(socket, &gdb_peer, to_init);
                }
                // No deadline at all if --timeout is too large to add (the inner vmm does the same).
                deadline = vm.timeout.and_then(|t| run_deadline(Instant::now(), t));
            }
            Ok(Msg::Event(Event::Exit(InnerExit::Code(code)))) => break GuestExit::Relayed(code),
            Ok(Msg::Event(Event::Exit(InnerExit::Signal(sig)))) => {
                break GuestExit::Failed(format!(
                    "{} inside the lab host was killed by signal {sig} ({})",
                    host.inner,
                    signal_name(sig)
                ))
            }
            Ok(Msg::Event(_)) => {}
            // Before init has started there is no inner vmm to stop (keys sent during the boot
            // may be lost with the UART's FIFO): stop the lab host.
            Ok(Msg::Quit) if !started => break GuestExit::UserQuit,
            Ok(Msg::Quit) => {
                // Pass the quit on; the inner vmm ends the run and reports stats and exit. These
                // two bytes go outside the credit window: init's tty has room beyond it.
                let _ = serial_in.lock().unwrap_or_else(|e| e.into_inner()).write_all(&super::keys::QUIT);
                user_quit = true;
                let grace =
                    if vm.disks.is_empty() && vm.mem_file.is_none() { QUIT_GRACE } else { QUIT_GRACE_WITH_DISKS };
                deadline = Instant::now().checked_add(grace);
            }
            Ok(Msg::Ended(noise)) => {
                // qemu stopped without the exit frame: a kernel panic, qemu failing, init dying.
                let status = qemu.0.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                drop(qemu);
                let qemu_says = stderr_reader.join().unwrap_or_default();
                let when = if started {
                    format!("before {} reported how it ended", host.inner)
                } else {
                    "while booting".into()
                };
                break GuestExit::Failed(format!(
                    "the lab host ({}) stopped {when} ({status}); last output: {}",
                    qemu_name(host),
                    last_lines(&format!("{qemu_says}\n{noise}"))
                ));
            }
            // The inner vmm did not report after Ctrl-A x: quit anyway.
            Err(_) if user_quit => break GuestExit::UserQuit,
            Err(mpsc::RecvTimeoutError::Timeout) if !started => {
                break GuestExit::Failed(format!(
                    "the lab host ({}) did not boot within {} s; stopped it",
                    qemu_name(host),
                    boot_limit.as_secs()
                ))
            }
            // The output thread always sends Ended before it goes, so only a timeout gets here.
            Err(_) => {
                break GuestExit::Failed(format!(
                    "{} did not stop within its time limit (--timeout) plus {} s; stopped the lab host",
                    host.inner,
                    RUN_SLACK.as_secs()
                ))
            }
        }
    };
    window.close();
    drop(initrd);
    Ok(Outcome { exit, stats: Stats::new() })
}

/// Each `--disk` as a raw drive of the lab host (read-only for `ro`) on its virtio-blk device,
/// with serial `vmm-disk<i>` so init can find it whatever the kernel names it.
fn disk_args(host: &LabHost, disks: &[DiskConfig]) -> Result<Vec<String>> {
    let mut args = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let path = std::fs::canonicalize(&disk.path).map_err(|e| {
            Error::bad_input(format!("--disk {}: {}", disk.path.display(), common::image::io_reason(&e)))
        })?;
        // QEMU's option syntax: a comma inside a value is written twice.
        let file = path.to_string_lossy().replace(',', ",,");
        let readonly = if disk.read_only { ",readonly=on" } else { "" };
        args.push("-drive".into());
        args.push(format!("file={file},format=raw,if=none,id=vmmdisk{i}{readonly}"));
        args.push("-device".into());
        args.push(format!("{},drive=vmmdisk{i},serial=vmm-disk{i}", host.disk_device));
    }
    Ok(args)
}

fn boot_limit() -> Result<Duration> {
    match std::env::var(BOOT_LIMIT_VAR) {
        Err(_) => Ok(BOOT_LIMIT),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(Error::bad_input(format!("bad {BOOT_LIMIT_VAR} '{text}': give whole seconds above 0"))),
        },
    }
}

/// When the outer side gives up on a run whose inner --timeout is `timeout`; None if that
/// cannot be represented.
fn run_deadline(now: Instant, timeout: Duration) -> Option<Instant> {
    now.checked_add(timeout.checked_add(RUN_SLACK)?)
}

/// The qemu binary's file name, for messages ("qemu-system-riscv64").
fn qemu_name(host: &LabHost) -> String {
    host.qemu.file_name().map_or_else(|| host.qemu.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// A memfd holding `bytes`, inherited by qemu.
fn memfd_with(bytes: &[u8]) -> Result<File> {
    // SAFETY: a valid NUL-terminated name; flags 0 (no CLOEXEC, so qemu inherits it).
    let fd = unsafe { libc::memfd_create(c"vmm-lab-initramfs".as_ptr(), 0) };
    if fd < 0 {
        return Err(Error::bad_input(format!("memfd_create: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes).map_err(|e| Error::bad_input(format!("writing the lab initramfs: {e}")))?;
    Ok(file)
}

/// The last few non-empty lines of `text`, on one line.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(4)..];
    if tail.is_empty() {
        "(nothing)".into()
    } else {
        tail.join(" / ")
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGILL => "SIGILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGSYS => "SIGSYS",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_four_on_one_line() {
        assert_eq!(last_lines("a\n\nb\r\nc\nd\ne\n"), "b / c / d / e");
        assert_eq!(last_lines("  \n"), "(nothing)");
    }

    #[test]
    fn run_deadline_survives_huge_timeouts() {
        let now = Instant::now();
        assert_eq!(run_deadline(now, Duration::MAX), None);
        assert_eq!(run_deadline(now, Duration::from_secs(u64::MAX - 5)), None);
        assert_eq!(
            run_deadline(now, Duration::from_secs(1e9 as u64)),
            Some(now + Duration::from_secs(1e9 as u64) + RUN_SLACK)
        );
        assert_eq!(run_deadline(now, Duration::from_secs(2)), Some(now + Duration::from_secs(2) + RUN_SLACK));
    }
}
