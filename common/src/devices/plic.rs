//! The RISC-V Platform-Level Interrupt Controller (PLIC), as the PLIC 1.0.0 spec describes it
//! and QEMU's `virt` machine lays it out: sources 1..=ndev, one priority each (0 = never), a
//! pending bit each, and per context (a hart in one privilege mode) enable bits, a priority
//! threshold and the claim/complete register.
//!
//! Register map (offsets from the base, 32-bit registers, little-endian):
//! - `0x000000 + 4 * n`: priority of source n (WARL, 0..=7 as on QEMU virt);
//! - `0x001000 + 4 * w`: pending bits of sources 32w..32w+31 (read-only);
//! - `0x002000 + 0x80 * c + 4 * w`: context c's enable bits;
//! - `0x200000 + 0x1000 * c`: context c's threshold; `+ 4`: claim (read) / complete (write).
//!
//! Every source has a level-triggered gateway ([`PlicLine`] is its input, a
//! [`crate::irq::InterruptLine`]): the first rise of the level makes a request (the pending
//! bit); no further request is made until the guest completes that one; on completion a level
//! that is still high makes the next. A level that falls before the claim leaves the request
//! pending (the spec's words: the handler then finds the device needs no service).
//!
//! Pure: the one link to the outside is `on_change(context, high)`, called whenever a
//! context's interrupt output (pending, enabled and above its threshold) changes. URVirt uses
//! context 1 (hart 0, S-mode) for `sip.SEIP`; context 0 (hart 0, M-mode) exists because
//! QEMU's layout and device tree have it, and goes nowhere.
use crate::bus::{BusDevice, DeviceRequest};
use crate::irq::InterruptLine;
use std::sync::{Arc, Mutex};

/// Hart 0 M-mode and hart 0 S-mode, as on QEMU virt with one hart.
pub const CONTEXTS: usize = 2;
/// The S-mode context of hart 0: its output is the hart's supervisor external interrupt.
pub const S_CONTEXT: usize = 1;
/// The highest priority (QEMU virt implements 3 bits).
pub const MAX_PRIORITY: u32 = 7;

const PENDING: u64 = 0x1000;
const ENABLE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;

/// Called with (context, output level) when a context's output changes.
pub type OnChange = Box<dyn FnMut(usize, bool) + Send>;

pub struct Plic {
    ndev: u32,
    /// Indexed by source; entry 0 is unused (source 0 does not exist).
    priority: Vec<u32>,
    /// The line level each gateway sees.
    level: Vec<bool>,
    /// A request the core holds (the pending bit).
    pending: Vec<bool>,
    /// A request made and not yet completed: the gateway makes no other meanwhile.
    in_flight: Vec<bool>,
    enable: [Vec<bool>; CONTEXTS],
    threshold: [u32; CONTEXTS],
    output: [bool; CONTEXTS],
    on_change: OnChange,
}

impl Plic {
    /// A PLIC with sources 1..=`ndev`, everything off.
    pub fn new(ndev: u32, on_change: OnChange) -> Self {
        let n = ndev as usize + 1;
        Plic {
            ndev,
            priority: vec![0; n],
            level: vec![false; n],
            pending: vec![false; n],
            in_flight: vec![false; n],
            enable: [vec![false; n], vec![false; n]],
            threshold: [0; CONTEXTS],
            output: [false; CONTEXTS],
            on_change,
        }
    }

    fn valid(&self, source: u32) -> bool {
        (1..=self.ndev).contains(&source)
    }

    /// The gateway of `source` sees its line at `high`.
    pub fn set_level(&mut self, source: u32, high: bool) {
        if !self.valid(source) {
            return;
        }
        let s = source as usize;
        self.level[s] = high;
        if high && !self.in_flight[s] {
            self.in_flight[s] = true;
            self.pending[s] = true;
        }
        self.update();
    }

    /// The source context `c` would get from a claim now (0: none): the highest priority
    /// pending, enabled source above the threshold; on a tie the lowest number.
    fn best(&self, c: usize) -> u32 {
        let mut best = (0, 0u32);
        for s in 1..=self.ndev {
            let i = s as usize;
            let p = self.priority[i];
            if self.pending[i] && self.enable[c][i] && p > self.threshold[c] && p > best.0 {
                best = (p, s);
            }
        }
        best.1
    }

    /// Whether context `c`'s interrupt output is high.
    pub fn output(&self, c: usize) -> bool {
        self.output.get(c).copied().unwrap_or(false)
    }

    fn update(&mut self) {
        for c in 0..CONTEXTS {
            let now = self.best(c) != 0;
            if now != self.output[c] {
                self.output[c] = now;
                (self.on_change)(c, now);
            }
        }
    }

    fn claim(&mut self, c: usize) -> u32 {
        let s = self.best(c);
        if s != 0 {
            self.pending[s as usize] = false;
            self.update();
        }
        s
    }

    fn complete(&mut self, c: usize, source: u32) {
        // The spec: a completion for a source not enabled for this context is ignored.
        if !self.valid(source) || !self.enable[c][source as usize] {
            return;
        }
        let s = source as usize;
        if !self.in_flight[s] {
            return;
        }
        self.in_flight[s] = false;
        if self.level[s] {
            self.in_flight[s] = true;
            self.pending[s] = true;
        }
        self.update();
    }

    /// 32 bits of `bits` starting at source 32 * `word`.
    fn word_of(bits: &[bool], word: u64) -> u32 {
        (0..32).filter(|&b| bits.get((word * 32 + b) as usize).copied().unwrap_or(false)).fold(0, |w, b| w | 1 << b)
    }

    /// Reads the register at `offset` (a claim takes the interrupt).
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            o if o < PENDING => self.priority.get((o / 4) as usize).copied().unwrap_or(0),
            o if o < ENABLE => Self::word_of(&self.pending, (o - PENDING) / 4),
            o if o < CONTEXT => {
                let (c, w) = (((o - ENABLE) / ENABLE_STRIDE) as usize, (o - ENABLE) % ENABLE_STRIDE / 4);
                self.enable.get(c).map_or(0, |e| Self::word_of(e, w))
            }
            o => match (((o - CONTEXT) / CONTEXT_STRIDE) as usize, (o - CONTEXT) % CONTEXT_STRIDE) {
                (c, 0) if c < CONTEXTS => self.threshold[c],
                (c, 4) if c < CONTEXTS => self.claim(c),
                _ => 0,
            },
        }
    }

    /// Writes `value` to the register at `offset` (read-only and reserved ones ignore it).
    pub fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            o if o < PENDING => {
                let s = (o / 4) as u32;
                if self.valid(s) {
                    self.priority[s as usize] = value & MAX_PRIORITY;
                }
            }
            o if o < ENABLE => {} // pending bits are read-only
            o if o < CONTEXT => {
                let (c, w) = (((o - ENABLE) / ENABLE_STRIDE) as usize, (o - ENABLE) % ENABLE_STRIDE / 4);
                if c < CONTEXTS {
                    for b in 0..32 {
                        let s = (w * 32 + b) as u32;
                        if self.valid(s) {
                            self.enable[c][s as usize] = value & (1 << b) != 0;
                        }
                    }
                }
            }
            o => match (((o - CONTEXT) / CONTEXT_STRIDE) as usize, (o - CONTEXT) % CONTEXT_STRIDE) {
                (c, 0) if c < CONTEXTS => self.threshold[c] = value & MAX_PRIORITY,
                (c, 4) if c < CONTEXTS => self.complete(c, value),
                _ => {}
            },
        }
        self.update();
    }
}

/// The registers are 32 bits wide: a 4-byte aligned access reads or writes one; any other
/// access reads zeros and writes nothing (QEMU's PLIC takes 4-byte accesses only).
impl BusDevice for Plic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        if let (Ok(bytes), true) = (<[u8; 4]>::try_from(data), offset.is_multiple_of(4)) {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
        None
    }
}

/// Input `source` of a shared PLIC: what a device drives.
pub struct PlicLine {
    pub plic: Arc<Mutex<Plic>>,
    pub source: u32,
}

impl InterruptLine for PlicLine {
    fn set_level(&self, high: bool) {
        self.plic.lock().unwrap_or_else(|e| e.into_inner()).set_level(self.source, high);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S_ENABLE: u64 = ENABLE + ENABLE_STRIDE;
    const S_THRESHOLD: u64 = CONTEXT + CONTEXT_STRIDE;
    const S_CLAIM: u64 = S_THRESHOLD + 4;

    /// Each output change: (context, level).
    type Seen = Arc<Mutex<Vec<(usize, bool)>>>;

    /// A PLIC whose output changes are recorded.
    fn plic() -> (Plic, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (Plic::new(95, Box::new(move |c, high| s.lock().unwrap().push((c, high)))), seen)
    }

    fn rd(p: &mut Plic, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        p.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr(p: &mut Plic, offset: u64, v: u32) {
        p.write(offset, &v.to_le_bytes());
    }

    #[test]
    fn a_source_interrupts_only_when_enabled_and_above_the_threshold() {
        let (mut p, seen) = plic();
        p.set_level(10, true);
        assert_eq!(rd(&mut p, PENDING), 1 << 10, "pending whatever the enables");
        assert!(!p.output(S_CONTEXT), "priority 0 never interrupts");
        wr(&mut p, 10 * 4, 1);
        assert!(!p.output(S_CONTEXT), "not enabled yet");
        wr(&mut p, S_ENABLE, 1 << 10);
        assert!(p.output(S_CONTEXT) && !p.output(0), "enabled for S only");
        wr(&mut p, S_THRESHOLD, 1);
        assert!(!p.output(S_CONTEXT), "priority must be above the threshold, not equal");
        wr(&mut p, 10 * 4, 0xff);
        assert_eq!(rd(&mut p, 10 * 4), 7, "priorities are 3 bits (WARL)");
        assert!(p.output(S_CONTEXT));
        assert_eq!(*seen.lock().unwrap(), vec![(1, true), (1, false), (1, true)]);
    }

    #[test]
    fn claim_complete_follow_the_level_triggered_gateway() {
        let (mut p, _) = plic();
        wr(&mut p, 4, 1);
        wr(&mut p, S_ENABLE, 1 << 1);
        p.set_level(1, true);
        assert_eq!(rd(&mut p, S_CLAIM), 1);
        assert_eq!(rd(&mut p, PENDING), 0, "the claim cleared the pending bit");
        assert!(!p.output(S_CONTEXT));
        assert_eq!(rd(&mut p, S_CLAIM), 0, "nothing else to claim");
        p.set_level(1, true);
        assert_eq!(rd(&mut p, PENDING), 0, "no new request until completion");
        wr(&mut p, S_CLAIM, 1);
        assert_eq!(rd(&mut p, PENDING), 2, "still high at completion: a new request");
        assert_eq!(rd(&mut p, S_CLAIM), 1);
        p.set_level(1, false);
        wr(&mut p, S_CLAIM, 1);
        assert_eq!(rd(&mut p, PENDING), 0, "low at completion: done");
        assert!(!p.output(S_CONTEXT));
        // A level that falls before the claim leaves the request pending.
        p.set_level(1, true);
        p.set_level(1, false);
        assert_eq!(rd(&mut p, S_CLAIM), 1);
    }

    #[test]
    fn the_highest_priority_wins_and_ties_go_to_the_lowest_number() {
        let (mut p, _) = plic();
        for (s, prio) in [(3, 2), (5, 6), (40, 6), (90, 1)] {
            wr(&mut p, s * 4, prio);
            p.set_level(s as u32, true);
        }
        wr(&mut p, S_ENABLE, (1 << 3) | (1 << 5));
        wr(&mut p, S_ENABLE + 4, 1 << 8); // source 40
        wr(&mut p, S_ENABLE + 8, 1 << 26); // source 90
        assert_eq!(rd(&mut p, S_ENABLE + 4), 1 << 8);
        assert_eq!(rd(&mut p, PENDING + 8), 1 << 26);
        let claims: Vec<u32> = (0..5).map(|_| rd(&mut p, S_CLAIM)).collect();
        assert_eq!(claims, vec![5, 40, 3, 90, 0]);
    }

    #[test]
    fn completion_of_a_source_not_enabled_is_ignored() {
        let (mut p, _) = plic();
        wr(&mut p, 7 * 4, 1);
        wr(&mut p, S_ENABLE, 1 << 7);
        p.set_level(7, true);
        assert_eq!(rd(&mut p, S_CLAIM), 7);
        wr(&mut p, S_ENABLE, 0);
        wr(&mut p, S_CLAIM, 7);
        wr(&mut p, S_ENABLE, 1 << 7);
        assert_eq!(rd(&mut p, S_CLAIM), 0, "the completion was ignored: still in service");
        wr(&mut p, S_CLAIM, 7);
        assert_eq!(rd(&mut p, S_CLAIM), 7, "completed now; the line is still high");
    }

    #[test]
    fn odd_accesses_and_reserved_registers_are_harmless() {
        let (mut p, _) = plic();
        wr(&mut p, 0, 5);
        assert_eq!(rd(&mut p, 0), 0, "source 0 does not exist");
        wr(&mut p, 96 * 4, 5);
        assert_eq!(rd(&mut p, 96 * 4), 0, "beyond ndev");
        wr(&mut p, S_ENABLE, 1); // bit 0: source 0
        assert_eq!(rd(&mut p, S_ENABLE), 0);
        wr(&mut p, PENDING, u32::MAX);
        assert_eq!(rd(&mut p, PENDING), 0, "pending is read-only");
        p.set_level(0, true);
        p.set_level(1000, true);
        let mut two = [0xffu8; 2];
        p.read(S_THRESHOLD, &mut two);
        assert_eq!(two, [0, 0], "only 4-byte accesses");
        p.write(S_THRESHOLD + 1, &[1, 0, 0, 0]);
        assert_eq!(rd(&mut p, S_THRESHOLD), 0);
        assert_eq!(rd(&mut p, CONTEXT + 2 * CONTEXT_STRIDE), 0, "no third context");
        assert_eq!(rd(&mut p, ENABLE + 2 * ENABLE_STRIDE), 0);
    }

    #[test]
    fn a_shared_line_drives_its_source() {
        let (p, _) = plic();
        let p = Arc::new(Mutex::new(p));
        let line = PlicLine { plic: p.clone(), source: 10 };
        line.set_level(true);
        line.set_level(true); // repeating a level is harmless
        assert_eq!(p.lock().unwrap().read_reg(PENDING), 1 << 10);
    }
}
