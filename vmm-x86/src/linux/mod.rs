//! Booting Linux: bzImage/ELF loading, boot params, MP table, CPUID, MSRs (see issue 3).
