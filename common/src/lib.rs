//! What both backends share, with no KVM and no RISC-V in it.
//!
//! - [`vm`]: the [`vm::VirtualMachine`] trait every backend implements and the [`vm::Outcome`] it returns.
//! - [`error`]: one error type whose kind decides the process exit code.
//! - [`console`]: the host side of the guest console (stdout or a capture buffer; stdin; raw tty).
//! - [`bus`]: address ranges -> devices, used for x86 PIO, x86 MMIO and RISC-V MMIO alike.
//! - [`devices`]: devices both backends can place on a bus.
//! - [`irq`]: the interrupt line a device raises, whatever controller is behind it.
//! - [`memory`]: guest RAM as devices see it (vm-memory), for both backends.
//! - [`virtio`]: the virtio-mmio transport and the virtio-blk device behind `--disk`.
//! - [`stdout_buffer`]: guest console output coalesced into few writes.
//! - [`stats`]: per exit/trap kind counts and handling times, printed by `--stats`.
//! - [`gdb`]: the gdb remote stub's shared part (`--gdb`): socket, Ctrl-C watcher, session.
//! - [`marks`]: points a guest marks in its run, where the lab reads the counters.
//! - [`trace`]: `--trace`, one line per exit or trap.
//! - [`mem_file`]: `--mem-file`, guest RAM backed by a file.
//! - [`layout`]: where the running vmm finds what set-up built beside it.
pub mod bus;
pub mod console;
pub mod devices;
pub mod error;
pub mod gdb;
pub mod image;
pub mod irq;
pub mod jail;
pub mod layout;
pub mod marks;
pub mod mem_file;
pub mod memory;
pub mod stats;
pub mod stdout_buffer;
pub mod trace;
pub mod virtio;
pub mod vm;

pub use error::{Error, ErrorKind, Result};
