//! The inside of a lab host: when `vmm` is PID 1 of the lab's Linux (and the initramfs holds
//! /vmm-args, which only a lab initramfs does), it is the init. It runs itself again as an
//! ordinary process (the inner vmm, with the command line from /vmm-args), relays that
//! process's stdin/stdout/stderr over the console in frames (see [`super::frame`]), reports how
//! it ended, and ends the machine. Running the guest in a child keeps PID 1 out of harm's way:
//! a fault there would panic the kernel.
use super::frame::{self, InnerExit};
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// How the machine ends once the exit frame is out. riscv64: SBI power-off. x86_64: the lab
/// kernel has no ACPI, so a power-off would only end PID 1 (a panic); a restart with the
/// lab's `reboot=k` is an i8042 reset, which QEMU's -no-reboot turns into QEMU exiting.
#[cfg(target_arch = "x86_64")]
const END_MACHINE: libc::c_int = libc::RB_AUTOBOOT;
#[cfg(not(target_arch = "x86_64"))]
const END_MACHINE: libc::c_int = libc::RB_POWER_OFF;

/// The kernel opens /dev/console as init's fds 0, 1 and 2.
const CONSOLE_IN: RawFd = 0;
const CONSOLE_OUT: RawFd = 1;

/// What a lab initramfs holds beside /init: the inner command line, NUL-separated.
pub const ARGS_FILE: &str = "vmm-args";

/// Acts as init if this process is PID 1 of a lab host (never returns then); otherwise returns
/// at once.
pub fn run_if_lab_init() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 || !std::path::Path::new("/").join(ARGS_FILE).is_file() {
        return;
    }
    let exit = match supervise() {
        Ok(exit) => exit,
        Err(e) => {
            send(frame::STDERR, format!("vmm: the lab host's init failed: {e}\n").as_bytes());
            InnerExit::Code(1)
        }
    };
    // What the inner vmm wrote to a --disk must reach QEMU (and so the user's file) before
    // the exit frame: the outer vmm stops QEMU as soon as it has that frame.
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    send(frame::EXIT, exit.to_payload().as_bytes());
    // SAFETY: tcdrain waits for the console to send what we wrote; then the machine ends.
    unsafe {
        libc::tcdrain(CONSOLE_OUT);
        libc::reboot(END_MACHINE);
    }
    // reboot only returns on failure; PID 1 must never exit, so wait to be killed.
    loop {
        // SAFETY: pause just sleeps until a signal.
        unsafe { libc::pause() };
    }
}

fn supervise() -> io::Result<InnerExit> {
    mount("proc", "/proc", "proc");
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("sysfs", "/sys", "sysfs");
    link_disks();
    make_console_raw();
    send(frame::START, b"");

    let args_file = std::fs::read(std::path::Path::new("/").join(ARGS_FILE))?;
    let args: Vec<String> = args_file
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // With --gdb, the inner vmm's stub talks over a socket pair instead of listening.
    let mut gdb = super::gdb_relay::InitSide::new(args.iter().any(|a| a == "--gdb"))?;
    let mut command = Command::new("/init");
    gdb.pass_to(&mut command);
    let mut child = command
        .args(&args)
        .env(super::keys::ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    gdb.child_started();
    let mut child_in = child.stdin.take();
    if let Some(input) = &child_in {
        set_nonblocking(input.as_raw_fd());
    }
    let stdout = child.stdout.take().map(|o| Box::new(o) as Box<dyn ReadFd>);
    let stderr = child.stderr.take().map(|e| Box::new(e) as Box<dyn ReadFd>);
    let mut outputs = [(stdout, frame::STDOUT), (stderr, frame::STDERR)];
    let mut console_open = true;
    // Keys read from the console that the inner vmm's stdin has no room for yet. While there
    // are any, init reads no more: never blocking on the inner vmm's stdin keeps its output
    // flowing (it may be waiting on us to relay that before it reads again).
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 4096];
    // Tests only: a stream of process-directed SIGALRMs once the guest has printed (so the
    // inner vmm's handlers are in place), which must never reach its console thread.
    let storm = std::path::Path::new(super::SIGNAL_STORM_FILE).exists();
    let mut storming = false;
    while outputs.iter().any(|(o, _)| o.is_some()) {
        if storming {
            // SAFETY: kill with our own child's pid and a plain signal number.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGALRM) };
        }
        let input_fd = child_in.as_ref().map_or(-1, |i| i.as_raw_fd());
        let mut fds = [
            pollfd(if console_open && pending.is_empty() && input_fd >= 0 { CONSOLE_IN } else { -1 }),
            pollfd(outputs[0].0.as_ref().map_or(-1, |o| o.fd())),
            pollfd(outputs[1].0.as_ref().map_or(-1, |o| o.fd())),
            libc::pollfd { fd: if pending.is_empty() { -1 } else { input_fd }, events: libc::POLLOUT, revents: 0 },
            gdb.pollfd(),
        ];
        // SAFETY: fds is a valid array of pollfd for its length; negative fds are ignored.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, if storming { 1 } else { -1 }) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            // Keys typed at the outer terminal: for the inner vmm's stdin.
            match console_read(&mut buf) {
                Ok(n) if n > 0 => {
                    pending.extend(gdb.split(&buf[..n]));
                    // Room on the console again: the outer side may send this many more.
                    send(frame::CREDIT, n.to_string().as_bytes());
                }
                _ => console_open = false,
            }
        }
        if !pending.is_empty() {
            if let Some(input) = child_in.as_mut() {
                match input.write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                    Err(_) => {
                        child_in = None;
                        pending.clear();
                    }
                }
            }
        }
        if fds[4].revents != 0 {
            gdb.ready(fds[4].revents, &mut buf, |bytes| send(frame::GDB, bytes));
        }
        for (i, (output, kind)) in outputs.iter_mut().enumerate() {
            if fds[i + 1].revents == 0 {
                continue;
            }
            match output.as_mut().map(|o| o.read(&mut buf)) {
                Some(Ok(n)) if n > 0 => {
                    send(*kind, &buf[..n]);
                    storming |= storm && *kind == frame::STDOUT;
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => *output = None,
            }
        }
    }
    gdb.drain(&mut buf, |bytes| send(frame::GDB, bytes));
    drop(child_in);
    let status = child.wait()?;
    if let Some(trace) = super::passthrough::take_trace() {
        send(frame::TRACE, &trace);
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => InnerExit::Code(code),
        (None, Some(sig)) => InnerExit::Signal(sig),
        (None, None) => InnerExit::Code(1),
    })
}

/// Links each virtio-blk disk whose serial is `vmm-disk<i>` (QEMU's -device ...,serial=) as
/// /dev/vmm-disk<i>, the name the inner vmm's --disk options use ([`super::inner_disk_args`]).
fn link_disks() {
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let serial = std::fs::read_to_string(entry.path().join("serial")).unwrap_or_default();
        if serial.trim() == super::passthrough::MEM_SERIAL {
            let _ = std::os::unix::fs::symlink(format!("/dev/{name}"), super::passthrough::MEM_LINK);
        }
        if let Some(slot) = serial.trim().strip_prefix("vmm-disk") {
            let _ = std::os::unix::fs::symlink(format!("/dev/{name}"), format!("{}{slot}", super::DISK_LINK));
        }
    }
}

/// A pipe we read from and poll.
trait ReadFd: Read {
    fn fd(&self) -> RawFd;
}

impl<T: Read + AsRawFd> ReadFd for T {
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own, with plain integer flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

fn console_read(buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: fd 0 is the console for PID 1's whole life; ManuallyDrop keeps it open.
    let mut console = ManuallyDrop::new(unsafe { File::from_raw_fd(CONSOLE_IN) });
    console.read(buf)
}

/// Writes one or more frames to the console. Errors are dropped: there is nowhere to report them.
fn send(kind: u8, data: &[u8]) {
    let mut bytes = Vec::with_capacity(data.len() + 16);
    frame::encode(kind, data, &mut bytes);
    // SAFETY: fd 1 is the console for PID 1's whole life; ManuallyDrop keeps it open.
    let mut console = ManuallyDrop::new(unsafe { File::from_raw_fd(CONSOLE_OUT) });
    let _ = console.write_all(&bytes);
}

/// No echo, no line editing, no "\n" -> "\r\n": frames must cross the tty byte for byte.
fn make_console_raw() {
    // SAFETY: termios is plain old data that tcgetattr fills.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is the console tty; `t` is ours to fill and edit.
    unsafe {
        if libc::tcgetattr(CONSOLE_IN, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(CONSOLE_IN, libc::TCSANOW, &t);
        }
    }
}

/// Best effort: the inner vmm can run without /proc or /dev, only with less to report.
fn mount(source: &str, target: &str, fstype: &str) {
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (source, target, fstype) = (c(source), c(target), c(fstype));
    // SAFETY: valid NUL-terminated strings; no mount data.
    unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
}
