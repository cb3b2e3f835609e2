//! The CPUID the guest sees: what KVM says it can virtualize on this host
//! (KVM_GET_SUPPORTED_CPUID), adjusted to describe this VM rather than the host machine.
//!
//! Features are not invented: a bit KVM does not offer stays clear, so the guest never picks
//! an instruction the host cannot run. What we change is the topology (one vCPU with our APIC
//! id, not the host's cores and threads), the hypervisor bit, and the performance-monitoring
//! leaf (this VMM does not set up a virtual PMU).
use common::Result;
use kvm_bindings::{kvm_cpuid_entry2, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;

/// Leaf 1 ECX bit 31: "running under a hypervisor" (Linux then looks for KVM's leaves).
pub const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX bit 24: the local APIC's TSC-deadline timer mode.
const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 EDX bit 28: more than one logical processor per package.
const EDX_HTT: u32 = 1 << 28;

/// Topology level types in leaves 0xb/0x1f, ECX[15:8].
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Adjusts KVM's supported entries for vCPU `apic_id` of a VM with `cpus` vCPUs, one core
/// each, one package. Pure, so it is tested with made-up entries.
pub fn filter(entries: &mut [kvm_cpuid_entry2], apic_id: u8, cpus: u8) {
    let cpus = u32::from(cpus.max(1));
    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                e.ecx |= ECX_HYPERVISOR;
                // EBX: [31:24] initial APIC id, [23:16] logical processors, [15:0] kept (CLFLUSH size, brand).
                e.ebx = (u32::from(apic_id) << 24) | (cpus << 16) | (e.ebx & 0xffff);
                if cpus > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_PARAMS => {
                // EAX[31:26] cores per package - 1, [25:14] threads sharing this cache - 1.
                e.eax = (e.eax & 0x3fff) | ((cpus - 1) << 26);
            }
            LEAF_PMU => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                // Level 0: one thread per core; level 1: `cpus` cores per package.
                let (shift, count, level) = match e.index {
                    0 => (0, 1, LEVEL_SMT),
                    1 => (u32::BITS - (cpus - 1).leading_zeros(), cpus, LEVEL_CORE),
                    _ => (0, 0, 0),
                };
                e.eax = shift;
                e.ebx = count;
                e.ecx = (level << 8) | (e.index & 0xff);
                e.edx = u32::from(apic_id);
            }
            _ => {}
        }
    }
}

/// Offers the TSC-deadline timer, which KVM_GET_SUPPORTED_CPUID leaves out even where KVM's
/// in-kernel LAPIC emulates it (KVM_CAP_TSC_DEADLINE_TIMER says so; Firecracker sets it too).
/// With it Linux skips calibrating the APIC timer against the PIT, a step that under emulation
/// (the x86 lab host under load) can fail its check and leave the guest with no timer at all:
/// "APIC timer disabled due to verification failure", then a boot that never ends.
pub fn offer_tsc_deadline(entries: &mut [kvm_cpuid_entry2]) {
    for e in entries.iter_mut().filter(|e| e.function == LEAF_FEATURES) {
        e.ecx |= ECX_TSC_DEADLINE;
    }
}

/// Sets the filtered CPUID on `vcpu`.
pub fn setup(kvm: &Kvm, vcpu: &VcpuFd, apic_id: u8, cpus: u8) -> Result<()> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| crate::kvm::setup_error("KVM_GET_SUPPORTED_CPUID", e))?;
    filter(cpuid.as_mut_slice(), apic_id, cpus);
    if kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
        offer_tsc_deadline(cpuid.as_mut_slice());
    }
    vcpu.set_cpuid2(&cpuid).map_err(|e| crate::kvm::setup_error("KVM_SET_CPUID2", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_deadline_bit_is_set_on_leaf_1_only() {
        let mut e = [leaf(LEAF_FEATURES, 0, 0, 0, 0, 0), leaf(LEAF_PMU, 0, 0, 0, 0, 0)];
        offer_tsc_deadline(&mut e);
        assert_eq!(e[0].ecx & ECX_TSC_DEADLINE, ECX_TSC_DEADLINE);
        assert_eq!(e[1].ecx, 0);
    }

    fn leaf(function: u32, index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, index, eax, ebx, ecx, edx, ..Default::default() }
    }

    #[test]
    fn leaf1_gets_hypervisor_bit_and_our_apic_id() {
        // A host with APIC id 0x0c, 16 logical CPUs, HTT, CLFLUSH 8 (64 bytes).
        let mut e = [leaf(1, 0, 0x906ea, 0x0c10_0800, 0x7ffa_fbbf, 0xbfeb_fbff)];
        filter(&mut e, 0, 1);
        assert_eq!(e[0].ecx & ECX_HYPERVISOR, ECX_HYPERVISOR);
        assert_eq!(e[0].ebx, 0x0001_0800);
        assert_eq!(e[0].edx & EDX_HTT, 0);
        assert_eq!(e[0].edx, 0xbfeb_fbff & !EDX_HTT, "other feature bits are kept");
        assert_eq!(e[0].ecx & !ECX_HYPERVISOR, 0x7ffa_fbbf, "no feature is invented");
        assert_eq!(e[0].eax, 0x906ea);
        let mut e = [leaf(1, 0, 0, 0, 0, 0)];
        filter(&mut e, 3, 4);
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].edx & EDX_HTT, EDX_HTT);
    }

    #[test]
    fn topology_describes_one_package_of_our_cpus() {
        let mut e = [leaf(0xb, 0, 1, 2, 0x100, 0x0c), leaf(0xb, 1, 4, 16, 0x201, 0x0c), leaf(0xb, 2, 0, 0, 2, 0x0c)];
        filter(&mut e, 0, 1);
        assert_eq!((e[0].eax, e[0].ebx, e[0].ecx, e[0].edx), (0, 1, 0x100, 0));
        assert_eq!((e[1].eax, e[1].ebx, e[1].ecx, e[1].edx), (0, 1, 0x201, 0));
        assert_eq!((e[2].ebx, e[2].ecx), (0, 2));
        let mut e = [leaf(0x1f, 1, 0, 0, 0, 0)];
        filter(&mut e, 2, 4);
        assert_eq!((e[0].eax, e[0].ebx, e[0].edx), (2, 4, 2));
    }

    #[test]
    fn cache_leaf_and_pmu_are_adjusted_others_untouched() {
        let mut e =
            [leaf(4, 0, 0xfc00_4121, 1, 2, 3), leaf(0xa, 0, 0x0430_0805, 0, 0, 0x603), leaf(7, 0, 0, 0x9c27ab, 0, 0)];
        filter(&mut e, 0, 1);
        assert_eq!(e[0].eax, 0x0000_0121 & 0x3fff);
        assert_eq!((e[1].eax, e[1].edx), (0, 0));
        assert_eq!(e[2].ebx, 0x9c27ab);
    }
}
