//! One error type for the whole VMM. Its kind alone decides the exit code, so every
//! failure path in every backend maps to the same documented codes.
use std::fmt;

/// The guest halted or powered off normally.
pub const EXIT_OK: i32 = 0;
/// The guest failed: triple fault, emulation failure, unhandled exit, timeout.
pub const EXIT_GUEST_FAILURE: i32 = 1;
/// Bad usage or bad input: the VM never started.
pub const EXIT_BAD_INPUT: i32 = 2;
/// vmm stopped itself: one of its threads made a system call outside its seccomp allowlist.
pub const EXIT_JAIL: i32 = 3;
/// vmm itself failed: a panic, which is a bug in vmm (Rust's own 101 would read as a guest status).
pub const EXIT_INTERNAL: i32 = 4;
/// A guest that powers off with status `s` (1..=60) ends vmm with `EXIT_GUEST_STATUS_BASE + s`,
/// so a guest's own status never reads as one of vmm's codes above; the range stops below
/// the shell's 126 and 127 ("not executable", "not found").
pub const EXIT_GUEST_STATUS_BASE: i32 = 64;
/// A guest status that does not fit the range above (negative, or 61 and more).
pub const EXIT_GUEST_STATUS_OTHER: i32 = 125;

/// The exit code for a guest-requested power-off status (see the README's table).
pub fn guest_status_exit_code(status: i32) -> i32 {
    match status {
        0 => EXIT_OK,
        1..=60 => EXIT_GUEST_STATUS_BASE + status,
        _ => EXIT_GUEST_STATUS_OTHER,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Missing/unreadable/malformed input, bad option, host lacks something we need (e.g. /dev/kvm).
    BadInput,
    /// The guest did something we cannot continue from.
    Guest,
}

/// A one-line, human-readable error. The message must stand on its own: it is printed as
/// `vmm: <message>` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::BadInput, message: message.into() }
    }

    pub fn guest(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Guest, message: message.into() }
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::BadInput => EXIT_BAD_INPUT,
            ErrorKind::Guest => EXIT_GUEST_FAILURE,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
