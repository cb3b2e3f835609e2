//! Installs the ecall filter from [`crate::bpf`]: after this, a syscall instruction executed
//! inside guest RAM raises SIGSYS (si_code SYS_SECCOMP) instead of reaching the host kernel.
//!
//! A seccomp filter cannot be removed, so each guest-RAM range gets its filter once per
//! process and keeps it. A later VM with another RAM size gets a filter for its own range
//! too (the kernel runs every filter and the trap wins). An older, larger range stays trapped,
//! which is harmless: outside the current RAM the physical window is PROT_NONE, so no code
//! can run there to make a syscall.
use common::{Error, Result};
use std::sync::Mutex;

/// The guest-RAM ranges `[start, end)` whose filter this process has installed.
static INSTALLED: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

pub fn install(start: u64, end: u64) -> Result<()> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !crate::bpf::needs_filter(&installed, (start, end)) {
        return Ok(());
    }
    install_filter(start, end).map_err(Error::bad_input)?;
    installed.push((start, end));
    Ok(())
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
