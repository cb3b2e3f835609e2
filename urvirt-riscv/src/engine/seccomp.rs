//! Installs the ecall filter from [`crate::bpf`]: after this, a syscall instruction executed
//! inside guest RAM raises SIGSYS (si_code SYS_SECCOMP) instead of reaching the host kernel.
//!
//! A seccomp filter cannot be removed, so it is installed once per process; it only matches
//! instruction pointers inside guest RAM, which is always the same window.
use common::{Error, Result};
use std::sync::OnceLock;

static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

pub fn install(start: u64, end: u64) -> Result<()> {
    INSTALLED.get_or_init(|| install_once(start, end)).clone().map_err(Error::bad_input)
}

fn install_once(start: u64, end: u64) -> std::result::Result<(), String> {
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
