//! Installs the ecall filter from [`crate::bpf`]: after this, a syscall instruction executed
//! inside guest RAM raises SIGSYS (si_code SYS_SECCOMP) instead of reaching the host kernel.
//!
//! A seccomp filter cannot be removed and belongs to the thread that installed it (threads it
//! starts later inherit it). Each run's guest thread installs the filter for its own VM's RAM,
//! so a second VM with another RAM size is covered by its own range, never by the first
//! VM's. Within one thread each range is installed once (the benchmarks call this repeatedly).
use common::{Error, Result};
use std::cell::RefCell;

thread_local! {
    /// The guest-RAM ranges `[start, end)` whose filter this thread has installed.
    static INSTALLED: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

pub fn install(start: u64, end: u64) -> Result<()> {
    INSTALLED.with(|installed| {
        let mut installed = installed.borrow_mut();
        if !crate::bpf::needs_filter(&installed, (start, end)) {
            return Ok(());
        }
        install_filter(start, end).map_err(Error::bad_input)?;
        installed.push((start, end));
        Ok(())
    })
}

fn install_filter(start: u64, end: u64) -> std::result::Result<(), String> {
    let mut filter = crate::bpf::ecall_filter(start, end);
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers; it is required to install a filter
    // without CAP_SYS_ADMIN and harmless with it.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("cannot set no_new_privs for seccomp: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `prog` points at a valid program that outlives the call (the kernel copies it).
    let rc =
        unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog) };
    if rc != 0 {
        return Err(format!(
            "cannot install the seccomp ecall filter (this kernel needs CONFIG_SECCOMP_FILTER): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
