//! When to arm the host's one-shot timer for the guest's SBI timer deadline. Pure code: the
//! engine ([`crate::engine`]) asks after every trap and does what the answer says.
//!
//! A one-shot host timer can fire a little before the deadline in `time` ticks (the clocks
//! are not the same one, and converting ticks to nanoseconds truncates). Then the guest's
//! deadline has not passed, STIP stays clear, and nothing is armed any more: the guest would
//! wait for an interrupt that never comes. So the timer is armed again whenever it has fired
//! (a SIGALRM arrived) while a deadline is still ahead, not only when the deadline changes,
//! and durations are rounded up, never down.
use std::time::Duration;

/// What to do with the host timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rearm {
    /// Leave it as it is (armed for the current deadline, or nothing to wait for).
    Keep,
    /// The guest cancelled its deadline.
    Disarm,
    /// Fire after this long.
    After(Duration),
}

/// `deadline` and `armed` are in `time` ticks (u64::MAX: none); `now` is the `time` counter;
/// `fired` says the host timer may have gone off since it was armed (this trap is a SIGALRM).
pub fn plan(deadline: u64, armed: u64, now: u64, fired: bool, freq: u64) -> Rearm {
    if deadline == u64::MAX {
        return if armed == u64::MAX { Rearm::Keep } else { Rearm::Disarm };
    }
    if now >= deadline {
        // Reached: STIP is raised by the interrupt check; no timer is needed for it.
        return Rearm::Keep;
    }
    if deadline != armed || fired {
        return Rearm::After(ticks_to_duration(deadline - now, freq));
    }
    Rearm::Keep
}

/// Converts timebase ticks to a duration, rounded up to the next nanosecond: a timer armed
/// for it never fires before the ticks have passed because of the conversion.
pub fn ticks_to_duration(ticks: u64, freq: u64) -> Duration {
    let freq = freq.max(1) as u128;
    let nanos = (ticks as u128 * 1_000_000_000).div_ceil(freq);
    Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 10_000_000;

    #[test]
    fn an_early_tick_arms_the_timer_again() {
        // Armed for tick 1000; the host timer fired at tick 999 (the same deadline, not reached).
        assert_eq!(plan(1000, 1000, 999, true, HZ), Rearm::After(Duration::from_nanos(100)));
        // Any other trap before the deadline: the timer is still armed for it.
        assert_eq!(plan(1000, 1000, 999, false, HZ), Rearm::Keep);
    }

    #[test]
    fn new_reached_and_cancelled_deadlines() {
        assert_eq!(plan(2000, 1000, 1000, false, HZ), Rearm::After(Duration::from_nanos(100_000)), "moved");
        assert_eq!(plan(2000, u64::MAX, 1000, false, HZ), Rearm::After(Duration::from_nanos(100_000)), "new");
        assert_eq!(plan(1000, 1000, 1000, true, HZ), Rearm::Keep, "reached: STIP, no timer");
        assert_eq!(plan(u64::MAX, 1000, 5, false, HZ), Rearm::Disarm, "cancelled");
        assert_eq!(plan(u64::MAX, u64::MAX, 5, true, HZ), Rearm::Keep, "nothing to wait for");
    }

    #[test]
    fn conversion_rounds_up() {
        // 1 tick at 3 Hz is 333,333,333.3 ns: truncating would fire a third of a ns early.
        assert_eq!(ticks_to_duration(1, 3), Duration::from_nanos(333_333_334));
        assert_eq!(ticks_to_duration(3, 3), Duration::from_secs(1));
        assert_eq!(ticks_to_duration(0, HZ), Duration::ZERO);
        assert_eq!(ticks_to_duration(u64::MAX, 1), Duration::from_nanos(u64::MAX), "capped, not a panic");
        assert_eq!(ticks_to_duration(5, 0), Duration::from_nanos(5_000_000_000), "freq 0 taken as 1");
    }
}
