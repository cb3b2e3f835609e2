//! Per exit/trap kind statistics: how often each kind happened and what handling it cost.
//!
//! Both backends fill the same table (x86 by KVM exit reason, RISC-V by trap kind), so the
//! teaching lab can compare the two ways to virtualize on equal terms. Recording never
//! allocates after the first time a kind is seen, so it is safe on the hot path and inside
//! synchronous signal handlers.
use crate::marks::{Marks, MAX_COUNTERS};
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub count: u64,
    pub total: Duration,
    pub max: Duration,
}

impl Entry {
    /// total / count, in whole nanoseconds. The division is in u128: `Duration / u32` would
    /// need the count cut to 32 bits, which is wrong (or a division by zero) past 2^32 events.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let nanos = self.total.as_nanos() / u128::from(self.count);
        // The mean is at most the total, which is a Duration, so this always fits.
        Duration::new((nanos / 1_000_000_000) as u64, (nanos % 1_000_000_000) as u32)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// (kind, device, entry) in first-seen order; device is "" when the kind names no device.
    /// A handful of kinds, so a linear scan beats a map.
    entries: Vec<(&'static str, &'static str, Entry)>,
    /// Extra lines the backend wants shown (e.g. final registers, host flavor).
    pub notes: Vec<String>,
    /// Points the guest marked in its run, with the counters there (see [`crate::marks`]).
    pub marks: Marks,
}

impl Stats {
    pub fn new() -> Self {
        Stats { entries: Vec::with_capacity(MAX_COUNTERS), notes: Vec::new(), marks: Marks::new() }
    }

    /// Row names in first-seen order: the order of a mark's counts.
    pub fn kind_names(&self) -> Vec<String> {
        self.entries.iter().map(|(k, d, _)| row_name(k, d)).collect()
    }

    /// Each row's count in first-seen order, without allocating.
    pub(crate) fn counts_in_order(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|(_, _, e)| e.count)
    }

    /// Each row's name and entry in first-seen order.
    pub fn rows(&self) -> impl Iterator<Item = (String, Entry)> + '_ {
        self.entries.iter().map(|(k, d, e)| (row_name(k, d), *e))
    }

    /// Counts one event of `kind` that took `elapsed` to handle.
    pub fn record(&mut self, kind: &'static str, elapsed: Duration) {
        self.record_device(kind, "", elapsed);
    }

    /// Counts one event of `kind` handled by the bus device named `device` (shown as one row,
    /// "io-out serial-0x3f8"): which device a guest talks to is what a reader wants to know.
    pub fn record_device(&mut self, kind: &'static str, device: &'static str, elapsed: Duration) {
        let entry = match self.entries.iter_mut().position(|(k, d, _)| *k == kind && *d == device) {
            Some(i) => &mut self.entries[i].2,
            None => {
                self.entries.push((kind, device, Entry::default()));
                &mut self.entries.last_mut().unwrap().2
            }
        };
        entry.count += 1;
        entry.total += elapsed;
        entry.max = entry.max.max(elapsed);
    }

    /// The row named `name` as the table shows it: "hlt", or "io-out serial-0x3f8".
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.entries.iter().find(|(k, d, _)| row_name_is(name, k, d)).map(|(_, _, e)| *e)
    }

    pub fn total_count(&self) -> u64 {
        self.entries.iter().map(|(_, _, e)| e.count).sum()
    }

    /// The table `--stats` prints: one row per kind (and device), most frequent first.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, Entry)> = self.entries.iter().map(|(k, d, e)| (row_name(k, d), *e)).collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(4).max(4);
        let mut s = String::new();
        let _ = writeln!(s, "{:<width$} {:>10} {:>12} {:>12}", "kind", "count", "mean (us)", "max (us)");
        for (kind, e) in &rows {
            let _ = writeln!(
                s,
                "{:<width$} {:>10} {:>12.2} {:>12.2}",
                kind,
                e.count,
                e.mean().as_secs_f64() * 1e6,
                e.max.as_secs_f64() * 1e6
            );
        }
        let _ = writeln!(s, "{:<width$} {:>10}", "total", self.total_count());
        for note in &self.notes {
            let _ = writeln!(s, "{note}");
        }
        s
    }
}

fn row_name(kind: &str, device: &str) -> String {
    if device.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} {device}")
    }
}

/// Whether `name` is the row name of (kind, device), without building that name.
fn row_name_is(name: &str, kind: &str, device: &str) -> bool {
    match name.strip_prefix(kind) {
        Some(rest) if device.is_empty() => rest.is_empty(),
        Some(rest) => rest.strip_prefix(' ') == Some(device),
        None => false,
    }
}

/// The median of benchmark samples (the upper one of an even count); 0 for none. The one
/// median every benchmark uses.
pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

/// Resident memory of this process in bytes, not counting mappings that start at any of
/// `exclude` (the guest RAM mappings): what the monitor itself costs.
pub fn rss_excluding(exclude: &[u64]) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut total = 0u64;
    let mut skip = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, _)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            skip = u64::from_str_radix(start, 16).map(|a| exclude.contains(&a)).unwrap_or(false);
        } else if !skip && first == "Rss:" {
            total += line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024;
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_mean_and_max() {
        let mut s = Stats::new();
        s.record("io-out", Duration::from_micros(10));
        s.record("io-out", Duration::from_micros(30));
        s.record("hlt", Duration::from_micros(1));
        let e = s.get("io-out").unwrap();
        assert_eq!(e.count, 2);
        assert_eq!(e.mean(), Duration::from_micros(20));
        assert_eq!(e.max, Duration::from_micros(30));
        assert_eq!(s.total_count(), 3);
        let t = s.table();
        let first_row = t.lines().nth(1).unwrap();
        assert!(first_row.starts_with("io-out"), "most frequent first: {t}");
        assert!(t.contains("total") && t.contains(" 3"));
    }

    #[test]
    fn mean_holds_past_u32_max_events() {
        // 2^32 + 2 events of 3 ns each: a 32-bit count would read 2 and give a mean of 6.4 s.
        let count = (1u64 << 32) + 2;
        let e = Entry { count, total: Duration::from_nanos(3 * count), max: Duration::from_nanos(3) };
        assert_eq!(e.mean(), Duration::from_nanos(3));
        // Exactly 2^32 events: a 32-bit count would be 0, a division by zero.
        let e = Entry { count: 1 << 32, total: Duration::from_secs(1 << 32), max: Duration::from_secs(1) };
        assert_eq!(e.mean(), Duration::from_secs(1));
        // Means below a nanosecond round down; totals past u64 nanoseconds still divide.
        assert_eq!(Entry { count: 3, total: Duration::from_nanos(2), max: Duration::ZERO }.mean(), Duration::ZERO);
        let huge = Entry { count: 2, total: Duration::from_secs(u64::MAX / 2 * 2), max: Duration::ZERO };
        assert_eq!(huge.mean(), Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn device_rows_are_separate_and_named() {
        let mut s = Stats::new();
        s.record_device("io-out", "serial-0x3f8", Duration::from_micros(10));
        s.record_device("io-out", "serial-0x3f8", Duration::from_micros(10));
        s.record_device("io-out", "post-0x80", Duration::from_micros(5));
        s.record("io-out", Duration::from_micros(1));
        assert_eq!(s.get("io-out serial-0x3f8").unwrap().count, 2);
        assert_eq!(s.get("io-out post-0x80").unwrap().count, 1);
        assert_eq!(s.get("io-out").unwrap().count, 1, "the row without a device");
        assert!(s.get("io-out serial").is_none() && s.get("io-out post-0x80x").is_none());
        assert_eq!(s.total_count(), 4);
        let t = s.table();
        assert!(t.lines().nth(1).unwrap().starts_with("io-out serial-0x3f8 "), "{t}");
        assert!(t.lines().any(|l| l.starts_with("io-out post-0x80 ")), "{t}");
    }

    #[test]
    fn rss_is_measured() {
        let all = rss_excluding(&[]).unwrap();
        assert!(all > 0);
    }

    #[test]
    fn median_of_odd_even_and_no_samples() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
