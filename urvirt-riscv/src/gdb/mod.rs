//! The gdb remote stub on URVirt (`vmm run --arch riscv --gdb ADDR:PORT [--gdb-wait]`).
//!
//! The protocol itself is the `gdbstub` crate's; the connection, `--gdb` parsing and the
//! Ctrl-C watcher are shared with x86 (`common::gdb`). What is URVirt's:
//! - [`breakpoints`]: software breakpoints, `ebreak`/`c.ebreak` patched into guest memory;
//! - [`step`]: single-step by next-pc decoding and temporary breakpoints;
//! - `engine` (riscv64 Linux only): where the stub runs relative to the signal handlers, and
//!   the gdbstub target over the stopped guest's hart and memory.
//!
//! How a stop works: a handler never talks to gdb. It notices the stop (our `ebreak`, the end
//! of a step, a Ctrl-C), leaves the guest exactly as it is and switches to the monitor's
//! saved context, as it does when the guest ends. The monitor's loop on the guest thread,
//! outside any handler, then runs the protocol until gdb resumes the guest, and enters the
//! guest again.
pub mod breakpoints;
#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
pub mod engine;
pub mod step;
#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
pub mod target;
