//! The one trait both backends implement, and what a run ends with.
use crate::console::Console;
use crate::error::{guest_status_exit_code, EXIT_GUEST_FAILURE, EXIT_OK};
use crate::image::Image;
use crate::stats::Stats;
use crate::Result;
use std::path::PathBuf;
use std::time::Duration;

/// One `--disk FILE[,ro]`: a raw image the guest sees as a virtio-blk device. Slot i (the
/// i-th virtio-mmio window of the machine) is the i-th `--disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    /// `,ro`: the device offers VIRTIO_BLK_F_RO and fails writes; the file is opened read-only.
    pub read_only: bool,
}

/// Options every backend understands. Backend-specific ones (x86 entry mode, kernel command
/// line, ...) live in the backend's own config.
#[derive(Clone)]
pub struct VmConfig {
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Stop a runaway guest after this long (a guest failure, exit code 1).
    pub timeout: Option<Duration>,
    /// Where guest console output goes and where its input comes from.
    pub console: Console,
    /// Run the monitor's threads under their seccomp allowlists (`--no-seccomp` turns it off).
    pub jail: bool,
    /// The guest's disks, in slot order.
    pub disks: Vec<DiskConfig>,
    /// `--stats-json`: the run's statistics and marks are printed as JSON (a lab host's inner
    /// vmm is asked for the same).
    pub stats_json: bool,
    /// `--gdb ADDR:PORT [--gdb-wait]`: serve the gdb remote protocol (see common::gdb).
    pub gdb: Option<crate::gdb::GdbConfig>,
    /// `--trace FILE [--trace-kinds ...]`: one line per exit/trap ([`crate::trace`]).
    pub trace: Option<crate::trace::TraceConfig>,
    /// `--mem-file PATH [--mem-share]`: guest RAM backed by a file ([`crate::mem_file`]).
    pub mem_file: Option<crate::mem_file::MemFileConfig>,
}

impl Default for VmConfig {
    /// 128 MiB, no timeout, the process's console, jailed, no disks, no gdb. Callers name what they
    /// change and take the rest with `..VmConfig::default()`.
    fn default() -> Self {
        VmConfig {
            mem_size: 128 << 20,
            timeout: None,
            console: Console::stdout(),
            jail: true,
            disks: Vec::new(),
            stats_json: false,
            gdb: None,
            trace: None,
            mem_file: None,
        }
    }
}

/// How the guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// x86 `hlt` with nothing left to wake it: the classic demo's normal end.
    Halted,
    /// The guest powered off (SBI shutdown, i8042 reset with reboot=k, ...) with its own status.
    /// A non-zero status becomes exit code 64 + status (1..=60) or 125, never one of vmm's.
    PowerOff(i32),
    /// A lab host's inner vmm ended with this exit code: passed through unchanged.
    Relayed(i32),
    /// The user pressed Ctrl-A x on an interactive console.
    UserQuit,
    /// The guest did something we cannot continue from; the text is a one-line diagnostic.
    Failed(String),
}

/// What `run` returns: how the guest ended and what it cost.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit: GuestExit,
    pub stats: Stats,
}

impl Outcome {
    /// The process exit code this outcome stands for (see the README's table).
    pub fn exit_code(&self) -> i32 {
        match &self.exit {
            GuestExit::Halted | GuestExit::UserQuit => EXIT_OK,
            GuestExit::PowerOff(status) => guest_status_exit_code(*status),
            GuestExit::Relayed(code) => *code,
            GuestExit::Failed(_) => EXIT_GUEST_FAILURE,
        }
    }
}

/// A virtual machine: load an image, run it to completion.
pub trait VirtualMachine {
    /// Places the image in guest memory and prepares the boot CPU. Errors here are bad input.
    fn load(&mut self, image: &Image) -> Result<()>;
    /// Runs until the guest halts, powers off or fails.
    fn run(&mut self) -> Result<Outcome>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        let o = |exit| Outcome { exit, stats: Stats::new() };
        assert_eq!(o(GuestExit::Halted).exit_code(), 0);
        assert_eq!(o(GuestExit::PowerOff(0)).exit_code(), 0);
        assert_eq!(o(GuestExit::PowerOff(1)).exit_code(), 65);
        assert_eq!(o(GuestExit::PowerOff(2)).exit_code(), 66);
        assert_eq!(o(GuestExit::PowerOff(60)).exit_code(), 124);
        assert_eq!(o(GuestExit::PowerOff(61)).exit_code(), 125);
        assert_eq!(o(GuestExit::PowerOff(-1)).exit_code(), 125);
        assert_eq!(o(GuestExit::Relayed(2)).exit_code(), 2);
        assert_eq!(o(GuestExit::UserQuit).exit_code(), 0);
        assert_eq!(o(GuestExit::Failed("triple fault".into())).exit_code(), 1);
    }
}
