//! The backends `vmm lab` compares, how each one runs a workload, and where each one's figures
//! are measured (every figure names that, honestly).
use common::{Error, Result};
use std::path::Path;

// The workload facts each backend keeps in its own teach module.
#[cfg(target_arch = "x86_64")]
use vmm_x86::teach as x86_teach;

/// A host without KVM's x86 backend (the riscv64 build) has no x86 workloads.
#[cfg(not(target_arch = "x86_64"))]
mod x86_teach {
    pub const WORKLOADS: super::Workloads = &[];
    pub fn run_args(_workload: &str) -> Vec<String> {
        Vec::new()
    }
}
use urvirt_riscv::teach as riscv_teach;

/// (workload, phases after the baseline as (name, event key)).
pub type Workloads = &'static [(&'static str, Phases)];
/// A workload's event phases: (name, the key shared with the other architecture's phase of the
/// same event, "" when it has none).
pub type Phases = &'static [(&'static str, &'static str)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// x86 on this host's /dev/kvm.
    X86Kvm,
    /// x86 inside the x86 lab host: KVM on SVM that QEMU emulates (TCG).
    X86Lab,
    /// RISC-V under URVirt: natively on riscv64 Linux, else inside the riscv lab host.
    Riscv,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub kind: Kind,
    /// Short name in the table and the report.
    pub name: &'static str,
    /// Where its figures are measured.
    pub measured_on: String,
}

impl Backend {
    pub fn new(kind: Kind) -> Self {
        let (name, measured_on) = match kind {
            Kind::X86Kvm => ("x86-kvm", format!("this host's /dev/kvm: {}", kvm_flavor())),
            Kind::X86Lab => ("x86-lab", "SVM emulated by QEMU TCG (the x86 lab host, `vmm run --lab`)".to_string()),
            Kind::Riscv => ("riscv", riscv_host().to_string()),
        };
        Backend { kind, name, measured_on }
    }

    /// Where its images are under the guests directory.
    pub fn arch_dir(&self) -> &'static str {
        match self.kind {
            Kind::X86Kvm | Kind::X86Lab => "x86",
            Kind::Riscv => "riscv",
        }
    }

    pub fn is_x86(&self) -> bool {
        self.kind != Kind::Riscv
    }

    /// Whether this backend is hardware-assisted (exits) or trap-and-emulate (signals).
    pub fn event_word(&self) -> &'static str {
        if self.is_x86() {
            "exits"
        } else {
            "signals"
        }
    }

    pub fn workloads(&self) -> Workloads {
        if self.is_x86() {
            x86_teach::WORKLOADS
        } else {
            riscv_teach::WORKLOADS
        }
    }

    /// The phase names of `workload` on this backend, if it has that workload.
    pub fn phases(&self, workload: &str) -> Option<Phases> {
        self.workloads().iter().find(|(w, _)| *w == workload).map(|(_, p)| *p)
    }

    /// `vmm run ...` for one workload image.
    pub fn run_args(&self, workload: &str, image: &Path, timeout_secs: u64) -> Vec<String> {
        let mut args: Vec<String> =
            ["run", "--arch", if self.is_x86() { "x86" } else { "riscv" }].map(String::from).into();
        if self.kind == Kind::X86Lab {
            args.push("--lab".into());
        }
        args.extend(["--stats-json".into(), "--timeout".into(), timeout_secs.to_string()]);
        args.extend(if self.is_x86() { x86_teach::run_args(workload) } else { riscv_teach::run_args(workload) });
        args.push(image.display().to_string());
        args
    }
}

/// This host's KVM, named as the lab reports it.
#[cfg(target_arch = "x86_64")]
pub fn kvm_flavor() -> &'static str {
    let flavor = vmm_x86::info::flavor(&vmm_x86::info::cpu_flags(), vmm_x86::info::is_pvm_host());
    kvm_label(flavor)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn kvm_flavor() -> &'static str {
    "no x86 KVM on this host"
}

/// `vmm info`'s flavor as the lab's "measured on". Pure.
pub fn kvm_label(flavor: &str) -> &'static str {
    if flavor.starts_with("PVM") {
        "kvm-pvm (KVM's instruction emulator, no VMX/SVM)"
    } else if flavor.starts_with("VMX") {
        "VMX hardware (Intel VT-x)"
    } else if flavor.starts_with("SVM") {
        "SVM hardware (AMD-V)"
    } else {
        "KVM of unknown flavor (no vmx/svm flag, no kvm_pvm)"
    }
}

pub fn riscv_host() -> &'static str {
    if cfg!(all(target_arch = "riscv64", target_os = "linux")) {
        "a real riscv64 host"
    } else {
        "riscv64 Linux under QEMU TCG (the riscv lab host)"
    }
}

/// Whether the x86 lab host is set up (its kernel and static vmm are built).
#[cfg(target_arch = "x86_64")]
pub fn x86_lab_ready() -> Result<()> {
    vmm_x86::lab::locate().map(|_| ())
}

#[cfg(not(target_arch = "x86_64"))]
pub fn x86_lab_ready() -> Result<()> {
    Err(Error::bad_input("the x86 lab host needs an x86_64 host"))
}

/// Checks that a backend can run here before minutes of runs start.
pub fn check_available(backend: &Backend) -> Result<()> {
    match backend.kind {
        Kind::X86Kvm => {
            if !cfg!(target_arch = "x86_64") {
                return Err(Error::bad_input("--x86-host kvm needs an x86_64 host with /dev/kvm"));
            }
            std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(|_| ()).map_err(|e| {
                Error::bad_input(format!(
                    "--x86-host kvm: cannot open /dev/kvm: {}; `--x86-host lab` runs x86 in the x86 lab host instead",
                    common::image::io_reason(&e)
                ))
            })
        }
        Kind::X86Lab => x86_lab_ready(),
        Kind::Riscv => {
            if cfg!(all(target_arch = "riscv64", target_os = "linux")) {
                Ok(())
            } else {
                urvirt_riscv::lab::locate().map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_where_figures_come_from() {
        assert_eq!(kvm_label("PVM (kvm_pvm: ...)"), "kvm-pvm (KVM's instruction emulator, no VMX/SVM)");
        assert!(kvm_label("VMX (Intel VT-x)").starts_with("VMX hardware"));
        assert!(kvm_label("SVM (AMD-V)").starts_with("SVM hardware"));
        assert!(kvm_label("unknown").starts_with("KVM of unknown"));
        assert!(Backend::new(Kind::X86Lab).measured_on.starts_with("SVM emulated by QEMU TCG"));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Backend::new(Kind::Riscv).measured_on, "riscv64 Linux under QEMU TCG (the riscv lab host)");
    }

    #[test]
    fn run_and_native_command_lines() {
        let lab = Backend::new(Kind::X86Lab);
        let args = lab.run_args("timer", Path::new("/t/lab-timer.bin"), 60);
        assert_eq!(&args[..6], ["run", "--arch", "x86", "--lab", "--stats-json", "--timeout"]);
        assert_eq!(args.last().unwrap(), "/t/lab-timer.bin");
        let rv = Backend::new(Kind::Riscv);
        assert_eq!(rv.arch_dir(), "riscv");
        assert_eq!(rv.event_word(), "signals");
    }
}
