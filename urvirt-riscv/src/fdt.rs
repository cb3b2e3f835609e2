//! The device tree handed to the guest in a1, built with vm-fdt.
//!
//! It describes what URVirt offers and nothing more: RAM at 0x80000000, one hart, the host's
//! timebase, and under /soc the devices at QEMU virt's addresses ([`crate::layout`]): the
//! PLIC (`interrupts-extended` = the hart's M and S external interrupts, 11 and 9, as QEMU
//! has it), the 16550 (`ns16550a`, PLIC source 10) and one `virtio,mmio` node per disk. The
//! console is both the SBI console (legacy putchar/getchar and DBCN, `hvc0` in Linux, which
//! `bootargs` names) and the UART; both reach the one host console.
//!
//! `mmu-type` is "riscv,none": this issue implements satp Bare only, and a device tree that
//! promised Sv39 would send a kernel into paging that we would silently ignore. When mmu.rs
//! (Sv39) lands this becomes "riscv,sv39".
use common::{Error, Result};
use vm_fdt::FdtWriter;

/// Room reserved for the device tree at the top of guest RAM.
pub const FDT_MAX_SIZE: u64 = 64 << 10;

const TIMEBASE_PATH: &str = "/proc/device-tree/cpus/timebase-frequency";
/// QEMU virt's timebase, used when the host does not tell us its own.
pub const DEFAULT_TIMEBASE: u32 = 10_000_000;

/// What goes into the tree.
#[derive(Debug, Clone)]
pub struct FdtParams {
    pub mem_base: u64,
    pub mem_size: u64,
    pub timebase_frequency: u32,
    pub bootargs: String,
    /// virtio-mmio slots in use (one per `--disk`).
    pub virtio_slots: usize,
}

const CPU_INTC_PHANDLE: u32 = 1;
const PLIC_PHANDLE: u32 = 2;
/// The hart's local interrupt numbers the PLIC's contexts drive: M-mode and S-mode external.
const IRQ_M_EXT: u32 = 11;
const IRQ_S_EXT: u32 = 9;

/// Where the tree goes: the last FDT_MAX_SIZE bytes of RAM (8-byte aligned for any page
/// multiple). Saturating, so a size [`crate::config::check_mem`] would refuse can never
/// overflow here; such a size yields an address the loader reports as "does not fit".
pub fn fdt_address(mem_base: u64, mem_size: u64) -> u64 {
    mem_base.saturating_add(mem_size).saturating_sub(FDT_MAX_SIZE)
}

/// The host's timebase frequency: the guest reads the host's `time` counter directly, so it
/// must be told the same rate.
pub fn host_timebase_frequency() -> u32 {
    std::fs::read(TIMEBASE_PATH)
        .ok()
        .and_then(|b| b.get(..4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .filter(|&f| f > 0)
        .unwrap_or(DEFAULT_TIMEBASE)
}

fn fdt_err(e: vm_fdt::Error) -> Error {
    Error::bad_input(format!("cannot build the guest device tree: {e}"))
}

/// Builds the flattened device tree blob.
pub fn build(p: &FdtParams) -> Result<Vec<u8>> {
    let mut fdt = FdtWriter::new().map_err(fdt_err)?;
    let root = fdt.begin_node("").map_err(fdt_err)?;
    fdt.property_u32("#address-cells", 2).map_err(fdt_err)?;
    fdt.property_u32("#size-cells", 2).map_err(fdt_err)?;
    fdt.property_string("compatible", "urvirt,virt").map_err(fdt_err)?;
    fdt.property_string("model", "URVirt").map_err(fdt_err)?;

    let chosen = fdt.begin_node("chosen").map_err(fdt_err)?;
    fdt.property_string("bootargs", &p.bootargs).map_err(fdt_err)?;
    fdt.end_node(chosen).map_err(fdt_err)?;

    let memory = fdt.begin_node(&format!("memory@{:x}", p.mem_base)).map_err(fdt_err)?;
    fdt.property_string("device_type", "memory").map_err(fdt_err)?;
    fdt.property_array_u64("reg", &[p.mem_base, p.mem_size]).map_err(fdt_err)?;
    fdt.end_node(memory).map_err(fdt_err)?;

    let cpus = fdt.begin_node("cpus").map_err(fdt_err)?;
    fdt.property_u32("#address-cells", 1).map_err(fdt_err)?;
    fdt.property_u32("#size-cells", 0).map_err(fdt_err)?;
    fdt.property_u32("timebase-frequency", p.timebase_frequency).map_err(fdt_err)?;
    let cpu = fdt.begin_node("cpu@0").map_err(fdt_err)?;
    fdt.property_string("device_type", "cpu").map_err(fdt_err)?;
    fdt.property_u32("reg", 0).map_err(fdt_err)?;
    fdt.property_string("status", "okay").map_err(fdt_err)?;
    fdt.property_string("compatible", "riscv").map_err(fdt_err)?;
    fdt.property_string("riscv,isa", "rv64imafdc").map_err(fdt_err)?;
    fdt.property_string("riscv,isa-base", "rv64i").map_err(fdt_err)?;
    let exts = ["i", "m", "a", "f", "d", "c"].iter().map(|s| s.to_string()).collect();
    fdt.property_string_list("riscv,isa-extensions", exts).map_err(fdt_err)?;
    fdt.property_string("mmu-type", "riscv,none").map_err(fdt_err)?;
    let intc = fdt.begin_node("interrupt-controller").map_err(fdt_err)?;
    fdt.property_u32("#interrupt-cells", 1).map_err(fdt_err)?;
    fdt.property_null("interrupt-controller").map_err(fdt_err)?;
    fdt.property_string("compatible", "riscv,cpu-intc").map_err(fdt_err)?;
    fdt.property_phandle(CPU_INTC_PHANDLE).map_err(fdt_err)?;
    fdt.end_node(intc).map_err(fdt_err)?;
    fdt.end_node(cpu).map_err(fdt_err)?;
    fdt.end_node(cpus).map_err(fdt_err)?;
    soc(&mut fdt, p.virtio_slots).map_err(fdt_err)?;

    fdt.end_node(root).map_err(fdt_err)?;
    let blob = fdt.finish().map_err(fdt_err)?;
    if blob.len() as u64 > FDT_MAX_SIZE {
        return Err(Error::bad_input(format!(
            "the guest device tree is {} bytes, over its {FDT_MAX_SIZE}",
            blob.len()
        )));
    }
    Ok(blob)
}

/// /soc: the PLIC, the UART and the virtio-mmio slots.
fn soc(fdt: &mut FdtWriter, virtio_slots: usize) -> std::result::Result<(), vm_fdt::Error> {
    use crate::layout::*;
    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;

    let plic = fdt.begin_node(&format!("plic@{PLIC_BASE:x}"))?;
    fdt.property_string_list("compatible", vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()])?;
    fdt.property_array_u64("reg", &[PLIC_BASE, PLIC_SIZE])?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("riscv,ndev", PLIC_NDEV)?;
    fdt.property_array_u32("interrupts-extended", &[CPU_INTC_PHANDLE, IRQ_M_EXT, CPU_INTC_PHANDLE, IRQ_S_EXT])?;
    fdt.property_phandle(PLIC_PHANDLE)?;
    fdt.end_node(plic)?;

    let uart = fdt.begin_node(&format!("serial@{UART_BASE:x}"))?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[UART_BASE, UART_SIZE])?;
    fdt.property_u32("clock-frequency", UART_CLOCK)?;
    fdt.property_u32("interrupt-parent", PLIC_PHANDLE)?;
    fdt.property_u32("interrupts", UART_IRQ)?;
    fdt.end_node(uart)?;

    for i in 0..virtio_slots.min(VIRTIO_SLOTS) {
        let node = fdt.begin_node(&format!("virtio_mmio@{:x}", virtio_slot(i)))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[virtio_slot(i), VIRTIO_STRIDE])?;
        fdt.property_u32("interrupt-parent", PLIC_PHANDLE)?;
        fdt.property_u32("interrupts", VIRTIO_IRQ_BASE + i as u32)?;
        fdt.end_node(node)?;
    }
    fdt.end_node(soc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn tree_describes_memory_cpu_and_timebase() {
        let p = FdtParams {
            mem_base: 0x8000_0000,
            mem_size: 128 << 20,
            timebase_frequency: 10_000_000,
            bootargs: "console=hvc0".into(),
            virtio_slots: 2,
        };
        let blob = build(&p).unwrap();
        assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed], "FDT magic");
        let total = u32::from_be_bytes(blob[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, blob.len());
        // reg = <0x0 0x80000000 0x0 0x08000000> as big-endian cells.
        assert!(contains(&blob, &[0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0]));
        assert!(contains(&blob, b"memory@80000000\0"));
        assert!(contains(&blob, b"rv64imafdc\0"));
        assert!(contains(&blob, b"console=hvc0\0"));
        assert!(contains(&blob, &10_000_000u32.to_be_bytes()));
        // The devices, at QEMU virt's addresses, with their PLIC sources.
        for name in ["plic@c000000\0", "serial@10000000\0", "virtio_mmio@10001000\0", "virtio_mmio@10002000\0"] {
            assert!(contains(&blob, name.as_bytes()), "{name}");
        }
        assert!(!contains(&blob, b"virtio_mmio@10003000\0"), "one node per disk");
        assert!(
            contains(&blob, b"ns16550a\0") && contains(&blob, b"virtio,mmio\0") && contains(&blob, b"riscv,plic0\0")
        );
        // interrupts-extended = <&intc 11 &intc 9>; the UART's reg = <0 0x10000000 0 0x100>.
        assert!(contains(&blob, &[0, 0, 0, 1, 0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 9]));
        assert!(contains(&blob, &[0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
    }

    #[test]
    fn placed_at_top_of_ram() {
        assert_eq!(fdt_address(0x8000_0000, 128 << 20), 0x87ff_0000);
        assert_eq!(fdt_address(0x8000_0000, u64::MAX), u64::MAX - FDT_MAX_SIZE, "no overflow");
        assert_eq!(fdt_address(0, 4096), 0, "no underflow");
        assert!(host_timebase_frequency() > 0);
    }
}
