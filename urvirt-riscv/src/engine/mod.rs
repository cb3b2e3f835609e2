//! The URVirt engine: runs a RISC-V S-mode kernel as an ordinary riscv64 Linux process.
//!
//! The guest's code runs directly on the CPU in host U-mode, in this process. What U-mode may
//! not do traps, and a signal handler emulates it:
//! - SIGILL: privileged instructions (CSR access, sret, wfi, sfence.vma) -> [`crate::hart`];
//! - SIGSYS: `ecall`, made to trap by syscall user dispatch ([`sud`]) or a seccomp filter on
//!   the instruction pointer ([`seccomp`]) -> the SBI in [`crate::sbi`];
//! - SIGSEGV/SIGBUS: accesses outside guest RAM -> a device on the bus ([`devices`]) or an
//!   access fault for the guest;
//! - SIGALRM: the SBI timer and `--timeout`.
//!
//! The guest runs on a thread made for each run, under a seccomp allowlist of the monitor's
//! own system calls ([`jail`]) unless `--no-seccomp`.
//!
//! Guest RAM is a memfd mapped at guest physical 0x80000000 ([`memory`]); with satp = Bare the
//! guest's physical addresses are our virtual addresses.
//!
//! **Isolation: there is none against a hostile guest.** Guest and monitor share one address
//! space. The guest can jump into, read or overwrite monitor code and data (our binary, heap
//! and stack are mapped, just not inside the guest's physical window); from monitor code its
//! syscalls are limited only by the [`jail`]'s allowlist. URVirt traps what a cooperating kernel does; it does not contain
//! a kernel that attacks it.
//!
//! What stays mapped: guest RAM, the monitor's binary, heap, stacks (including the signal
//! stack) and the vDSO (glibc's clock_gettime calls into it, so we do not unmap it; we never
//! return through its sigreturn trampoline). The 32-bit physical window outside RAM is
//! reserved PROT_NONE so no host mapping appears there.
pub mod context;
pub mod devices;
pub mod input;
pub mod jail;
pub mod memory;
pub mod paging;
pub mod run;
pub mod seccomp;
pub mod signals;
pub mod sud;
pub mod timer;
pub mod vm;

pub use vm::UrvirtVm;
