//! `vmm info`: what this host's KVM is and can do.
use crate::kvm;
use common::Result;
use std::fmt::Write as _;
use std::path::Path;

/// The extensions a VMM like this one cares about, with the names linux/kvm.h gives them.
const CAPS: &[(&str, u32)] = &[
    ("KVM_CAP_USER_MEMORY", kvm_bindings::KVM_CAP_USER_MEMORY),
    ("KVM_CAP_SET_TSS_ADDR", kvm_bindings::KVM_CAP_SET_TSS_ADDR),
    ("KVM_CAP_IRQCHIP", kvm_bindings::KVM_CAP_IRQCHIP),
    ("KVM_CAP_PIT2", kvm_bindings::KVM_CAP_PIT2),
    ("KVM_CAP_EXT_CPUID", kvm_bindings::KVM_CAP_EXT_CPUID),
    ("KVM_CAP_IMMEDIATE_EXIT", kvm_bindings::KVM_CAP_IMMEDIATE_EXIT),
    ("KVM_CAP_INTERNAL_ERROR_DATA", kvm_bindings::KVM_CAP_INTERNAL_ERROR_DATA),
    ("KVM_CAP_IOEVENTFD", kvm_bindings::KVM_CAP_IOEVENTFD),
    ("KVM_CAP_IRQFD", kvm_bindings::KVM_CAP_IRQFD),
    ("KVM_CAP_TSC_DEADLINE_TIMER", kvm_bindings::KVM_CAP_TSC_DEADLINE_TIMER),
    ("KVM_CAP_XSAVE", kvm_bindings::KVM_CAP_XSAVE),
    ("KVM_CAP_X2APIC_API", kvm_bindings::KVM_CAP_X2APIC_API),
    ("KVM_CAP_SPLIT_IRQCHIP", kvm_bindings::KVM_CAP_SPLIT_IRQCHIP),
    ("KVM_CAP_COALESCED_PIO", kvm_bindings::KVM_CAP_COALESCED_PIO),
    ("KVM_CAP_NR_VCPUS", kvm_bindings::KVM_CAP_NR_VCPUS),
    ("KVM_CAP_MAX_VCPUS", kvm_bindings::KVM_CAP_MAX_VCPUS),
    ("KVM_CAP_NR_MEMSLOTS", kvm_bindings::KVM_CAP_NR_MEMSLOTS),
];

/// The host's virtualization flavor from the CPU flags line of /proc/cpuinfo and whether the
/// kvm_pvm module is loaded. PVM runs guests without VMX/SVM, so it is checked first. Pure.
pub fn flavor(cpu_flags: &str, pvm_loaded: bool) -> &'static str {
    let has = |f: &str| cpu_flags.split_whitespace().any(|x| x == f);
    if pvm_loaded {
        "PVM (kvm_pvm: guests run de-privileged, no VMX/SVM needed)"
    } else if has("vmx") {
        "VMX (Intel VT-x)"
    } else if has("svm") {
        "SVM (AMD-V)"
    } else {
        "unknown (no vmx/svm CPU flag and no kvm_pvm module)"
    }
}

/// The "flags" line of /proc/cpuinfo, or "" if it cannot be read.
pub fn cpu_flags() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.trim().to_string())
        .unwrap_or_default()
}

/// Whether this host's KVM is kvm-pvm (its module is loaded).
pub fn is_pvm_host() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

pub fn report() -> Result<String> {
    let kvm = kvm::open()?;
    let flags = cpu_flags();
    let mut s = String::new();
    let _ = writeln!(s, "KVM API version: {}", kvm.get_api_version());
    let _ = writeln!(s, "host flavor: {}", flavor(&flags, is_pvm_host()));
    let _ = writeln!(s, "extensions (0 = absent):");
    let width = CAPS.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, cap) in CAPS {
        let _ = writeln!(s, "  {name:<width$} {}", kvm.check_extension_raw(*cap as libc::c_ulong));
    }
    Ok(s.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors() {
        assert!(flavor("fpu vme vmx sse", false).starts_with("VMX"));
        assert!(flavor("fpu svm sse", false).starts_with("SVM"));
        assert!(flavor("fpu sse hypervisor", true).starts_with("PVM"));
        assert!(flavor("fpu sse", false).starts_with("unknown"));
        // "vmxe" or similar must not count as vmx.
        assert!(flavor("vmxe svmx", false).starts_with("unknown"));
    }
}
