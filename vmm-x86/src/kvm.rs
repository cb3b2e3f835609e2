//! Opening /dev/kvm, with the one-line errors a user can act on.
use common::{Error, Result};
use kvm_ioctls::Kvm;

pub const KVM_PATH: &str = "/dev/kvm";

/// The only KVM API version there has ever been; anything else is not a KVM we know.
const KVM_API_VERSION: i32 = 12;

/// Opens /dev/kvm and checks its API version.
pub fn open() -> Result<Kvm> {
    let kvm = Kvm::new().map_err(|e| open_error(e.errno()))?;
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(Error::bad_input(format!(
            "{KVM_PATH} speaks KVM API version {version}; vmm needs version {KVM_API_VERSION}"
        )));
    }
    Ok(kvm)
}

/// Turns the errno of a failed open of /dev/kvm into a message that says what to do.
/// A host without KVM is bad input (exit 2): the VM never started.
pub fn open_error(errno: i32) -> Error {
    match errno {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => Error::bad_input(format!(
            "no {KVM_PATH}: this host has no KVM (load kvm_intel, kvm_amd or kvm_pvm, or enable virtualization)"
        )),
        libc::EACCES | libc::EPERM => Error::bad_input(format!(
            "permission denied opening {KVM_PATH}: add your user to the group that owns it (usually 'kvm')"
        )),
        other => Error::bad_input(format!(
            "cannot open {KVM_PATH}: {}",
            common::image::io_reason(&std::io::Error::from_raw_os_error(other))
        )),
    }
}

/// Maps a failed KVM ioctl during set-up to an error naming what we were doing.
pub fn setup_error(what: &str, e: kvm_ioctls::Error) -> Error {
    Error::bad_input(format!(
        "KVM {what} failed: {}",
        common::image::io_reason(&std::io::Error::from_raw_os_error(e.errno()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::error::EXIT_BAD_INPUT;

    // A host without /dev/kvm cannot be faked in an integration test on a KVM machine,
    // so the errno -> message mapping is checked here.
    #[test]
    fn missing_kvm_is_bad_input_with_a_clear_line() {
        let e = open_error(libc::ENOENT);
        assert_eq!(e.exit_code(), EXIT_BAD_INPUT);
        assert!(e.message.starts_with("no /dev/kvm: "), "{}", e.message);
    }

    #[test]
    fn permission_denied_says_what_to_do() {
        let e = open_error(libc::EACCES);
        assert_eq!(e.exit_code(), EXIT_BAD_INPUT);
        assert!(e.message.contains("permission denied") && e.message.contains("kvm"), "{}", e.message);
    }

    #[test]
    fn other_errors_name_the_reason_without_os_error_suffix() {
        let e = open_error(libc::EBUSY);
        assert!(e.message.starts_with("cannot open /dev/kvm: "), "{}", e.message);
        assert!(!e.message.contains("os error"), "{}", e.message);
    }
}
