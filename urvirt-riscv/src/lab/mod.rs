//! The lab host: runs the riscv64 build of vmm inside a riscv64 Linux under qemu-system-riscv64.
use crate::config::RiscvConfig;
use common::image::Image;
use common::vm::{Outcome, VirtualMachine};
use common::{Error, Result};

pub struct LabHostVm {
    _config: RiscvConfig,
}

impl LabHostVm {
    pub fn new(config: RiscvConfig) -> Result<Self> {
        Ok(LabHostVm { _config: config })
    }
}

impl VirtualMachine for LabHostVm {
    fn load(&mut self, _image: &Image) -> Result<()> {
        Err(Error::bad_input("the RISC-V lab host is not built yet"))
    }
    fn run(&mut self) -> Result<Outcome> {
        Err(Error::bad_input("the RISC-V lab host is not built yet"))
    }
}

/// When this binary is PID 1 of the lab host's riscv64 Linux, act as its init (runs the guest,
/// reports the exit status, powers off) and never return. Otherwise return at once.
pub fn maybe_run_as_init() {}
