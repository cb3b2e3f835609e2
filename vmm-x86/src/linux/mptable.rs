//! The Intel MultiProcessor Specification table (v1.4): how a kernel without ACPI finds the
//! local APICs, the I/O APIC and the wiring of the ISA interrupts to its pins.
//!
//! Layout at EBDA_START (the last KiB of base memory, where Linux scans for "_MP_"): the
//! 16-byte floating pointer, then the configuration table with its entries.
use common::{Error, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const LAPIC_ADDR: u32 = 0xfee0_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// KVM's in-kernel I/O APIC has 24 pins.
pub const IOAPIC_PINS: u8 = 24;

const SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const BUS_ISA: u8 = 0;

// Entry types.
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

// Interrupt types.
const INT_VECTORED: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;

const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;

const FLOATING_POINTER_LEN: usize = 16;
const HEADER_LEN: usize = 44;

/// The byte that makes `bytes` sum to zero, as every MP structure's checksum must.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)).wrapping_neg()
}

fn processor(apic_id: u8) -> Vec<u8> {
    let flags = CPU_ENABLED | if apic_id == 0 { CPU_BOOTSTRAP } else { 0 };
    let mut e = vec![ENTRY_PROCESSOR, apic_id, APIC_VERSION, flags];
    e.extend_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
    e.extend_from_slice(&0x201u32.to_le_bytes()); // FPU and APIC feature flags
    e.extend_from_slice(&[0; 8]);
    e
}

fn interrupt(kind: u8, irq_type: u8, source_irq: u8, dest_apic: u8, dest_pin: u8) -> [u8; 8] {
    // Flags 0: polarity and trigger "conform to the bus" (ISA: active high, edge).
    [kind, irq_type, 0, 0, BUS_ISA, source_irq, dest_apic, dest_pin]
}

/// The whole MP table for `cpus` processors (APIC ids 0..cpus), to be placed at `base`.
pub fn build(base: u64, cpus: u8) -> Result<Vec<u8>> {
    if cpus == 0 || cpus > 254 {
        return Err(Error::bad_input(format!("the MP table cannot describe {cpus} vCPUs")));
    }
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    let mut push = |entries: &mut Vec<u8>, e: &[u8]| {
        entries.extend_from_slice(e);
        count += 1;
    };
    for id in 0..cpus {
        push(&mut entries, &processor(id));
    }
    push(&mut entries, &[ENTRY_BUS, BUS_ISA, b'I', b'S', b'A', b' ', b' ', b' ']);
    let mut ioapic = vec![ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1];
    ioapic.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    push(&mut entries, &ioapic);
    // ISA IRQ n arrives at I/O APIC pin n, which is how KVM's default GSI routing wires them.
    for irq in 0..IOAPIC_PINS {
        push(&mut entries, &interrupt(ENTRY_IO_INTERRUPT, INT_VECTORED, irq, ioapic_id, irq));
    }
    // LINT0 takes the 8259's ExtINT, LINT1 the NMI, on every local APIC (0xff).
    push(&mut entries, &interrupt(ENTRY_LOCAL_INTERRUPT, INT_EXTINT, 0, 0xff, 0));
    push(&mut entries, &interrupt(ENTRY_LOCAL_INTERRUPT, INT_NMI, 0, 0xff, 1));

    let table_addr = base + FLOATING_POINTER_LEN as u64;
    let table_len = (HEADER_LEN + entries.len()) as u16;
    let mut table = Vec::with_capacity(table_len as usize);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&table_len.to_le_bytes());
    table.push(SPEC_REV);
    table.push(0); // checksum, filled below
    table.extend_from_slice(b"VMM     "); // OEM id, 8 bytes
    table.extend_from_slice(b"vmm-x86     "); // product id, 12 bytes
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(FLOATING_POINTER_LEN);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(table_addr as u32).to_le_bytes());
    fp.push(1); // length in 16-byte units
    fp.push(SPEC_REV);
    fp.push(0); // checksum
    fp.extend_from_slice(&[0; 5]); // feature bytes: 0 = a configuration table is present
    fp[10] = checksum(&fp);

    fp.extend_from_slice(&table);
    Ok(fp)
}

/// Builds the table and writes it at `base`.
pub fn write(mem: &GuestMemoryMmap, base: u64, cpus: u8) -> Result<()> {
    let bytes = build(base, cpus)?;
    mem.write_slice(&bytes, GuestAddress(base))
        .map_err(|e| Error::bad_input(format!("cannot write the MP table at {base:#x}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
    }

    #[test]
    fn checksums_make_each_structure_sum_to_zero() {
        let t = build(0x9fc00, 1).unwrap();
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(sum(&t[..16]), 0, "floating pointer");
        let len = u16::from_le_bytes([t[16 + 4], t[16 + 5]]) as usize;
        assert_eq!(16 + len, t.len());
        assert_eq!(&t[16..20], b"PCMP");
        assert_eq!(sum(&t[16..]), 0, "configuration table");
        assert_eq!(checksum(&[1, 2, 3]), 250);
    }

    #[test]
    fn floating_pointer_points_at_the_table() {
        let t = build(0x9fc00, 1).unwrap();
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 0x9fc10);
        assert_eq!((t[8], t[9]), (1, SPEC_REV));
    }

    #[test]
    fn entries_describe_cpus_ioapic_and_irqs() {
        let t = build(0x9fc00, 2).unwrap();
        let table = &t[16..];
        let count = u16::from_le_bytes([table[34], table[35]]);
        // 2 processors, 1 bus, 1 I/O APIC, 24 I/O interrupts, 2 local interrupts.
        assert_eq!(count, 2 + 1 + 1 + 24 + 2);
        assert_eq!(u32::from_le_bytes(table[36..40].try_into().unwrap()), LAPIC_ADDR);
        let e = &table[HEADER_LEN..];
        assert_eq!((e[0], e[1], e[3]), (ENTRY_PROCESSOR, 0, CPU_ENABLED | CPU_BOOTSTRAP));
        assert_eq!((e[20], e[21], e[23]), (ENTRY_PROCESSOR, 1, CPU_ENABLED));
        let bus = &e[40..48];
        assert_eq!(&bus[2..], b"ISA   ");
        let ioapic = &e[48..56];
        assert_eq!((ioapic[0], ioapic[1]), (ENTRY_IOAPIC, 2));
        assert_eq!(u32::from_le_bytes(ioapic[4..8].try_into().unwrap()), IOAPIC_ADDR);
        // IRQ 4 (the serial port) goes to pin 4 of that I/O APIC.
        let irq4 = &e[56 + 4 * 8..56 + 5 * 8];
        assert_eq!(irq4, &[ENTRY_IO_INTERRUPT, INT_VECTORED, 0, 0, BUS_ISA, 4, 2, 4]);
        let lint1 = &e[e.len() - 8..];
        assert_eq!((lint1[0], lint1[1], lint1[7]), (ENTRY_LOCAL_INTERRUPT, INT_NMI, 1));
    }

    #[test]
    fn refuses_impossible_cpu_counts() {
        assert!(build(0x9fc00, 0).is_err());
        assert!(build(0x9fc00, 255).is_err());
    }
}
